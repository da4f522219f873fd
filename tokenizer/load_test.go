package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minimal returns a small valid tokenizer.json with parts replaced.
func minimal(repl map[string]string) string {
	parts := map[string]string{
		"model":          `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a b"],"unk_token":"<unk>"}`,
		"added_tokens":   `[{"id":3,"content":"<unk>","special":true}]`,
		"normalizer":     `null`,
		"pre_tokenizer":  `null`,
		"post_processor": `null`,
		"decoder":        `null`,
	}
	for k, v := range repl {
		parts[k] = v
	}
	var b strings.Builder
	b.WriteString(`{"version":"1.0"`)
	for _, k := range []string{"model", "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder"} {
		b.WriteString(`,"` + k + `":` + parts[k])
	}
	b.WriteString("}")
	return b.String()
}

func TestLoadMinimal(t *testing.T) {
	tk, err := LoadBytes([]byte(minimal(nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Encode("abxab", false); !equalInts(got, []int{2, 3, 2}) {
		t.Errorf("Encode = %v, want [2 3 2]", got)
	}
	if tk.VocabSize() != 4 || !tk.IsSpecial(3) || tk.IsSpecial(2) {
		t.Errorf("VocabSize %d, IsSpecial(3) %v", tk.VocabSize(), tk.IsSpecial(3))
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		repl map[string]string
		want string
	}{
		{"merge token missing", map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a c"]}`}, `token "c" is not in the vocabulary`},
		{"merge result missing", map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1},"merges":[["a","b"]]}`}, `result "ab"`},
		{"merge three parts", map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b c"]}`}, `merges[0]`},
		{"right side shorter than prefix", map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]],"continuing_subword_prefix":"##"}`}, `shorter than continuing_subword_prefix`},
		{"byte fallback without byte tokens", map[string]string{"model": `{"type":"BPE","vocab":{"a":0},"merges":[],"byte_fallback":true}`}, `<0x00>`},
		{"unk not in vocab", map[string]string{"model": `{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<u>"}`}, `unk_token`},
		{"unknown model", map[string]string{"model": `{"type":"Unigram","vocab":[]}`}, `"Unigram"`},
		{"unknown normalizer", map[string]string{"normalizer": `{"type":"Precompiled"}`}, `normalizer type "Precompiled"`},
		{"unknown pre-tokenizer", map[string]string{"pre_tokenizer": `{"type":"UnicodeScripts"}`}, `pre-tokenizer type "UnicodeScripts"`},
		{"unknown nested pre-tokenizer", map[string]string{"pre_tokenizer": `{"type":"Sequence","pretokenizers":[{"type":"Nope"}]}`}, `"Nope"`},
		{"unknown decoder", map[string]string{"decoder": `{"type":"CTC"}`}, `decoder type "CTC"`},
		{"unknown post-processor", map[string]string{"post_processor": `{"type":"Weird"}`}, `post-processor type "Weird"`},
		{"lookbehind regex", map[string]string{"pre_tokenizer": `{"type":"Split","pattern":{"Regex":"(?<=a)b"},"behavior":"Isolated","invert":false}`}, `(?<=a)b`},
		{"lookahead regex", map[string]string{"pre_tokenizer": `{"type":"Split","pattern":{"Regex":"a(?=b)"},"behavior":"Isolated","invert":false}`}, `look-around`},
		{"bad behavior", map[string]string{"pre_tokenizer": `{"type":"Split","pattern":{"String":"a"},"behavior":"Sideways"}`}, `"Sideways"`},
		{"added id beyond vocab", map[string]string{"added_tokens": `[{"id":9,"content":"<x>","special":true}]`}, `not below the vocabulary size`},
		{"added content two ids", map[string]string{"added_tokens": `[{"id":4,"content":"<x>"},{"id":5,"content":"<x>"}]`}, `two ids`},
		{"added id two contents", map[string]string{"added_tokens": `[{"id":4,"content":"<x>"},{"id":4,"content":"<y>"}]`}, `two contents`},
		{"added id clashes with model", map[string]string{"added_tokens": `[{"id":1,"content":"<x>"}]`}, `already the model token`},
		{"added in vocab with other id", map[string]string{"added_tokens": `[{"id":3,"content":"a"}]`}, `model vocab gives it 0`},
		{"template without A", map[string]string{"post_processor": `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<unk>"}}],"special_tokens":{"<unk>":{"id":"<unk>","ids":[3]}}}`}, `no sequence A`},
		{"template bad id", map[string]string{"post_processor": `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<s>":{"id":"<s>","ids":[99]}}}`}, `id 99`},
		{"vocab id negative", map[string]string{"model": `{"type":"BPE","vocab":{"a":-1},"merges":[]}`}, `out of range`},
		{"vocab duplicate id", map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":0},"merges":[]}`, "added_tokens": `[]`}, `id 0 is given to both`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(minimal(tc.repl)), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if _, err := LoadBytes([]byte(`{`), nil); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("truncated JSON: error %v", err)
	}
	if _, err := LoadBytes([]byte(minimal(nil)), []byte(`{"bos_token":"<nope>"}`)); err == nil || !strings.Contains(err.Error(), "tokenizer_config.json: field bos_token") {
		t.Errorf("bad bos_token: error %v", err)
	}
}

func TestLoadNamesFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(p, []byte(minimal(map[string]string{"decoder": `{"type":"Nope"}`})), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "field decoder") {
		t.Errorf("error %v does not name the file and field", err)
	}
}

