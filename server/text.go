package server

import (
	"strings"

	"github.com/jamba-go/jamba/tokenizer"
)

// stopMatcher finds stop strings in text that arrives in pieces. Text that
// might still become the start of a stop string is held back, so a stop
// string is never sent, in part or whole, and nothing is sent twice.
//
// Generation ends where a stop string first completes: among the matches
// the one ending earliest wins, and of those ending at the same byte the
// longest. That point does not depend on how the text was cut into pieces,
// so streamed and non-streamed output agree.
type stopMatcher struct {
	stops   []string
	pending string // text received and not yet released
}

// push adds text and returns what can be released. When a stop string has
// completed it returns the text before it and true; the matcher must not
// be used after that.
func (m *stopMatcher) push(s string) (string, bool) {
	text, _, found := m.scan(s)
	return text, found
}

// scan is push that also returns the text after the stop string that
// completed (of what was received so far).
func (m *stopMatcher) scan(s string) (text, rest string, found bool) {
	if len(m.stops) == 0 {
		return s, "", false
	}
	m.pending += s
	p := m.pending
	start, end := -1, 0
	for _, stop := range m.stops {
		i := strings.Index(p, stop)
		if i < 0 {
			continue
		}
		e := i + len(stop)
		if start < 0 || e < end || e == end && i < start {
			start, end = i, e
		}
	}
	if start >= 0 {
		m.pending = ""
		return p[:start], p[end:], true
	}
	keep := 0
	for _, stop := range m.stops {
		// The longest suffix of p that is a proper prefix of stop.
		for k := min(len(stop)-1, len(p)); k > keep; k-- {
			if strings.HasPrefix(stop, p[len(p)-k:]) {
				keep = k
				break
			}
		}
	}
	m.pending = p[len(p)-keep:]
	return p[:len(p)-keep], "", false
}

// flush releases the text held back once no more will come.
func (m *stopMatcher) flush() string {
	s := m.pending
	m.pending = ""
	return s
}

// textStream turns generated token ids into released text: the
// tokenizer's stream decoder (which holds back incomplete UTF-8 and
// decodes in the context of the prompt) followed by the stop matcher and,
// for a chat request with tools, the tool-call parser (which sees the
// text a stop string cut).
type textStream struct {
	dec     *tokenizer.StreamDecoder
	stop    stopMatcher
	stopped bool
	tools   *toolStream // nil: no tool calls parsed
}

func newTextStream(tok *tokenizer.Tokenizer, prompt []int, stops []string) *textStream {
	t := &textStream{dec: tok.NewStreamDecoder(true), stop: stopMatcher{stops: stops}}
	t.dec.Prime(prompt)
	return t
}

// add feeds one token and returns the text it releases; stopped reports
// that a stop string completed (the text before it is returned).
func (t *textStream) add(id int) (text string, stopped bool) {
	if t.stopped {
		return "", true
	}
	text, t.stopped = t.stop.push(t.dec.Add(id))
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
	text, t.stopped = t.stop.push(t.dec.Flush())
	if !t.stopped {
		text += t.stop.flush()
	}
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
