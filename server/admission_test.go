package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
)

// floodSize is the number of idle sockets of TestIdleSocketFlood:
// JAMBA_RELIABILITY_IDLE, or 128 in CI.
func floodSize() int {
	if n, err := strconv.Atoi(os.Getenv("JAMBA_RELIABILITY_IDLE")); err == nil && n > 0 {
		return n
	}
	return 128
}

// TestIdleSocketFlood fills every connection slot with sockets that send
// one request (an unauthenticated one, answered 401) and then stay idle,
// and requires a new client to be answered within 1 s: idle keep-alive
// connections give way. (With a plain connection limit the new client
// waited for the idle timeout, 120 s.)
func TestIdleSocketFlood(t *testing.T) {
	n := floodSize()
	srv, err := New(Config{ModelID: "m", APIKeys: []string{"secret"}, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	lim := NewConnLimiter(n)
	hs.ConnState = lim.ConnState
	go hs.Serve(lim.Listener(ln))
	defer hs.Close()
	addr := ln.Addr().String()

	var socks []net.Conn
	defer func() {
		for _, c := range socks {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		socks = append(socks, c)
		fmt.Fprintf(c, "GET /v1/models HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("socket %d: status %d", i, resp.StatusCode)
		}
	}
	// Every slot is held by an idle socket now. A new client:
	var worst time.Duration
	for range 5 {
		start := time.Now()
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		resp, err := cl.Get("http://" + addr + "/health")
		if err != nil {
			t.Fatalf("new client: %v (after %v)", err, time.Since(start))
		}
		resp.Body.Close()
		worst = max(worst, time.Since(start))
	}
	if worst > time.Second {
		t.Errorf("a new client waited %v under %d idle sockets", worst, n)
	}
	if lim.Evicted() == 0 {
		t.Errorf("no idle socket was closed")
	}
	t.Logf("%d idle sockets: new client answered within %v (worst of 5); %d idle sockets closed", n, worst, lim.Evicted())
}

// TestStalledBody: a body that stops arriving is answered 408 once the
// read timeout passes (it was 400).
func TestStalledBody(t *testing.T) {
	env := newEnv(t, engine.Config{MaxBatch: 2, Context: 64}, Config{})
	srv := env.srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer()
	hs.ReadTimeout = 300 * time.Millisecond
	go hs.Serve(ln)
	defer hs.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := fmt.Sprintf(`{"model": %q, "prompt": "hello", "max_tokens": 4}`, demo.Name)
	fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body)+100, body)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(data), "request_timeout") {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
}

// TestPromptByteBound: a prompt with more bytes than the context can hold
// is refused by its size before it is tokenized, with the limit quoted;
// and when every place for prompt work is taken a request gets 429.
func TestPromptByteBound(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 1, MaxQueue: 1, Context: 64}, Config{})
	b := e.srv.backend.Load()
	limit := b.promptByteLimit()
	if b.maxTokBytes < 4 || limit != 2*64*int64(b.maxTokBytes) {
		t.Fatalf("limit %d, max token bytes %d", limit, b.maxTokBytes)
	}
	over := strings.Repeat("x", int(limit)+1)
	for path, body := range map[string]string{
		"/v1/completions":      fmt.Sprintf(`{"prompt": %q, "max_tokens": 1}`, over),
		"/v1/chat/completions": fmt.Sprintf(`{"messages": [{"role": "user", "content": %q}], "max_tokens": 1}`, over),
	} {
		resp, data := e.post(path, body)
		if resp.StatusCode != 400 || !strings.Contains(string(data), "context_length_exceeded") || !strings.Contains(string(data), "bytes of text") {
			t.Errorf("%s: %d %s", path, resp.StatusCode, data)
		}
	}
	// A body larger than any fitting request is refused by its announced
	// size, unread; the connection still serves the next request.
	huge := fmt.Sprintf(`{"prompt": %q, "max_tokens": 1}`, strings.Repeat("x", int(b.bodyLimit())))
	resp, data := e.post("/v1/completions", huge)
	if resp.StatusCode != 413 || !strings.Contains(string(data), "context_length_exceeded") {
		t.Errorf("huge body: %d %s", resp.StatusCode, data)
	}
	// Under the byte bound, the token count decides as before.
	resp, data = e.post("/v1/completions", fmt.Sprintf(`{"prompt": %q, "max_tokens": 1}`, strings.Repeat("hello ", 40)))
	if resp.StatusCode != 400 || !strings.Contains(string(data), "context length is 64 tokens") {
		t.Errorf("under the byte bound: %d %s", resp.StatusCode, data)
	}
	// Every place taken: a request waits for one, unread.
	for range cap(b.promptSem) {
		b.promptSem <- struct{}{}
	}
	got := make(chan int, 1)
	go func() {
		resp, _ := e.post("/v1/completions", `{"prompt": "hi", "max_tokens": 1}`)
		got <- resp.StatusCode
	}()
	select {
	case code := <-got:
		t.Fatalf("answered %d while every place was taken", code)
	case <-time.After(200 * time.Millisecond):
	}
	// ... and with the queue full too, the next is 429 with Retry-After.
	q := int64(b.Engine.Config().MaxQueue)
	for b.promptWait.Load() < q {
		time.Sleep(time.Millisecond)
	}
	resp, data = e.post("/v1/completions", `{"prompt": "hi", "max_tokens": 1}`)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("places and queue taken: %d %s", resp.StatusCode, data)
	}
	for range cap(b.promptSem) {
		<-b.promptSem
	}
	if code := <-got; code != 200 {
		t.Errorf("the waiting request: %d", code)
	}
	if resp, data := e.post("/v1/completions", `{"prompt": "hi", "max_tokens": 1}`); resp.StatusCode != 200 {
		t.Errorf("after: %d %s", resp.StatusCode, data)
	}
}
