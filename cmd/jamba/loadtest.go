package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

func init() {
	register(&command{name: "loadtest", summary: "measure a running server under concurrent streaming requests", run: runLoadtest})
}

func runLoadtest(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("loadtest", "[--url http://127.0.0.1:8080] [--concurrency 1,2,4,8,16] [flags]", `
Sends streaming /v1/completions requests to a running server (jamba serve,
or any OpenAI-compatible one) and reports, per level of load, what clients
see: completed, failed and rejected (429) requests, requests/s, output
tokens/s, time to first token (TTFT), time per output token after the first
(TPOT), inter-token latency (ITL) and end-to-end latency, as mean, median
and 99th percentile.

Closed loop (the default): for each --concurrency level, that many clients
each send a request as soon as their previous one ends, until --requests
have been sent. Open loop (--rate R): requests arrive at random (Poisson)
times at R per second for --duration, whatever the server's pace, the way
many independent users do; above the server's capacity its queue fills and
it answers 429, which this counts.

Each request is a prompt of --prompt-tokens random token ids (seeded, all
different, so that no request continues another's state) asking for
--max-tokens tokens greedily past end-of-sequence ("ignore_eos") with
"logprobs": 0, so that each token arrives as its own event.`, stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "server base URL (the /v1 API is under it)")
	apiKey := fs.String("api-key", "", "bearer token (default: $JAMBA_API_KEY)")
	modelID := fs.String("model-id", "", "model id to request (default: the first one /v1/models lists)")
	levels := fs.String("concurrency", "1,2,4,8,16", "closed-loop levels: comma-separated client counts")
	requests := fs.Int("requests", 0, "requests per closed-loop level (0: 4 per client, at least 8)")
	promptTokens := fs.Int("prompt-tokens", 128, "prompt length in tokens")
	maxTokens := fs.Int("max-tokens", 128, "tokens to generate per request")
	rate := fs.Float64("rate", 0, "open loop: mean arrivals per second (0: closed loop)")
	duration := fs.Duration("duration", time.Minute, "open loop: how long requests keep arriving")
	seed := fs.Uint64("seed", 1, "seed of the prompts and the arrival times")
	timeout := fs.Duration("timeout", 5*time.Minute, "limit on one request")
	asJSON := fs.Bool("json", false, "print one JSON object per level instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *apiKey == "" {
		*apiKey = os.Getenv("JAMBA_API_KEY")
	}
	switch {
	case *promptTokens < 1 || *maxTokens < 1:
		return fmt.Errorf("%w: --prompt-tokens and --max-tokens must be at least 1", errUsage)
	case *rate < 0 || math.IsNaN(*rate) || math.IsInf(*rate, 0):
		return fmt.Errorf("%w: --rate %v must be a positive number (0: closed loop)", errUsage, *rate)
	case *rate > 0 && *duration <= 0:
		return fmt.Errorf("%w: --duration must be positive with --rate", errUsage)
	case *requests < 0:
		return fmt.Errorf("%w: --requests must not be negative", errUsage)
	}
	var counts []int
	if *rate == 0 {
		for _, f := range strings.Split(*levels, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("loadtest: --concurrency %q: want positive integers separated by commas", *levels)
			}
			counts = append(counts, n)
		}
	}
	lt := &loadTester{base: strings.TrimRight(*url, "/"), key: *apiKey, model: *modelID,
		promptTokens: *promptTokens, maxTokens: *maxTokens, timeout: *timeout,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	if lt.model == "" {
		id, err := lt.firstModel()
		if err != nil {
			return err
		}
		lt.model = id
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var reports []loadReport
	if *rate > 0 {
		fmt.Fprintf(stderr, "open loop: %.3g requests/s for %v against %s (model %s)\n", *rate, *duration, lt.base, lt.model)
		reports = append(reports, lt.openLoop(ctx, *rate, *duration, *seed))
	} else {
		for _, c := range counts {
			n := *requests
			if n == 0 {
				n = max(8, 4*c)
			}
			fmt.Fprintf(stderr, "%d concurrent clients, %d requests against %s (model %s)\n", c, n, lt.base, lt.model)
			reports = append(reports, lt.closedLoop(ctx, c, n, *seed+uint64(c)))
			if ctx.Err() != nil {
				break
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range reports {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	} else {
		writeLoadTable(stdout, reports)
	}
	for _, r := range reports {
		if r.FirstError != "" {
			fmt.Fprintf(stderr, "first failure (%s): %s\n", r.Level, r.FirstError)
		}
	}
	return ctx.Err()
}

// loadTester sends the requests of a load test.
type loadTester struct {
	base, key, model string
	promptTokens     int
	maxTokens        int
	timeout          time.Duration
	client           *http.Client
}

// loadResult is what one request saw.
type loadResult struct {
	status   int // HTTP status; 0: no response
	err      string
	tokens   int
	ttft     time.Duration
	e2e      time.Duration
	gaps     []time.Duration // between consecutive tokens
	finished bool            // ended with a finish_reason and [DONE]
}

func (lt *loadTester) newRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, lt.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if lt.key != "" {
		req.Header.Set("Authorization", "Bearer "+lt.key)
	}
	return req, nil
}

// firstModel asks /v1/models for the served model's id.
func (lt *loadTester) firstModel() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := lt.newRequest(ctx, "GET", "/v1/models", nil)
	if err != nil {
		return "", fmt.Errorf("loadtest: %w", err)
	}
	resp, err := lt.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("loadtest: is the server running? %w", err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("loadtest: GET %s/v1/models: %s: %s", lt.base, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &list); err != nil || len(list.Data) == 0 {
		return "", fmt.Errorf("loadtest: GET %s/v1/models lists no model (give --model-id)", lt.base)
	}
	return list.Data[0].ID, nil
}

// prompt returns request i's prompt: seeded random ids in [3, 1003), valid
// in any vocabulary of at least 1003 tokens.
func (lt *loadTester) prompt(seed uint64, i int) []int {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	p := make([]int, lt.promptTokens)
	for j := range p {
		p[j] = 3 + rng.IntN(1000)
	}
	return p
}

// one sends one streaming completion and times its tokens.
func (lt *loadTester) one(ctx context.Context, prompt []int) loadResult {
	ctx, cancel := context.WithTimeout(ctx, lt.timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]any{
		"model": lt.model, "prompt": prompt, "max_tokens": lt.maxTokens, "temperature": 0,
		"ignore_eos": true, "stream": true, "logprobs": 0,
	})
	var r loadResult
	req, err := lt.newRequest(ctx, "POST", "/v1/completions", body)
	if err != nil {
		r.err = err.Error()
		return r
	}
	start := time.Now()
	resp, err := lt.client.Do(req)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer resp.Body.Close()
	r.status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		r.err = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		return r
	}
	var last time.Time
	var finish bool
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data: ")) {
			continue
		}
		data := line[len("data: "):]
		if string(data) == "[DONE]" {
			r.finished = finish
			break
		}
		var ch struct {
			Choices []struct {
				Text     string `json:"text"`
				Logprobs *struct {
					Tokens []string `json:"tokens"`
				} `json:"logprobs"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &ch); err != nil {
			r.err = fmt.Sprintf("malformed event %q: %v", truncate(string(data), 200), err)
			return r
		}
		if ch.Error != nil {
			r.err = "error event: " + ch.Error.Message
			return r
		}
		now := time.Now()
		for _, c := range ch.Choices {
			n := 0
			if c.Logprobs != nil {
				n = len(c.Logprobs.Tokens)
			} else if c.Text != "" {
				n = 1
			}
			for range n {
				if r.tokens == 0 {
					r.ttft = now.Sub(start)
				} else {
					r.gaps = append(r.gaps, now.Sub(last))
				}
				last = now
				r.tokens++
			}
			finish = finish || c.FinishReason != nil
		}
	}
	r.e2e = time.Since(start)
	if err := sc.Err(); err != nil {
		r.err = err.Error()
	} else if !r.finished {
		r.err = "the stream ended without a finish_reason and [DONE]"
	}
	return r
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// closedLoop runs n requests from c clients that each send the next one as
// soon as their last one ends.
func (lt *loadTester) closedLoop(ctx context.Context, c, n int, seed uint64) loadReport {
	results := make([]loadResult, n)
	var next sync.Mutex
	i := 0
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for ctx.Err() == nil {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= n {
					return
				}
				results[k] = lt.one(ctx, lt.prompt(seed, k))
			}
		})
	}
	wg.Wait()
	return summarize(fmt.Sprintf("%d clients", c), results[:min(i, n)], time.Since(start))
}

// openLoop sends requests at exponentially distributed intervals of mean
// 1/rate for d, each on its own goroutine.
func (lt *loadTester) openLoop(ctx context.Context, rate float64, d time.Duration, seed uint64) loadReport {
	rng := rand.New(rand.NewPCG(seed, 0x0be1))
	var mu sync.Mutex
	var results []loadResult
	var wg sync.WaitGroup
	start := time.Now()
	at := time.Duration(0)
	for k := 0; ; k++ {
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if at >= d {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(at))):
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			r := lt.one(ctx, lt.prompt(seed, k))
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarize(fmt.Sprintf("%.3g req/s", rate), results, time.Since(start))
}

// loadReport is one level's summary; durations in milliseconds.
type loadReport struct {
	Level        string       `json:"level"`
	Requests     int          `json:"requests"`
	Completed    int          `json:"completed"`
	Failed       int          `json:"failed"`
	Rejected     int          `json:"rejected_429"`
	Seconds      float64      `json:"seconds"`
	RequestsPerS float64      `json:"requests_per_s"`
	TokensPerS   float64      `json:"output_tokens_per_s"`
	TTFT         latencyStats `json:"ttft_ms"`
	TPOT         latencyStats `json:"tpot_ms"`
	ITL          latencyStats `json:"itl_ms"`
	E2E          latencyStats `json:"e2e_ms"`
	FirstError   string       `json:"first_error,omitempty"`
}

type latencyStats struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
}

// summarize counts and times the completed requests of a level that took
// wall seconds.
func summarize(level string, rs []loadResult, wall time.Duration) loadReport {
	rep := loadReport{Level: level, Requests: len(rs), Seconds: wall.Seconds()}
	var ttft, tpot, itl, e2e []time.Duration
	tokens := 0
	for _, r := range rs {
		switch {
		case r.err == "":
			rep.Completed++
			tokens += r.tokens
			ttft = append(ttft, r.ttft)
			e2e = append(e2e, r.e2e)
			itl = append(itl, r.gaps...)
			if r.tokens > 1 {
				tpot = append(tpot, (r.e2e-r.ttft)/time.Duration(r.tokens-1))
			}
		case r.status == http.StatusTooManyRequests:
			rep.Rejected++
		default:
			rep.Failed++
			if rep.FirstError == "" {
				rep.FirstError = r.err
			}
		}
	}
	if s := wall.Seconds(); s > 0 {
		rep.RequestsPerS = float64(rep.Completed) / s
		rep.TokensPerS = float64(tokens) / s
	}
	rep.TTFT, rep.TPOT, rep.ITL, rep.E2E = latencies(ttft), latencies(tpot), latencies(itl), latencies(e2e)
	return rep
}

// latencies is the mean, median and 99th percentile (nearest rank) in
// milliseconds; zeros for no samples.
func latencies(d []time.Duration) latencyStats {
	if len(d) == 0 {
		return latencyStats{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		return ms(d[max(0, min(i, len(d)-1))])
	}
	return latencyStats{Mean: ms(sum / time.Duration(len(d))), P50: rank(0.5), P99: rank(0.99)}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeLoadTable(w io.Writer, reports []loadReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\tdone\tfailed\t429\treq/s\ttok/s\tTTFT mean/p50/p99 ms\tTPOT mean/p50/p99 ms\tITL p50/p99 ms\tE2E p50/p99 ms\t")
	for _, r := range reports {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.1f\t%.0f / %.0f / %.0f\t%.1f / %.1f / %.1f\t%.1f / %.1f\t%.0f / %.0f\t\n",
			r.Level, r.Completed, r.Failed, r.Rejected, r.RequestsPerS, r.TokensPerS,
			r.TTFT.Mean, r.TTFT.P50, r.TTFT.P99, r.TPOT.Mean, r.TPOT.P50, r.TPOT.P99,
			r.ITL.P50, r.ITL.P99, r.E2E.P50, r.E2E.P99)
	}
	tw.Flush()
}
