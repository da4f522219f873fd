package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jamba-go/jamba/gguf"
	"github.com/jamba-go/jamba/internal/testutil"
)

// hfToGGUF builds the vocabulary llama.cpp's converter writes for a
// byte-level BPE tokenizer.json (its _set_vocab_gpt2): the tokens by id,
// added special tokens CONTROL, other added tokens USER_DEFINED, the
// merges as "left right" strings.
func hfToGGUF(t *testing.T, dir, pre string) GGUFVocab {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Model struct {
			Vocab  map[string]int  `json:"vocab"`
			Merges json.RawMessage `json:"merges"`
		} `json:"model"`
		Added []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, id := range f.Model.Vocab {
		n = max(n, id+1)
	}
	for _, a := range f.Added {
		n = max(n, a.ID+1)
	}
	v := GGUFVocab{Model: "gpt2", Pre: pre, Tokens: make([]string, n), Types: make([]int32, n), BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	for tok, id := range f.Model.Vocab {
		v.Tokens[id], v.Types[id] = tok, TokenNormal
	}
	for _, a := range f.Added {
		v.Tokens[a.ID] = a.Content
		v.Types[a.ID] = TokenUserDefined
		if a.Special {
			v.Types[a.ID] = TokenControl
		}
	}
	for i, tok := range v.Tokens {
		if tok == "" {
			v.Tokens[i], v.Types[i] = "[PAD"+string(rune('0'+i%10))+"]", TokenUnused
		}
	}
	pairs, err := parseMerges(f.Model.Merges)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		v.Merges = append(v.Merges, p[0]+" "+p[1])
	}
	return v
}

// A byte-level BPE vocabulary converted the way llama.cpp converts it
// tokenizes the corpora as Hugging Face does (qwen3: pre-tokenizer "qwen2";
// its NFC normalizer, which llama.cpp lacks, changes nothing in these
// NFC texts).
func TestGGUFByteLevelMatchesHF(t *testing.T) {
	dir := tokenizerDir(t, "qwen3")
	v := hfToGGUF(t, dir, "qwen2")
	tk, err := FromGGUF(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"multilingual", "gostd_val"} {
		text := testutil.ReadFile(t, "corpus/"+base+".txt")
		want := testutil.ReadIDs(t, "tokenizers/qwen3/"+base+".ids.int32")
		got := tk.Encode(string(text), true) // qwen2: no BOS by default
		if !equalInts(got, want) {
			t.Errorf("%s: %s", base, firstDiff(got, want))
		}
		if dec := tk.Decode(got, false); dec != string(text) {
			t.Errorf("%s: Decode(Encode(text)) differs from the text", base)
		}
	}
	// Control tokens: matched in the text, printed unless skipped.
	im, ok := tk.TokenToID("<|im_start|>")
	if !ok || !tk.IsSpecial(im) {
		t.Fatalf("<|im_start|>: id %d special %v", im, tk.IsSpecial(im))
	}
	ids := tk.Encode("<|im_start|>user", false)
	if len(ids) < 2 || ids[0] != im {
		t.Errorf("Encode(<|im_start|>user) = %v, want %d first", ids, im)
	}
	if got := tk.Decode(ids, true); got != "user" {
		t.Errorf("Decode(skip special) = %q, want %q", got, "user")
	}
	if got := tk.Decode(ids, false); got != "<|im_start|>user" {
		t.Errorf("Decode = %q", got)
	}
}

// spmVocab is a small SentencePiece-style vocabulary: control tokens, the
// 256 byte tokens and a few pieces with scores.
func spmVocab(pieces map[string]float32, addPrefix bool) GGUFVocab {
	v := GGUFVocab{Model: "llama", BOS: 1, EOS: 2, UNK: 0, PAD: -1, AddSpacePrefix: &addPrefix}
	add := func(tok string, score float32, typ int32) {
		v.Tokens = append(v.Tokens, tok)
		v.Scores = append(v.Scores, score)
		v.Types = append(v.Types, typ)
	}
	add("<unk>", 0, TokenUnknown)
	add("<s>", 0, TokenControl)
	add("</s>", 0, TokenControl)
	for b := 0; b < 256; b++ {
		add(string([]byte{'<', '0', 'x', "0123456789ABCDEF"[b>>4], "0123456789ABCDEF"[b&15], '>'}), 0, TokenByte)
	}
	keys := make([]string, 0, len(pieces))
	for k := range pieces {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(k, pieces[k], TokenNormal)
	}
	return v
}

