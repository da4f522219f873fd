package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
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

// member is one "name": value of a JSON object.
type member struct {
	name []byte // as written, with its quotes
	val  []byte // the raw value
}

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

// members splits a JSON object into its members, checking the syntax of
// every value. A name with an escape makes it step aside.
func members(d []byte) ([]member, error) {
	s := &scanner{d: d}
	s.ws()
	if s.i >= len(d) || d[s.i] != '{' {
		return nil, errSlowPath
	}
	s.i++
	var out []member
	s.ws()
	if s.i < len(d) && d[s.i] == '}' {
		s.i++
		return out, s.end()
	}
	for {
		s.ws()
		start := s.i
		if _, plain, ok := s.str(); !ok || !plain {
			return nil, errSlowPath
		}
		name := d[start:s.i]
		s.ws()
		if s.i >= len(d) || d[s.i] != ':' {
			return nil, errSlowPath
		}
		s.i++
		s.ws()
		vstart := s.i
		if !s.value(0) {
			return nil, errSlowPath
		}
		out = append(out, member{name: name, val: d[vstart:s.i]})
		s.ws()
		if s.i >= len(d) {
			return nil, errSlowPath
		}
		if d[s.i] == '}' {
			s.i++
			return out, s.end()
		}
		if d[s.i] != ',' {
			return nil, errSlowPath
		}
		s.i++
	}
}

// end checks that only white space follows.
func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.d) {
		return errSlowPath
	}
	return nil
}

