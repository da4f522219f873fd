package textgen

import (
	"strings"

	"github.com/jamba-go/jamba/tokenizer"
)

// Stream turns a generation's token ids into released text: the
// tokenizer's stream decoder (which holds back incomplete UTF-8 and
// decodes in the context of the prompt), minus the text of a healed token
// that the prompt already showed, then the stop matcher.
type Stream struct {
	dec     *tokenizer.StreamDecoder
	stop    StopMatcher
	healed  string // text still to drop from the start of the output
	stopped bool
}

// NewStream returns the text stream of a generation that continues prompt
// (the ids the model is given), ending at the first of stops; skipSpecial
// drops the text of special tokens as tokenizer.Decode does.
func NewStream(tok *tokenizer.Tokenizer, prompt []int, stops []string, skipSpecial bool) *Stream {
	t := &Stream{dec: tok.NewStreamDecoder(skipSpecial), stop: StopMatcher{Stops: stops}}
	t.dec.Prime(prompt)
	return t
}

// DropPrefix drops text from the start of the output: the text of the
// prompt token that healing removed (Healing.Text), which the user has
// already seen.
func (t *Stream) DropPrefix(text string) { t.healed = text }

// Add feeds one token and returns the text it releases; stopped reports
// that a stop string completed (the text before it is returned). After
// that the stream releases nothing more.
func (t *Stream) Add(id int) (text string, stopped bool) {
	if t.stopped {
		return "", true
	}
	text, t.stopped = t.stop.Push(t.dropHealed(t.dec.Add(id)))
	return text, t.stopped
}

// Finish returns the text still held back at the end of generation; a
// stop string may still complete in it.
func (t *Stream) Finish() (text string, stopped bool) {
	if t.stopped {
		return "", true
	}
	text, t.stopped = t.stop.Push(t.dropHealed(t.dec.Flush()))
	if !t.stopped {
		text += t.stop.Flush()
	}
	return text, t.stopped
}

// dropHealed removes what is left of the healed text from the start of
// delta; once the output departs from it nothing more is dropped.
func (t *Stream) dropHealed(delta string) string {
	switch h := t.healed; {
	case h == "":
	case strings.HasPrefix(delta, h):
		delta, t.healed = delta[len(h):], ""
	case strings.HasPrefix(h, delta):
		delta, t.healed = "", h[len(delta):]
	default:
		t.healed = ""
	}
	return delta
}
