package tokenizer

import (
	"sort"
	"strings"
	"unicode/utf8"
)

// Span is the byte range [Start, End) of a text. An empty span (Start ==
// End) is a cut point: a position that no added token may straddle.
type Span struct {
	Start, End int
}

// EncodeSpans is Encode for a text whose parts listed in plain must be read
// as plain text: an added token (special or not) is not recognized where its
// match would overlap one of the spans, or straddle the position of an empty
// span. Everything else goes through the normal pipeline: the text of a
// span is normalized, pre-tokenized and merged together with the text around
// it, exactly as Encode treats the text between two added tokens. So when
// no added token's text overlaps a span, the ids are those of Encode, and
// when the text of a span holds an added token's text, it becomes the
// ordinary tokens of that text.
//
// Added tokens that are not special and whose text is white space alone
// (some code tokenizers add runs of spaces or tabs) are exempt: they carry
// no markup, so they match inside spans too, as Encode matches them.
//
// This is how a chat prompt is encoded: the template's markup becomes
// special ids while the messages' content stays text (the chat package
// reports the content's place). Spans are clamped to the text; a span with
// Start > End is ignored; spans may overlap and come in any order.
//
// Added tokens matched after normalization (normalized: true) see the spans
// through the normalizer: each span boundary is followed through it, and
// where a normalizer moves text across a boundary (a Strip at the edge of
// the text, a replacement that spans it) none of those tokens is recognized
// in that stretch of text between two recognized tokens.
func (t *Tokenizer) EncodeSpans(text string, addSpecial bool, plain []Span) []int {
	plain = cleanSpans(plain, len(text))
	if len(plain) == 0 {
		return t.Encode(text, addSpecial)
	}
	ids := t.encodeRawPlain(text, plain, nil, nil)
	if addSpecial && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids
}

// FindAddedTokens returns where s holds the text of an added token (special
// or not, exempt tokens aside: see EncodeSpans): one span per occurrence,
// overlapping occurrences included, sorted by Start and then End. It tells
// a chat template renderer which strings need protecting
// (chat.Template.RenderSpans).
//
// An occurrence is reported wherever a token's text appears, whatever its
// single_word, lstrip or rstrip flags and whatever surrounds it. A token
// matched after normalization (normalized: true) is looked for in s and in
// the normalized s; when either holds it, the whole of s is reported, since
// positions in the normalized text need not map back to s.
func (t *Tokenizer) FindAddedTokens(s string) []Span {
	if t.added == nil {
		return nil
	}
	var out []Span
	if m := t.added.raw; m != nil {
		out = m.occurrences(s, out)
	}
	if m := t.added.norm; m != nil && s != "" {
		hit := false
		for k, tok := range m.toks {
			if !m.exempt[k] && strings.Contains(s, tok.content) {
				hit = true
				break
			}
		}
		if !hit {
			ns := s
			if t.normalizer != nil {
				ns = t.normalizer.normalize(s)
			}
			hit = len(m.occurrences(ns, nil)) > 0
		}
		if hit {
			out = append(out, Span{0, len(s)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].End < out[j].End
	})
	return out
}

// occurrences appends every place where one of m's patterns occurs in s,
// exempt tokens left out.
func (m *tokenMatcher) occurrences(s string, out []Span) []Span {
	for i := 0; i < len(s); i++ {
		if !m.first[s[i]] {
			continue
		}
		for _, k := range m.byFirst[s[i]] {
			if p := m.pats[k]; !m.exempt[k] && strings.HasPrefix(s[i:], p) {
				out = append(out, Span{i, i + len(p)})
			}
		}
	}
	return out
}

// forbids reports whether a token matched at [start, end) overlaps sp or,
// for an empty sp, straddles its position. The one test covers both.
func (sp Span) forbids(start, end int) bool {
	return start < sp.End && sp.Start < end
}

// cleanSpans clamps spans to [0, n], drops inverted ones, merges the
// non-empty ones that overlap or touch and drops the cut points that lie
// within or at the edge of a non-empty span. The result is sorted, and both
// Start and End increase along it.
func cleanSpans(spans []Span, n int) []Span {
	if len(spans) == 0 {
		return nil
	}
	var ranges, cuts []Span
	for _, sp := range spans {
		sp.Start = min(max(sp.Start, 0), n)
		sp.End = min(max(sp.End, 0), n)
		switch {
		case sp.Start > sp.End:
		case sp.Start == sp.End:
			cuts = append(cuts, sp)
		default:
			ranges = append(ranges, sp)
		}
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].Start < ranges[j].Start })
	var merged []Span
	for _, r := range ranges {
		if k := len(merged) - 1; k >= 0 && r.Start <= merged[k].End {
			merged[k].End = max(merged[k].End, r.End)
			continue
		}
		merged = append(merged, r)
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i].Start < cuts[j].Start })
	out := make([]Span, 0, len(merged)+len(cuts))
	j := 0
	for _, c := range cuts {
		for j < len(merged) && merged[j].End < c.Start {
			out = append(out, merged[j])
			j++
		}
		if j < len(merged) && merged[j].Start <= c.Start {
			continue // within or at the edge of merged[j]
		}
		if k := len(out) - 1; k >= 0 && out[k] == c {
			continue
		}
		out = append(out, c)
	}
	return append(out, merged[j:]...)
}

