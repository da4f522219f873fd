package server

import (
	"github.com/jamba-go/jamba/textgen"
	"github.com/jamba-go/jamba/tokenizer"
)

// textStream turns generated token ids into released text: textgen's
// stream (the decoder in the context of the prompt, then the stop
// matcher) and, for a chat request with tools, the tool-call parser (which
// sees the text a stop string cut).
type textStream struct {
	text    *textgen.Stream
	stopped bool
	tools   *toolStream // nil: no tool calls parsed
}

func newTextStream(tok *tokenizer.Tokenizer, prompt []int, stops []string) *textStream {
	return &textStream{text: textgen.NewStream(tok, prompt, stops, true)}
}

// add feeds one token and returns the text it releases; stopped reports
// that a stop string completed (the text before it is returned).
func (t *textStream) add(id int) (text string, stopped bool) {
	if t.stopped {
		return "", true
	}
	text, t.stopped = t.text.Add(id)
	if t.tools != nil {
		text = t.tools.push(text)
		if t.stopped {
			text += t.tools.finish()
		}
	}
	return text, t.stopped
}

// finish returns the text still held back at the end of generation; a
// stop string may still complete in it.
func (t *textStream) finish() (text string, stopped bool) {
	if t.stopped {
		return "", true
	}
	text, t.stopped = t.text.Finish()
	if t.tools != nil {
		text = t.tools.push(text)
		text += t.tools.finish()
	}
	return text, t.stopped
}

// toolCalls returns the tool calls parsed out of the text once it has
// ended (by finish or a stop string); nil when there are none.
func (t *textStream) toolCalls() []toolCall {
	if t.tools == nil {
		return nil
	}
	return t.tools.calls
}
