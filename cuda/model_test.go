package cuda

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
	"github.com/jamba-go/jamba/sample"
)

// logitTol is the required agreement of GPU and CPU logits: 1e-3 of the
// largest logit. Both sides do float32 arithmetic over the same weights, so
// the differences seen are orders of magnitude below it (logged).
const logitTol = 1e-3

// compareLogits returns max|g − c| / max|c|.
func compareLogits(g, c []float32) float64 { return maxRel(g, c) }

// awkwardConfig is a small model whose widths are not multiples of 8 or of
// the warp size: every kernel's tail paths run.
func awkwardConfig(aligned bool) *model.Config {
	c := model.DefaultConfig()
	c.VocabSize, c.HiddenSize, c.IntermediateSize = 203, 70, 44
	c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 6, 2, 1
	c.AttnLayerPeriod, c.AttnLayerOffset = 3, 1
	c.ExpertLayerPeriod, c.ExpertLayerOffset = 2, 1
	c.NumExperts, c.NumExpertsPerTok = 5, 2
	c.MambaDState, c.MambaDConv, c.MambaDtRank = 5, 3, 7
	c.MambaProjBias = true
	if aligned {
		c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads = 64, 96, 4, 2
		c.MambaDState, c.MambaDConv, c.MambaDtRank, c.MambaProjBias = 16, 4, 4, false
	}
	return c
}

// pair runs the same batch through the CPU engine and the GPU model.
type pair struct {
	t   *testing.T
	cpu *model.Model
	gpu *Model
	ws  *model.Workspace
}

func newPair(t *testing.T, cm *model.Model) *pair {
	t.Helper()
	dev := gpu(t)
	gm, err := Upload(dev, cm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gm.Close)
	return &pair{t: t, cpu: cm, gpu: gm, ws: cm.NewWorkspace()}
}

// TestAwkwardModel runs checkModel and checkLong on awkward and aligned
// shapes, float32 and bfloat16 weights, and with the row limits of the
// matrix-vector, device-grouped and all-experts paths at their defaults and
// at their extremes, so that every path meets every batch size.
func TestAwkwardModel(t *testing.T) {
	dev := gpu(t)
	defer func(g, m, u, d, mm, me, mn, sc, md int, wide bool) {
		dev.gemvRows, dev.moeRows, dev.groupedUnroll, dev.moeDenseRows, dev.mmaRows, dev.moeMMARows, dev.moeMMAMin, dev.scanChanSeqs, dev.mmdRows, dev.mmaWide = g, m, u, d, mm, me, mn, sc, md, wide
	}(dev.gemvRows, dev.moeRows, dev.groupedUnroll, dev.moeDenseRows, dev.mmaRows, dev.moeMMARows, dev.moeMMAMin, dev.scanChanSeqs, dev.mmdRows, dev.mmaWide)
	dev.moeMMAMin = 2
	// The tensor-core kernels for 2–64 rows where the widths allow (the
	// experts' default), then the matrix-vector and grouped kernels, then
	// cuBLAS and the all-experts path.
	for _, lim := range [][7]int{{dev.gemvRows, dev.moeRows, 0, dev.moeDenseRows, mmaMax, mmaMax, 0}, {dev.gemvRows, dev.moeRows, 0, dev.moeDenseRows, mmaMax, mmaMax, 1},
		{gemvMax, gemvMax, 1, moeMax + 1, 0, 0, 0}, {0, 0, 0, 2, 0, 0, 0}} {
		dev.gemvRows, dev.moeRows, dev.groupedUnroll, dev.moeDenseRows, dev.mmaRows, dev.moeMMARows = lim[0], lim[1], lim[2], lim[3], lim[4], lim[5]
		dev.mmaWide = lim[6] == 1
		// The dense tensor-core kernels take the products that the
		// matrix-vector kernels do not, except in the last setting (cuBLAS).
		dev.mmdRows = mmdMax
		if lim[0] == 0 {
			dev.mmdRows = 0
		}
		// Decode steps of the batch of three: one thread per channel in
		// the first two settings, lanes per channel in the others.
		dev.scanChanSeqs = 1
		if lim[4] == 0 {
			dev.scanChanSeqs = 1 << 30
		}
		for _, aligned := range []bool{false, true} {
			for _, dtype := range []string{"f32", "bf16"} {
				t.Run(fmt.Sprintf("gemv%d/moe%d/unroll%d/dense%d/mma%d/moemma%d/wide%d/aligned=%v/%s", lim[0], lim[1], lim[2]+1, lim[3], lim[4], lim[5], lim[6], aligned, dtype), func(t *testing.T) {
					c := awkwardConfig(aligned)
					dir := t.TempDir()
					if err := model.WriteInit(c, dir, dtype, 7, nil); err != nil {
						t.Fatal(err)
					}
					cm, err := model.Load(dir, model.Options{})
					if err != nil {
						t.Fatal(err)
					}
					defer cm.Close()
					checkModel(t, cm)
					checkLong(t, cm)
				})
			}
		}
	}
}

