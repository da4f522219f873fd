package engine

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jamba-go/jamba/model"
)

// BenchmarkThroughput measures the aggregate decode rate of 1 to 16
// concurrent greedy requests on the checkpoint in $JAMBA_BENCH_MODEL
// ($JAMBA_BENCH_QUANTIZE=int8 to quantize), or on the demo model. Each
// request has a 16-token prompt and decodes 64 tokens past end-of-sequence.
// The decode rate counts the tokens after every request's first one,
// over the time from the last first token to the last token, so prefill
// is left out.
func BenchmarkThroughput(b *testing.B) {
	m := demo(b)
	if dir := os.Getenv("JAMBA_BENCH_MODEL"); dir != "" {
		var err error
		if m, err = model.Load(dir, model.Options{Quantize: os.Getenv("JAMBA_BENCH_QUANTIZE")}); err != nil {
			b.Fatal(err)
		}
		defer m.Close()
	}
	const promptLen, maxTokens = 16, 64
	for _, n := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			e, err := New(m, Config{MaxBatch: n})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			run := func(maxTokens int) (tokens int, decode time.Duration) {
				var mu sync.Mutex
				var wg sync.WaitGroup
				var firstAll, last time.Time
				for i := range n {
					s, err := e.Submit(context.Background(), Request{Prompt: prompt(i, promptLen), MaxTokens: maxTokens, IgnoreEOS: true})
					if err != nil {
						b.Fatal(err)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						first := true
						for ev := range s.Events() {
							if ev.Token < 0 {
								continue
							}
							now := time.Now()
							mu.Lock()
							if first {
								first = false
								if now.After(firstAll) {
									firstAll = now
								}
							} else {
								tokens++
							}
							if now.After(last) {
								last = now
							}
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				return tokens, last.Sub(firstAll)
			}
			run(4) // warm the workspace and the slots
			var tokens int
			var decode time.Duration
			for b.Loop() {
				t, d := run(maxTokens)
				tokens += t
				decode += d
			}
			b.ReportMetric(float64(tokens)/decode.Seconds(), "tokens/s")
			b.ReportMetric(float64(decode.Milliseconds())/float64(tokens/n), "ms/step")
		})
	}
}
