package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of added_tokens.
type addedToken struct {
	content    string
	id         int
	singleWord bool
	lstrip     bool
	rstrip     bool
	normalized bool
	special    bool
}

// tokenMatcher finds added tokens in text, leftmost first and longest
// among those starting at the same place (Aho-Corasick leftmost-longest).
type tokenMatcher struct {
	first   [256]bool
	byFirst [256][]int // indices into toks, longest pattern first
	toks    []addedToken
	pats    []string

	// exempt marks the tokens that plain spans do not stop (see
	// Tokenizer.EncodeSpans): those that are not special and whose text is
	// white space alone. anyExempt is true when there is one.
	exempt    []bool
	anyExempt bool
}

func newTokenMatcher(toks []addedToken, pats []string) *tokenMatcher {
	m := &tokenMatcher{toks: toks, pats: pats, exempt: make([]bool, len(toks))}
	for i, t := range toks {
		if !t.special && strings.TrimFunc(t.content, unicode.IsSpace) == "" {
			m.exempt[i] = true
			m.anyExempt = true
		}
	}
	for i, p := range pats {
		if p == "" {
			continue
		}
		m.first[p[0]] = true
		m.byFirst[p[0]] = append(m.byFirst[p[0]], i)
	}
	for b := range m.byFirst {
		l := m.byFirst[b]
		sort.SliceStable(l, func(i, j int) bool { return len(pats[l[i]]) > len(pats[l[j]]) })
	}
	return m
}

// next returns the leftmost-longest match at or after from.
func (m *tokenMatcher) next(s string, from int) (start, end, idx int, ok bool) {
	for i := from; i < len(s); i++ {
		if !m.first[s[i]] {
			continue
		}
		for _, k := range m.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], m.pats[k]) {
				return i, i + len(m.pats[k]), k, true
			}
		}
	}
	return 0, 0, 0, false
}

// segment is a part of the input: an added token (id >= 0) or text.
type segment struct {
	text  string
	id    int
	start int  // byte offset in the string that was split
	first bool // text starting at offset 0 of the original input
}

type addedVocab struct {
	raw  *tokenMatcher // tokens with normalized false
	norm *tokenMatcher // tokens with normalized true, patterns normalized
}

func newAddedVocab(toks []addedToken, n normalizer) (*addedVocab, error) {
	var rawT, normT []addedToken
	var rawP, normP []string
	for _, t := range toks {
		if t.normalized {
			p := t.content
			if n != nil {
				p = n.normalize(p)
			}
			normT = append(normT, t)
			normP = append(normP, p)
		} else {
			rawT = append(rawT, t)
			rawP = append(rawP, t.content)
		}
	}
	a := &addedVocab{}
	if len(rawT) > 0 {
		a.raw = newTokenMatcher(rawT, rawP)
	}
	if len(normT) > 0 {
		a.norm = newTokenMatcher(normT, normP)
	}
	return a, nil
}

// splitRaw cuts s at the added tokens that are matched before
// normalization. plain, when not empty, lists the ranges of s where no token
// may match (see Tokenizer.EncodeSpans).
func (a *addedVocab) splitRaw(s string, plain []Span) []segment {
	if a == nil || a.raw == nil {
		return []segment{{text: s, id: -1, start: 0, first: true}}
	}
	return a.raw.split(s, true, plain)
}

// splitNormalized cuts a normalized segment at the added tokens that are
// matched after normalization; plain is as for splitRaw, in the
// coordinates of s.
func (a *addedVocab) splitNormalized(s string, first bool, plain []Span) []segment {
	if a == nil || a.norm == nil {
		return []segment{{text: s, id: -1, start: 0, first: first}}
	}
	return a.norm.split(s, first, plain)
}

// split cuts s into added tokens and the text between them, applying
// single_word, lstrip and rstrip as Hugging Face does. A match that
// plain forbids is not a match (nextPlain).
func (m *tokenMatcher) split(s string, first bool, plain []Span) []segment {
	var segs []segment
	startOffset := 0
	from := 0
	for {
		var start, end, k int
		var ok bool
		if len(plain) == 0 {
			start, end, k, ok = m.next(s, from)
		} else {
			start, end, k, ok = m.nextPlain(s, from, plain)
		}
		if !ok {
			break
		}
		from = end
		tok := m.toks[k]
		stop := end
		if tok.singleWord {
			startSpace := start == 0 || !endsWithWord(s[:start])
			stopSpace := stop == len(s) || !startsWithWord(s[stop:])
			if !startSpace || !stopSpace {
				continue
			}
		}
		if tok.lstrip {
			ns := len(strings.TrimRightFunc(s[:start], unicode.IsSpace))
			start = max(ns, startOffset)
		}
		if tok.rstrip {
			stop += len(s[stop:]) - len(strings.TrimLeftFunc(s[stop:], unicode.IsSpace))
		}
		if startOffset < start {
			segs = append(segs, segment{text: s[startOffset:start], id: -1, start: startOffset, first: first && startOffset == 0})
		}
		segs = append(segs, segment{text: s[start:stop], id: tok.id, start: start})
		startOffset = stop
	}
	if startOffset < len(s) || len(segs) == 0 {
		segs = append(segs, segment{text: s[startOffset:], id: -1, start: startOffset, first: first && startOffset == 0})
	}
	return segs
}

// isWordChar is Unicode \w: alphabetic, marks, decimal digits, connector
// punctuation and the joiners.
func isWordChar(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Nl, r) ||
		unicode.Is(unicode.Other_Alphabetic, r) || r == 0x200C || r == 0x200D
}

func endsWithWord(s string) bool {
	r, size := utf8.DecodeLastRuneInString(s)
	return size > 0 && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, size := utf8.DecodeRuneInString(s)
	return size > 0 && isWordChar(r)
}