// checkModel compares GPU and CPU on a batch prefill of three sequences of
// different lengths (33 rows: the cuBLAS and grouped-expert paths), then
// decode steps of the batch (the matrix-vector and direct-expert paths),
// then a chunked prefill of one sequence against one pass.
func checkModel(t *testing.T, cm *model.Model) {
	p := newPair(t, cm)
	V := cm.Config.VocabSize
	lens := []int{1, 9, 23}
	toks := make([][]int, len(lens))
	seed := 11
	for i, n := range lens {
		toks[i] = make([]int, n)
		for j := range toks[i] {
			seed = (seed*1103515245 + 12345) & 0x7fffffff
			toks[i][j] = seed % V
		}
	}
	cpuSeqs := make([]*cacheSeqCPU, len(lens))
	gpuSeqs := make([]*Seq, len(lens))
	for i := range lens {
		cpuSeqs[i] = &cacheSeqCPU{cm.NewCache(64)}
		s, err := p.gpu.NewSeq(64)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Free()
		gpuSeqs[i] = s
	}
	run := func(tokens [][]int, all bool) float64 {
		ci := make([]model.SeqInput, len(tokens))
		gi := make([]SeqInput, len(tokens))
		for i := range tokens {
			ci[i] = model.SeqInput{Tokens: tokens[i], Cache: cpuSeqs[i].s, Logits: logitRows(all)}
			gi[i] = SeqInput{Tokens: tokens[i], Cache: gpuSeqs[i], AllLogits: all}
		}
		if err := p.ws.Forward(ci); err != nil {
			t.Fatal(err)
		}
		if err := p.gpu.Forward(gi); err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range tokens {
			g, err := p.gpu.Logits(i)
			if err != nil {
				t.Fatal(err)
			}
			worst = max(worst, compareLogits(g, p.ws.Logits(i)))
		}
		return worst
	}
	if e := run(toks, true); !(e <= logitTol) {
		t.Errorf("batch prefill: logits differ by %.3g of the largest", e)
	} else {
		t.Logf("batch prefill: %.3g", e)
	}
	for step := 0; step < 4; step++ {
		next := make([][]int, len(lens))
		for i := range next {
			g, _ := p.gpu.Logits(i)
			next[i] = []int{model.Argmax(g[len(g)-V:])}
		}
		if e := run(next, false); !(e <= logitTol) {
			t.Errorf("decode step %d: logits differ by %.3g", step, e)
		} else {
			t.Logf("decode step %d: %.3g", step, e)
		}
	}
	// Chunking on the GPU: 23 tokens as 5 + 1 + 17 against one pass.
	one, err := p.gpu.NewSeq(64)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Free()
	if err := p.gpu.Forward([]SeqInput{{Tokens: toks[2], Cache: one, AllLogits: true}}); err != nil {
		t.Fatal(err)
	}
	ref, _ := p.gpu.Logits(0)
	ref = append([]float32(nil), ref...)
	if err := one.Reset(); err != nil {
		t.Fatal(err)
	}
	var got []float32
	for _, ch := range [][2]int{{0, 5}, {5, 6}, {6, 23}} {
		if err := p.gpu.Forward([]SeqInput{{Tokens: toks[2][ch[0]:ch[1]], Cache: one, AllLogits: true}}); err != nil {
			t.Fatal(err)
		}
		l, _ := p.gpu.Logits(0)
		got = append(got, l...)
	}
	if e := compareLogits(got, ref); !(e <= logitTol) {
		t.Errorf("chunked prefill differs from one pass by %.3g", e)
	} else {
		t.Logf("chunked vs one pass: %.3g", e)
	}
	// A state copy continues like the original.
	cp, err := p.gpu.NewSeq(64)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Free()
	if err := cp.CopyFrom(one); err != nil {
		t.Fatal(err)
	}
	var last [2][]float32
	for i, s := range []*Seq{one, cp} {
		if err := p.gpu.Forward([]SeqInput{{Tokens: []int{3}, Cache: s}}); err != nil {
			t.Fatal(err)
		}
		l, _ := p.gpu.Logits(0)
		last[i] = append([]float32(nil), l...)
	}
	if e := compareLogits(last[1], last[0]); e != 0 {
		t.Errorf("copied state continues differently: %.3g", e)
	}
}

