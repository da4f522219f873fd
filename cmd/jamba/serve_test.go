package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jamba-go/jamba/internal/testutil"
)

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var listenRE = regexp.MustCompile(`msg=listening url=(http://\S+)`)

// startServe runs jamba serve in the test process and returns its URL
// once the model is ready, and a channel with runServe's result.
func startServe(t *testing.T, args ...string) (string, <-chan error, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(append([]string{"--addr", "127.0.0.1:0"}, args...), io.Discard, logs) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(logs.String()); m != nil && strings.Contains(logs.String(), "msg=ready") {
			return m[1], done, logs
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not get ready:\n%s", logs)
	return "", nil, nil
}

// TestServeSIGTERM opens streams, sends SIGTERM, and checks that every
// stream ends with a finish reason or an error event and that serve
// returns without error within the grace period.
func TestServeSIGTERM(t *testing.T) {
	// Catch SIGTERM in this process too, so that it never falls through
	// to the default action (exit) whatever serve has registered.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)

	url, done, logs := startServe(t, "--max-batch", "2", "--grace", "1s")
	if resp, err := http.Get(url + "/health"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	type ending struct {
		last   string
		finish bool
	}
	ends := make(chan ending, 4)
	started := make(chan struct{}, 4)
	for i := range 4 {
		// Two short streams finish during the grace period, two long ones
		// (one of them queued) are ended by it.
		max := "8000"
		if i%2 == 0 {
			max = "200"
		}
		go func() {
			resp, err := http.Post(url+"/v1/completions", "application/json",
				strings.NewReader(`{"prompt":"func","max_tokens":`+max+`,"ignore_eos":true,"stream":true}`))
			if err != nil {
				started <- struct{}{}
				ends <- ending{last: err.Error()}
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			var e ending
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				started <- struct{}{}
				ends <- ending{last: resp.Status + " " + string(b)}
				return
			}
			first := true
			for sc.Scan() {
				line := sc.Text()
				if first {
					started <- struct{}{}
					first = false
				}
				if d, ok := strings.CutPrefix(line, "data: "); ok {
					e.last = d
					var ck struct {
						Choices []struct {
							FinishReason *string `json:"finish_reason"`
						} `json:"choices"`
					}
					if json.Unmarshal([]byte(d), &ck) == nil && len(ck.Choices) == 1 && ck.Choices[0].FinishReason != nil {
						e.finish = true
					}
				}
			}
			if first {
				started <- struct{}{}
			}
			ends <- e
		}()
	}
	for range 4 {
		<-started
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	for range 4 {
		e := <-ends
		switch {
		case e.last == "[DONE]" && e.finish:
		case strings.Contains(e.last, `"error"`) && strings.Contains(e.last, "shut down"):
		default:
			t.Errorf("a stream ended with %q\n%s", e.last, logs)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("serve still running 10 s after SIGTERM:\n%s", logs)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("shutdown took %v with a grace period of 1 s", el)
	}
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestServeFlags(t *testing.T) {
	var out lockedBuffer
	if err := runServe([]string{"--help"}, io.Discard, &out); err == nil || !strings.Contains(err.Error(), "help") {
		t.Fatalf("--help: %v", err)
	}
	for _, flag := range []string{"-max-batch", "-queue", "-context", "-step-tokens", "-timeout", "-write-timeout", "-max-body", "-max-conns", "-grace", "-api-key", "-api-key-file", "-insecure-no-auth", "-addr", "-state-dir", "-state-store", "-state-mib", "-state-ttl"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help lacks %s", flag)
		}
	}
	if err := runServe([]string{"--addr", "0.0.0.0:0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "api-key") {
		t.Errorf("a public address without a key: %v", err)
	}
	if err := runServe([]string{"--max-batch", "0"}, io.Discard, io.Discard); err == nil {
		t.Error("--max-batch 0 accepted")
	}
	if err := runServe([]string{"--state-dir", t.TempDir(), "--state-store", "redis://127.0.0.1:1/0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("--state-dir with --state-store: %v", err)
	}
	if err := runServe([]string{"--state-store", "http://127.0.0.1:1"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "state store") {
		t.Errorf("an http:// state store: %v", err)
	}
}

func TestServeAPIKeyFile(t *testing.T) {
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)
	f := t.TempDir() + "/keys"
	os.WriteFile(f, []byte("# keys\nsecret-one\n\nsecret-two\n"), 0o600)
	url, done, logs := startServe(t, "--api-key-file", f)
	for key, want := range map[string]int{"": 401, "nope": 401, "secret-one": 200, "secret-two": 200} {
		req, _ := http.NewRequest("GET", url+"/v1/models", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("key %q: %d, want %d", key, resp.StatusCode, want)
		}
	}
	if strings.Contains(logs.String(), "secret") {
		t.Error("an API key reached the log")
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestServeStateDir: a server stopped with SIGTERM has its finished
// requests' states in --state-dir; the next server on that folder finds
// them, and a request continuing an earlier prompt reports it cached.
func TestServeStateDir(t *testing.T) {
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)

	dir := t.TempDir()
	p := []int{1, 120, 340, 560, 780, 900, 1200, 33, 44, 55, 66, 77}
	ids := func(extra ...int) string {
		b, _ := json.Marshal(append(append([]int(nil), p...), extra...))
		return string(b)
	}
	complete := func(url, prompt string) int {
		t.Helper()
		resp, err := http.Post(url+"/v1/completions", "application/json",
			strings.NewReader(`{"prompt":`+prompt+`,"max_tokens":1,"temperature":0}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Usage struct {
				Details struct {
					Cached int `json:"cached_tokens"`
				} `json:"prompt_tokens_details"`
			} `json:"usage"`
		}
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil {
			t.Fatalf("completion: %s", resp.Status)
		}
		return r.Usage.Details.Cached
	}
	stop := func(done <-chan error, logs *lockedBuffer) {
		t.Helper()
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve returned %v\n%s", err, logs)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("serve still running after SIGTERM:\n%s", logs)
		}
	}

	url, done, logs := startServe(t, "--max-batch", "2", "--grace", "1s", "--state-dir", dir)
	// One token of output: the state then holds exactly the prompt.
	if c := complete(url, ids()); c != 0 {
		t.Fatalf("first request: %d cached", c)
	}
	stop(done, logs)

	url, done, logs = startServe(t, "--max-batch", "2", "--grace", "1s", "--state-dir", dir)
	if !strings.Contains(logs.String(), "states=1") {
		t.Errorf("logs after the restart:\n%s", logs)
	}
	if c := complete(url, ids(901, 902)); c != len(p) {
		t.Errorf("after the restart the continuing request had %d tokens cached, want %d", c, len(p))
	}
	stop(done, logs)
}

// TestServeWithoutTokenizer: a checkpoint without tokenizer.json is refused
// at load, naming the folder, as the other commands refuse it; with
// --tokenizer it serves.
func TestServeWithoutTokenizer(t *testing.T) {
	dir := testutil.Fixture(t, "models/tiny-moe")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err == nil {
		t.Fatalf("%s has a tokenizer.json: the test needs a checkpoint without one", dir)
	}
	err := runServe([]string{"--addr", "127.0.0.1:0", "--model", dir}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no tokenizer.json") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("serve of a checkpoint without tokenizer.json: %v, want an error naming %s", err, dir)
	}
}
