package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// A GGUF file through the commands: tokenize gives llama.cpp's ids,
// perplexity uses llama-perplexity's windows, convert to a folder and back
// keeps the perplexity and the tensor types, inspect lists the types, and
// --quantize is refused with the reason.
func TestGGUFCommands(t *testing.T) {
	gg := testutil.Shared(t, "gguf/gostd-13m-q4_0.gguf")
	corpus := testutil.Shared(t, "corpus/gostd_val.txt")
	text, err := os.ReadFile(corpus)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	head := filepath.Join(tmp, "head.txt")
	os.WriteFile(head, text[:2000], 0o644)

	out, stderr, code := run(t, "tokenize", "--model", gg, "--file", head)
	if code != 0 {
		t.Fatalf("tokenize: %s", stderr)
	}
	var ids []int
	if err := json.Unmarshal([]byte(out), &ids); err != nil {
		t.Fatal(err)
	}
	if len(ids) < 10 || fmt.Sprint(ids[:6]) != "[1 467 1331 2312 276 810]" {
		t.Errorf("tokenize: %v...", ids[:min(6, len(ids))])
	}

	ppl := func(args ...string) float64 {
		t.Helper()
		out, stderr, code := run(t, append([]string{"perplexity", "--file", corpus, "--chunks", "2", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("perplexity %v: %s", args, stderr)
		}
		var r struct{ Perplexity float64 }
		if err := json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &r); err != nil {
			t.Fatal(err)
		}
		return r.Perplexity
	}
	// The 16-bit activations: logits within 0.001% of the dequantized
	// weights' float32 product (the default 8-bit ones move them by up to
	// 2%: model.TestGGUFActivations8).
	p0 := ppl("--model", gg, "--activations", "int16")
	// Read into memory (--no-mmap) rather than mapped: the same weights,
	// so the same bits.
	if p := ppl("--model", gg, "--activations", "int16", "--no-mmap"); p != p0 {
		t.Errorf("perplexity %v with --no-mmap, %v mapped", p, p0)
	}

	dir := filepath.Join(tmp, "hf")
	if _, stderr, code := run(t, "convert", "--model", gg, "--output", dir, "--dtype", "f32"); code != 0 {
		t.Fatalf("convert to folder: %s", stderr)
	}
	// The folder holds the dequantized weights in float32: the same logits
	// up to A = −exp(log(−A)) rounding, so the same perplexity to 1e-5.
	if p1 := ppl("--model", dir, "--windows", "llama"); abs(p1/p0-1) > 1e-5 {
		t.Errorf("perplexity %v from the GGUF file, %v from its folder", p0, p1)
	}
	back := filepath.Join(tmp, "back.gguf")
	if _, stderr, code := run(t, "convert", "--model", dir, "--output", back, "--type", "q8_0"); code != 0 {
		t.Fatalf("convert to GGUF: %s", stderr)
	}
	out, stderr, code = run(t, "inspect", "--model", back)
	if code != 0 || !strings.Contains(out, "Q8_0") || !strings.Contains(out, "blk.4.attn_v.weight") {
		t.Errorf("inspect: %s %s", out, stderr)
	}
	if _, stderr, code := run(t, "generate", "--model", dir, "--no-mmap", "--max-tokens", "2", "--prompt", "x"); code == 0 || !strings.Contains(stderr, "--no-mmap") || !strings.Contains(stderr, dir) {
		t.Errorf("--no-mmap on a Hugging Face folder: exit %d, %q", code, stderr)
	}
	if _, stderr, code := run(t, "generate", "--model", gg, "--quantize", "int8", "--max-tokens", "2", "--prompt", "x"); code == 0 || !strings.Contains(stderr, "GGUF") {
		t.Errorf("--quantize on a GGUF file: exit %d, %q", code, stderr)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// The chat template of tokenizer_config.json goes into the GGUF file
// (tokenizer.chat_template) and comes back out of it, as does the
// tokenizer (same ids as the folder's for this byte-fallback vocabulary's
// GGUF form: llama.cpp's, see fixtures/gguf/README.md).
func TestGGUFChatTemplate(t *testing.T) {
	src := testutil.Fixture(t, "models/hf-gostd-13m")
	dir := t.TempDir()
	for _, name := range []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	const tmpl = "{% for m in messages %}<|startoftext|>{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
	cfg, _ := json.Marshal(map[string]any{"chat_template": tmpl, "add_bos_token": true, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"})
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644)
	out := filepath.Join(dir, "m.gguf")
	if _, stderr, code := run(t, "convert", "--model", dir, "--output", out, "--type", "q8_0"); code != 0 {
		t.Fatalf("convert: %s", stderr)
	}
	got, special, _, err := loadTemplate(out)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Source() != tmpl || special["bos_token"] != "<|startoftext|>" || special["eos_token"] != "<|endoftext|>" {
		t.Errorf("template from the GGUF file: %v, special %v", got, special)
	}
	tok, err := loadTokenizer(out)
	if err != nil {
		t.Fatal(err)
	}
	if ids := tok.Encode("<|startoftext|>user: hi", false); len(ids) == 0 || ids[0] != 1 {
		t.Errorf("control token text: %v", ids)
	}
}

// `jamba bench --json` on a GGUF file reports the keys it reports for a
// Hugging Face folder, and its peak RSS leaves out the bandwidth probe's
// buffer (256 MiB here, more than the 13M model and its buffers use).
func TestBenchGGUFJSON(t *testing.T) {
	keys := func(model string) (map[string]any, []string) {
		out, stderr, code := run(t, "bench", "--model", model, "--prompt-tokens", "8", "--gen-tokens", "2",
			"--threads", "2", "--bandwidth-bytes", fmt.Sprint(256<<20), "--json")
		if code != 0 {
			t.Fatalf("bench %s: exit %d: %s", model, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var r map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
			t.Fatalf("bench %s: last line not JSON: %v", model, err)
		}
		var k []string
		for key := range r {
			k = append(k, key)
		}
		slices.Sort(k)
		return r, k
	}
	_, hk := keys(testutil.Fixture(t, "models/hf-gostd-13m"))
	// The first run's probe buffer raised this process's peak: give its
	// memory back and reset the peak (Linux: 5 to clear_refs).
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
	r, gk := keys(testutil.Shared(t, "gguf/gostd-13m-q4_k_m.gguf"))
	if !slices.Equal(hk, gk) {
		t.Errorf("GGUF keys %v, folder keys %v", gk, hk)
	}
	if rss := r["peak_rss_bytes"].(float64); rss <= 0 || rss >= 256<<20 {
		t.Errorf("peak_rss_bytes %v: not the model's alone (the probe buffer is 256 MiB)", rss)
	}
	if r["decode_tokens_per_s"].(float64) <= 0 || r["weight_file_bytes"].(float64) <= 0 {
		t.Errorf("bench result %v", r)
	}
}
