package model

import (
	"os"
	"testing"
)

// BenchmarkDecodeBench measures one decode step (batch 1, after a 256-token
// prompt) of the model in JAMBA_BENCH_MODEL, with JAMBA_BENCH_QUANTIZE as
// the load-time quantization; skipped when the variable is unset.
func BenchmarkDecodeBench(b *testing.B) {
	dir := os.Getenv("JAMBA_BENCH_MODEL")
	if dir == "" {
		b.Skip("JAMBA_BENCH_MODEL not set")
	}
	m, err := Load(dir, Options{Quantize: os.Getenv("JAMBA_BENCH_QUANTIZE")})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ids := make([]int, 256)
	for i := range ids {
		ids[i] = 3 + (i*7919)%(m.Config.VocabSize-3)
	}
	ws := m.NewWorkspace()
	st := m.NewCache(256 + b.N + 1)
	if _, err := m.Prefill(ws, st, ids, 0); err != nil {
		b.Fatal(err)
	}
	in := []SeqInput{{Tokens: []int{5}, Cache: st}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ws.Forward(in); err != nil {
			b.Fatal(err)
		}
	}
}
