package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"unicode/utf8"
)

// bigVocab is the vocabulary size of Gemma 3's tokenizer.
const bigVocab = 262144

var (
	bigOnce sync.Once
	bigJSON []byte
	bigErr  error
)

// bigTokenizerJSON builds a tokenizer.json of Gemma 3's vocabulary size
// (262,144 tokens; 260,027 merges, 31.9 MB, where Gemma 3's file is 33 MB):
// llama2's normalizer, decoder, post-processor and added tokens (a
// byte-fallback BPE, as Gemma's), with a synthetic vocabulary grown by
// merges from ~6,000 single characters of several scripts, plus the few
// merges that reach an existing token by another split. It is written as
// Hugging Face writes it: indented, one vocabulary entry per line, merges
// as pairs. Deterministic.
func bigTokenizerJSON(tb testing.TB) []byte {
	tb.Helper()
	bigOnce.Do(func() { bigJSON, bigErr = makeBigTokenizer(tb) })
	if bigErr != nil {
		tb.Fatal(bigErr)
	}
	return bigJSON
}

func makeBigTokenizer(tb testing.TB) ([]byte, error) {
	base, err := os.ReadFile(filepath.Join(tokenizerDir(tb, "llama2"), "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(262144, 33))
	var vocab []string
	index := map[string]int{}
	add := func(s string) bool {
		if _, ok := index[s]; ok {
			return false
		}
		index[s] = len(vocab)
		vocab = append(vocab, s)
		return true
	}
	add("<unk>")
	add("<s>")
	add("</s>")
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b))
	}
	add("▁")
	for c := rune(0x21); c < 0x7f; c++ {
		add(string(c))
	}
	// Latin-1, Greek, Cyrillic, Hebrew, Arabic, Devanagari, CJK, Hangul.
	for _, rg := range [][2]rune{{0xa1, 0x250}, {0x391, 0x3ca}, {0x400, 0x460}, {0x5d0, 0x5eb}, {0x620, 0x64b}, {0x905, 0x940}, {0x4e00, 0x5200}, {0xac00, 0xac80}} {
		for c := rg[0]; c < rg[1]; c++ {
			add(string(c))
		}
	}
	// A few tokens that JSON must escape, as real vocabularies have.
	for _, s := range []string{"\"", "\\", "\n", "\t", "\n\n", "\\n", "\u0001"} {
		add(s)
	}
	nBase := len(vocab)
	var merges [][2]string
	seen := map[[2]string]bool{}
	pick := func() string {
		// Favour short, early tokens as frequent pairs are merged first.
		n := len(vocab)
		i := int(float64(n) * math.Pow(r.Float64(), 1.4))
		return vocab[i]
	}
	for len(vocab) < bigVocab {
		a, b := pick(), pick()
		if r.IntN(3) == 0 {
			a = "▁" + a
			if _, ok := index[a]; !ok {
				continue
			}
		}
		s := a + b
		if len(s) > 48 || seen[[2]string{a, b}] {
			continue
		}
		add(s) // false: another split of an existing token, still a merge
		seen[[2]string{a, b}] = true
		merges = append(merges, [2]string{a, b})
	}
	// Other splits of existing tokens.
	for _, t := range vocab[nBase:] {
		for cut := 1; cut < len(t); cut++ {
			if !utf8.RuneStart(t[cut]) {
				continue
			}
			a, b := t[:cut], t[cut:]
			if _, ok := index[a]; !ok || seen[[2]string{a, b}] {
				continue
			}
			if _, ok := index[b]; !ok {
				continue
			}
			seen[[2]string{a, b}] = true
			merges = append(merges, [2]string{a, b})
		}
	}

	var buf bytes.Buffer
	buf.WriteString("{\n")
	for _, k := range []string{"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder"} {
		var v bytes.Buffer
		if err := json.Indent(&v, doc[k], "  ", "  "); err != nil {
			return nil, err
		}
		fmt.Fprintf(&buf, "  %q: %s,\n", k, v.Bytes())
	}
	buf.WriteString(`  "model": {
    "type": "BPE",
    "dropout": null,
    "unk_token": "<unk>",
    "continuing_subword_prefix": null,
    "end_of_word_suffix": null,
    "fuse_unk": true,
    "byte_fallback": true,
    "ignore_merges": false,
    "vocab": {
`)
	for i, tok := range vocab {
		fmt.Fprintf(&buf, "      %s: %d", quoteJSON(tok), i)
		if i < len(vocab)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("    },\n    \"merges\": [\n")
	for i, m := range merges {
		fmt.Fprintf(&buf, "      [\n        %s,\n        %s\n      ]", quoteJSON(m[0]), quoteJSON(m[1]))
		if i < len(merges)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("    ]\n  }\n}")
	return buf.Bytes(), nil
}

// quoteJSON quotes s as Hugging Face writes it: UTF-8 as is, only quotes,
// backslashes and control characters escaped.
func quoteJSON(s string) string {
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}

// BenchmarkLoad262k loads a tokenizer.json of Gemma 3's size (262,144
// tokens, 31.9 MB; see bigTokenizerJSON) from memory.
func BenchmarkLoad262k(b *testing.B) {
	data := bigTokenizerJSON(b)
	_, want, err := slowModel(data)
	if err != nil {
		b.Fatal(err)
	}
	got := fastOnly(b, "262k", data)
	sameModel(b, "262k", got, want)
	if len(got.vocab) != bigVocab {
		b.Fatalf("%d tokens, want %d", len(got.vocab), bigVocab)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	runtime.GC()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := LoadBytes(data, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// CPU time of the process per load (all threads, the collector's
	// included): on a machine shared with other work it varies less than
	// the wall time.
	b.ReportMetric(float64(cpuTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
}