func TestConfigAndSpecials(t *testing.T) {
	gostd := loadFixture(t, "gostd")
	if id, ok := gostd.BOS(); !ok || id != 1 {
		t.Errorf("gostd BOS = %d %v, want 1", id, ok)
	}
	if id, ok := gostd.EOS(); !ok || id != 2 {
		t.Errorf("gostd EOS = %d %v, want 2", id, ok)
	}
	llama := loadFixture(t, "llama2")
	if id, ok := llama.BOS(); !ok || id != 1 {
		t.Errorf("llama2 BOS = %d %v, want 1", id, ok)
	}
	if id, ok := llama.EOS(); !ok || id != 2 {
		t.Errorf("llama2 EOS = %d %v, want 2", id, ok)
	}
	if id, ok := llama.TokenToID("▁the"); !ok || id != 272 {
		t.Errorf("TokenToID(▁the) = %d %v", id, ok)
	}
	if tok, ok := llama.IDToToken(272); !ok || tok != "▁the" {
		t.Errorf("IDToToken(272) = %q %v", tok, ok)
	}
	if _, ok := llama.IDToToken(32000); ok {
		t.Error("IDToToken(32000) found")
	}
	if llama.VocabSize() != 32000 {
		t.Errorf("llama2 VocabSize = %d", llama.VocabSize())
	}
	// add_eos_token in tokenizer_config.json rebuilds the template.
	dir := tokenizerDir(t, "llama2")
	data, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	tk, err := LoadBytes(data, []byte(`{"add_bos_token":false,"add_eos_token":true,"bos_token":"<s>","eos_token":{"content":"</s>"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := append(llama.Encode("hi", false), 2)
	if got := tk.Encode("hi", true); !equalInts(got, want) {
		t.Errorf("add_eos_token: %v, want %v", got, want)
	}
	qwen := loadFixture(t, "qwen3")
	if _, ok := qwen.BOS(); ok {
		t.Error("qwen3 has a BOS")
	}
	if id, ok := qwen.EOS(); !ok || id != 151645 {
		t.Errorf("qwen3 EOS = %d %v, want 151645 (<|im_end|>)", id, ok)
	}
	if qwen.VocabSize() != 151669 {
		t.Errorf("qwen3 VocabSize = %d", qwen.VocabSize())
	}
}

// TestLongWordWithoutWhitespace encodes 1 MB without whitespace: the
// merge loop must not be quadratic (the test would not finish otherwise).
func TestLongWordWithoutWhitespace(t *testing.T) {
	for _, name := range []string{"gostd", "llama2"} {
		tk := loadFixture(t, name)
		for _, s := range []string{strings.Repeat("x", 1<<20), strings.Repeat("ab", 1<<19), strings.Repeat("日本", 1<<17)} {
			ids := tk.Encode(s, false)
			if got := tk.Decode(ids, false); got != s {
				t.Fatalf("%s: round trip of %d bytes failed", name, len(s))
			}
		}
	}
}

func TestRegexTranslation(t *testing.T) {
	good := map[string]string{
		`\s+`:        "[" + spaceClass + "]+",
		`[\s\d]`:     "[" + spaceClass + `\p{Nd}]`,
		`\u00e9|^a$`: `\x{00e9}|(?m:^)a(?m:$)`,
	}
	for in, want := range good {
		got, err := translateRegex(in)
		if err != nil || got != want {
			t.Errorf("translateRegex(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`(?=a)`, `(?!a)`, `(?<=a)`, `(?<!a)`, `(?>a)`, `\bA`, `(a)\1`, `[a-z&&[^b]]`, `[^\S]`, `a++`} {
		if _, err := compileRegex(bad); err == nil {
			t.Errorf("compileRegex(%q) succeeded", bad)
		}
	}
}
