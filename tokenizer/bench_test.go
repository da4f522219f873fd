package tokenizer

import (
	"runtime"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// BenchmarkEncodeGostdVal encodes ../shared/fixtures/corpus/gostd_val.txt
// (1.1 MB) in one call per iteration. Encode spreads long segments over
// GOMAXPROCS goroutines (at most 8); run with -cpu 1 for one thread.
func BenchmarkEncodeGostdVal(b *testing.B) {
	for _, name := range fixtureNames {
		b.Run(name, func(b *testing.B) {
			tk := loadFixture(b, name)
			text := string(testutil.ReadFile(b, "corpus/gostd_val.txt"))
			ids := tk.Encode(text, false) // warm the word cache, as HF's is after its warm-up
			b.ReportAllocs()
			b.SetBytes(int64(len(text)))
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ids = tk.Encode(text, false)
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(len(ids)), "tokens/op")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N)/float64(len(ids)), "allocs/token")
		})
	}
}

// BenchmarkDecodeGostdVal decodes the ids of gostd_val.txt in one call.
func BenchmarkDecodeGostdVal(b *testing.B) {
	for _, name := range fixtureNames {
		b.Run(name, func(b *testing.B) {
			tk := loadFixture(b, name)
			ids := tk.Encode(string(testutil.ReadFile(b, "corpus/gostd_val.txt")), false)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tk.Decode(ids, false)
			}
		})
	}
}
