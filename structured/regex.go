package structured

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
)

// dfa is a deterministic automaton over the bytes a pattern-constrained
// string may hold: printable ASCII without '"' and '\\', so that the JSON
// text of the string is the string itself. It recognises the strings in
// which the pattern matches somewhere (JSON Schema patterns are not
// anchored unless they say so with ^ and $). Every transition leads to a
// live state (one from which an accepted string can still be reached), so
// a generated string can always be finished.
type dfa struct {
	next   [][128]int32 // -1: the byte is not allowed
	accept []bool       // a string may end here
	dist   []int32      // fewest bytes to an accepting state
}

// maxDFAStates bounds the automaton of one pattern.
const maxDFAStates = 2000

// patternByte reports whether c may appear in a pattern-constrained string.
func patternByte(c int) bool { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' }

// compilePattern builds the automaton of an ECMA-262-style pattern in the
// subset Go's regexp/syntax parses: literals, classes, ., groups,
// alternation, repetition (*, +, ?, {m,n}), and ^ and $ at the text's ends.
// Word boundaries and multi-line anchors are refused.
func compilePattern(pat string) (*dfa, error) {
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("pattern %q does not parse: %v", pat, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %v", pat, err)
	}
	for _, in := range prog.Inst {
		if in.Op == syntax.InstEmptyWidth && syntax.EmptyOp(in.Arg)&^(syntax.EmptyBeginText|syntax.EmptyEndText) != 0 {
			return nil, fmt.Errorf("pattern %q: word boundaries and line anchors are not supported", pat)
		}
	}
	b := &dfaBuilder{prog: prog, ids: map[string]int32{}}
	start, err := b.state(b.closure([]uint32{uint32(prog.Start)}, true))
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(b.sets); i++ {
		set := b.sets[i]
		for c := range 128 {
			if !patternByte(c) {
				continue
			}
			var moved []uint32
			if set.matched {
				moved = nil
			} else {
				for _, pc := range set.pcs {
					in := &prog.Inst[pc]
					switch in.Op {
					case syntax.InstRune, syntax.InstRune1:
						if in.MatchRune(rune(c)) {
							moved = append(moved, in.Out)
						}
					case syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
						moved = append(moved, in.Out)
					}
				}
			}
			var ns nfaSet
			if set.matched {
				ns = nfaSet{matched: true}
			} else {
				// Unanchored: a match may start at every position.
				ns = b.closure(append(moved, uint32(prog.Start)), false)
			}
			id, err := b.state(ns)
			if err != nil {
				return nil, fmt.Errorf("pattern %q: %v", pat, err)
			}
			b.next[i][c] = id
		}
	}
	d := &dfa{next: b.next, accept: make([]bool, len(b.sets)), dist: make([]int32, len(b.sets))}
	for i, s := range b.sets {
		d.accept[i] = s.matched || s.endMatch
	}
	// Fewest bytes to acceptance, by relaxation (the automaton is small).
	const inf = int32(1 << 30)
	for i := range d.dist {
		d.dist[i] = inf
		if d.accept[i] {
			d.dist[i] = 0
		}
	}
	for changed := true; changed; {
		changed = false
		for i := range d.next {
			for _, j := range d.next[i] {
				if j >= 0 && d.dist[j] != inf && d.dist[j]+1 < d.dist[i] {
					d.dist[i] = d.dist[j] + 1
					changed = true
				}
			}
		}
	}
	for i := range d.next {
		for c, j := range d.next[i] {
			if j >= 0 && d.dist[j] == inf {
				d.next[i][c] = -1
			}
		}
	}
	if start != 0 || d.dist[0] == inf {
		return nil, fmt.Errorf("pattern %q matches no string of printable ASCII characters other than '\"' and '\\'", pat)
	}
	return d, nil
}

// nfaSet is a DFA state: the instructions waiting for a byte, and whether
// a match was found (every continuation is then accepted) or is found if
// the text ends here.
type nfaSet struct {
	pcs      []uint32
	matched  bool
	endMatch bool
}

type dfaBuilder struct {
	prog *syntax.Prog
	ids  map[string]int32
	sets []nfaSet
	next [][128]int32
}

func (b *dfaBuilder) state(s nfaSet) (int32, error) {
	var key strings.Builder
	if s.matched {
		key.WriteString("M")
	} else {
		fmt.Fprint(&key, s.endMatch, s.pcs)
	}
	if id, ok := b.ids[key.String()]; ok {
		return id, nil
	}
	if len(b.sets) >= maxDFAStates {
		return 0, fmt.Errorf("the pattern needs more than %d automaton states", maxDFAStates)
	}
	id := int32(len(b.sets))
	b.ids[key.String()] = id
	b.sets = append(b.sets, s)
	var row [128]int32
	for i := range row {
		row[i] = -1
	}
	b.next = append(b.next, row)
	return id, nil
}

// closure follows the empty transitions from pcs. begin says whether this
// is the start of the text.
func (b *dfaBuilder) closure(pcs []uint32, begin bool) nfaSet {
	var s nfaSet
	seen := map[uint32]bool{}
	var visit func(pc uint32, atEnd bool)
	visit = func(pc uint32, atEnd bool) {
		if seen[pc] && !atEnd {
			return
		}
		if !atEnd {
			seen[pc] = true
		}
		in := &b.prog.Inst[pc]
		switch in.Op {
		case syntax.InstMatch:
			if atEnd {
				s.endMatch = true
			} else {
				s.matched = true
			}
		case syntax.InstAlt, syntax.InstAltMatch:
			visit(in.Out, atEnd)
			visit(in.Arg, atEnd)
		case syntax.InstCapture, syntax.InstNop:
			visit(in.Out, atEnd)
		case syntax.InstEmptyWidth:
			op := syntax.EmptyOp(in.Arg)
			if op&syntax.EmptyBeginText != 0 && !begin {
				return
			}
			if op&syntax.EmptyEndText != 0 {
				if !atEnd {
					// Satisfied only if the text ends here.
					b.endClosure(in.Out, begin, &s)
				} else {
					visit(in.Out, atEnd)
				}
				return
			}
			visit(in.Out, atEnd)
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			if !atEnd {
				s.pcs = append(s.pcs, pc)
			}
		}
	}
	for _, pc := range pcs {
		visit(pc, false)
	}
	slices.Sort(s.pcs)
	s.pcs = slices.Compact(s.pcs)
	if s.matched {
		return nfaSet{matched: true}
	}
	return s
}

// endClosure follows the empty transitions from pc with the text ending
// here, setting s.endMatch if a match is reached.
func (b *dfaBuilder) endClosure(pc uint32, begin bool, s *nfaSet) {
	seen := map[uint32]bool{}
	var visit func(pc uint32)
	visit = func(pc uint32) {
		if seen[pc] {
			return
		}
		seen[pc] = true
		in := &b.prog.Inst[pc]
		switch in.Op {
		case syntax.InstMatch:
			s.endMatch = true
		case syntax.InstAlt, syntax.InstAltMatch:
			visit(in.Out)
			visit(in.Arg)
		case syntax.InstCapture, syntax.InstNop:
			visit(in.Out)
		case syntax.InstEmptyWidth:
			op := syntax.EmptyOp(in.Arg)
			if op&syntax.EmptyBeginText != 0 && !begin {
				return
			}
			visit(in.Out)
		}
	}
	visit(pc)
}

// Built-in formats, as patterns whose every match is a valid value of the
// format. Dates stop at the 28th day of a month, so no calendar check is
// needed; times and date-times follow RFC 3339 with an offset.
var formatPatterns = map[string]string{
	"date":      `^` + datePat + `$`,
	"time":      `^` + timePat + `$`,
	"date-time": `^` + datePat + `T` + timePat + `$`,
	"uuid":      `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`,
	"email":     `^[a-z0-9]{1,16}([._+-][a-z0-9]{1,16}){0,2}@[a-z0-9]{1,20}(-[a-z0-9]{1,20})?(\.[a-z0-9]{1,20}(-[a-z0-9]{1,20})?){1,3}$`,
	"ipv4":      `^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$`,
}

const (
	datePat = `[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])`
	timePat = `([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])`
)
