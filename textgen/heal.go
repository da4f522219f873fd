package textgen

import (
	"strings"

	"github.com/jamba-go/jamba/tokenizer"
)

// Healing is a prompt whose last token was dropped so that the model
// chooses it again: a prompt that ends inside a word or with a space ends
// with a token that rarely stands alone in training text (a lone space
// token, say), and continuing after it gives poor text.
type Healing struct {
	// Prompt is the prompt without its last token.
	Prompt []int
	// Allowed marks, for every id of the vocabulary, whether the first
	// generated token may be it: the tokens whose piece starts with the
	// dropped token's piece.
	Allowed []bool
	// Text is the dropped token's text as decoded in the prompt: the
	// output's first token repeats it, and Stream.DropPrefix drops it.
	Text string
}

// Heal returns the healing of ids (encoded with tok, vocab ids in all),
// and false when the last token is not worth healing: a special or byte
// token, one that no other token extends, or a prompt of one token.
func Heal(tok *tokenizer.Tokenizer, ids []int, vocab int) (Healing, bool) {
	if len(ids) < 2 {
		return Healing{}, false
	}
	last := ids[len(ids)-1]
	piece, ok := tok.IDToToken(last)
	if !ok || tok.IsSpecial(last) || strings.HasPrefix(piece, "<0x") {
		return Healing{}, false
	}
	full, head := tok.Decode(ids, false), tok.Decode(ids[:len(ids)-1], false)
	if !strings.HasPrefix(full, head) {
		return Healing{}, false
	}
	allowed := make([]bool, vocab)
	n := 0
	for id := range allowed {
		if p, ok := tok.IDToToken(id); ok && !tok.IsSpecial(id) && strings.HasPrefix(p, piece) {
			allowed[id] = true
			n++
		}
	}
	if n < 2 {
		return Healing{}, false
	}
	return Healing{Prompt: ids[:len(ids)-1], Allowed: allowed, Text: full[len(head):]}, true
}
