package tokenizer

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// finder appends the [start, end) byte ranges of the non-overlapping
// matches of a pattern in s, leftmost first, as Oniguruma's find_iter does.
type finder func(s string, dst [][2]int) [][2]int

// Well-known split patterns that use look-ahead, matched by hand.
const (
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// wsTails are the look-ahead endings handled generically: a pattern P
// followed by one of them is matched with P in Go's regexp plus the
// whitespace rule.
var wsTails = []struct {
	tail   string
	single bool // a trailing \s+ alternative matches a lone space before \S
}{
	{`|\s+(?!\S)|\s+`, true},
	{`|\s+(?!\S)`, false},
}

// compileFinder returns the finder of an Oniguruma pattern, or an error
// naming the pattern when it cannot be matched exactly.
func compileFinder(pat string) (finder, error) {
	switch pat {
	case gpt2Pattern:
		return gpt2Find, nil
	case llama3Pattern:
		return func(s string, dst [][2]int) [][2]int { return llama3Find(s, dst, 3) }, nil
	case qwen2Pattern:
		return func(s string, dst [][2]int) [][2]int { return llama3Find(s, dst, 1) }, nil
	}
	for _, t := range wsTails {
		if head, ok := strings.CutSuffix(pat, t.tail); ok && head != "" {
			re, err := compileRegex(head)
			if err != nil {
				return nil, err
			}
			return wsTailFinder(re, t.single), nil
		}
	}
	re, err := compileRegex(pat)
	if err != nil {
		return nil, err
	}
	return func(s string, dst [][2]int) [][2]int {
		for _, m := range re.FindAllStringIndex(s, -1) {
			dst = append(dst, [2]int{m[0], m[1]})
		}
		return dst
	}, nil
}

// wsTailFinder matches `P|\s+(?!\S)|\s+` (or without the last alternative):
// at each position P is tried first; otherwise a run of whitespace matches,
// less its last character when a non-space follows it.
func wsTailFinder(re *regexp.Regexp, single bool) finder {
	return func(s string, dst [][2]int) [][2]int {
		i := 0
		pm := [2]int{-1, -1} // next match of P at or after i, if known
		for i < len(s) {
			if pm[0] < i {
				m := re.FindStringIndex(s[i:])
				if m == nil {
					pm = [2]int{len(s) + 1, len(s) + 1}
				} else {
					pm = [2]int{i + m[0], i + m[1]}
				}
			}
			// First whitespace at or after i, before P's match.
			w := -1
			for j := i; j < len(s) && j < pm[0]; {
				r, size := utf8.DecodeRuneInString(s[j:])
				if isSpace(r) {
					w = j
					break
				}
				j += size
			}
			if w < 0 {
				if pm[0] > len(s) {
					break
				}
				dst = append(dst, pm)
				if pm[1] == pm[0] {
					// Empty match: step over one character.
					_, size := utf8.DecodeRuneInString(s[pm[1]:])
					i = pm[1] + max(size, 1)
				} else {
					i = pm[1]
				}
				continue
			}
			end, last := w, w
			for end < len(s) {
				r, size := utf8.DecodeRuneInString(s[end:])
				if !isSpace(r) {
					break
				}
				last = end
				end += size
			}
			switch {
			case end == len(s):
				dst = append(dst, [2]int{w, end})
				i = end
			case last > w:
				dst = append(dst, [2]int{w, last})
				i = last
			case single:
				dst = append(dst, [2]int{w, end})
				i = end
			default:
				i = end
			}
		}
		return dst
	}
}

// isSpace is Oniguruma's Unicode \s.
func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || ('\t' <= r && r <= '\r')
	}
	return unicode.IsSpace(r)
}

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

