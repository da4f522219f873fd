package chat

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The engine underneath resolves built-in filters before user ones, has a
// fixed set of methods, and has no star arguments in calls. rewriteSource
// closes those gaps with edits to the source before it is compiled, made
// only inside {{ }} and {% %} tags and outside string literals, and never
// adding or removing a newline, so that line numbers in errors stay right:
//
//   - x|name where name is a filter defined here becomes x|__jamba_f_name;
//   - x.name(args) where name is a method defined here becomes
//     x|__jamba_m_name(args) (a filter sits at the same place in the postfix
//     chain as an attribute, so precedence is unchanged);
//   - escapes in string literals that the engine does not decode (\r, \v,
//     \f, \b, \a, octal, \xhh, \uXXXX, \UXXXXXXXX) are replaced by the
//     characters they stand for;
//   - f(a, *b, **c) becomes __jamba_call(f, a, __jamba_star(b),
//     __jamba_kwstar(c)), which unpacks the marked arguments.
const (
	filterPrefix = "__jamba_f_"
	methodPrefix = "__jamba_m_"
	callName     = "__jamba_call"
	starName     = "__jamba_star"
	kwstarName   = "__jamba_kwstar"
)

type edit struct {
	pos, del int
	text     string
}

func rewriteSource(src string) string {
	var edits []edit
	for i := 0; i < len(src); {
		if src[i] != '{' || i+1 >= len(src) {
			i++
			continue
		}
		var closer string
		switch src[i+1] {
		case '{':
			closer = "}}"
		case '%':
			closer = "%}"
		case '#':
			end := strings.Index(src[i+2:], "#}")
			if end < 0 {
				return src // unclosed comment: let the compiler report it
			}
			i += 2 + end + 2
			continue
		default:
			i++
			continue
		}
		start := i + 2
		end := tagEnd(src, start, closer)
		if end < 0 {
			return src
		}
		content := src[start:end]
		if closer == "%}" && stmtWord(content) == "raw" {
			// Skip to the end of the raw block untouched.
			next := rawEnd(src, end+2)
			if next < 0 {
				return src
			}
			i = next
			continue
		}
		for _, e := range rewriteTag(content) {
			e.pos += start
			edits = append(edits, e)
		}
		i = end + 2
	}
	if len(edits) == 0 {
		return src
	}
	sort.SliceStable(edits, func(a, b int) bool { return edits[a].pos < edits[b].pos })
	var b strings.Builder
	last := 0
	for _, e := range edits {
		if e.pos < last {
			continue // overlapping deletions cannot happen; be safe
		}
		b.WriteString(src[last:e.pos])
		b.WriteString(e.text)
		last = e.pos + e.del
	}
	b.WriteString(src[last:])
	return b.String()
}

// tagEnd returns the index of closer that ends the tag whose content starts
// at start, skipping string literals, or -1.
func tagEnd(src string, start int, closer string) int {
	for i := start; i+1 < len(src); i++ {
		switch c := src[i]; {
		case c == '\'' || c == '"':
			for i++; i < len(src) && src[i] != c; i++ {
				if src[i] == '\\' {
					i++
				}
			}
		case c == closer[0] && src[i+1] == closer[1]:
			if i > start && src[i-1] == '-' {
				return i - 1
			}
			return i
		}
	}
	return -1
}

// stmtWord returns the first word of a statement tag's content.
func stmtWord(content string) string {
	s := strings.TrimLeft(content, "-+ \t\r\n")
	n := 0
	for n < len(s) && isNameByte(s[n]) {
		n++
	}
	return s[:n]
}

// rawEnd returns the index just after the {% endraw %} tag that closes a
// raw block whose body starts at i, or -1.
func rawEnd(src string, i int) int {
	for {
		j := strings.Index(src[i:], "{%")
		if j < 0 {
			return -1
		}
		start := i + j + 2
		end := tagEnd(src, start, "%}")
		if end < 0 {
			return -1
		}
		if stmtWord(src[start:end]) == "endraw" {
			return end + 2
		}
		i = start
	}
}

func isNameByte(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

type tkind int

const (
	tName tkind = iota
	tNumber
	tString
	tPunct
)

type token struct {
	kind       tkind
	start, end int
	text       string
}

func lexTag(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(s))
			toks = append(toks, token{tString, i, j, s[i:j]})
			i = j
		case '0' <= c && c <= '9':
			j := i
			for j < len(s) && (isNameByte(s[j]) || s[j] == '.' && j+1 < len(s) && '0' <= s[j+1] && s[j+1] <= '9') {
				j++
			}
			toks = append(toks, token{tNumber, i, j, s[i:j]})
			i = j
		case isNameByte(c):
			j := i
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			toks = append(toks, token{tName, i, j, s[i:j]})
			i = j
		default:
			n := 1
			if i+1 < len(s) {
				switch s[i : i+2] {
				case "**", "//", "==", "!=", "<=", ">=":
					n = 2
				}
			}
			toks = append(toks, token{tPunct, i, i + n, s[i : i+n]})
			i += n
		}
	}
	return toks
}

func rewriteTag(content string) []edit {
	toks := lexTag(content)
	var edits []edit
	isP := func(i int, p string) bool {
		return i >= 0 && i < len(toks) && toks[i].kind == tPunct && toks[i].text == p
	}
	for i, t := range toks {
		switch {
		case t.kind == tString:
			if lit := fixEscapes(t.text); lit != t.text {
				edits = append(edits, edit{t.start, len(t.text), lit})
			}
		case t.kind == tName && isP(i-1, "|") && filters[t.text] != nil:
			edits = append(edits, edit{t.start, 0, filterPrefix})
		case t.kind == tName && isP(i-1, ".") && isP(i+1, "(") && methods[t.text] != nil:
			edits = append(edits, edit{toks[i-1].start, 1, "|"}, edit{t.start, 0, methodPrefix})
		case isP(i, "(") && i > 0 && isCallee(toks[i-1]) && hasStarArg(toks, i):
			edits = append(edits, rewriteStarCall(toks, i)...)
		}
	}
	return edits
}

