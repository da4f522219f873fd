package main

import (
	"encoding/json"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"net/http"

	"github.com/jamba-go/jamba/internal/testutil"
)

// usage is what the tests read of a response.
type respUsage struct {
	Prompt int
	Cached int
	Text   string
}

func postJSON(t *testing.T, url, path string, body any) respUsage {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url+path, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Choices []struct {
			Text    string `json:"text"`
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage struct {
			Prompt  int `json:"prompt_tokens"`
			Details struct {
				Cached int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Choices) != 1 {
		t.Fatalf("%s: %s", path, resp.Status)
	}
	return respUsage{Prompt: r.Usage.Prompt, Cached: r.Usage.Details.Cached, Text: r.Choices[0].Text + r.Choices[0].Message.Content}
}

var childURLRE = regexp.MustCompile(`msg=listening url=(http://\S+)`)

// startServeChild runs jamba serve as a child process (so that it can be
// killed) and returns it with its URL once it is ready.
func startServeChild(t *testing.T, args ...string) (*child, string) {
	t.Helper()
	c := startChild(t, nil, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	if !c.waitLine("msg=ready", 60*time.Second) {
		_, stderr := c.wait()
		t.Fatalf("serve did not get ready:\n%s", stderr)
	}
	c.mu.Lock()
	m := childURLRE.FindStringSubmatch(c.stderr.String())
	c.mu.Unlock()
	if m == nil {
		t.Fatal("no listening line")
	}
	return c, m[1]
}

// TestServeStateDirKilled: a server killed with SIGKILL right after a
// response has the request's state in --state-dir already; the next
// server on that folder continues it, reporting the earlier prompt
// cached, and answers as a server that computes everything; a damaged
// state file is refused and the prompt computed.
func TestServeStateDirKilled(t *testing.T) {
	dir := t.TempDir()
	p := []int{1, 120, 340, 560, 780, 900, 1200, 33, 44, 55, 66, 77}
	req := func(extra ...int) map[string]any {
		return map[string]any{"prompt": append(append([]int(nil), p...), extra...), "max_tokens": 4, "temperature": 0, "ignore_eos": true}
	}
	c, url := startServeChild(t, "--max-batch", "2", "--state-dir", dir)
	if u := postJSON(t, url, "/v1/completions", req()); u.Cached != 0 {
		t.Fatalf("first request: %d cached", u.Cached)
	}
	c.cmd.Process.Kill()
	<-c.done

	files, _ := filepath.Glob(filepath.Join(dir, "state-*.jstate"))
	if len(files) != 2 {
		t.Fatalf("state files after the kill: %v (want the whole state and the prompt's)", files)
	}
	_, ref := startServeChild(t, "--no-prefix-reuse")
	want := postJSON(t, ref, "/v1/completions", req(901, 902, 903, 904, 905))

	c, url = startServeChild(t, "--max-batch", "2", "--state-dir", dir)
	got := postJSON(t, url, "/v1/completions", req(901, 902, 903, 904, 905))
	// The whole state: the prompt and 3 of the 4 answer tokens (the last
	// one is not fed); the continuing prompt holds other tokens there, so
	// it continues the state at the end of the earlier prompt.
	if got.Cached != len(p) {
		t.Errorf("after the kill the continuing request had %d tokens cached, want %d", got.Cached, len(p))
	}
	if got.Text != want.Text {
		t.Errorf("after the kill: %q, computed whole %q", got.Text, want.Text)
	}
	c.cmd.Process.Kill()
	<-c.done

	files, _ = filepath.Glob(filepath.Join(dir, "state-*.jstate"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		data[len(data)/2] ^= 0x40
		os.WriteFile(f, data, 0o644)
	}
	c, url = startServeChild(t, "--max-batch", "2", "--state-dir", dir)
	got = postJSON(t, url, "/v1/completions", req(901, 902, 903, 904, 905))
	if got.Cached != 0 || got.Text != want.Text {
		t.Errorf("with damaged state files: %d cached, %q (want 0 and %q)", got.Cached, got.Text, want.Text)
	}
	c.cmd.Process.Kill()
	_, stderr := c.wait()
	if !strings.Contains(stderr, "checksum mismatch") {
		t.Errorf("the refusal is not logged:\n%s", stderr)
	}
}

// TestServeRedisReplicas: two servers sharing one Redis server hold a
// greedy chat whose turns alternate between them. Every turn after the
// first reports at least the previous turn's prompt as cached (which only
// the other replica computed: it came through Redis) and every answer is
// the one a single server gives. Redis then restarts empty, and later is
// down: the turns compute what no replica holds and answer the same.
func TestServeRedisReplicas(t *testing.T) {
	rs := testutil.StartRedis(t)
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)

	single, singleDone, singleLogs := startServe(t, "--max-batch", "1")
	a, aDone, aLogs := startServe(t, "--max-batch", "1", "--state-store", rs.URL())
	b, bDone, bLogs := startServe(t, "--max-batch", "1", "--state-store", rs.URL())
	defer func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		for _, d := range []<-chan error{singleDone, aDone, bDone} {
			select {
			case err := <-d:
				if err != nil {
					t.Errorf("serve returned %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("a server still runs after SIGTERM:\n%s\n%s\n%s", singleLogs, aLogs, bLogs)
			}
		}
	}()

	users := []string{"func main() {", "package main", "// Sum returns", "for i := range n {", "return nil", "x := 1", "import \"fmt\""}
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	var want []string
	var ref []msg
	for _, u := range users {
		ref = append(ref, msg{"user", u})
		r := postJSON(t, single, "/v1/chat/completions", map[string]any{"messages": ref, "max_tokens": 6, "temperature": 0})
		want = append(want, r.Text)
		ref = append(ref, msg{"assistant", r.Text})
	}

	var conv []msg
	prevPrompt := 0 // the prompt tokens of the turn before the last
	lastPrompt := 0
	turn := func(i int, url, what string) respUsage {
		t.Helper()
		conv = append(conv, msg{"user", users[i]})
		r := postJSON(t, url, "/v1/chat/completions", map[string]any{"messages": conv, "max_tokens": 6, "temperature": 0})
		if r.Text != want[i] {
			t.Fatalf("turn %d (%s): %q, a single server %q", i, what, r.Text, want[i])
		}
		conv = append(conv, msg{"assistant", r.Text})
		prevPrompt, lastPrompt = lastPrompt, r.Prompt
		return r
	}
	servers := []string{a, b}
	for i := range 4 {
		r := turn(i, servers[i%2], "alternating")
		if i > 0 && r.Cached < prevPrompt {
			t.Errorf("turn %d: %d tokens cached, want at least the previous turn's prompt (%d), which the other replica computed", i, r.Cached, prevPrompt)
		}
	}

	// Redis restarts empty: A holds turn 2's state itself, not turn 3's.
	rs.Stop()
	rs.Start()
	if r := turn(4, a, "after a Redis restart"); r.Cached >= prevPrompt {
		t.Errorf("after the Redis restart %d tokens cached: more than A held (less than %d)", r.Cached, prevPrompt)
	}
	// Turn 4's state went to the new Redis: B continues it.
	if r := turn(5, b, "after a Redis restart"); r.Cached < prevPrompt {
		t.Errorf("the turn after the restart: %d cached, want at least %d", r.Cached, prevPrompt)
	}
	// Redis is down: A answers from what it holds, the same.
	rs.Stop()
	turn(6, a, "with Redis down")
	rs.Start()
	if !strings.Contains(aLogs.String(), "state store") {
		t.Errorf("A did not log the store's failure:\n%s", aLogs)
	}
	resp, err := http.Get(b + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// B's turns 1, 3 and 5 each read the state A stored.
	if m := regexp.MustCompile(`(?m)^jamba_state_store_loads_total (\d+)$`).FindSubmatch(body); m == nil || string(m[1]) != "3" {
		t.Errorf("B's jamba_state_store_loads_total: %q, want 3", m)
	}
}
