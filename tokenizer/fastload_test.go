package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// sameModel compares what the fast path and encoding/json read.
func sameModel(t testing.TB, what string, got, want *bpe) {
	t.Helper()
	switch {
	case !reflect.DeepEqual(got.vocab, want.vocab):
		t.Fatalf("%s: vocab differs (%d and %d entries)", what, len(got.vocab), len(want.vocab))
	case !reflect.DeepEqual(got.tokens, want.tokens) || !reflect.DeepEqual(got.has, want.has):
		t.Fatalf("%s: id → token table differs", what)
	case !reflect.DeepEqual(got.merges, want.merges):
		t.Fatalf("%s: merges differ (%d and %d)", what, len(got.merges), len(want.merges))
	case got.unkID != want.unkID || got.hasUnk != want.hasUnk || got.byteTok != want.byteTok:
		t.Fatalf("%s: unknown or byte tokens differ", what)
	case got.asciiPair != want.asciiPair || !reflect.DeepEqual(got.pairs, want.pairs):
		t.Fatalf("%s: the character pairs merges join differ", what)
	case got.fuseUnk != want.fuseUnk || got.byteFallback != want.byteFallback || got.ignoreMerges != want.ignoreMerges ||
		got.prefix != want.prefix || got.suffix != want.suffix:
		t.Fatalf("%s: options differ", what)
	}
}

// fastOnly reads data by the fast path alone, failing when it steps aside.
func fastOnly(t testing.TB, what string, data []byte) *bpe {
	t.Helper()
	_, m, err := fastLoad(data)
	if err != nil {
		t.Fatalf("%s: the fast path stepped aside: %v", what, err)
	}
	return m
}

// TestFastLoadMatchesEncodingJSON reads every fixture tokenizer (merges as
// strings and as pairs, byte-level and byte-fallback) by both paths: the fast path must take them all and read them identically.
func TestFastLoadMatchesEncodingJSON(t *testing.T) {
	for _, name := range fixtureNames {
		data, err := os.ReadFile(filepath.Join(tokenizerDir(t, name), "tokenizer.json"))
		if err != nil {
			t.Fatal(err)
		}
		_, want, err := slowModel(data)
		if err != nil {
			t.Fatal(err)
		}
		sameModel(t, name, fastOnly(t, name, data), want)
	}
	// The 262k tokenizer is compared in BenchmarkLoad262k (it takes
	// seconds to build).
}

// TestFastLoadStepsAside: documents the fast path must not read alone
// (names in another case, escaped names, ids as floats, mixed merges,
// broken syntax) still load, or fail, exactly as encoding/json has them.
func TestFastLoadStepsAside(t *testing.T) {
	for _, doc := range []string{
		minimal(map[string]string{"model": `{"type":"BPE","Vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a b"],"unk_token":"<unk>"}`}),
		minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2.0,"<unk>":3},"merges":["a b"],"unk_token":"<unk>"}`}),
		minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a b",["a","b"]],"unk_token":"<unk>"}`}),
		minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"\u006derges":["a b"],"unk_token":"<unk>"}`}),
		minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a b"],"unk_token":"<unk>",}`}),
		minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a b c"],"unk_token":"<unk>"}`}),
		minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a x"],"unk_token":"<unk>"}`}),
		minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3,"a":4},"merges":["a b"],"unk_token":"<unk>"}`}),
		minimal(map[string]string{"model": `{"type":"BPE","vocab":{"\u0061":0,"b":1,"a\u0062":2,"<unk>":3,"\ud800":4,"x\xffy":5},"merges":[["\u0061","b"]],"unk_token":"<unk>"}`}),
		`{"MODEL":` + `{"type":"BPE","vocab":{"a":0},"merges":[]}}`,
		`[]`, `null`, `{"model":null}`, `{"model":{}} x`,
	} {
		fast, fastErr := LoadBytes([]byte(doc), nil)
		_, want, slowErr := slowModel([]byte(doc))
		if (fastErr == nil) != (slowErr == nil) {
			t.Errorf("%s: LoadBytes error %v, encoding/json %v", doc, fastErr, slowErr)
			continue
		}
		if fastErr != nil {
			if fastErr.Error() != "tokenizer: tokenizer.json: "+slowErr.Error() {
				t.Errorf("%s: error %q, encoding/json's %q", doc, fastErr, slowErr)
			}
			continue
		}
		sameModel(t, doc, fast.model, want)
	}
}

// FuzzFastLoad: whatever the fast path reads alone, encoding/json reads
// the same way.
func FuzzFastLoad(f *testing.F) {
	f.Add([]byte(minimal(nil)))
	f.Add([]byte(minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3,"\"":4,"\\n":5},"merges":[["a","b"]],"unk_token":"<unk>"}`})))
	f.Add([]byte(minimal(map[string]string{"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"],"continuing_subword_prefix":"##"}`})))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, got, err := fastLoad(data)
		if err != nil {
			return
		}
		_, want, err := slowModel(data)
		if err != nil {
			t.Fatalf("the fast path read a document encoding/json refuses (%v)", err)
		}
		sameModel(t, "fuzz", got, want)
	})
}

// TestUnescape compares unescape with encoding/json on escapes of every
// kind, surrogate pairs, lone and reversed surrogates, and raw UTF-8.
func TestUnescape(t *testing.T) {
	for _, lit := range []string{
		`"plain"`, `"a\"b\\c\/d"`, `"\b\f\n\r\t"`, `"\u0041\u00e9\u4e2d"`, `"\ud83d\ude00"`,
		`"\ud83d"`, `"\ude00\ud83d"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"▁\n日本"`, `"\uD83D\uDE00"`, `"\u0000"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(lit), &want); err != nil {
			t.Fatal(err)
		}
		s := &scanner{d: []byte(lit)}
		raw, _, ok := s.str()
		if !ok {
			t.Fatalf("%s: str refused it", lit)
		}
		got, ok := unescape(nil, raw)
		if !ok || string(got) != want {
			t.Errorf("%s: unescape %q (ok %v), encoding/json %q", lit, got, ok, want)
		}
	}
}