// segmentSpans returns the spans of a cleaned list that concern the text
// [start, end), clamped to it and shifted to start at 0. A cut point at an
// edge of the segment concerns no match inside it and is left out.
func segmentSpans(plain []Span, start, end int) []Span {
	var out []Span
	i := sort.Search(len(plain), func(i int) bool { return plain[i].End >= start })
	for ; i < len(plain) && plain[i].Start <= end; i++ {
		sp := plain[i]
		if sp.Start == sp.End {
			if start < sp.Start && sp.Start < end {
				out = append(out, Span{sp.Start - start, sp.Start - start})
			}
			continue
		}
		if sp.End <= start || sp.Start >= end {
			continue
		}
		out = append(out, Span{max(sp.Start, start) - start, min(sp.End, end) - start})
	}
	return out
}

// nextPlain is next where plain (cleaned) forbids matches: it returns the
// leftmost allowed match, the longest allowed one at that place. Exempt
// tokens are allowed everywhere.
func (m *tokenMatcher) nextPlain(s string, from int, plain []Span) (start, end, idx int, ok bool) {
	j := sort.Search(len(plain), func(j int) bool { return plain[j].End > from })
	for i := from; i < len(s); i++ {
		for j < len(plain) && plain[j].End <= i {
			j++
		}
		inside := false // i lies inside a non-empty span
		limit := len(s) // an allowed match ends at or before limit
		if j < len(plain) {
			if plain[j].Start <= i {
				inside = true
				if !m.anyExempt {
					i = plain[j].End - 1
					continue
				}
			} else {
				limit = plain[j].Start
			}
		}
		if !m.first[s[i]] {
			continue
		}
		for _, k := range m.byFirst[s[i]] {
			p := m.pats[k]
			if (m.exempt[k] || !inside && i+len(p) <= limit) && strings.HasPrefix(s[i:], p) {
				return i, i + len(p), k, true
			}
		}
	}
	return 0, 0, 0, false
}

// normalizedSpans follows the spans of a raw segment through the
// normalizer: it normalizes raw with a marker rune at every span boundary
// and reads where the markers land. When the markers do not come through
// unchanged (the normalizer rewrote text around them), the whole segment is
// made plain. norm is the normalized raw.
func (t *Tokenizer) normalizedSpans(raw, norm string, spans []Span) []Span {
	if len(spans) == 0 {
		return nil
	}
	if t.normalizer == nil {
		return spans
	}
	whole := []Span{{0, len(norm)}}
	mark, ok := absentPrivateRune(raw)
	if !ok {
		return whole
	}
	var cuts []int
	for _, sp := range spans {
		cuts = append(cuts, sp.Start, sp.End)
	}
	sort.Ints(cuts)
	var b strings.Builder
	b.Grow(len(raw) + len(cuts)*utf8.RuneLen(mark))
	prev := 0
	for _, c := range cuts {
		b.WriteString(raw[prev:c])
		b.WriteRune(mark)
		prev = c
	}
	b.WriteString(raw[prev:])
	marked := t.normalizer.normalize(b.String())
	pos := make(map[int]int, len(cuts))
	var clean strings.Builder
	clean.Grow(len(norm))
	k := 0
	for len(marked) > 0 {
		i := strings.IndexRune(marked, mark)
		if i < 0 {
			clean.WriteString(marked)
			break
		}
		clean.WriteString(marked[:i])
		if k >= len(cuts) {
			return whole
		}
		pos[cuts[k]] = clean.Len()
		k++
		marked = marked[i+utf8.RuneLen(mark):]
	}
	if k != len(cuts) || clean.String() != norm {
		return whole
	}
	out := make([]Span, len(spans))
	for i, sp := range spans {
		out[i] = Span{pos[sp.Start], pos[sp.End]}
	}
	return cleanSpans(out, len(norm))
}

// absentPrivateRune returns a rune of the Private Use Area that s does not
// contain.
func absentPrivateRune(s string) (rune, bool) {
	const lo, hi = 0xE000, 0xF8FF
	var seen [(hi - lo + 64) / 64]uint64
	for _, r := range s {
		if lo <= r && r <= hi {
			seen[(r-lo)/64] |= 1 << ((r - lo) % 64)
		}
	}
	for r := rune(lo); r <= hi; r++ {
		if seen[(r-lo)/64]&(1<<((r-lo)%64)) == 0 {
			return r, true
		}
	}
	return 0, false
}