// pick takes out of ms the last member named name (as encoding/json keeps
// the last of repeated names) and rebuilds the others as an object for
// encoding/json. A member whose name matches only without regard to case
// (encoding/json would take it) makes it step aside.
func pick(ms []member, names ...string) (picked map[string][]byte, rest []byte, err error) {
	picked = map[string][]byte{}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, m := range ms {
		name := string(m.name[1 : len(m.name)-1])
		matched := false
		for _, n := range names {
			if name == n {
				picked[n] = m.val
				matched = true
			} else if strings.EqualFold(name, n) {
				return nil, nil, errSlowPath
			}
		}
		if matched {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.Write(m.name)
		b.WriteByte(':')
		b.Write(m.val)
	}
	b.WriteByte('}')
	return picked, b.Bytes(), nil
}

// fastFile splits a tokenizer.json into its model object and the rest,
// decoded by encoding/json.
func fastFile(data []byte) (f fileJSON, model []byte, err error) {
	ms, err := members(data)
	if err != nil {
		return f, nil, err
	}
	picked, rest, err := pick(ms, "model")
	if err != nil {
		return f, nil, err
	}
	if err := json.Unmarshal(rest, &f); err != nil {
		return f, nil, errSlowPath
	}
	return f, picked["model"], nil
}

// fastModel reads a model object as parseModel does. It returns
// errSlowPath where it cannot be sure to; any other error is the one
// parseModel reports.
func fastModel(raw []byte) (*bpe, error) {
	ms, err := members(raw)
	if err != nil {
		return nil, err
	}
	picked, rest, err := pick(ms, "vocab", "merges")
	if err != nil {
		return nil, err
	}
	var j bpeJSON
	if err := json.Unmarshal(rest, &j); err != nil {
		return nil, errSlowPath
	}
	if v, ok := picked["merges"]; ok {
		j.Merges = v // only its presence matters to newBPE
	}
	m, err := newBPE(&j)
	if err != nil {
		return nil, err
	}
	vocab, ok := picked["vocab"]
	if !ok || isNull(vocab) {
		return nil, errSlowPath
	}
	if m.vocab, err = fastVocab(vocab); err != nil {
		return nil, err
	}
	if err := m.indexVocab(j.UnkToken); err != nil {
		return nil, err
	}
	if err := m.fastMerges(picked["merges"]); err != nil {
		return nil, err
	}
	return m, nil
}

// fastVocab reads {"token": id, ...}. Tokens are substrings of one copy
// of the object's text; only a token with an escape gets its own string.
func fastVocab(raw []byte) (map[string]int, error) {
	text := string(raw) // the one copy the tokens point into
	n := bytes.Count(raw, []byte{':'})
	vocab := make(map[string]int, n)
	s := &scanner{d: raw}
	s.ws()
	if s.i >= len(raw) || raw[s.i] != '{' {
		return nil, errSlowPath
	}
	s.i++
	s.ws()
	if s.i < len(raw) && raw[s.i] == '}' {
		return vocab, nil
	}
	for {
		s.ws()
		start := s.i
		tokRaw, plain, ok := s.str()
		if !ok {
			return nil, errSlowPath
		}
		var tok string
		if plain {
			off := start + 1
			tok = text[off : off+len(tokRaw)]
		} else if err := json.Unmarshal(raw[start:s.i], &tok); err != nil {
			return nil, errSlowPath
		}
		s.ws()
		if s.i >= len(raw) || raw[s.i] != ':' {
			return nil, errSlowPath
		}
		s.i++
		s.ws()
		id, ok := s.smallInt()
		if !ok {
			return nil, errSlowPath
		}
		vocab[tok] = id
		s.ws()
		if s.i >= len(raw) {
			return nil, errSlowPath
		}
		if raw[s.i] == '}' {
			return vocab, nil
		}
		if raw[s.i] != ',' {
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

// fastMerges reads ["a b", ...] or [["a", "b"], ...] and records each
// merge as addMerge does.
func (m *bpe) fastMerges(raw []byte) error {
	if raw == nil || isNull(raw) {
		m.merges = map[uint64]mergeVal{}
		return nil
	}
	s := &scanner{d: raw}
	s.ws()
	if s.i >= len(raw) || raw[s.i] != '[' {
		return errSlowPath
	}
	s.i++
	s.ws()
	if s.i < len(raw) && raw[s.i] == ']' {
		m.merges = map[uint64]mergeVal{}
		return nil
	}
	pairs := s.i < len(raw) && raw[s.i] == '['
	// Each merge has at least one quote pair of its own: a bound for the map.
	m.merges = make(map[uint64]mergeVal, bytes.Count(raw, []byte{'"'})/4+1)
	var buf, sa, sb []byte
	for i := 0; ; i++ {
		s.ws()
		var a, b []byte
		var ok bool
		if pairs {
			if s.i >= len(raw) || raw[s.i] != '[' {
				return errSlowPath
			}
			s.i++
			s.ws()
			if a, sa, ok = s.strValue(sa); !ok {
				return errSlowPath
			}
			s.ws()
			if s.i >= len(raw) || raw[s.i] != ',' {
				return errSlowPath
			}
			s.i++
			s.ws()
			if b, sb, ok = s.strValue(sb); !ok {
				return errSlowPath
			}
			s.ws()
			if s.i >= len(raw) || raw[s.i] != ']' {
				return errSlowPath
			}
			s.i++
		} else {
			var line []byte
			if line, sa, ok = s.strValue(sa); !ok {
				return errSlowPath
			}
			sp := bytes.IndexByte(line, ' ')
			if sp < 0 || bytes.IndexByte(line[sp+1:], ' ') >= 0 {
				return errSlowPath // parseMerges words the error
			}
			a, b = line[:sp], line[sp+1:]
		}
		var err error
		if buf, err = m.addMerge(i, a, b, buf); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(raw) {
			return errSlowPath
		}
		if raw[s.i] == ']' {
			return nil
		}
		if raw[s.i] != ',' {
			return errSlowPath
		}
		s.i++
	}
}

// strValue reads a string's value: its bytes in place when plain, else
// decoded (by encoding/json) into scratch, which is returned for reuse.
func (s *scanner) strValue(scratch []byte) (val, next []byte, ok bool) {
	start := s.i
	raw, plain, ok := s.str()
	if !ok {
		return nil, scratch, false
	}
	if plain {
		return raw, scratch, true
	}
	var v string
	if err := json.Unmarshal(s.d[start:s.i], &v); err != nil {
		return nil, scratch, false
	}
	scratch = append(scratch[:0], v...)
	return scratch, scratch, true
}
