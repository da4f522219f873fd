package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runMain(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestUsageErrors(t *testing.T) {
	if _, _, code := run(t); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
	if _, stderr, code := run(t, "frobnicate"); code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
	if _, _, code := run(t, "forward", "--ids", "1,2"); code != 2 {
		t.Errorf("forward without --output: exit %d, want 2", code)
	}
	if _, _, code := run(t, "generate", "--ids", "1,x", "--max-tokens", "2"); code != 2 {
		t.Errorf("bad --ids: exit %d, want 2", code)
	}
	if out, _, code := run(t, "help"); code != 0 || !strings.Contains(out, "generate") {
		t.Errorf("help: exit %d, %q", code, out)
	}
	if _, stderr, code := run(t, "generate", "--help"); code != 0 || !strings.Contains(stderr, "--print-ids") {
		t.Errorf("generate --help: exit %d, %q", code, stderr)
	}
}

// TestForwardCommand writes the logits of a fixture's first row and compares
// them with the float64 reference (1e-4 of the largest logit: the bar).
func TestForwardCommand(t *testing.T) {
	dir := testutil.Fixture(t, "models/tiny-moe")
	ref, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	idsT, _ := ref.Tensor("input_ids")
	ids, _ := idsT.Int64()
	T := idsT.Shape[1]
	var s []string
	for _, v := range ids[:T] {
		s = append(s, fmt.Sprint(v))
	}
	out := filepath.Join(t.TempDir(), "logits.safetensors")
	if _, stderr, code := run(t, "forward", "--model", dir, "--ids", strings.Join(s, ","), "--output", out, "--hidden-states"); code != 0 {
		t.Fatalf("forward failed: %s", stderr)
	}
	f, err := safetensors.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gotT, err := f.Tensor("logits")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := gotT.Float32()
	wantT, _ := ref.Tensor("logits")
	want, _ := wantT.Float64()
	V := wantT.Shape[2]
	if gotT.DType != safetensors.F32 || len(gotT.Shape) != 2 || gotT.Shape[0] != T || gotT.Shape[1] != V {
		t.Fatalf("logits %s %v, want F32 [%d %d]", gotT.DType, gotT.Shape, T, V)
	}
	var diff, mag float64
	for i := range got {
		diff = math.Max(diff, math.Abs(float64(got[i])-want[i]))
		mag = math.Max(mag, math.Abs(want[i]))
	}
	if diff/mag > 1e-4 {
		t.Errorf("logits relative error %.3g", diff/mag)
	}
	if _, ok := f.Info("hidden_states"); !ok {
		t.Error("--hidden-states wrote no hidden_states")
	}
	if _, ok := f.Info("router_logits.3"); !ok {
		t.Error("--hidden-states wrote no router_logits.3")
	}
}

// TestGenerateCommand checks greedy ids against the fixture's greedy_with_cache.
func TestGenerateCommand(t *testing.T) {
	dir := testutil.Fixture(t, "models/tiny-moe")
	var ref struct {
		Greedy []int `json:"greedy_with_cache"`
	}
	data, _ := os.ReadFile(filepath.Join(dir, "reference.json"))
	json.Unmarshal(data, &ref)
	f, _ := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	pt, _ := f.Tensor("prompt")
	p, _ := pt.Int64()
	f.Close()
	var s []string
	for _, v := range p {
		s = append(s, fmt.Sprint(v))
	}
	out, stderr, code := run(t, "generate", "--model", dir, "--ids", strings.Join(s, ","), "--max-tokens", fmt.Sprint(len(ref.Greedy)), "--ignore-eos", "--print-ids")
	if code != 0 {
		t.Fatalf("generate failed: %s", stderr)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var want []string
	for _, v := range ref.Greedy {
		want = append(want, fmt.Sprint(v))
	}
	if last := lines[len(lines)-1]; last != strings.Join(want, ",") {
		t.Errorf("last line %q, want %q", last, strings.Join(want, ","))
	}
}

// TestGostdPrompt encodes a text prompt with hf-gostd-13m's tokenizer and
// checks the greedy continuation against the reference's greedy_ids.
func TestGostdPrompt(t *testing.T) {
	dir := testutil.Fixture(t, "models/hf-gostd-13m")
	var ref struct {
		Greedy []struct {
			Prompt    string `json:"prompt"`
			GreedyIDs []int  `json:"greedy_ids"`
		} `json:"greedy"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(data, &ref)
	for _, g := range ref.Greedy[:2] {
		n := 12
		out, stderr, code := run(t, "generate", "--model", dir, "--prompt", g.Prompt, "--max-tokens", fmt.Sprint(n), "--ignore-eos", "--print-ids")
		if code != 0 {
			t.Fatalf("generate failed: %s", stderr)
		}
		var want []string
		for _, id := range g.GreedyIDs[:n] {
			want = append(want, fmt.Sprint(id))
		}
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if lines[len(lines)-1] != strings.Join(want, ",") {
			t.Errorf("%q: ids %q, want %q", g.Prompt, lines[len(lines)-1], strings.Join(want, ","))
		}
	}
}

// TestDemoRun runs the README's first command: the embedded demo model with a
// text prompt. Sampling with a seed is reproducible, and greedy generation
// through the command equals the model's own greedy loop.
func TestDemoRun(t *testing.T) {
	out1, stderr, code := run(t, "run", "--max-tokens", "16", "--seed", "7", "for i := 0; i < n; i++ {")
	if code != 0 {
		t.Fatalf("run failed: %s", stderr)
	}
	out2, _, _ := run(t, "run", "--max-tokens", "16", "--seed", "7", "for i := 0; i < n; i++ {")
	if out1 != out2 || strings.TrimSpace(out1) == "" {
		t.Errorf("same seed, different text: %q vs %q", out1, out2)
	}
	out, stderr, code := run(t, "generate", "--prompt", "// Package", "--max-tokens", "12", "--ignore-eos", "--print-ids")
	if code != 0 {
		t.Fatalf("generate failed: %s", stderr)
	}
	m, err := demo.Load(model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := loadTokenizer("")
	if err != nil {
		t.Fatal(err)
	}
	gen, _, err := m.Generate(context.Background(), tok.Encode("// Package", true), model.GenerateOptions{MaxTokens: 12, IgnoreEOS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if lines[len(lines)-1] != joinIDs(gen) {
		t.Errorf("command ids %q, model ids %q", lines[len(lines)-1], joinIDs(gen))
	}
}

// TestInspectJamba checks the numbers the paper gives for Jamba-v0.1: one
// 8-layer block of the real widths, widened to 32 layers, is 51.6B total,
// 11.8B active parameters and 4 GiB of 16-bit KV cache at 256K tokens.
func TestInspectJamba(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testutil.SharedDir(), "bench", "jamba-v0.1-block.json"))
	if err != nil {
		testutil.Missing(t, "bench/jamba-v0.1-block.json")
	}
	var cfg map[string]any
	json.Unmarshal(data, &cfg)
	cfg["num_hidden_layers"] = 32
	path := filepath.Join(t.TempDir(), "config.json")
	b, _ := json.Marshal(cfg)
	os.WriteFile(path, b, 0o644)
	out, stderr, code := run(t, "inspect", "--config", path, "--context", "262144", "--json")
	if code != 0 {
		t.Fatalf("inspect failed: %s", stderr)
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%.1f", float64(r.ParamsTotal)/1e9) != "51.6" || fmt.Sprintf("%.1f", float64(r.ParamsActive)/1e9) != "11.8" {
		t.Errorf("params %d / %d, want 51.6B / 11.8B", r.ParamsTotal, r.ParamsActive)
	}
	if r.KVCache16Bytes != 4<<30 {
		t.Errorf("16-bit KV cache at 262144 tokens: %d bytes, want 4 GiB", r.KVCache16Bytes)
	}
	if len(r.Layers) != 32 || r.Layers[4] != "attention+mlp" || r.Layers[1] != "mamba+moe" {
		t.Errorf("layout %v", r.Layers)
	}
	m, err := demo.Load(model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	total, _ := m.Config.ParamCount()
	if out, _, code := run(t, "inspect"); code != 0 || !strings.Contains(out, fmt.Sprintf("(%d / ", total)) {
		t.Errorf("inspect of the demo model: %q", out)
	}
}

// TestInitCommand initialises a checkpoint and runs it.
func TestInitCommand(t *testing.T) {
	cfg := testutil.Fixture(t, "models/tiny-dense/config.json")
	dir := filepath.Join(t.TempDir(), "m")
	if _, stderr, code := run(t, "init", "--config", cfg, "--output", dir, "--dtype", "bf16", "--seed", "5"); code != 0 {
		t.Fatalf("init failed: %s", stderr)
	}
	out, stderr, code := run(t, "generate", "--model", dir, "--ids", "1,2,3", "--max-tokens", "3", "--print-ids", "--ignore-eos")
	if code != 0 {
		t.Fatalf("generate on the initialised model: %s", stderr)
	}
	if n := len(strings.Split(strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), ",")); n != 3 {
		t.Errorf("generated %d ids: %q", n, out)
	}
}

func TestPerplexityCommand(t *testing.T) {
	text := strings.Repeat("package main\n\nfunc main() {\n\tprintln(\"hello\")\n}\n", 20)
	path := filepath.Join(t.TempDir(), "x.go")
	os.WriteFile(path, []byte(text), 0o644)
	out, stderr, code := run(t, "perplexity", "--file", path, "--context", "64", "--json")
	if code != 0 {
		t.Fatalf("perplexity failed: %s", stderr)
	}
	var r struct {
		Loss, Perplexity float64
		Tokens           int
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Tokens == 0 || r.Tokens%63 != 0 || math.Abs(math.Exp(r.Loss)-r.Perplexity) > 1e-9*r.Perplexity || r.Loss <= 0 {
		t.Errorf("result %+v", r)
	}
}
