package train

import (
	"runtime"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/lora"

	"github.com/jamba-go/jamba/kernels"

	"github.com/jamba-go/jamba/model"
)

// benchConfig is the shape of the demo model (hf-gostd-13m): hidden 256,
// 8 layers with attention at layer 4, 4 experts top-2 on odd layers,
// vocabulary 4096; 13.2M parameters, 7.4M active per token.
func benchConfig() *model.Config {
	c := model.DefaultConfig()
	c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = 4096, 256, 512, 8
	c.NumAttentionHeads, c.NumKeyValueHeads = 8, 2
	c.NumExperts, c.NumExpertsPerTok = 4, 2
	c.MambaDtRank = 16
	return c
}

// BenchmarkTrainStep measures one forward and backward pass over a batch of
// 4 rows of 256 tokens on the demo model's shape. It reports tokens/s and
// the arithmetic rate counted as 6 flops per active parameter per token.
// "stored" and "recompute" run one engine over all threads; "workers" runs
// GOMAXPROCS data-parallel workers (at most 4, one per row), and the step
// includes summing their gradients. "lora" and "lora-workers" are "stored"
// and "workers" training a rank-8 LoRA adapter over the frozen model.
func BenchmarkTrainStep(b *testing.B) {
	for _, name := range []string{"stored", "recompute", "workers", "lora", "lora-workers"} {
		b.Run(name, func(b *testing.B) {
			kernels.SetThreads(runtime.GOMAXPROCS(0)) // follow -cpu
			cfg := benchConfig()
			p := InitParams(cfg, 1)
			rows := randomRows(1, cfg.VocabSize, 256, 256, 256, 256)
			tokens := 4 * 256
			var pass func() error
			// lora: a rank-8 adapter of every Mamba, attention and dense
			// MLP projection (jamba train --lora-rank 8), the model frozen.
			var lr *LoRA
			if strings.HasPrefix(name, "lora") {
				ad, err := lora.New(cfg, lora.Config{Rank: 8, Alpha: 16, Targets: []string{"in_proj", "x_proj", "dt_proj", "out_proj",
					"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}})
				if err != nil {
					b.Fatal(err)
				}
				ad.Init(1)
				lr = NewLoRA(cfg, ad)
			}
			if strings.HasSuffix(name, "workers") {
				ws, err := NewWorkers(p, min(runtime.GOMAXPROCS(0), len(rows)))
				if err != nil {
					b.Fatal(err)
				}
				if lr != nil {
					for _, e := range ws.Backprops {
						if err := e.SetLoRA(lr); err != nil {
							b.Fatal(err)
						}
					}
				}
				pass = func() error {
					ws.ZeroGrad()
					_, err := ws.Backward(rows, 1)
					ws.Grad()
					return err
				}
			} else {
				e, err := NewBackprop(p)
				if err != nil {
					b.Fatal(err)
				}
				e.Recompute = name == "recompute"
				if lr != nil {
					if err := e.SetLoRA(lr); err != nil {
						b.Fatal(err)
					}
				}
				pass = func() error {
					e.ZeroGrad()
					_, err := e.Backward(rows, 1)
					return err
				}
			}
			if err := pass(); err != nil { // warm up: allocate the activations
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if err := pass(); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			_, active := cfg.ParamCount()
			b.ReportMetric(float64(tokens)/sec, "tokens/s")
			b.ReportMetric(6*float64(active)*float64(tokens)/sec/1e9, "GFLOP/s")
		})
	}
}
