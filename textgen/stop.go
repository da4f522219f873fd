// Package textgen turns generated token ids into the text a user sees, the
// same way for every caller (the server, jamba run and jamba chat): the
// tokenizer's streaming decoder primed with the prompt, token healing of
// the prompt's last token, and stop strings that end generation where the
// earliest of them completes.
//
// The engine works in token ids only; textgen sits between it and the
// caller that shows text.
package textgen

import "strings"

// StopMatcher finds stop strings in text that arrives in pieces. Text that
// might still become the start of a stop string is held back, so a stop
// string is never released, in part or whole, and nothing is released
// twice.
//
// Generation ends where a stop string first completes: among the matches
// the one ending earliest wins, and of those ending at the same byte the
// longest. That point does not depend on how the text was cut into pieces,
// so streamed and non-streamed output agree (see CutAtStop).
type StopMatcher struct {
	// Stops are the stop strings; with none, all text is released at once.
	Stops   []string
	pending string // text received and not yet released
}

// Push adds text and returns what can be released. When a stop string has
// completed it returns the text before it and true; the matcher must not
// be used after that.
func (m *StopMatcher) Push(s string) (string, bool) {
	text, _, found := m.Scan(s)
	return text, found
}

// Scan is Push that also returns the text after the stop string that
// completed (of what was received so far).
func (m *StopMatcher) Scan(s string) (text, rest string, found bool) {
	if len(m.Stops) == 0 {
		return s, "", false
	}
	m.pending += s
	p := m.pending
	start, end := -1, 0
	for _, stop := range m.Stops {
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
	for _, stop := range m.Stops {
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

// Flush releases the text held back once no more will come.
func (m *StopMatcher) Flush() string {
	s := m.pending
	m.pending = ""
	return s
}

// CutAtStop returns text up to where the first stop string completes, and
// whether one did: what a StopMatcher releases for the whole text, however
// it arrives. Of stop strings completing at the same byte the longest
// counts.
func CutAtStop(text string, stops []string) (string, bool) {
	for end := 1; end <= len(text); end++ {
		best := ""
		for _, s := range stops {
			if len(s) > len(best) && strings.HasSuffix(text[:end], s) {
				best = s
			}
		}
		if best != "" {
			return text[:end-len(best)], true
		}
	}
	return text, false
}