// isCallee reports whether t can end the expression before a call's "(".
func isCallee(t token) bool {
	switch t.kind {
	case tName:
		switch t.text {
		case "and", "or", "not", "in", "is", "if", "else", "elif", "for", "set", "macro", "call":
			return false
		}
		return true
	case tString:
		return true
	case tPunct:
		return t.text == ")" || t.text == "]"
	}
	return false
}

// match returns the index of the bracket closing the one at i, or -1.
func match(toks []token, i int) int {
	depth := 0
	for j := i; j < len(toks); j++ {
		if toks[j].kind != tPunct {
			continue
		}
		switch toks[j].text {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// matchBack returns the index of the bracket opening the one at i, or -1.
func matchBack(toks []token, i int) int {
	depth := 0
	for j := i; j >= 0; j-- {
		if toks[j].kind != tPunct {
			continue
		}
		switch toks[j].text {
		case ")", "]", "}":
			depth++
		case "(", "[", "{":
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// args splits the call whose "(" is at open into top-level arguments, as
// [start, end) token ranges.
func args(toks []token, open int) (ranges [][2]int, closeIdx int) {
	closeIdx = match(toks, open)
	if closeIdx < 0 {
		return nil, -1
	}
	start := open + 1
	depth := 0
	for j := open + 1; j < closeIdx; j++ {
		if toks[j].kind != tPunct {
			continue
		}
		switch toks[j].text {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
		case ",":
			if depth == 0 {
				ranges = append(ranges, [2]int{start, j})
				start = j + 1
			}
		}
	}
	if start < closeIdx {
		ranges = append(ranges, [2]int{start, closeIdx})
	}
	return ranges, closeIdx
}

func hasStarArg(toks []token, open int) bool {
	ranges, _ := args(toks, open)
	for _, r := range ranges {
		if t := toks[r[0]]; t.kind == tPunct && (t.text == "*" || t.text == "**") {
			return true
		}
	}
	return false
}

// calleeStart returns the index of the first token of the postfix
// expression that ends just before the "(" at open.
func calleeStart(toks []token, open int) int {
	i := open - 1
	for i >= 0 {
		t := toks[i]
		if t.kind == tPunct && (t.text == ")" || t.text == "]") {
			i = matchBack(toks, i)
			if i < 0 {
				return 0
			}
			// A parenthesised atom or a list literal stands alone unless
			// something it is called on or indexed precedes it.
			if i > 0 && isCallee(toks[i-1]) {
				i--
				continue
			}
			return i
		}
		// A name, a string or a number starts the chain unless a dot
		// precedes it.
		if i > 0 && toks[i-1].kind == tPunct && toks[i-1].text == "." {
			i -= 2
			continue
		}
		return i
	}
	return 0
}

func rewriteStarCall(toks []token, open int) []edit {
	ranges, closeIdx := args(toks, open)
	if closeIdx < 0 {
		return nil
	}
	start := calleeStart(toks, open)
	edits := []edit{
		{toks[start].start, 0, callName + "("},
		{toks[open].start, 1, ", "},
	}
	for _, r := range ranges {
		t := toks[r[0]]
		if t.kind != tPunct || (t.text != "*" && t.text != "**") {
			continue
		}
		name := starName
		if t.text == "**" {
			name = kwstarName
		}
		edits = append(edits,
			edit{t.start, len(t.text), name + "("},
			edit{toks[r[1]-1].end, 0, ")"})
	}
	return edits
}

// fixEscapes rewrites a quoted string literal so that the escapes Python
// knows and the engine does not become the characters themselves. The
// engine's own escapes (\n \t \\ \' \") stay, and a decoded character
// that is a quote, a backslash or a newline is written in that form, so
// the literal still lexes the same and keeps its line count.
func fixEscapes(lit string) string {
	if len(lit) < 2 || !strings.ContainsRune(lit, '\\') {
		return lit
	}
	q := lit[0]
	body := lit[1 : len(lit)-1]
	if lit[len(lit)-1] != q {
		return lit // unterminated: leave it to the compiler
	}
	var b strings.Builder
	b.WriteByte(q)
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' || i+1 >= len(body) {
			b.WriteByte(c)
			continue
		}
		e := body[i+1]
		var r rune = -1
		n := 2 // bytes consumed
		switch e {
		case 'r':
			r = '\r'
		case 'v':
			r = '\v'
		case 'f':
			r = '\f'
		case 'b':
			r = '\b'
		case 'a':
			r = '\a'
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i + 1
			for j < len(body) && j < i+4 && body[j] >= '0' && body[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint(body[i+1:j], 8, 32)
			r, n = rune(v), j-i
		case 'x', 'u', 'U':
			size := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+2+size <= len(body) {
				if v, err := strconv.ParseUint(body[i+2:i+2+size], 16, 32); err == nil {
					r, n = rune(v), 2+size
					if !utf8.ValidRune(r) {
						r = utf8.RuneError
					}
				}
			}
		}
		if r < 0 {
			// The engine's own escape or an unknown one, which Python
			// keeps as it is too.
			b.WriteString(body[i : i+2])
			i++
			continue
		}
		switch r {
		case '\\', '\'', '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
		i += n - 1
	}
	b.WriteByte(q)
	return b.String()
}
