package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
)

// readTracker records whether a request body was read.
type readTracker struct {
	io.Reader
	read bool
}

func (r *readTracker) Read(p []byte) (int, error) {
	r.read = true
	return r.Reader.Read(p)
}

func TestAPIKey(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 1}, Config{APIKeys: []string{"k1", "second-key"}})
	h := e.srv.Handler()
	for _, tc := range []struct {
		header string
		status int
	}{
		{"", 401},
		{"Bearer", 401},
		{"Bearer ", 401},
		{"Bearer k2", 401},
		{"Basic k1", 401},
		{"Bearer k1x", 401},
		{"Bearer k1", 200},
		{"bearer second-key", 200},
		{"BEARER  k1 ", 200},
	} {
		body := &readTracker{Reader: strings.NewReader(`{` + chatOK + `}`)}
		req := httptest.NewRequest("POST", "/v1/chat/completions", body)
		req.Header.Set("Content-Type", "application/json")
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("Authorization %q: %d, want %d (%s)", tc.header, rec.Code, tc.status, rec.Body)
		}
		if tc.status == 401 {
			if body.read {
				t.Errorf("Authorization %q: the body was read before the key was checked", tc.header)
			}
			var eb errorBody
			json.Unmarshal(rec.Body.Bytes(), &eb)
			if eb.Error == nil || eb.Error.Code == nil || *eb.Error.Code != "invalid_api_key" || eb.Error.Type != "invalid_request_error" {
				t.Errorf("401 body %s", rec.Body)
			}
		}
	}
	// /health is public; /metrics and /v1/models are not.
	for path, want := range map[string]int{"/health": 200, "/metrics": 401, "/v1/models": 401} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("GET %s without a key: %d, want %d", path, rec.Code, want)
		}
	}
	// The official client sends the key as a bearer token.
	c := e.client()
	if _, err := c.Models.List(context.Background()); err == nil {
		t.Error("wrong key accepted by the client")
	}
}

