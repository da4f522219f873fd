package server

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
)

// BenchmarkServeThroughput measures the aggregate decode rate through the
// HTTP API of 1 to 16 concurrent streaming clients, on the checkpoint in
// $JAMBA_BENCH_MODEL ($JAMBA_BENCH_QUANTIZE=int8 to quantize) or the demo
// model. Each client streams /v1/completions with a 16-token id prompt
// and 64 tokens past end-of-sequence; "logprobs": 0 makes every token its
// own chunk whatever the tokenizer makes of it. The rate counts the
// tokens after every client's first one, over the time from the last
// first token to the last token.
func BenchmarkServeThroughput(b *testing.B) {
	m, tok := loadDemo(b)
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
			eng, err := engine.New(m, engine.Config{MaxBatch: n})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close()
			srv, _ := New(Config{ModelID: "bench", Logger: quietLogger})
			srv.Ready(Backend{Engine: eng, Tokenizer: tok, Template: chat.Default(), ChatAddSpecial: true})
			ts := httptest.NewServer(srv.Handler())
			defer ts.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: n}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			run := func(max int) (tokens int, decode time.Duration) {
				var mu sync.Mutex
				var wg sync.WaitGroup
				var firstAll, last time.Time
				for i := range n {
					// The prompts of the engine's benchmark: BOS, then 15 ids.
					ids := []string{"1"}
					for j := 1; j < promptLen; j++ {
						ids = append(ids, fmt.Sprint(100+(i*37+j*11)%3000))
					}
					body := fmt.Sprintf(`{"prompt":[%s],"max_tokens":%d,"ignore_eos":true,"temperature":0,"logprobs":0,"stream":true}`, strings.Join(ids, ","), max)
					wg.Add(1)
					go func() {
						defer wg.Done()
						resp, err := client.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						defer resp.Body.Close()
						sc := bufio.NewScanner(resp.Body)
						first := true
						for sc.Scan() {
							line := sc.Text()
							if !strings.HasPrefix(line, "data: {") || !strings.Contains(line, `"token_logprobs"`) {
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
			run(4)
			var tokens int
			var decode time.Duration
			for b.Loop() {
				t, d := run(maxTokens)
				tokens += t
				decode += d
			}
			b.ReportMetric(float64(tokens)/decode.Seconds(), "tokens/s")
		})
	}
}