// contraction returns the length of a case-sensitive or insensitive
// contraction ('s 't 're 've 'm 'll 'd) at the start of s, or 0.
func contraction(s string, fold bool) int {
	if len(s) < 2 || s[0] != '\'' {
		return 0
	}
	lower := func(i int) (rune, int) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if fold {
			if r == 0x17F { // long s folds to s
				r = 's'
			} else if r < utf8.RuneSelf {
				r = unicode.ToLower(r)
			}
		}
		return r, size
	}
	r, n := lower(1)
	switch r {
	case 's', 't', 'm', 'd':
		return 1 + n
	case 'r', 'v', 'l':
		want := 'e'
		if r == 'l' {
			want = 'l'
		}
		if 1+n < len(s) {
			r2, n2 := lower(1 + n)
			if r2 == want {
				return 1 + n + n2
			}
		}
	}
	return 0
}

// gpt2Find matches gpt2Pattern.
func gpt2Find(s string, dst [][2]int) [][2]int {
	i := 0
	for i < len(s) {
		if n := contraction(s[i:], false); n > 0 {
			dst = append(dst, [2]int{i, i + n})
			i += n
			continue
		}
		r, _ := utf8.DecodeRuneInString(s[i:])
		j := i
		if r == ' ' && i+1 < len(s) {
			if r2, _ := utf8.DecodeRuneInString(s[i+1:]); !isSpace(r2) {
				j, r = i+1, r2
			}
		}
		switch {
		case isLetter(r):
			j = runWhile(s, j, isLetter)
		case isNumber(r):
			j = runWhile(s, j, isNumber)
		case !isSpace(r):
			j = runWhile(s, j, isOther)
		default:
			// Whitespace run: \s+(?!\S)|\s+.
			end, last := runSpace(s, i)
			if end == len(s) || last == i {
				j = end
			} else {
				j = last
			}
		}
		dst = append(dst, [2]int{i, j})
		i = j
	}
	return dst
}

// llama3Find matches llama3Pattern (maxDigits 3) and qwen2Pattern
// (maxDigits 1).
func llama3Find(s string, dst [][2]int, maxDigits int) [][2]int {
	i := 0
	for i < len(s) {
		if n := contraction(s[i:], true); n > 0 {
			dst = append(dst, [2]int{i, i + n})
			i += n
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if isLetter(r) {
			j := runWhile(s, i, isLetter)
			dst = append(dst, [2]int{i, j})
			i = j
			continue
		}
		if r != '\r' && r != '\n' && !isNumber(r) && i+size < len(s) {
			if r2, _ := utf8.DecodeRuneInString(s[i+size:]); isLetter(r2) {
				j := runWhile(s, i+size, isLetter)
				dst = append(dst, [2]int{i, j})
				i = j
				continue
			}
		}
		// \p{N}{1,maxDigits}
		if isNumber(r) {
			j := i
			for k := 0; k < maxDigits && j < len(s); k++ {
				r2, n2 := utf8.DecodeRuneInString(s[j:])
				if !isNumber(r2) {
					break
				}
				j += n2
			}
			dst = append(dst, [2]int{i, j})
			i = j
			continue
		}
		// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
		j := i
		if r == ' ' && i+1 < len(s) {
			if r2, _ := utf8.DecodeRuneInString(s[i+1:]); isOther(r2) {
				j = i + 1
			}
		}
		if r2, _ := utf8.DecodeRuneInString(s[j:]); isOther(r2) {
			j = runWhile(s, j, isOther)
			for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
				j++
			}
			dst = append(dst, [2]int{i, j})
			i = j
			continue
		}
		// Whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
		end, last := runSpace(s, i)
		nl := -1
		for k := i; k < end; k++ {
			if s[k] == '\r' || s[k] == '\n' {
				nl = k
			}
		}
		switch {
		case nl >= 0:
			j = nl + 1
		case end == len(s) || last == i:
			j = end
		default:
			j = last
		}
		dst = append(dst, [2]int{i, j})
		i = j
	}
	return dst
}

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

