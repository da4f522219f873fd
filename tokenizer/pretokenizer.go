package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// piece is a pre-tokenized part of a normalized segment.
type piece struct {
	s     string
	first bool // starts at offset 0 of the original input
}

// preTokenizer cuts pieces into smaller pieces.
type preTokenizer interface {
	split(in []piece) []piece
}

// behavior is a SplitDelimiterBehavior.
type behavior int

const (
	removed behavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

func parseBehavior(s string) (behavior, error) {
	switch s {
	case "Removed":
		return removed, nil
	case "Isolated":
		return isolated, nil
	case "MergedWithPrevious":
		return mergedWithPrevious, nil
	case "MergedWithNext":
		return mergedWithNext, nil
	case "Contiguous":
		return contiguous, nil
	}
	return 0, fmt.Errorf("field behavior: unknown value %q", s)
}

// splitByMatches cuts p at the given matches with Hugging Face's
// NormalizedString::split semantics and appends the non-empty parts.
func splitByMatches(p piece, matches [][2]int, b behavior, invert bool, out []piece) []piece {
	type part struct {
		start, end int
		match      bool
	}
	s := p.s
	parts := make([]part, 0, 2*len(matches)+1)
	prev := 0
	for _, m := range matches {
		if prev != m[0] {
			parts = append(parts, part{prev, m[0], false})
		}
		parts = append(parts, part{m[0], m[1], true})
		prev = m[1]
	}
	if prev != len(s) {
		parts = append(parts, part{prev, len(s), false})
	}
	if invert {
		for i := range parts {
			parts[i].match = !parts[i].match
		}
	}
	type cut struct {
		start, end int
		remove     bool
	}
	var cuts []cut
	switch b {
	case isolated:
		for _, q := range parts {
			cuts = append(cuts, cut{q.start, q.end, false})
		}
	case removed:
		for _, q := range parts {
			cuts = append(cuts, cut{q.start, q.end, q.match})
		}
	case contiguous:
		prevMatch := false
		for _, q := range parts {
			if q.match == prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].end = q.end
			} else {
				cuts = append(cuts, cut{q.start, q.end, false})
			}
			prevMatch = q.match
		}
	case mergedWithPrevious:
		prevMatch := false
		for _, q := range parts {
			if q.match && !prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].end = q.end
			} else {
				cuts = append(cuts, cut{q.start, q.end, false})
			}
			prevMatch = q.match
		}
	case mergedWithNext:
		prevMatch := false
		for i := len(parts) - 1; i >= 0; i-- {
			q := parts[i]
			if q.match && !prevMatch && len(cuts) > 0 {
				cuts[len(cuts)-1].start = q.start
			} else {
				cuts = append(cuts, cut{q.start, q.end, false})
			}
			prevMatch = q.match
		}
		for i, j := 0, len(cuts)-1; i < j; i, j = i+1, j-1 {
			cuts[i], cuts[j] = cuts[j], cuts[i]
		}
	}
	for _, c := range cuts {
		if c.remove || c.end <= c.start {
			continue
		}
		out = append(out, piece{s[c.start:c.end], p.first && c.start == 0})
	}
	return out
}

// runeMatches returns one match per character for which f is true.
func runeMatches(s string, f func(rune) bool, dst [][2]int) [][2]int {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if f(r) {
			dst = append(dst, [2]int{i, i + size})
		}
		i += size
	}
	return dst
}

// funcSplit splits on characters selected by a predicate.
type funcSplit struct {
	f      func(rune) bool
	b      behavior
	invert bool
}

func (f *funcSplit) split(in []piece) []piece {
	out := make([]piece, 0, len(in))
	var m [][2]int
	for _, p := range in {
		m = runeMatches(p.s, f.f, m[:0])
		out = splitByMatches(p, m, f.b, f.invert, out)
	}
	return out
}

// patternSplit is the Split pre-tokenizer.
type patternSplit struct {
	find   finder
	b      behavior
	invert bool
	name   string // llama.cpp's pre-tokenizer name of a well-known pattern, or ""
}

func (ps *patternSplit) split(in []piece) []piece {
	out := make([]piece, 0, len(in))
	var m [][2]int
	for _, p := range in {
		m = ps.find(p.s, m[:0])
		if ps.b == isolated && !ps.invert {
			out = isolatedSplit(p, m, out)
			continue
		}
		out = splitByMatches(p, m, ps.b, ps.invert, out)
	}
	return out
}