type cacheSeqCPU struct{ s *cache.Seq }

// fixtureDir finds a fixture model: in the folders of $JAMBA_FIXTURES
// (a list like PATH, for copies beside a test binary) first, then the usual places.
func fixtureDir(t *testing.T, name string) string {
	for _, d := range filepath.SplitList(os.Getenv("JAMBA_FIXTURES")) {
		if _, err := os.Stat(filepath.Join(d, name, "config.json")); err == nil {
			return filepath.Join(d, name)
		}
	}
	return testutil.Fixture(t, filepath.Join("models", name))
}

var fixtureModels = []string{"tiny-dense", "tiny-moe", "tiny-moe-bf16", "tiny-moe-long", "tiny-moe-variant", "hf-gostd-13m"}

// TestFixtures: every fixture model's logits on its reference inputs within
// 1e-3 of the largest logit of the CPU engine's, and greedy generation on
// the GPU (sampling kernel) equal to transformers' ids.
func TestFixtures(t *testing.T) {
	gpu(t)
	for _, name := range fixtureModels {
		t.Run(name, func(t *testing.T) {
			dir := fixtureDir(t, name)
			cm, err := model.Load(dir, model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer cm.Close()
			p := newPair(t, cm)
			f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			ints := func(name string) ([]int, []int) {
				tt, err := f.Tensor(name)
				if err != nil {
					return nil, nil
				}
				v, err := tt.Int64()
				if err != nil {
					t.Fatal(err)
				}
				out := make([]int, len(v))
				for i, x := range v {
					out[i] = int(x)
				}
				return out, tt.Shape
			}
			ids, shape := ints("input_ids")
			B, T := shape[0], shape[1]
			ci := make([]model.SeqInput, B)
			gi := make([]SeqInput, B)
			for b := 0; b < B; b++ {
				row := ids[b*T : (b+1)*T]
				s, err := p.gpu.NewSeq(T)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Free()
				ci[b] = model.SeqInput{Tokens: row, Cache: cm.NewCache(T), Logits: model.AllLogits}
				gi[b] = SeqInput{Tokens: row, Cache: s, AllLogits: true}
			}
			if err := p.ws.Forward(ci); err != nil {
				t.Fatal(err)
			}
			if err := p.gpu.Forward(gi); err != nil {
				t.Fatal(err)
			}
			for b := 0; b < B; b++ {
				g, err := p.gpu.Logits(b)
				if err != nil {
					t.Fatal(err)
				}
				e := compareLogits(g, p.ws.Logits(b))
				if !(e <= logitTol) {
					t.Errorf("sequence %d: GPU logits differ from the CPU's by %.3g of the largest", b, e)
				} else {
					t.Logf("sequence %d (%d tokens): GPU vs CPU logits %.3g of the largest", b, T, e)
				}
			}
			// Perplexity windows: the same mean loss as the CPU engine
			// (float64 sums of float32 logits that agree to ~1e-6).
			wantLoss, wantN, err := cm.LossOverWindows(ids, T, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			gotLoss, gotN, err := p.gpu.LossOverWindows(ids, T, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if gotN != wantN || math.Abs(gotLoss-wantLoss) > 1e-5*wantLoss {
				t.Errorf("loss over windows: GPU %.8f (%d), CPU %.8f (%d)", gotLoss, gotN, wantLoss, wantN)
			}
			var ref struct {
				Greedy []int `json:"greedy_with_cache"`
			}
			data, _ := os.ReadFile(filepath.Join(dir, "reference.json"))
			_ = json.Unmarshal(data, &ref)
			prompt, _ := ints("prompt")
			if prompt == nil || len(ref.Greedy) == 0 {
				return
			}
			got, _, err := p.gpu.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: len(ref.Greedy), IgnoreEOS: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(ref.Greedy) {
				t.Errorf("greedy on the GPU:\n got %v\nwant %v", got, ref.Greedy)
			}
			// A sampler with top-k 1 takes the same tokens through the GPU's
			// top-k kernel (Generate samples on the GPU for samplers
			// without penalties).
			smp := sample.New(sample.Params{Temperature: 1, TopK: 1, Seed: 3}, cm.Config.VocabSize)
			got, _, err = p.gpu.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: len(ref.Greedy), IgnoreEOS: true, Sampler: smp}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(ref.Greedy) {
				t.Errorf("top-k 1 on the GPU:\n got %v\nwant %v", got, ref.Greedy)
			}
		})
	}
}

// checkLong compares decode after a 700-token prompt: the attention kernel
// then splits the keys over several blocks and merges them.
func checkLong(t *testing.T, cm *model.Model) {
	p := newPair(t, cm)
	V := cm.Config.VocabSize
	toks := make([]int, 700)
	for i := range toks {
		toks[i] = (i*7919 + 13) % V
	}
	cs := cm.NewCache(710)
	gs, err := p.gpu.NewSeq(710)
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Free()
	in := toks
	for step := 0; step < 3; step++ {
		if err := p.ws.Forward([]model.SeqInput{{Tokens: in, Cache: cs}}); err != nil {
			t.Fatal(err)
		}
		if err := p.gpu.Forward([]SeqInput{{Tokens: in, Cache: gs}}); err != nil {
			t.Fatal(err)
		}
		g, err := p.gpu.Logits(0)
		if err != nil {
			t.Fatal(err)
		}
		if e := compareLogits(g, p.ws.Logits(0)); !(e <= logitTol) {
			t.Errorf("after %d tokens: logits differ by %.3g", gs.Len, e)
		} else {
			t.Logf("after %d tokens: %.3g", gs.Len, e)
		}
		in = []int{model.Argmax(g)}
	}
}

// logitRows is the CPU forward's LogitRows for the GPU's AllLogits flag.
func logitRows(all bool) model.LogitRows {
	if all {
		return model.AllLogits
	}
	return model.LastLogits
}

// TestDecodeAllocs: a steady decode step (Forward over one token per
// sequence, then Sample, the engine's sampleEach with each row's own
// options, or Logits for samplers on the host) allocates nothing on the
// host once the buffers have grown, at batch 1 and 4 and through the
// matrix-vector, tensor-core and grouped-expert paths.
func TestDecodeAllocs(t *testing.T) {
	dev := gpu(t)
	c := awkwardConfig(true)
	dir := t.TempDir()
	if err := model.WriteInit(c, dir, "bf16", 3, nil); err != nil {
		t.Fatal(err)
	}
	cm, err := model.Load(dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	gm, err := Upload(dev, cm)
	if err != nil {
		t.Fatal(err)
	}
	defer gm.Close()
	for _, b := range []int{1, 4} {
		in := make([]SeqInput, b)
		for i := range in {
			s, err := gm.NewSeq(256)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Free()
			in[i] = SeqInput{Tokens: []int{5 + i}, Cache: s}
		}
		k := 0
		opts := make([]SampleOptions, b) // the engine's draws, each row its own
		for i := range opts {
			opts[i] = SampleOptions{Temperature: 1, TopK: 10 + i, Seed: uint64(i)}
		}
		step := func() {
			if err := gm.Forward(in); err != nil {
				t.Fatal(err)
			}
			for i := range opts {
				opts[i].Step = uint64(k)
			}
			if err := gm.sampleEach(opts); err != nil {
				t.Fatal(err)
			}
			if _, err := gm.downloadIDs(); err != nil {
				t.Fatal(err)
			}
			ids, err := gm.Sample(SampleOptions{Temperature: 0.8, TopK: 20, TopP: 0.9, Seed: 1, Step: uint64(k)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := gm.Logits(0); err != nil {
				t.Fatal(err)
			}
			for i := range in {
				in[i].Tokens[0] = ids[i]
			}
			k++
		}
		for range 3 {
			step()
		}
		if a := testing.AllocsPerRun(20, step); a != 0 {
			t.Errorf("batch %d: %.1f allocations per decode step", b, a)
		} else {
			t.Logf("batch %d: no allocations per decode step", b)
		}
	}
}
