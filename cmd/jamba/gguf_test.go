package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
	p0 := ppl("--model", gg)

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
