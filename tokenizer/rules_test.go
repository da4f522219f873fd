package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// TestRules checks small tokenizer.json documents built for rules the
// fixtures do not show (Split behaviors, Metaspace schemes, WordPiece-style
// prefixes, suffixes, ignore_merges, fuse_unk, added-token flags, ...)
// against the output of the Hugging Face library, stored by
// testdata/tokenizers/rules/gen.mjs.
func TestRules(t *testing.T) {
	data, err := os.ReadFile(testutil.Fixture(t, "tokenizers/rules/cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all []struct {
		Name      string          `json:"name"`
		Tokenizer json.RawMessage `json:"tokenizer"`
		Cases     []struct {
			Text               string   `json:"text"`
			IDs                []int    `json:"ids"`
			Tokens             []string `json:"tokens"`
			IDsNoSpecial       []int    `json:"ids_no_special"`
			Decoded            string   `json:"decoded"`
			DecodedSkipSpecial string   `json:"decoded_skip_special"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatal(err)
	}
	if len(all) < 50 {
		t.Fatalf("only %d rule tokenizers", len(all))
	}
	for _, r := range all {
		t.Run(r.Name, func(t *testing.T) {
			tk, err := LoadBytes(r.Tokenizer, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range r.Cases {
				ids, toks := tk.EncodeTokens(c.Text, true)
				if !equalInts(ids, c.IDs) || fmt.Sprint(toks) != fmt.Sprint(c.Tokens) {
					t.Errorf("%q: ids %v tokens %q, want %v %q", c.Text, ids, toks, c.IDs, c.Tokens)
				}
				if ns := tk.Encode(c.Text, false); !equalInts(ns, c.IDsNoSpecial) {
					t.Errorf("%q: ids_no_special %v, want %v", c.Text, ns, c.IDsNoSpecial)
				}
				if got := tk.Decode(c.IDsNoSpecial, false); got != c.Decoded {
					t.Errorf("%q: decoded %q, want %q", c.Text, got, c.Decoded)
				}
				if got := tk.Decode(c.IDs, true); got != c.DecodedSkipSpecial {
					t.Errorf("%q: decoded_skip_special %q, want %q", c.Text, got, c.DecodedSkipSpecial)
				}
			}
		})
	}
}