func runWhile(s string, i int, f func(rune) bool) int {
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !f(r) {
			break
		}
		i += size
	}
	return i
}

// runSpace returns the end of the whitespace run starting at i and the
// start of its last character.
func runSpace(s string, i int) (end, last int) {
	end, last = i, i
	for end < len(s) {
		r, size := utf8.DecodeRuneInString(s[end:])
		if !isSpace(r) {
			break
		}
		last = end
		end += size
	}
	return end, last
}

// Oniguruma character classes spelled for Go's regexp.
const (
	spaceClass = `\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`
	wordClass  = `\p{L}\p{M}\p{Nd}\p{Pc}`
)

// compileRegex translates an Oniguruma (Ruby syntax) pattern to Go's
// regexp where the translation is exact, and compiles it. Look-around,
// atomic groups, back-references, \b and nested classes are errors.
func compileRegex(pat string) (*regexp.Regexp, error) {
	g, err := translateRegex(pat)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", pat, err)
	}
	re, err := regexp.Compile(g)
	if err != nil {
		return nil, fmt.Errorf("regex %q: not supported: %v", pat, err)
	}
	return re, nil
}

func translateRegex(p string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			if i+1 >= len(p) {
				return "", errors.New("trailing backslash")
			}
			i++
			e := p[i]
			switch e {
			case 's':
				if inClass {
					b.WriteString(spaceClass)
				} else {
					b.WriteString("[" + spaceClass + "]")
				}
			case 'S':
				if inClass {
					return "", errors.New(`\S inside a character class is not supported`)
				}
				b.WriteString("[^" + spaceClass + "]")
			case 'd':
				b.WriteString(`\p{Nd}`)
			case 'D':
				b.WriteString(`\P{Nd}`)
			case 'w':
				if inClass {
					b.WriteString(wordClass)
				} else {
					b.WriteString("[" + wordClass + "]")
				}
			case 'W':
				if inClass {
					return "", errors.New(`\W inside a character class is not supported`)
				}
				b.WriteString("[^" + wordClass + "]")
			case 'h':
				if inClass {
					b.WriteString("0-9a-fA-F")
				} else {
					b.WriteString("[0-9a-fA-F]")
				}
			case 'b', 'B', 'G', 'Z', 'K', 'R', 'X', 'H', 'k', 'g':
				return "", fmt.Errorf(`\%c is not supported`, e)
			case 'u':
				if i+4 >= len(p) {
					return "", errors.New(`bad \u escape`)
				}
				b.WriteString(`\x{` + p[i+1:i+5] + `}`)
				i += 4
			default:
				if e >= '1' && e <= '9' {
					return "", errors.New("back-references are not supported")
				}
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		case inClass:
			switch {
			case c == ']':
				inClass = false
			case c == '[' && !strings.HasPrefix(p[i:], "[:"):
				return "", errors.New("nested character classes are not supported")
			case c == '&' && i+1 < len(p) && p[i+1] == '&':
				return "", errors.New("class intersection is not supported")
			}
			b.WriteByte(c)
		case c == '[':
			inClass = true
			b.WriteByte(c)
			// A ']' right after '[' or '[^' is a literal.
			if i+1 < len(p) && p[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				b.WriteString(`\]`)
				i++
			}
		case c == '(' && strings.HasPrefix(p[i:], "(?"):
			rest := p[i+2:]
			if strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, "!") || strings.HasPrefix(rest, "<=") ||
				strings.HasPrefix(rest, "<!") {
				return "", errors.New("look-around is not supported")
			}
			if strings.HasPrefix(rest, ">") {
				return "", errors.New("atomic groups are not supported")
			}
			b.WriteByte(c)
		case c == '^':
			b.WriteString(`(?m:^)`)
		case c == '$':
			b.WriteString(`(?m:$)`)
		default:
			b.WriteByte(c)
		}
	}
	if inClass {
		return "", errors.New("unterminated character class")
	}
	return b.String(), nil
}
