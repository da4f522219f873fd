package model

import (
	"os"
	"testing"
)

// BenchmarkPrefillBench measures a 256-token prefill of the model in the
// folder named by JAMBA_BENCH_MODEL (e.g. one made by `jamba init` from
// ../shared/bench/jamba-small.json); it is skipped when the variable is unset.
func BenchmarkPrefillBench(b *testing.B) {
	dir := os.Getenv("JAMBA_BENCH_MODEL")
	if dir == "" {
		b.Skip("JAMBA_BENCH_MODEL not set")
	}
	m, err := Load(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ids := make([]int, 256)
	for i := range ids {
		ids[i] = 3 + (i*7919)%(m.Config.VocabSize-3)
	}
	ws := m.NewWorkspace()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ws.Forward([]SeqInput{{Tokens: ids}}); err != nil {
			b.Fatal(err)
		}
	}
}
