package tokenizer

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jamba-go/jamba/internal/testutil"
)

// FuzzRoundTrip checks decode(encode(s)) == s for the byte-fallback
// tokenizers gostd and llama2. This holds for valid UTF-8 that contains no
// U+2581 (the normalizer turns spaces into it and the decoder turns it back
// into a space) and no added token's text (each text segment between added
// tokens gets its own prepended U+2581, decoded as an extra space).
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", " ", "hello world", "  x  ", "func main() {\n\tfmt.Println(\"hi\")\n}\n",
		"naïve café", "日本語", "a\x00b", "🚀🐍 👩‍👩‍👧", "\r\n\t", "<s", "x</"} {
		f.Add(s)
	}
	toks := []*Tokenizer{loadFixture(f, "gostd"), loadFixture(f, "llama2")}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsRune(s, '▁') {
			return
		}
		for _, tk := range toks {
			for _, a := range tk.added.raw.pats {
				if strings.Contains(s, a) {
					return
				}
			}
		}
		for i, tk := range toks {
			ids := tk.Encode(s, false)
			if got := tk.Decode(ids, false); got != s {
				t.Fatalf("tokenizer %d: decode(encode(%q)) = %q", i, s, got)
			}
			if got := tk.Decode(tk.Encode(s, true), true); got != s {
				t.Fatalf("tokenizer %d: with special tokens: %q", i, got)
			}
			d := tk.NewStreamDecoder(false)
			var b strings.Builder
			for _, id := range ids {
				b.WriteString(d.Add(id))
			}
			b.WriteString(d.Flush())
			if b.String() != s {
				t.Fatalf("tokenizer %d: streamed %q, want %q", i, b.String(), s)
			}
		}
	})
}

// FuzzLoad feeds malformed tokenizer.json documents: loading must fail with
// an error or succeed, never panic, and a loaded tokenizer must encode and
// decode without panicking.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(minimal(nil)))
	f.Add([]byte(minimal(map[string]string{"pre_tokenizer": `{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":true,"use_regex":true}]}`})))
	f.Add([]byte(minimal(map[string]string{"normalizer": `{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"},{"type":"NFKC"}]}`,
		"decoder": `{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}`})))
	f.Add([]byte(minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"##b":1,"ab":2},"merges":[["a","##b"]],"continuing_subword_prefix":"##","end_of_word_suffix":"</w>"}`})))
	f.Add([]byte(minimal(map[string]string{"post_processor": `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<unk>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<unk>":{"id":"<unk>","ids":[3]}}}`})))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{},"merges":[]}}`))
	f.Add([]byte(`{"model":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := LoadBytes(data, nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, s := range []string{"", "ab ab", " a\n\tb ", "日本 ab", "<unk>a"} {
			ids := tk.Encode(s, true)
			tk.Decode(ids, false)
			tk.Decode(ids, true)
			d := tk.NewStreamDecoder(true)
			for _, id := range ids {
				d.Add(id)
			}
			d.Flush()
		}
		tk.Decode([]int{-1, 0, 1, 2, 3, 1 << 30}, false)
	})
}

// FuzzSplitPatterns checks the hand-written matchers of the look-ahead
// patterns against the generic matcher (Go's regexp for the alternatives
// before \s+(?!\S), plus the whitespace rule).
func FuzzSplitPatterns(f *testing.F) {
	for _, s := range []string{"Hello  world\n\n  x", "I'M it's 'ſ 12345 ab!!\r\n", "\t\tx  \u3000 y\u00a0", " ?? 1 a", "'", "  "} {
		f.Add(s)
	}
	type pair struct {
		name          string
		hand, generic finder
	}
	var pairs []pair
	for _, p := range []struct {
		name, pat string
		hand      finder
	}{
		{"gpt2", gpt2Pattern, gpt2Find},
		{"llama3", llama3Pattern, func(s string, d [][2]int) [][2]int { return llama3Find(s, d, 3) }},
		{"qwen2", qwen2Pattern, func(s string, d [][2]int) [][2]int { return llama3Find(s, d, 1) }},
	} {
		head := strings.TrimSuffix(p.pat, `|\s+(?!\S)|\s+`)
		re, err := compileRegex(head)
		if err != nil {
			f.Fatal(err)
		}
		pairs = append(pairs, pair{p.name, p.hand, wsTailFinder(re, true)})
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, p := range pairs {
			a := p.hand(s, nil)
			b := p.generic(s, nil)
			if len(a) != len(b) {
				t.Fatalf("%s: %q: hand %v, generic %v", p.name, s, a, b)
			}
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("%s: %q: hand %v, generic %v", p.name, s, a, b)
				}
			}
		}
	})
}

// TestSplitPatternsOnCorpus runs the matcher comparison over the corpora.
func TestSplitPatternsOnCorpus(t *testing.T) {
	var texts []string
	for _, f := range []string{"gostd_val.txt", "multilingual.txt"} {
		texts = append(texts, string(testutil.ReadFile(t, "corpus/"+f)))
	}
	for _, p := range []struct {
		pat  string
		hand finder
	}{
		{gpt2Pattern, gpt2Find},
		{llama3Pattern, func(s string, d [][2]int) [][2]int { return llama3Find(s, d, 3) }},
		{qwen2Pattern, func(s string, d [][2]int) [][2]int { return llama3Find(s, d, 1) }},
	} {
		re := regexp.MustCompile(mustTranslate(t, strings.TrimSuffix(p.pat, `|\s+(?!\S)|\s+`)))
		gen := wsTailFinder(re, true)
		for _, s := range texts {
			a, b := p.hand(s, nil), gen(s, nil)
			if len(a) != len(b) {
				t.Fatalf("%s: %d matches by hand, %d generic", p.pat, len(a), len(b))
			}
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("%s: match %d: %v vs %v (%q)", p.pat, i, a[i], b[i], s[a[i][0]:a[i][1]])
				}
			}
		}
	}
}

func mustTranslate(t *testing.T, p string) string {
	g, err := translateRegex(p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestFuzzSeedCorpusPresent keeps the committed seed corpus in place.
func TestFuzzSeedCorpusPresent(t *testing.T) {
	for _, name := range []string{"FuzzRoundTrip", "FuzzLoad", "FuzzSplitPatterns"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", name))
		if err != nil || len(entries) == 0 {
			t.Errorf("no committed seed corpus for %s: %v", name, err)
		}
	}
}