// isolatedSplit is splitByMatches with the Isolated behavior, without
// intermediate allocations.
func isolatedSplit(p piece, m [][2]int, out []piece) []piece {
	prev := 0
	s := p.s
	for _, r := range m {
		if prev < r[0] {
			out = append(out, piece{s[prev:r[0]], p.first && prev == 0})
		}
		if r[0] < r[1] {
			out = append(out, piece{s[r[0]:r[1]], p.first && r[0] == 0})
		}
		prev = r[1]
	}
	if prev < len(s) {
		out = append(out, piece{s[prev:], p.first && prev == 0})
	}
	return out
}

// metaspacePre is the Metaspace pre-tokenizer.
type metaspacePre struct {
	repl   rune
	scheme string // "always", "first" or "never"
	split_ bool
}

func (m *metaspacePre) split(in []piece) []piece {
	rs := string(m.repl)
	out := make([]piece, 0, len(in))
	var matches [][2]int
	for _, p := range in {
		s := strings.ReplaceAll(p.s, " ", rs)
		if !strings.HasPrefix(s, rs) && (m.scheme == "always" || (m.scheme == "first" && p.first)) {
			s = rs + s
		}
		np := piece{s, p.first}
		if !m.split_ {
			if s != "" {
				out = append(out, np)
			}
			continue
		}
		matches = runeMatches(s, func(r rune) bool { return r == m.repl }, matches[:0])
		out = splitByMatches(np, matches, mergedWithNext, false, out)
	}
	return out
}

// byteLevelPre is the ByteLevel pre-tokenizer.
type byteLevelPre struct {
	addPrefixSpace bool
	useRegex       bool
	// mapInModel defers the byte-to-character mapping to the model (set
	// when ByteLevel is the last pre-tokenizer step).
	mapInModel bool
}

func (bl *byteLevelPre) split(in []piece) []piece {
	out := in
	if bl.addPrefixSpace {
		out = make([]piece, 0, len(in))
		for _, p := range in {
			if !strings.HasPrefix(p.s, " ") {
				p.s = " " + p.s
			}
			out = append(out, p)
		}
	}
	if bl.useRegex {
		var m [][2]int
		res := make([]piece, 0, len(out))
		for _, p := range out {
			m = gpt2Find(p.s, m[:0])
			res = isolatedSplit(p, m, res)
		}
		out = res
	}
	if !bl.mapInModel {
		mapped := make([]piece, len(out))
		for i, p := range out {
			mapped[i] = piece{byteLevelString(p.s), p.first}
		}
		out = mapped
	}
	return out
}

// whitespacePre is the Whitespace pre-tokenizer: \w+|[^\w\s]+.
type whitespacePre struct{}

func (whitespacePre) split(in []piece) []piece {
	var out []piece
	for _, p := range in {
		s := p.s
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			if unicode.IsSpace(r) {
				i += size
				continue
			}
			word := isWordChar(r)
			j := i + size
			for j < len(s) {
				r2, n2 := utf8.DecodeRuneInString(s[j:])
				if unicode.IsSpace(r2) || isWordChar(r2) != word {
					break
				}
				j += n2
			}
			out = append(out, piece{s[i:j], p.first && i == 0})
			i = j
		}
	}
	return out
}

// isPunct is ASCII punctuation or a Unicode punctuation character.
func isPunct(r rune) bool {
	if r < utf8.RuneSelf {
		return ('!' <= r && r <= '/') || (':' <= r && r <= '@') || ('[' <= r && r <= '`') || ('{' <= r && r <= '~')
	}
	return unicode.IsPunct(r)
}

