package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jamba-go/jamba/cuda"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/model"
)

var (
	gpuOnce sync.Once
	gpuDev  *cuda.Device
	gpuErr  error
)

// needGPU skips a test without a GPU (fails with JAMBA_REQUIRE_GPU set).
func needGPU(t *testing.T) *cuda.Device {
	t.Helper()
	gpuOnce.Do(func() { gpuDev, gpuErr = cuda.Open(0) })
	dev, err := gpuDev, gpuErr
	if err != nil {
		if os.Getenv("JAMBA_REQUIRE_GPU") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return dev
}

// complete posts a greedy completion and returns its text and cached
// prompt tokens.
func complete(url, prompt string, maxTokens int) (respUsage, error) {
	b, _ := json.Marshal(map[string]any{"prompt": prompt, "max_tokens": maxTokens, "temperature": 0, "ignore_eos": true})
	resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(string(b)))
	if err != nil {
		return respUsage{}, err
	}
	defer resp.Body.Close()
	var r struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
		Usage struct {
			Prompt  int `json:"prompt_tokens"`
			Details struct {
				Cached int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		return respUsage{}, fmt.Errorf("%s: %s", resp.Status, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Choices) != 1 {
		return respUsage{}, fmt.Errorf("bad response: %v", err)
	}
	return respUsage{Prompt: r.Usage.Prompt, Cached: r.Usage.Details.Cached, Text: r.Choices[0].Text}, nil
}

var metricRE = regexp.MustCompile(`(?m)^(jamba_engine_steps_total|jamba_engine_step_sequences_total) (\d+)`)

// TestServeCUDA: jamba serve --device cuda on hf-gostd-13m answers four
// concurrent greedy completions (batched in the GPU's steps) as jamba
// serve on the CPU answers them one at a time, and a completion whose
// prompt continues an earlier one reports cached tokens and the CPU's
// text.
func TestServeCUDA(t *testing.T) {
	needGPU(t)
	dir := gostdFixture(t)
	_, gurl := startServeChild(t, "--model", dir, "--device", "cuda", "--max-batch", "4")
	_, curl := startServeChild(t, "--model", dir, "--max-batch", "4")
	prompts := []string{"func main() {\n", "package strings\n\nimport (\n", "// Copyright 2009 The Go Authors.", "type Reader struct {\n\tr"}
	gpu := make([]respUsage, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gpu[i], errs[i] = complete(gurl, p, 48)
		}()
	}
	wg.Wait()
	for i, p := range prompts {
		if errs[i] != nil {
			t.Fatalf("GPU, prompt %d: %v", i, errs[i])
		}
		c, err := complete(curl, p, 48)
		if err != nil {
			t.Fatalf("CPU, prompt %d: %v", i, err)
		}
		if gpu[i].Text != c.Text {
			t.Errorf("prompt %q: GPU (batched) %q, CPU (alone) %q", p, gpu[i].Text, c.Text)
		} else {
			t.Logf("prompt %q: GPU and CPU: %q", p, c.Text)
		}
	}
	resp, err := http.Get(gurl + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := map[string]int{}
	for _, x := range metricRE.FindAllStringSubmatch(string(body), -1) {
		m[x[1]], _ = strconv.Atoi(x[2])
	}
	if m["jamba_engine_step_sequences_total"] <= m["jamba_engine_steps_total"] {
		t.Errorf("the GPU server's steps did not batch: %v", m)
	} else {
		t.Logf("GPU server: %v", m)
	}

	// The first prompt continued: its state (on the GPU) is reused.
	next := prompts[0] + gpu[0].Text + "\n\tfmt.Println("
	g, err := complete(gurl, next, 24)
	if err != nil {
		t.Fatal(err)
	}
	c, err := complete(curl, next, 24)
	if err != nil {
		t.Fatal(err)
	}
	if g.Cached != c.Cached || g.Text != c.Text {
		t.Errorf("continued prompt of %d tokens: GPU cached %d, text %q; CPU cached %d, text %q", g.Prompt, g.Cached, g.Text, c.Cached, c.Text)
	} else {
		t.Logf("continued prompt: %d of %d tokens cached on the GPU (as on the CPU); text %q as the CPU's", g.Cached, g.Prompt, g.Text)
	}

	// A second chat turn continues the first's prompt (its copy of the
	// Mamba state on the GPU, or the whole state).
	msgs := []map[string]string{{"role": "user", "content": "func main() {"}}
	var gc, cc respUsage
	for turn := range 2 {
		body := map[string]any{"messages": msgs, "max_tokens": 16, "temperature": 0}
		gc = postJSON(t, gurl, "/v1/chat/completions", body)
		cc = postJSON(t, curl, "/v1/chat/completions", body)
		if gc.Text != cc.Text || gc.Cached != cc.Cached {
			t.Errorf("chat turn %d: GPU %q (cached %d), CPU %q (cached %d)", turn, gc.Text, gc.Cached, cc.Text, cc.Cached)
		}
		msgs = append(msgs, map[string]string{"role": "assistant", "content": gc.Text}, map[string]string{"role": "user", "content": "type T struct {"})
	}
	if gc.Cached == 0 {
		t.Errorf("the second chat turn computed its whole prompt on the GPU (%d tokens)", gc.Prompt)
	} else {
		t.Logf("second chat turn: %d of %d prompt tokens cached on the GPU; answer %q as the CPU's", gc.Cached, gc.Prompt, gc.Text)
	}
}

// gostdFixture is the hf-gostd-13m fixture model: in $JAMBA_FIXTURES
// first (a test binary built elsewhere), then testdata.
func gostdFixture(t *testing.T) string {
	dir := filepath.Join(os.Getenv("JAMBA_FIXTURES"), "hf-gostd-13m")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); os.Getenv("JAMBA_FIXTURES") == "" || err != nil {
		dir = testutil.Fixture(t, "models/hf-gostd-13m")
	}
	return dir
}

// TestChatCUDA: two chat turns on the GPU engine, the second continuing
// the first's state, give the CPU chat's answers (hf-gostd-13m, which has
// no chat template: the plain transcript).
func TestChatCUDA(t *testing.T) {
	dev := needGPU(t)
	dir := gostdFixture(t)
	m, err := model.Load(dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	gm, err := cuda.Upload(dev, m)
	if err != nil {
		t.Fatal(err)
	}
	defer gm.Close()
	tok, err := loadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, special, stops, err := loadTemplate(dir)
	if err != nil {
		t.Fatal(err)
	}
	var answers [2][]string
	var cached [2][]int
	for k, be := range []engine.Backend{nil, cuda.EngineBackend(gm)} {
		s := &chatSession{tok: tok, tmpl: tmpl, special: special, stops: stops, maxTokens: 24, model: m, backend: be}
		if err := s.start(""); err != nil {
			t.Fatal(err)
		}
		s.reset()
		for _, q := range []string{"func main() {", "type T struct {"} {
			var out strings.Builder
			if err := s.turn(q, &out); err != nil {
				t.Fatal(err)
			}
			answers[k] = append(answers[k], out.String())
			cached[k] = append(cached[k], s.cached)
		}
		s.eng.Close()
	}
	for i := range answers[0] {
		if answers[0][i] != answers[1][i] {
			t.Errorf("turn %d: GPU %q, CPU %q", i, answers[1][i], answers[0][i])
		}
	}
	if cached[1][1] == 0 {
		t.Errorf("the second turn on the GPU computed its whole prompt (cached %v)", cached[1])
	}
	t.Logf("chat on the GPU: answers as the CPU's, cached tokens per turn %v (CPU %v)", cached[1], cached[0])
}