func TestHostCheck(t *testing.T) {
	m, tok := loadDemo(t)
	eng, _ := engine.New(m, engine.Config{MaxBatch: 1})
	defer eng.Close()
	srv, err := New(Config{ModelID: "m", AllowedHosts: []string{"localhost:8080", "127.0.0.1:8080", "[::1]:8080"}, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	srv.Ready(Backend{Engine: eng, Tokenizer: tok, Template: chat.Default()})
	for host, want := range map[string]int{
		"localhost:8080": 200, "LOCALHOST:8080": 200, "127.0.0.1:8080": 200, "[::1]:8080": 200,
		"evil.example:8080": 400, "localhost:9999": 400, "localhost": 400, "": 400,
	} {
		req := httptest.NewRequest("GET", "/health", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %q: %d, want %d", host, rec.Code, want)
		}
	}
}

func TestHealthLifecycle(t *testing.T) {
	m, tok := loadDemo(t)
	srv, err := New(Config{ModelID: demo.Name, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	get := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	rec := get("GET", "/health", "")
	if rec.Code != 503 || strings.TrimSpace(rec.Body.String()) != `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}` {
		t.Errorf("loading: %d %s", rec.Code, rec.Body)
	}
	rec = get("POST", "/v1/chat/completions", `{`+chatOK+`}`)
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("API while loading: %d %s", rec.Code, rec.Body)
	}
	eng, _ := engine.New(m, engine.Config{MaxBatch: 1})
	srv.Ready(Backend{Engine: eng, Tokenizer: tok, Template: chat.Default()})
	if rec = get("GET", "/health", ""); rec.Code != 200 {
		t.Errorf("ready: %d %s", rec.Code, rec.Body)
	}
	srv.Drain()
	if rec = get("GET", "/health", ""); rec.Code != 503 || !strings.Contains(rec.Body.String(), "Shutting down") {
		t.Errorf("draining: %d %s", rec.Code, rec.Body)
	}
	if rec = get("POST", "/v1/completions", `{"prompt":"a"}`); rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("API while draining: %d %s", rec.Code, rec.Body)
	}
	// A dead engine turns /health to 503 too.
	srv2, _ := New(Config{ModelID: demo.Name, Logger: quietLogger})
	srv2.Ready(Backend{Engine: eng, Tokenizer: tok, Template: chat.Default()})
	eng.Close()
	rec = httptest.NewRecorder()
	srv2.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != 503 {
		t.Errorf("closed engine: %d %s", rec.Code, rec.Body)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{})
	e.post("/v1/completions", `{"prompt":"func","max_tokens":5,"stream":true}`)
	e.post("/v1/completions", `{"prompt":5}`)
	// The engine retires a sequence just after sending its last event,
	// so the response may arrive first.
	waitIdle(t, e.eng)
	resp, err := e.ts.Client().Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`jamba_http_requests_total{code="200",endpoint="/v1/completions"} 1`,
		`jamba_http_requests_total{code="400",endpoint="/v1/completions"} 1`,
		"jamba_queue_depth 0", "jamba_active_sequences 0", "jamba_max_batch 2",
		"jamba_prompt_tokens_total 2", "jamba_generated_tokens_total 5",
		// One prompt step of 2 tokens, then 4 decode steps of 1 (the 5th
		// token is sampled from the 4th's logits): 5 sequences, 6 tokens.
		"jamba_engine_steps_total 5", "jamba_engine_step_sequences_total 5", "jamba_engine_step_tokens_total 6",
		"jamba_time_to_first_token_seconds_count 1", "jamba_inter_token_latency_seconds_count 4",
		"jamba_request_completion_tokens_total 5", "go_goroutines",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestQueueFull(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 1, MaxQueue: 1}, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := `{"prompt":"a","max_tokens":5000,"ignore_eos":true,"stream":true}`
	var wg sync.WaitGroup
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/completions", strings.NewReader(long))
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(io.Discard, resp.Body); resp.Body.Close() }()
	}
	resp, body := e.post("/v1/completions", long)
	checkError(t, resp, body, 429, "rate_limit_error", "", "", "retry")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	cancel()
	wg.Wait()
	waitIdle(t, e.eng)
}

// sseEvents reads data lines of an event stream.
func sseEvents(t *testing.T, r io.Reader, each func(data string) bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			if !each(d) {
				return
			}
		}
	}
}

// TestDisconnect checks that a client that goes away, while queued, while
// streaming or while waiting for a non-streaming answer, frees its slot
// within a second, and that the goroutines it used end.
func TestDisconnect(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 1, MaxQueue: 4}, Config{})
	long := `{"prompt":"a","max_tokens":8000,"ignore_eos":true`
	start := func(body string) (context.CancelFunc, *http.Response) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			cancel()
			return cancel, nil
		}
		return cancel, resp
	}
	// Streaming: read two chunks, then hang up.
	cancelRun, resp := start(long + `,"stream":true}`)
	n := 0
	sseEvents(t, resp.Body, func(string) bool { n++; return n < 2 })
	// A queued request behind it, then cancelled.
	qctx, qcancel := context.WithCancel(context.Background())
	qdone := make(chan struct{})
	go func() {
		defer close(qdone)
		req, _ := http.NewRequestWithContext(qctx, "POST", e.url+"/v1/completions", strings.NewReader(long+`}`))
		req.Header.Set("Content-Type", "application/json")
		if r, err := e.ts.Client().Do(req); err == nil {
			r.Body.Close()
		}
	}()
	deadline := time.Now().Add(time.Second)
	for e.eng.Stats().Queued == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if e.eng.Stats().Queued != 1 {
		t.Fatalf("stats %+v, want one queued", e.eng.Stats())
	}
	qcancel()
	<-qdone
	deadline = time.Now().Add(time.Second)
	for e.eng.Stats().Queued != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := e.eng.Stats(); st.Queued != 0 || st.Active != 1 {
		t.Errorf("after the queued client left: %+v", st)
	}
	cancelRun()
	resp.Body.Close()
	waitIdle(t, e.eng)

	// Non-streaming: hang up while it generates.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/completions", strings.NewReader(long+`}`))
		req.Header.Set("Content-Type", "application/json")
		if r, err := e.ts.Client().Do(req); err == nil {
			r.Body.Close()
		}
	}()
	deadline = time.Now().Add(time.Second)
	for e.eng.Stats().Active == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	waitIdle(t, e.eng)
	if st := e.eng.Stats(); st.Cancelled != 3 {
		t.Errorf("cancelled %d requests, want 3", st.Cancelled)
	}
	// The slot serves the next request normally.
	if resp, body := e.post("/v1/completions", `{"prompt":"a","max_tokens":3}`); resp.StatusCode != 200 {
		t.Errorf("after disconnects: %d %s", resp.StatusCode, body)
	}
}

