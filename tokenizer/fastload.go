package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Loading a large tokenizer.json (Gemma 3's: 262,144 tokens, ~500,000
// merges, 33 MB) through encoding/json costs a reflective decode and a
// string per vocabulary entry and per merge, and three passes over the
// whole file (the document, the model object, then the vocabulary). The
// fast path here scans the document once: the small members go through
// encoding/json as before, while the vocabulary and the merges are read
// straight from the bytes, tokens as substrings of one copy of the
// vocabulary's text and merges looked up without a string at all.
//
// The fast path accepts only what it is sure to read exactly as
// encoding/json does: member names spelled exactly ("model", "vocab",
// "merges"; encoding/json also matches other cases), ids written as plain
// integers, merges all of one form. On anything else, including every
// syntax error, it steps aside and the encoding/json path (the reference,
// compared in tests) loads the file or reports the error.

// errSlowPath makes the loader use the encoding/json path.
var errSlowPath = errors.New("not handled by the fast path")

// scanner walks a JSON document, checking its syntax.
type scanner struct {
	d []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.d) {
		switch s.d[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string at s.i. It returns its contents as written (without
// the quotes) and whether it is plain: no escape, no control character,
// valid UTF-8, so that its bytes are its value.
func (s *scanner) str() (raw []byte, plain, ok bool) {
	if s.i >= len(s.d) || s.d[s.i] != '"' {
		return nil, false, false
	}
	start := s.i + 1
	plain = true
	ascii := true
	for j := start; j < len(s.d); j++ {
		c := s.d[j]
		switch {
		case c == '"':
			s.i = j + 1
			raw = s.d[start:j]
			if !ascii && plain && !utf8.Valid(raw) {
				plain = false // encoding/json replaces bad bytes with U+FFFD
			}
			return raw, plain, true
		case c == '\\':
			plain = false
			j++
			if j >= len(s.d) {
				return nil, false, false
			}
			switch s.d[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.d) {
					return nil, false, false
				}
				for k := 1; k <= 4; k++ {
					if !isHexDigit(s.d[j+k]) {
						return nil, false, false
					}
				}
				j += 4
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false, false
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// value skips one value, checking its syntax.
func (s *scanner) value(depth int) bool {
	if depth > 10000 {
		return false
	}
	s.ws()
	if s.i >= len(s.d) {
		return false
	}
	switch c := s.d[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '{':
		s.i++
		s.ws()
		if s.i < len(s.d) && s.d[s.i] == '}' {
			s.i++
			return true
		}
		for {
			s.ws()
			if _, _, ok := s.str(); !ok {
				return false
			}
			s.ws()
			if s.i >= len(s.d) || s.d[s.i] != ':' {
				return false
			}
			s.i++
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.i >= len(s.d) {
				return false
			}
			if s.d[s.i] == '}' {
				s.i++
				return true
			}
			if s.d[s.i] != ',' {
				return false
			}
			s.i++
		}
	case c == '[':
		s.i++
		s.ws()
		if s.i < len(s.d) && s.d[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.i >= len(s.d) {
				return false
			}
			if s.d[s.i] == ']' {
				s.i++
				return true
			}
			if s.d[s.i] != ',' {
				return false
			}
			s.i++
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	default:
		return s.number()
	}
}

func (s *scanner) lit(w string) bool {
	if !bytes.HasPrefix(s.d[s.i:], []byte(w)) {
		return false
	}
	s.i += len(w)
	return true
}

// number skips a number of JSON's grammar.
func (s *scanner) number() bool {
	d, i := s.d, s.i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return false
		}
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return false
		}
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	}
	s.i = i
	return true
}

// end checks that only white space follows.
func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.d) {
		return errSlowPath
	}
	return nil
}

// object reads the object at s.i, calling fn for each member after its
// name and colon (and white space); fn reads the value. A name with an
// escape makes it step aside. name is without quotes, nameRaw with them.
func (s *scanner) object(fn func(name string, nameRaw []byte) error) error {
	s.ws()
	if s.i >= len(s.d) || s.d[s.i] != '{' {
		return errSlowPath
	}
	s.i++
	s.ws()
	if s.i < len(s.d) && s.d[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		start := s.i
		name, plain, ok := s.str()
		if !ok || !plain {
			return errSlowPath
		}
		nameRaw := s.d[start:s.i]
		s.ws()
		if s.i >= len(s.d) || s.d[s.i] != ':' {
			return errSlowPath
		}
		s.i++
		s.ws()
		if err := fn(string(name), nameRaw); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.d) {
			return errSlowPath
		}
		if s.d[s.i] == '}' {
			s.i++
			return nil
		}
		if s.d[s.i] != ',' {
			return errSlowPath
		}
		s.i++
	}
}

// keep skips the value at s.i, checking its syntax, and appends the member
// to the object text rest (for encoding/json).
func (s *scanner) keep(rest, nameRaw []byte) ([]byte, error) {
	start := s.i
	if !s.value(0) {
		return rest, errSlowPath
	}
	if len(rest) > 1 {
		rest = append(rest, ',')
	}
	rest = append(append(rest, nameRaw...), ':')
	return append(rest, s.d[start:s.i]...), nil
}

// fastLoad reads a tokenizer.json in one pass: the model by model, the
// other members by encoding/json.
func fastLoad(data []byte) (fileJSON, *bpe, error) {
	var f fileJSON
	var m *bpe
	s := &scanner{d: data}
	rest := []byte{'{'}
	err := s.object(func(name string, nameRaw []byte) error {
		var err error
		switch {
		case name == "model":
			if m != nil {
				return errSlowPath // repeated: encoding/json keeps the last
			}
			m, err = s.model()
		case strings.EqualFold(name, "model"):
			return errSlowPath
		default:
			rest, err = s.keep(rest, nameRaw)
		}
		return err
	})
	if err != nil {
		return f, nil, err
	}
	if err := s.end(); err != nil || m == nil {
		return f, nil, errSlowPath
	}
	if err := json.Unmarshal(append(rest, '}'), &f); err != nil {
		return f, nil, errSlowPath
	}
	return f, m, nil
}

// model reads the model object at s.i as parseModel does. The vocabulary
// must come before the merges, and the merges last, as Hugging Face writes
// them (the merges need the options and the vocabulary).
func (s *scanner) model() (*bpe, error) {
	rest := []byte{'{'}
	var vocab map[string]int
	var m *bpe
	err := s.object(func(name string, nameRaw []byte) error {
		if m != nil {
			return errSlowPath // something after the merges
		}
		var err error
		switch {
		case name == "vocab":
			if vocab != nil {
				return errSlowPath
			}
			vocab, err = s.vocab()
			return err
		case name == "merges":
			if vocab == nil {
				return errSlowPath
			}
			var j bpeJSON
			if err := json.Unmarshal(append(rest, '}'), &j); err != nil {
				return errSlowPath
			}
			j.Merges = json.RawMessage("[]") // present; newBPE only asks that
			mm, err := newBPE(&j)
			if err != nil {
				return errSlowPath
			}
			mm.vocab = vocab
			if err := mm.indexVocab(j.UnkToken); err != nil {
				return errSlowPath
			}
			if err := mm.fastMerges(s); err != nil {
				return errSlowPath
			}
			m = mm
			return nil
		case strings.EqualFold(name, "vocab") || strings.EqualFold(name, "merges"):
			return errSlowPath
		}
		rest, err = s.keep(rest, nameRaw)
		return err
	})
	if err != nil || m == nil {
		return nil, errSlowPath
	}
	return m, nil
}

// skipObject returns the end of the object or array at i, tracking only
// strings and nesting (the reader that follows checks the syntax), or -1.
func skipObject(d []byte, i int) int {
	depth := 0
	for i < len(d) {
		switch d[i] {
		case '"':
			i++
			for {
				j := bytes.IndexByte(d[i:], '"')
				if j < 0 {
					return -1
				}
				i += j
				bs := 0 // backslashes before the quote
				for k := i - 1; k >= 0 && d[k] == '\\'; k-- {
					bs++
				}
				i++
				if bs%2 == 0 {
					break
				}
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return -1
}

// vocab reads {"token": id, ...} at s.i. Tokens are substrings of one copy
// of the object's text; only a token with an escape gets its own string. A
// repeated token makes it step aside (encoding/json keeps the last id, and
// the checks of indexVocab must see only that one).
func (s *scanner) vocab() (map[string]int, error) {
	base := s.i
	if base >= len(s.d) || s.d[base] != '{' {
		return nil, errSlowPath
	}
	end := skipObject(s.d, base)
	if end < 0 {
		return nil, errSlowPath
	}
	raw := s.d[base:end]
	text := string(raw) // the one copy the tokens point into
	vocab := make(map[string]int, bytes.Count(raw, []byte{':'}))
	type escEntry struct{ from, to, id int }
	var esc []byte
	var escaped []escEntry
	s.i++
	s.ws()
	if s.i < len(s.d) && s.d[s.i] == '}' {
		s.i++
		return vocab, nil
	}
	for {
		s.ws()
		start := s.i
		tokRaw, plain, ok := s.str()
		if !ok {
			return nil, errSlowPath
		}
		s.ws()
		if s.i >= len(s.d) || s.d[s.i] != ':' {
			return nil, errSlowPath
		}
		s.i++
		s.ws()
		id, ok := s.smallInt()
		if !ok {
			return nil, errSlowPath
		}
		if plain {
			off := start + 1 - base
			n := len(vocab)
			vocab[text[off:off+len(tokRaw)]] = id
			if len(vocab) == n {
				return nil, errSlowPath
			}
		} else {
			// Escaped tokens are decoded into esc and become strings
			// at the end, all in one.
			from := len(esc)
			if esc, ok = unescape(esc, tokRaw); !ok {
				return nil, errSlowPath
			}
			escaped = append(escaped, escEntry{from, len(esc), id})
		}
		s.ws()
		if s.i >= len(s.d) {
			return nil, errSlowPath
		}
		if s.d[s.i] == '}' {
			s.i++
			escText := string(esc)
			for _, e := range escaped {
				n := len(vocab)
				vocab[escText[e.from:e.to]] = e.id
				if len(vocab) == n {
					return nil, errSlowPath
				}
			}
			return vocab, nil
		}
		if s.d[s.i] != ',' {
			return nil, errSlowPath
		}
		s.i++
	}
}

// smallInt reads an integer of up to 9 digits, written as JSON writes it
// (no leading zero, no fraction or exponent), possibly negative.
func (s *scanner) smallInt() (int, bool) {
	d, i := s.d, s.i
	neg := false
	if i < len(d) && d[i] == '-' {
		neg = true
		i++
	}
	start := i
	v := 0
	for i < len(d) && '0' <= d[i] && d[i] <= '9' {
		v = v*10 + int(d[i]-'0')
		i++
	}
	n := i - start
	if n == 0 || n > 9 || (n > 1 && d[start] == '0') {
		return 0, false
	}
	if i < len(d) && (d[i] == '.' || d[i] == 'e' || d[i] == 'E') {
		return 0, false
	}
	s.i = i
	if neg {
		v = -v
	}
	return v, true
}

// fastMerges reads ["a b", ...] or [["a", "b"], ...] at s.i and records
// each merge as addMerge does. The merges are read first, then resolved
// against the vocabulary on several goroutines (lookups in a map of
// hundreds of thousands of tokens are most of the time), then recorded
// in order.
func (m *bpe) fastMerges(s *scanner) error {
	raw := s.d
	m.merges = map[uint64]mergeVal{}
	if s.lit("null") {
		return nil
	}
	if s.i >= len(raw) || raw[s.i] != '[' {
		return errSlowPath
	}
	s.i++
	s.ws()
	if s.i < len(raw) && raw[s.i] == ']' {
		s.i++
		return nil
	}
	pairs := s.i < len(raw) && raw[s.i] == '['
	if len(raw) >= 1<<31 {
		return errSlowPath
	}
	// a and b of each merge, as places in the document or, for escaped
	// text, in esc (marked by the top bit of n).
	type span struct{ off, n uint32 }
	const inEsc = 1 << 31
	var list [][2]span
	var esc, sa []byte
	str := func() (span, bool) {
		start := s.i
		v, next, plain, ok := s.strValue(sa)
		sa = next
		if !ok {
			return span{}, false
		}
		if plain {
			return span{uint32(start + 1), uint32(len(v))}, true
		}
		off := len(esc)
		esc = append(esc, v...)
		return span{uint32(off), uint32(len(v)) | inEsc}, true
	}
	for {
		s.ws()
		var a, b span
		var ok bool
		if pairs {
			if s.i >= len(raw) || raw[s.i] != '[' {
				return errSlowPath
			}
			s.i++
			s.ws()
			if a, ok = str(); !ok {
				return errSlowPath
			}
			s.ws()
			if s.i >= len(raw) || raw[s.i] != ',' {
				return errSlowPath
			}
			s.i++
			s.ws()
			if b, ok = str(); !ok {
				return errSlowPath
			}
			s.ws()
			if s.i >= len(raw) || raw[s.i] != ']' {
				return errSlowPath
			}
			s.i++
		} else {
			var line span
			if line, ok = str(); !ok {
				return errSlowPath
			}
			src := raw
			if line.n&inEsc != 0 {
				src = esc
			}
			n := line.n &^ inEsc
			text := src[line.off : line.off+n]
			sp := bytes.IndexByte(text, ' ')
			if sp < 0 || bytes.IndexByte(text[sp+1:], ' ') >= 0 {
				return errSlowPath // parseMerges words the error
			}
			flag := line.n & inEsc
			a = span{line.off, uint32(sp) | flag}
			b = span{line.off + uint32(sp) + 1, (n - uint32(sp) - 1) | flag}
		}
		list = append(list, [2]span{a, b})
		s.ws()
		if s.i >= len(raw) {
			return errSlowPath
		}
		if raw[s.i] == ']' {
			s.i++
			break
		}
		if raw[s.i] != ',' {
			return errSlowPath
		}
		s.i++
	}
	bytesOf := func(sp span) []byte {
		if sp.n&inEsc != 0 {
			return esc[sp.off : sp.off+sp.n&^inEsc]
		}
		return raw[sp.off : sp.off+sp.n]
	}

	type resolved struct {
		key uint64
		rid int32
	}
	out := make([]resolved, len(list))
	workers := min(runtime.GOMAXPROCS(0), 8, 1+len(list)/(64<<10))
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*len(list)/workers, (w+1)*len(list)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for i := lo; i < hi && !failed.Load(); i++ {
				key, rid, b, err := m.resolveMerge(i, bytesOf(list[i][0]), bytesOf(list[i][1]), buf)
				buf = b
				if err != nil {
					failed.Store(true) // parseModel words the error
					return
				}
				out[i] = resolved{key, rid}
			}
		}()
	}
	wg.Wait()
	if failed.Load() {
		return errSlowPath
	}
	m.merges = make(map[uint64]mergeVal, len(list))
	for i, r := range out {
		m.recordMerge(i, r.key, r.rid, bytesOf(list[i][0]), bytesOf(list[i][1]))
	}
	return nil
}

// strValue reads a string's value: its bytes in place when plain, else
// decoded into scratch, which is returned for reuse (and plain is false).
func (s *scanner) strValue(scratch []byte) (val, next []byte, plain, ok bool) {
	raw, plain, ok := s.str()
	if !ok {
		return nil, scratch, false, false
	}
	if plain {
		return raw, scratch, true, true
	}
	scratch, ok = unescape(scratch[:0], raw)
	return scratch, scratch, false, ok
}

// unescape appends the value of a string's contents (as str returned them:
// syntax checked) to dst, as encoding/json decodes it: a \u escape of a
// lone surrogate becomes U+FFFD, a pair one character. Contents with bytes
// that are not UTF-8 (which encoding/json replaces one by one) are left to
// it: ok is false.
func unescape(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				dst = append(dst, c)
				i++
				continue
			}
			r, n := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && n == 1 {
				return dst, false
			}
			dst = append(dst, raw[i:i+n]...)
			i += n
			continue
		}
		e := raw[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(raw[i+2:])); d != unicode.ReplacementChar {
						dst = utf8.AppendRune(dst, d)
						i += 6
						continue
					}
				}
				r = unicode.ReplacementChar
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

// hex4 reads four hex digits (checked by str).
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			r = r<<4 | rune(c-'0')
		case c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			r = r<<4 | rune(c-'a'+10)
		}
	}
	return r
}
