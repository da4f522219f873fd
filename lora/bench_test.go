package lora

import (
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/model"
)

// BenchmarkLowRankDecode times one decode step of 8 sequences of the demo
// model (each with 64 tokens of context) with no adapter, with the rank-8
// net/http adapter of testdata on every sequence, and on half of them
// (two runs of rows per adapted product): the cost of applying adapters on
// the fly.
func BenchmarkLowRankDecode(b *testing.B) {
	m, err := demo.Load(model.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ad, err := Load(filepath.Join("..", "testdata", "lora", "gostd-nethttp"), m.Config)
	if err != nil {
		b.Fatal(err)
	}
	lr, err := LowRankFor(m, ad)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		every int // every how many sequences one has the adapter (0: none)
	}{{"base", 0}, {"all-adapter", 1}, {"half-adapter", 2}} {
		b.Run(c.name, func(b *testing.B) {
			const seqs, ctx = 8, 64
			ws := m.NewWorkspace()
			batch := make([]model.SeqInput, seqs)
			for i := range batch {
				batch[i].Cache = m.NewCache(ctx + b.N + 1)
				if c.every > 0 && i%c.every == 0 {
					batch[i].Adapter = lr
				}
				p := make([]int, ctx)
				for j := range p {
					p[j] = 100 + (i*37+j*11)%3000
				}
				if err := ws.Forward([]model.SeqInput{{Tokens: p, Cache: batch[i].Cache, Adapter: batch[i].Adapter}}); err != nil {
					b.Fatal(err)
				}
			}
			tok := make([][1]int, seqs)
			for i := range batch {
				tok[i][0] = 5 + i
				batch[i].Tokens = tok[i][:]
			}
			b.ResetTimer()
			for range b.N {
				if err := ws.Forward(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(seqs*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
