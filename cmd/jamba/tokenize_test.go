package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// testTokenizer is the llama2 tokenizer fixture.
func testTokenizer(t *testing.T) string {
	return testutil.Fixture(t, "tokenizers/llama2/tokenizer.json")
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenizeCommand(t *testing.T) {
	in := writeTemp(t, "in.txt", "Hello world")
	out, errOut, code := run(t, "tokenize", "--tokenizer", testTokenizer(t), "--file", in)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != "[1,22557,1526]\n" {
		t.Errorf("tokenize = %q", out)
	}
	out, _, _ = run(t, "tokenize", "--tokenizer", filepath.Dir(testTokenizer(t)), "--no-special", "--file", in)
	if out != "[22557,1526]\n" {
		t.Errorf("tokenize --no-special = %q", out)
	}
	lines := writeTemp(t, "in.jsonl", "\"Hello world\"\n\"\"\n\"a\\nb\"\n")
	out, errOut, code = run(t, "tokenize", "--tokenizer", testTokenizer(t), "--no-special", "--jsonl", "--file", lines)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) != 3 || got[0] != "[22557,1526]" || got[1] != "[]" {
		t.Errorf("tokenize --jsonl = %q", out)
	}

	ids := writeTemp(t, "ids.json", "[1,22557,1526]")
	out, errOut, code = run(t, "detokenize", "--tokenizer", testTokenizer(t), "--file", ids)
	if code != 0 || out != "<s> Hello world" {
		t.Errorf("detokenize = %q (exit %d, %s)", out, code, errOut)
	}
	out, _, _ = run(t, "detokenize", "--tokenizer", testTokenizer(t), "--skip-special", "--file", ids)
	if out != "Hello world" {
		t.Errorf("detokenize --skip-special = %q", out)
	}
	idl := writeTemp(t, "ids.jsonl", "[22557,1526]\n[]\n[1,264,13,28726]\n")
	out, _, code = run(t, "detokenize", "--tokenizer", testTokenizer(t), "--skip-special", "--jsonl", "--file", idl)
	if code != 0 || out != "\"Hello world\"\n\"\"\n\"a\\nb\"\n" {
		t.Errorf("detokenize --jsonl = %q", out)
	}

	bad := writeTemp(t, "bad.json", "[1, 99999999]")
	if _, errOut, code = run(t, "detokenize", "--tokenizer", testTokenizer(t), "--file", bad); code != 1 || !strings.Contains(errOut, "99999999") {
		t.Errorf("bad id: exit %d, %q", code, errOut)
	}
	if _, errOut, code = run(t, "tokenize", "--tokenizer", "/nonexistent/tokenizer.json", "--file", in); code != 1 || !strings.Contains(errOut, "/nonexistent") {
		t.Errorf("missing tokenizer: exit %d, %q", code, errOut)
	}
	if _, _, code = run(t, "tokenize", "--bogus"); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
}
