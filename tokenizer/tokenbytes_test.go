package tokenizer

import (
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// The bytes of a run of tokens, each by TokenBytes, are the text the
// stream decoder gives them after a prompt: what structured output counts
// on, since it constrains token bytes and the server sends decoded text.
func TestTokenBytesConcatenate(t *testing.T) {
	for _, name := range []string{"gostd", "llama2", "qwen3"} {
		t.Run(name, func(t *testing.T) {
			tok := loadFixture(t, name)
			rng := rand.New(rand.NewPCG(1, uint64(len(name))))
			prompt := tok.Encode("x = ", false)
			V := tok.VocabSize()
			for range 300 {
				d := tok.NewStreamDecoder(true)
				d.Prime(prompt)
				var want, got []byte
				for range 1 + rng.IntN(6) {
					id := rng.IntN(V)
					b, ok := tok.TokenBytes(id)
					if !ok {
						continue
					}
					want = append(want, b...)
					got = append(got, d.Add(id)...)
				}
				got = append(got, d.Flush()...)
				// The decoder replaces invalid UTF-8; compare where the
				// token bytes form valid text.
				if isUTF8(want) && string(got) != string(want) {
					t.Fatalf("decoded %q, token bytes %q", got, want)
				}
			}
			for _, id := range tok.SpecialTokens() {
				if _, ok := tok.TokenBytes(id); ok {
					t.Errorf("special token %d has bytes", id)
				}
			}
		})
	}
}

func isUTF8(b []byte) bool { return utf8.Valid(b) }