func TestGGUFSentencePiece(t *testing.T) {
	pieces := map[string]float32{
		"▁": -1, "a": -1, "b": -1, "c": -1, "ab": -5, "bc": -2, "abc": -3, "▁a": -4, "▁ab": -6,
	}
	toks := func(tk *Tokenizer, ids []int) []string {
		var out []string
		for _, id := range ids {
			s, _ := tk.IDToToken(id)
			out = append(out, s)
		}
		return out
	}
	cases := []struct {
		prefix  bool
		text    string
		want    []string
		decoded string // "": the text
	}{
		// "bc" (−2) before "ab" (−5), then a·bc → "abc" (−3).
		{false, "abc", []string{"abc"}, ""},
		// With the space prefix: ▁·a·b·c → "bc" (−2), "abc" (−3); "▁abc" is no token.
		{true, "abc", []string{"▁", "abc"}, ""},
		// "bc" first leaves b·c·a·b → bc·a·b → bc·ab ("bca" and "bcab" are no tokens).
		{false, "bcab", []string{"bc", "ab"}, ""},
		// "é" is no token: its two bytes.
		{false, "aéb", []string{"a", "<0xC3>", "<0xA9>", "b"}, ""},
		// Control-token text is matched; the prefix goes before each stretch of
		// text, and decoding drops it from the first token only, as llama.cpp does.
		{true, "ab</s>ab", []string{"▁ab", "</s>", "▁ab"}, "ab</s> ab"},
		{false, " a", []string{"▁a"}, ""},
	}
	for _, c := range cases {
		tk, err := FromGGUF(spmVocab(pieces, c.prefix))
		if err != nil {
			t.Fatal(err)
		}
		ids := tk.Encode(c.text, false)
		if got := toks(tk, ids); !equalStrings(got, c.want) {
			t.Errorf("prefix %v: Encode(%q) = %q, want %q", c.prefix, c.text, got, c.want)
		}
		withBOS := tk.Encode(c.text, true)
		if len(withBOS) != len(ids)+1 || withBOS[0] != 1 {
			t.Errorf("Encode(%q, addSpecial) = %v: want BOS then %v", c.text, withBOS, ids)
		}
		// The space prefix is dropped again from the first token only.
		if c.decoded == "" {
			c.decoded = c.text
		}
		if got := tk.Decode(ids, false); got != c.decoded {
			t.Errorf("prefix %v: Decode(Encode(%q)) = %q", c.prefix, c.text, got)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGGUFVocabErrors(t *testing.T) {
	base := spmVocab(map[string]float32{"a": 0}, false)
	for _, c := range []struct {
		name string
		edit func(v *GGUFVocab)
		want string
	}{
		{"model", func(v *GGUFVocab) { v.Model = "bert" }, `tokenizer.ggml.model: "bert" is not supported`},
		{"empty", func(v *GGUFVocab) { v.Tokens = nil }, "tokenizer.ggml.tokens: empty"},
		{"scores", func(v *GGUFVocab) { v.Scores = v.Scores[:3] }, "tokenizer.ggml.scores: 3 scores for"},
		{"dup", func(v *GGUFVocab) { v.Tokens[5] = "a" }, `token "a" at ids`},
		{"pre", func(v *GGUFVocab) { v.Model, v.Pre, v.Merges = "gpt2", "klingon", []string{} }, `pre-tokenizer "klingon" is not supported`},
		{"merges", func(v *GGUFVocab) { v.Model, v.Pre = "gpt2", "gpt-2" }, "tokenizer.ggml.merges: missing"},
	} {
		v := base
		v.Tokens = append([]string(nil), base.Tokens...)
		c.edit(&v)
		_, err := FromGGUF(v)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// The vocabulary of the fixture GGUF files (SentencePiece-style, every score
// −1000, no space prefix) tokenizes both corpora exactly as llama.cpp's
// llama-tokenize did (BOS added, no special-token parsing: the corpora hold
// no control-token text), and decodes back to the text.
func TestGGUFFixtureIDs(t *testing.T) {
	path := testutil.Fixture(t, "gguf/gostd-13m-q4_k_m.gguf")
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tk, err := LoadGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if bos, ok := tk.BOS(); !ok || bos != 1 {
		t.Errorf("BOS = %d, %v", bos, ok)
	}
	for _, base := range []string{"multilingual", "gostd_val"} {
		text := testutil.ReadFile(t, "corpus/"+base+".txt")
		want := testutil.ReadIDs(t, "gguf/"+base+".llama-ids.i32")
		got := tk.Encode(string(text), true)
		if !equalInts(got, want) {
			t.Errorf("%s: %s", base, firstDiff(got, want))
		}
		if dec := tk.Decode(got, true); dec != string(text) {
			t.Errorf("%s: Decode(Encode(text), skip special) differs from the text", base)
		}
		// Streaming gives the same text.
		n := min(len(got), 5000)
		d := tk.NewStreamDecoder(true)
		var sb strings.Builder
		for _, id := range got[:n] {
			sb.WriteString(d.Add(id))
		}
		sb.WriteString(d.Flush())
		if whole := tk.Decode(got[:n], true); sb.String() != whole {
			t.Errorf("%s: streamed text differs from Decode", base)
		}
	}
}

// FuzzGGUFRoundTrip: the SentencePiece-style tokenizer gives back any valid
// UTF-8 text (control-token text included) and never emits an id outside
// the vocabulary.
func FuzzGGUFRoundTrip(f *testing.F) {
	tk, err := FromGGUF(spmVocab(map[string]float32{"▁": -1, "a": -1, "b": -2, "ab": -3, "▁a": -1, "é": -5, "</": -2}, false))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "ab ab", "é</s>a", "\x00\n\t  ", "日本語 a</s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		ids := tk.Encode(s, true)
		for _, id := range ids {
			if id < 0 || id >= tk.VocabSize() {
				t.Fatalf("id %d outside the vocabulary", id)
			}
		}
		if got := tk.Decode(ids[1:], false); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
	})
}

// A tokenizer converted to a GGUF vocabulary and back: the byte-fallback
// gostd tokenizer gives the vocabulary the fixture files hold (tokens,
// types, scores, BOS/EOS), and the byte-level qwen3 one the vocabulary
// hfToGGUF builds, tokenizing as before.
func TestToGGUF(t *testing.T) {
	gostd := loadFixture(t, "gostd")
	v, err := gostd.ToGGUF()
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(testutil.Fixture(t, "gguf/gostd-13m-bf16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := VocabFromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != want.Model || v.Pre != want.Pre || v.BOS != want.BOS || v.EOS != want.EOS || *v.AddBOS != *want.AddBOS {
		t.Errorf("model %q pre %q bos %d eos %d add_bos %v; fixture %q %q %d %d %v", v.Model, v.Pre, v.BOS, v.EOS, *v.AddBOS, want.Model, want.Pre, want.BOS, want.EOS, *want.AddBOS)
	}
	if !equalStrings(v.Tokens, want.Tokens) {
		t.Errorf("tokens differ from the fixture's")
	}
	for i := range want.Types {
		if v.Types[i] != want.Types[i] || v.Scores[i] != want.Scores[i] {
			t.Fatalf("token %d %q: type %d score %v, fixture %d %v", i, v.Tokens[i], v.Types[i], v.Scores[i], want.Types[i], want.Scores[i])
		}
	}

	qwen := loadFixture(t, "qwen3")
	qv, err := qwen.ToGGUF()
	if err != nil {
		t.Fatal(err)
	}
	ref := hfToGGUF(t, tokenizerDir(t, "qwen3"), "qwen2")
	if qv.Pre != "qwen2" || !equalStrings(qv.Merges, ref.Merges) || !equalStrings(qv.Tokens, ref.Tokens) {
		t.Errorf("qwen3: pre %q, %d merges (want %d), tokens equal: %v", qv.Pre, len(qv.Merges), len(ref.Merges), equalStrings(qv.Tokens, ref.Tokens))
	}
}

// KVs and VocabFromGGUF are inverses: the fixture's vocabulary written to
// a file and read back is the same, and its key/values are the fixture's
// in the fixture's order.
func TestGGUFVocabKVs(t *testing.T) {
	f, err := gguf.Open(testutil.Fixture(t, "gguf/gostd-13m-bf16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := VocabFromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	kvs := v.KVs()
	var want []string
	for _, kv := range f.KVs() {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			want = append(want, kv.Key+"="+kv.Value.String())
		}
	}
	var got []string
	for _, kv := range kvs {
		got = append(got, kv.Key+"="+kv.Value.String())
	}
	if !equalStrings(got, want) {
		t.Errorf("key/values:\n got %q\nwant %q", got, want)
	}
	data, err := gguf.Marshal(kvs, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gguf.OpenBytes("vocab.gguf", data)
	if err != nil {
		t.Fatal(err)
	}
	back, err := VocabFromGGUF(g)
	if err != nil {
		t.Fatal(err)
	}
	if !equalStrings(back.Tokens, v.Tokens) || back.BOS != v.BOS || back.PAD != v.PAD || *back.AddSpacePrefix != *v.AddSpacePrefix {
		t.Errorf("vocabulary changed through a file")
	}
}
