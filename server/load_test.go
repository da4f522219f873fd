package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// streamResult is what one streaming chat client saw.
type streamResult struct {
	text   string
	tokens []string
	finish string
	usage  int64
	err    error
}

// streamChat runs one streaming greedy chat request with log-probabilities.
func streamChat(ctx context.Context, c openai.Client, content string, maxTokens int) streamResult {
	s := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:               demo.Name,
		Messages:            []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
		MaxCompletionTokens: openai.Int(int64(maxTokens)),
		Temperature:         openai.Float(0),
		Logprobs:            openai.Bool(true),
		TopLogprobs:         openai.Int(2),
		StreamOptions:       openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var r streamResult
	var b strings.Builder
	for s.Next() {
		ck := s.Current()
		if ck.Usage.TotalTokens > 0 {
			r.usage = ck.Usage.CompletionTokens
		}
		for _, ch := range ck.Choices {
			b.WriteString(ch.Delta.Content)
			for _, lp := range ch.Logprobs.Content {
				r.tokens = append(r.tokens, lp.Token)
			}
			if ch.FinishReason != "" {
				r.finish = string(ch.FinishReason)
			}
		}
	}
	r.text, r.err = b.String(), s.Err()
	return r
}

// TestLoad32Streams runs 32 concurrent streaming clients on the demo
// model with 16 slots (so half of them queue), checks every stream
// against the same request served alone, and checks that goroutines and
// heap return to their level before the load. kernels.MatMul is
// batch-invariant (a row's result does not depend on the other rows), so
// a stream must equal its solo run exactly: any difference is a mixed-up
// or corrupted sequence.
func TestLoad32Streams(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const clients, slots = 32, 16
	maxTokens := 48
	if raceEnabled {
		maxTokens = 12 // the race detector slows the model ~20x
	}
	e := newEnv(t, engine.Config{MaxBatch: slots, MaxQueue: clients}, Config{})
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	c := e.client(option.WithHTTPClient(&http.Client{Transport: tr}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	prompts := make([]string, clients)
	for i := range prompts {
		prompts[i] = fmt.Sprintf("Write func f%d(x int) int that returns x*%d.%s", i, i+2, strings.Repeat(" Please.", i%5))
	}
	solo := make([]streamResult, clients)
	for i, p := range prompts {
		solo[i] = streamChat(ctx, c, p, maxTokens)
		if solo[i].err != nil {
			t.Fatalf("solo %d: %v", i, solo[i].err)
		}
	}

	run := func(n int) []streamResult {
		res := make([]streamResult, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = streamChat(ctx, c, prompts[i], maxTokens)
			}()
		}
		wg.Wait()
		return res
	}
	// Warm up: every slot is used, and a 600-token prompt fills one step's
	// whole token budget (512), the largest batch the workspace can see.
	run(slots)
	long := "[1" + strings.Repeat(",5", 599) + "]"
	if resp, body := e.post("/v1/completions", `{"prompt":`+long+`,"max_tokens":1}`); resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d %s", resp.StatusCode, body)
	}
	waitIdle(t, e.eng)
	tr.CloseIdleConnections()
	baseG, baseHeap := settle(0, 0)

	res := run(clients)
	for i, r := range res {
		if r.err != nil {
			t.Errorf("client %d: %v", i, r.err)
			continue
		}
		if r.finish != solo[i].finish || r.usage != int64(len(r.tokens)) {
			t.Errorf("client %d: finish %q usage %d tokens %d; solo finish %q", i, r.finish, r.usage, len(r.tokens), solo[i].finish)
		}
		if r.text != solo[i].text || !slices.Equal(r.tokens, solo[i].tokens) {
			t.Errorf("client %d: got %q, want %q", i, r.text, solo[i].text)
		}
	}
	waitIdle(t, e.eng)
	tr.CloseIdleConnections()
	g, heap := settle(baseG, baseHeap)
	t.Logf("goroutines %d -> %d, heap in use %.1f -> %.1f MiB", baseG, g, float64(baseHeap)/(1<<20), float64(heap)/(1<<20))
	// HTTP keep-alive connections closed, nothing of the requests may
	// stay: a leaked handler or stream shows here.
	if g > baseG {
		t.Errorf("goroutines: %d before the load, %d after", baseG, g)
	}
	// The slots and the workspace were sized by the warm-up; 4 MiB covers
	// what the runtime and net/http keep in their free lists.
	if heap > baseHeap+4<<20 {
		t.Errorf("heap in use: %.1f MiB before the load, %.1f MiB after", float64(baseHeap)/(1<<20), float64(heap)/(1<<20))
	}
}

// settle waits up to two seconds for the goroutine count to fall to
// wantG (when given) and returns it with the heap in use after a GC.
func settle(wantG int, _ uint64) (int, uint64) {
	deadline := time.Now().Add(2 * time.Second)
	for wantG > 0 && runtime.NumGoroutine() > wantG && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapInuse
}

// TestSoakHeapPlateau sends many requests with distinct prompts, four at
// a time, and checks that the heap stops growing once every slot has been
// used: nothing per request may stay behind.
func TestSoakHeapPlateau(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("soak test")
	}
	e := newEnv(t, engine.Config{MaxBatch: 4}, Config{})
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	next := 0
	send := func(n int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					if i >= n {
						return
					}
					// Distinct token-id prompts: text prompts would also fill
					// the tokenizer's word cache, bounded at 2^18 entries.
					body := fmt.Sprintf(`{"prompt":[1,%d,%d,%d,%d],"max_tokens":4,"stream":%v}`, 4+i%4000, 4+i/4000, 4+(i*7)%4000, 4+(i*13)%4000, i%2 == 0)
					resp, err := client.Post(e.url+"/v1/completions", "application/json", strings.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("request %d: %d", i, resp.StatusCode)
					}
				}
			}()
		}
		wg.Wait()
	}
	// The heap settles after a few hundred requests (connection state,
	// histogram buckets, workspace sizes), then stays flat within about
	// 0.2 MiB.
	const warm, total = 400, 1200
	send(warm)
	_, base := settle(0, 0)
	send(total)
	_, after := settle(0, 0)
	perK := (float64(after) - float64(base)) / (1 << 20) / float64(total-warm) * 1000
	t.Logf("heap in use %.2f -> %.2f MiB over %d requests: %.2f MiB per 1000", float64(base)/(1<<20), float64(after)/(1<<20), total-warm, perK)
	// reliability.md §3.8 asks for under 1 MiB per 1000 requests.
	if perK >= 1 {
		t.Errorf("the heap grows %.2f MiB per 1000 requests", perK)
	}
}