func TestRequestTimeout(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 1}, Config{RequestTimeout: 300 * time.Millisecond})
	long := `{"prompt":"a","max_tokens":8000,"ignore_eos":true`
	resp, body := e.post("/v1/completions", long+`}`)
	checkError(t, resp, body, 408, "timeout_error", "", "request_timeout", "300ms")
	if resp.Header.Get("X-Should-Retry") != "false" {
		t.Error("a timeout invites retries")
	}
	resp, body = e.post("/v1/completions", long+`,"stream":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	var last string
	sseEvents(t, bytes.NewReader(body), func(d string) bool { last = d; return true })
	var eb errorBody
	if json.Unmarshal([]byte(last), &eb); eb.Error == nil || eb.Error.Type != "timeout_error" {
		t.Errorf("stream ended with %s, want a timeout error event", last)
	}
	waitIdle(t, e.eng)
}

// TestLongStreamOutlivesReadTimeout checks that http.Server.ReadTimeout,
// which bounds reading a request, does not cut a stream that lasts longer.
func TestLongStreamOutlivesReadTimeout(t *testing.T) {
	m, tok := loadDemo(t)
	eng, _ := engine.New(m, engine.Config{MaxBatch: 1})
	defer eng.Close()
	srv, _ := New(Config{ModelID: "m", Logger: quietLogger})
	srv.Ready(Backend{Engine: eng, Tokenizer: tok, Template: chat.Default(), ChatAddSpecial: true})
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config = srv.HTTPServer()
	ts.Config.ReadTimeout = 100 * time.Millisecond
	ts.Start()
	defer ts.Close()
	req, _ := http.NewRequest("POST", ts.URL+"/v1/completions", strings.NewReader(`{"prompt":"a","max_tokens":300,"ignore_eos":true,"stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var last string
	chunks := 0
	sseEvents(t, resp.Body, func(d string) bool { last = d; chunks++; return true })
	if last != "[DONE]" {
		t.Errorf("stream of %d chunks over %v ended with %q", chunks, time.Since(start), last)
	}
	if time.Since(start) < ts.Config.ReadTimeout {
		t.Logf("the stream took %v, shorter than the read timeout: the test proves nothing here", time.Since(start))
	}
}

// TestLogInjection checks that control characters from a request cannot
// forge log lines.
func TestLogInjection(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, engine.Config{MaxBatch: 1}, Config{Logger: log})
	e.post("/v1/chat/completions", `{"messages":[{"role":"user","content":"zebracorn"}],"max_tokens":2,"x\nlevel=ERROR msg=forged":1}`)
	e.post("/v1/nothing%0Alevel=ERROR%20msg=forged", `{}`)
	mu.Lock()
	defer mu.Unlock()
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, "level=ERROR") {
			t.Errorf("forged log line: %q", line)
		}
	}
	if strings.Contains(buf.String(), "zebracorn") {
		t.Errorf("the prompt text reached the log:\n%s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
