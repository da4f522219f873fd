package tokenizer

import (
	"math/rand"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jamba-go/jamba/internal/testutil"
)

// streamAll feeds ids one at a time and checks every delta.
func streamAll(t *testing.T, d *StreamDecoder, ids []int) string {
	t.Helper()
	var b strings.Builder
	for i, id := range ids {
		delta := d.Add(id)
		if !utf8.ValidString(delta) {
			t.Fatalf("delta %d (id %d) is not valid UTF-8: %q", i, id, delta)
		}
		if tok, ok := d.t.IDToToken(id); ok && d.t.byteFallbackDecode {
			if _, isByte := byteToken(tok); isByte && delta != "" {
				t.Fatalf("delta %q emitted inside a byte-fallback run", delta)
			}
		}
		b.WriteString(delta)
	}
	b.WriteString(d.Flush())
	return b.String()
}

func TestStreamCorpus(t *testing.T) {
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			tk := loadFixture(t, name)
			for _, file := range []string{"gostd_val", "multilingual"} {
				ids := testutil.ReadIDs(t, "tokenizers/"+name+"/"+file+".ids.int32")
				if file == "gostd_val" && testing.Short() {
					ids = ids[:min(len(ids), 60000)]
				}
				want := tk.Decode(ids, false)
				if got := streamAll(t, tk.NewStreamDecoder(false), ids); got != want {
					t.Errorf("%s: streamed text differs from Decode (%d vs %d bytes)", file, len(got), len(want))
				}
			}
		})
	}
}

func TestStreamReferenceCases(t *testing.T) {
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			tk := loadFixture(t, name)
			for _, c := range loadReference(t, name).Cases {
				for _, skip := range []bool{false, true} {
					want := tk.Decode(c.IDs, skip)
					if got := streamAll(t, tk.NewStreamDecoder(skip), c.IDs); got != want {
						t.Errorf("%q skip=%v: streamed %q, want %q", c.Text, skip, got, want)
					}
				}
			}
		})
	}
}

// TestStreamRandom streams random ids, byte tokens included: the deltas
// must still add up to Decode, whatever invalid bytes the ids spell.
func TestStreamRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			tk := loadFixture(t, name)
			d := tk.NewStreamDecoder(false)
			for trial := 0; trial < 300; trial++ {
				ids := make([]int, 1+rng.Intn(40))
				for i := range ids {
					switch rng.Intn(3) {
					case 0:
						ids[i] = 3 + rng.Intn(256) // byte tokens in gostd and llama2
					default:
						ids[i] = rng.Intn(tk.VocabSize() + 5)
					}
				}
				d.Reset()
				want := tk.Decode(ids, trial%2 == 0)
				d.skip = trial%2 == 0
				if got := streamAll(t, d, ids); got != want {
					t.Fatalf("ids %v: streamed %q, want %q", ids, got, want)
				}
			}
		})
	}
}

// TestStreamPrime streams a continuation: after Prime(prompt), the deltas
// are Decode(prompt+rest) after Decode(prompt), leading space kept.
func TestStreamPrime(t *testing.T) {
	for _, name := range fixtureNames {
		t.Run(name, func(t *testing.T) {
			tk := loadFixture(t, name)
			text := "func main() {\n\tfmt.Println(\"héllo, 世界\")\n}\n// done ok"
			ids := tk.Encode(text, true)
			d := tk.NewStreamDecoder(true)
			for k := 1; k < len(ids); k++ {
				base := tk.Decode(ids[:k], true)
				full := tk.Decode(ids, true)
				if !strings.HasPrefix(full, base) {
					continue // the prompt ends inside a character
				}
				d.Prime(ids[:k])
				if got := streamAll(t, d, ids[k:]); got != full[len(base):] {
					t.Errorf("k=%d: continuation %q, want %q", k, got, full[len(base):])
				}
			}
			// The leading space of a continuation is kept.
			p := tk.Encode("Hello", true)
			all := tk.Encode("Hello world", true)
			d.Prime(p)
			if got := streamAll(t, d, all[len(p):]); got != " world" {
				t.Errorf("continuation %q, want %q", got, " world")
			}
		})
	}
}

// TestStreamReplacementCharacter streams text full of U+FFFD: such
// characters are final and must be emitted at once, not held back.
func TestStreamReplacementCharacter(t *testing.T) {
	for _, name := range fixtureNames {
		tk := loadFixture(t, name)
		text := strings.Repeat("a\uFFFD", 2000)
		ids := tk.Encode(text, false)
		d := tk.NewStreamDecoder(false)
		var b strings.Builder
		for _, id := range ids {
			b.WriteString(d.Add(id))
		}
		if rest := d.Flush(); len(rest) > 8 {
			t.Errorf("%s: %d bytes held back until Flush", name, len(rest))
		} else {
			b.WriteString(rest)
		}
		if b.String() != text {
			t.Errorf("%s: streamed text differs", name)
		}
	}
}
