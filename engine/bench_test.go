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
	m := benchModel(b)
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
							if !ev.HasToken() {
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

// benchModel is the checkpoint in $JAMBA_BENCH_MODEL ($JAMBA_BENCH_QUANTIZE
// =int8 to quantize), or the demo model.
func benchModel(b *testing.B) *model.Model {
	dir := os.Getenv("JAMBA_BENCH_MODEL")
	if dir == "" {
		return demoModelFor(b)
	}
	m, err := model.Load(dir, model.Options{Quantize: os.Getenv("JAMBA_BENCH_QUANTIZE")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkChatTurn measures the time to the first token of a conversation's
// next turn: a request whose prompt is an earlier request's prompt (history
// tokens), its 16 output tokens and 32 new tokens, with the earlier
// request's whole state continued (reuse=state, the default), and without
// reuse (NoPrefixReuse). reuse=copy sends the earlier prompt and 48 new
// tokens instead of its output, as when a chat's earlier reply re-tokenizes
// differently: it continues from the copy taken at that prompt's end.
// reuse=stored runs the next turn on a second engine that shares a
// Config.Store (in memory: the cost of finding, checking and decoding a
// stored state, without the medium's) with the first.
// Model as BenchmarkThroughput.
func BenchmarkChatTurn(b *testing.B) {
	m := benchModel(b)
	for _, history := range []int{256, 1024} {
		for _, reuse := range []string{"state", "copy", "stored", "off"} {
			b.Run(fmt.Sprintf("history=%d/reuse=%s", history, reuse), func(b *testing.B) {
				cfg := Config{MaxBatch: 2, NoPrefixReuse: reuse == "off"}
				if reuse == "stored" {
					cfg.Store = newMemStore()
				}
				e, err := New(m, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer e.Close()
				replica := e
				if reuse == "stored" {
					if replica, err = New(m, cfg); err != nil {
						b.Fatal(err)
					}
					defer replica.Close()
				}
				run := func(e *Engine, p []int) ([]int, time.Duration) {
					start := time.Now()
					s, err := e.Submit(context.Background(), Request{Prompt: p, MaxTokens: 16, IgnoreEOS: true})
					if err != nil {
						b.Fatal(err)
					}
					var ids []int
					var ttft time.Duration
					for ev := range s.Events() {
						if ev.HasToken() {
							if ids == nil {
								ttft = time.Since(start)
							}
							ids = append(ids, ev.Token)
						}
					}
					return ids, ttft
				}
				var total time.Duration
				i := 0
				for b.Loop() {
					i++
					b.StopTimer()
					p := prompt(i, history)
					out, _ := run(e, p)
					next := append(append(append([]int(nil), p...), out...), prompt(i+1, 33)[1:]...)
					if reuse == "copy" {
						next = append(append([]int(nil), p...), prompt(i+1, 49)[1:]...)
					}
					b.StartTimer()
					_, ttft := run(replica, next)
					total += ttft
				}
				b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-to-first-token")
			})
		}
	}
}
