package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// tokenizerDir returns the folder of a tokenizer fixture (see
// testutil.Fixture).
func tokenizerDir(t testing.TB, name string) string {
	return filepath.Dir(testutil.Fixture(t, "tokenizers/"+name+"/tokenizer.json"))
}

var (
	loadMu sync.Mutex
	loaded = map[string]*Tokenizer{}
)

func loadFixture(t testing.TB, name string) *Tokenizer {
	t.Helper()
	dir := tokenizerDir(t, name)
	loadMu.Lock()
	defer loadMu.Unlock()
	if tk, ok := loaded[name]; ok {
		return tk
	}
	tk, err := Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	loaded[name] = tk
	return tk
}

type reference struct {
	Cases []struct {
		Text               string   `json:"text"`
		IDs                []int    `json:"ids"`
		IDsNoSpecial       []int    `json:"ids_no_special"`
		Tokens             []string `json:"tokens"`
		Decoded            string   `json:"decoded"`
		DecodedSkipSpecial string   `json:"decoded_skip_special"`
	} `json:"cases"`
	Corpora []struct {
		File   string `json:"file"`
		Chars  int    `json:"chars"`
		Tokens int    `json:"tokens"`
		MS     int    `json:"ms_hf_tokenizers_node"`
	} `json:"corpora"`
}

func loadReference(t testing.TB, name string) *reference {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tokenizerDir(t, name), "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

var fixtureNames = []string{"gostd", "llama2", "qwen3"}

func firstDiff(a, b []int) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			lo := max(0, i-3)
			return fmt.Sprintf("first difference at %d: got %v, want %v", i, a[lo:min(len(a), i+5)], b[lo:min(len(b), i+5)])
		}
	}
	return fmt.Sprintf("lengths differ: got %d, want %d", len(a), len(b))
}

func equalInts(a, b []int) bool {
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

func TestReferenceCases(t *testing.T) {
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			tk := loadFixture(t, name)
			ref := loadReference(t, name)
			if len(ref.Cases) == 0 {
				t.Fatal("no cases")
			}
			for i, c := range ref.Cases {
				ids, toks := tk.EncodeTokens(c.Text, true)
				if !equalInts(ids, c.IDs) {
					t.Errorf("case %d %q: ids: %s", i, c.Text, firstDiff(ids, c.IDs))
				}
				if fmt.Sprint(toks) != fmt.Sprint(c.Tokens) {
					t.Errorf("case %d %q: tokens %q, want %q", i, c.Text, toks, c.Tokens)
				}
				ns := tk.Encode(c.Text, false)
				if !equalInts(ns, c.IDsNoSpecial) {
					t.Errorf("case %d %q: ids_no_special: %s", i, c.Text, firstDiff(ns, c.IDsNoSpecial))
				}
				if got := tk.Decode(c.IDsNoSpecial, false); got != c.Decoded {
					t.Errorf("case %d %q: decoded %q, want %q", i, c.Text, got, c.Decoded)
				}
				if got := tk.Decode(c.IDs, true); got != c.DecodedSkipSpecial {
					t.Errorf("case %d %q: decoded_skip_special %q, want %q", i, c.Text, got, c.DecodedSkipSpecial)
				}
			}
		})
	}
}

func TestReferenceCorpora(t *testing.T) {
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			tk := loadFixture(t, name)
			ref := loadReference(t, name)
			if len(ref.Corpora) == 0 {
				t.Fatal("no corpora")
			}
			for _, c := range ref.Corpora {
				text := string(testutil.ReadFile(t, "corpus/"+c.File))
				base := c.File[:len(c.File)-len(filepath.Ext(c.File))]
				want := testutil.ReadIDs(t, "tokenizers/"+name+"/"+base+".ids.int32")
				if len(want) != c.Tokens {
					t.Fatalf("%s: reference has %d ids, reference.json says %d", c.File, len(want), c.Tokens)
				}
				got := tk.Encode(text, false)
				if !equalInts(got, want) {
					t.Errorf("%s: %s", c.File, firstDiff(got, want))
				}
				if dec := tk.Decode(want, false); dec != text {
					t.Errorf("%s: decode of the reference ids differs from the text", c.File)
				}
			}
		})
	}
}