func parsePreTokenizer(raw json.RawMessage) ([]preTokenizer, error) {
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var j struct {
			Pretokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Sequence: %v", err)
		}
		var steps []preTokenizer
		for i, r := range j.Pretokenizers {
			s, err := parsePreTokenizer(r)
			if err != nil {
				return nil, fmt.Errorf("type Sequence.pretokenizers[%d]: %w", i, err)
			}
			steps = append(steps, s...)
		}
		return steps, nil
	case "Metaspace":
		var j struct {
			Replacement    *string `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
			Split          *bool   `json:"split"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Metaspace: %v", err)
		}
		m, err := metaspaceConfig(j.Replacement, j.PrependScheme, j.AddPrefixSpace)
		if err != nil {
			return nil, fmt.Errorf("type Metaspace: %w", err)
		}
		p := &metaspacePre{repl: m.repl, scheme: m.scheme, split_: true}
		if j.Split != nil {
			p.split_ = *j.Split
		}
		return []preTokenizer{p}, nil
	case "Split":
		var j struct {
			Pattern  patternJSON `json:"pattern"`
			Behavior string      `json:"behavior"`
			Invert   bool        `json:"invert"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Split: %v", err)
		}
		b, err := parseBehavior(j.Behavior)
		if err != nil {
			return nil, fmt.Errorf("type Split: %w", err)
		}
		ps := &patternSplit{b: b, invert: j.Invert}
		switch {
		case j.Pattern.String != nil:
			lit := *j.Pattern.String
			ps.find = func(s string, dst [][2]int) [][2]int {
				if lit == "" {
					return dst
				}
				for i := 0; i < len(s); {
					k := strings.Index(s[i:], lit)
					if k < 0 {
						break
					}
					dst = append(dst, [2]int{i + k, i + k + len(lit)})
					i += k + len(lit)
				}
				return dst
			}
		case j.Pattern.Regex != nil:
			f, err := compileFinder(*j.Pattern.Regex)
			if err != nil {
				return nil, fmt.Errorf("type Split: field pattern: %w", err)
			}
			ps.find = f
			ps.name = map[string]string{gpt2Pattern: "gpt-2", llama3Pattern: "llama-bpe", qwen2Pattern: "qwen2"}[*j.Pattern.Regex]
		default:
			return nil, errors.New("type Split: field pattern: want String or Regex")
		}
		return []preTokenizer{ps}, nil
	case "ByteLevel":
		var j struct {
			AddPrefixSpace *bool `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("ByteLevel: %v", err)
		}
		bl := &byteLevelPre{addPrefixSpace: true, useRegex: true}
		if j.AddPrefixSpace != nil {
			bl.addPrefixSpace = *j.AddPrefixSpace
		}
		if j.UseRegex != nil {
			bl.useRegex = *j.UseRegex
		}
		return []preTokenizer{bl}, nil
	case "Whitespace":
		return []preTokenizer{whitespacePre{}}, nil
	case "WhitespaceSplit":
		return []preTokenizer{&funcSplit{f: unicode.IsSpace, b: removed}}, nil
	case "Digits":
		var j struct {
			IndividualDigits bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Digits: %v", err)
		}
		b := contiguous
		if j.IndividualDigits {
			b = isolated
		}
		return []preTokenizer{&funcSplit{f: unicode.IsNumber, b: b}}, nil
	case "Punctuation":
		var j struct {
			Behavior *string `json:"behavior"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Punctuation: %v", err)
		}
		b := isolated
		if j.Behavior != nil {
			if b, err = parseBehavior(*j.Behavior); err != nil {
				return nil, fmt.Errorf("type Punctuation: %w", err)
			}
		}
		return []preTokenizer{&funcSplit{f: isPunct, b: b}}, nil
	case "BertPreTokenizer":
		return []preTokenizer{
			&funcSplit{f: unicode.IsSpace, b: removed},
			&funcSplit{f: isPunct, b: isolated},
		}, nil
	case "CharDelimiterSplit":
		var j struct {
			Delimiter string `json:"delimiter"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("CharDelimiterSplit: %v", err)
		}
		if utf8.RuneCountInString(j.Delimiter) != 1 {
			return nil, errors.New("CharDelimiterSplit: field delimiter: want one character")
		}
		d, _ := utf8.DecodeRuneInString(j.Delimiter)
		return []preTokenizer{&funcSplit{f: func(r rune) bool { return r == d }, b: removed}}, nil
	}
	return nil, fmt.Errorf("unsupported pre-tokenizer type %q", typ)
}

type metaspaceCfg struct {
	repl   rune
	scheme string
}

// metaspaceConfig reads the shared fields of the Metaspace pre-tokenizer
// and decoder, including the legacy add_prefix_space.
func metaspaceConfig(repl, scheme *string, addPrefix *bool) (metaspaceCfg, error) {
	c := metaspaceCfg{repl: '▁', scheme: "always"}
	if repl != nil {
		if utf8.RuneCountInString(*repl) != 1 {
			return c, fmt.Errorf("field replacement: want one character, have %q", *repl)
		}
		c.repl, _ = utf8.DecodeRuneInString(*repl)
	}
	if addPrefix != nil && !*addPrefix {
		c.scheme = "never"
	}
	if scheme != nil {
		switch *scheme {
		case "always", "first", "never":
			c.scheme = *scheme
		default:
			return c, fmt.Errorf("field prepend_scheme: unknown value %q", *scheme)
		}
	}
	return c, nil
}
