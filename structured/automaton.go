package structured

import "math/bits"

// The automaton's state is a set of stacks of frames: one stack per way
// the text so far can be read (an enum of "ab" and "ac" keeps two after
// "a"). A frame is one value being generated; its phase says what may
// come next.

// frame is one open value. Its fields mean what its node's kind says.
type frame struct {
	node int32
	n    int32 // object: next property; array: items; string: characters; number: digits; literal: bytes matched
	k    int32 // object: bytes of the key matched
	ph   uint8 // phase
	ws   uint8 // whitespace bytes in the current run
	u8   uint8 // string: UTF-8 continuation bytes still due; integer: 1 if negative
	lo8  uint8 // string: the range of the next continuation byte; \u escape: surrogate guard
	hi8  uint8
	m    int64 // object: key candidates (bits) or the chosen property; string: DFA state; integer: magnitude
}

// multi is a set of stacks, stored one after another.
type multi struct {
	frames []frame
	ends   []int32
}

func (m *multi) reset() {
	m.frames = m.frames[:0]
	m.ends = m.ends[:0]
}

func (m *multi) stack(i int) []frame {
	start := int32(0)
	if i > 0 {
		start = m.ends[i-1]
	}
	return m.frames[start:m.ends[i]]
}

func (m *multi) len() int { return len(m.ends) }

// maxStacks bounds the ways a text may be read at once; more are dropped,
// which only narrows what may be generated.
const maxStacks = 256

// add appends s unless an equal stack is there.
func (m *multi) add(s []frame) {
	if len(m.ends) >= maxStacks {
		return
	}
	for i := range m.ends {
		if equalStacks(m.stack(i), s) {
			return
		}
	}
	m.frames = append(m.frames, s...)
	m.ends = append(m.ends, int32(len(m.frames)))
}

func (m *multi) copyFrom(o *multi) {
	m.frames = append(m.frames[:0], o.frames...)
	m.ends = append(m.ends[:0], o.ends...)
}

func equalStacks(a, b []frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// eof is the input that ends the text.
const eof = 256

func isWS(c int) bool { return c == ' ' || c == '\n' || c == '\t' }

func isDigit(c int) bool { return c >= '0' && c <= '9' }

// stepper applies bytes to stacks; it owns scratch stacks, one per level
// of forking within one byte.
type stepper struct {
	g    *Grammar
	bufs [][]frame
}

func (st *stepper) buf(lvl int) []frame {
	for len(st.bufs) <= lvl {
		st.bufs = append(st.bufs, make([]frame, 0, 32))
	}
	return st.bufs[lvl][:0]
}

// feed applies c to every stack of src, writing the survivors to dst.
func (st *stepper) feed(src *multi, c int, dst *multi) {
	dst.reset()
	for i := range src.ends {
		s := append(st.buf(0), src.stack(i)...)
		st.keep(0, s)
		st.run(dst, s, c, 0)
	}
}

// begin is the state before any output.
func (g *Grammar) begin(m *multi) {
	m.reset()
	f := frame{node: 0}
	if g.nodes[0].free {
		f.ph = 3
	}
	m.add([]frame{f})
}

// push opens a value of node id for the byte c, which starts it: one
// stack per alternative of a union that may start with c.
func (st *stepper) push(dst *multi, s []frame, id int32, c int, lvl int) {
	g := st.g
	n := &g.nodes[id]
	if n.kind != kUnion {
		s = append(s, frame{node: id})
		st.keep(lvl, s)
		st.run(dst, s, c, lvl)
		return
	}
	if c == eof {
		return
	}
	for _, a := range n.alts {
		if !g.nodes[a].starts(byte(c)) {
			continue
		}
		t := append(st.buf(lvl+1), s...)
		t = append(t, frame{node: a})
		st.keep(lvl+1, t)
		st.run(dst, t, c, lvl+1)
	}
}

// keep stores a scratch stack that may have grown, for reuse.
func (st *stepper) keep(lvl int, s []frame) {
	if cap(s) > cap(st.bufs[lvl]) {
		st.bufs[lvl] = s[:0]
	}
}

// run applies c to the stack s (scratch of level lvl), adding what
// survives to dst.
func (st *stepper) run(dst *multi, s []frame, c int, lvl int) {
	g := st.g
	for len(s) > 0 {
		t := &s[len(s)-1]
		n := &g.nodes[t.node]
		ws := isWS(c)
		switch n.kind {
		case kDoc:
			// Phases: 0 before the value (after the prefix, n.lit), 1 after
			// it (the suffix, n.suffix, then nothing), 2 done; with free
			// text, 3 is the text before the first prefix, and after 2
			// may come whitespace and another prefix.
			switch {
			case t.ph == 3:
				if c != eof {
					k := t.k
					for k > 0 && int(n.lit[k]) != c {
						k = n.kmp[k-1]
					}
					if int(n.lit[k]) == c {
						k++
					}
					t.k = k
					if int(k) == len(n.lit) {
						t.ph = 0
					}
				}
				dst.add(s)
				return
			case t.ph == 2 && n.free && c != eof:
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
					return
				}
				t.ph, t.k, t.ws = 0, 0, 0
				continue
			case t.ph == 0 && int(t.k) < len(n.lit):
				if c != eof && int(n.lit[t.k]) == c {
					t.k++
					dst.add(s)
				}
			case t.ph == 0:
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
					return
				}
				if c == eof {
					return
				}
				t.ph, t.ws, t.k = 1, 0, 0
				st.push(dst, s, n.val, c, lvl)
			case t.ph == 1 && len(n.suffix) > 0:
				switch {
				case ws && t.k == 0:
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
				case c != eof && int(n.suffix[t.k]) == c:
					t.k++
					if int(t.k) == len(n.suffix) {
						t.ph = 2
					}
					dst.add(s)
				}
			default:
				if c == eof {
					dst.add(s)
				}
			}
			return

		case kLiteral:
			if c != eof && int(n.lit[t.n]) == c {
				t.n++
				if int(t.n) == len(n.lit) {
					s = s[:len(s)-1]
				}
				dst.add(s)
			}
			return

		case kString:
			if !st.stringByte(t, n, c) {
				return
			}
			if t.ph == 255 { // closed
				s = s[:len(s)-1]
			}
			dst.add(s)
			return

		case kNumber:
			switch numberByte(t, c) {
			case accept:
				dst.add(s)
				return
			case reject:
				return
			}
			s = s[:len(s)-1] // the number ended before c
			continue

		case kInteger:
			switch integerByte(t, n, c) {
			case accept:
				dst.add(s)
				return
			case reject:
				return
			}
			s = s[:len(s)-1]
			continue

		case kArray:
			switch t.ph {
			case 0:
				if c == '[' {
					t.ph = 1
					dst.add(s)
				}
				return
			case 1, 3: // after '[' or ','
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
					return
				}
				if t.ph == 1 && c == ']' {
					if n.minItems == 0 {
						dst.add(s[:len(s)-1])
					}
					return
				}
				if c == eof || t.ph == 1 && n.maxItems == 0 {
					return
				}
				t.n++
				t.ph, t.ws = 2, 0
				st.push(dst, s, n.val, c, lvl)
				return
			case 2: // after an item
				switch {
				case ws:
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
				case c == ',':
					if n.maxItems < 0 || t.n < n.maxItems {
						t.ph, t.ws = 3, 0
						dst.add(s)
					}
				case c == ']':
					if t.n >= n.minItems {
						dst.add(s[:len(s)-1])
					}
				}
				return
			}

		case kMap:
			switch t.ph {
			case 0:
				if c == '{' {
					t.ph = 1
					dst.add(s)
				}
				return
			case 1, 5: // after '{' or ','
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
					return
				}
				if t.ph == 1 && c == '}' {
					dst.add(s[:len(s)-1])
					return
				}
				if c != '"' {
					return
				}
				t.ph, t.ws = 2, 0
				st.push(dst, s, g.anyString, c, lvl)
				return
			case 2: // after a key
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
				} else if c == ':' {
					t.ph, t.ws = 3, 0
					dst.add(s)
				}
				return
			case 3: // after ':'
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
					return
				}
				if c == eof {
					return
				}
				t.ph, t.ws = 4, 0
				st.push(dst, s, n.val, c, lvl)
				return
			case 4: // after a value
				switch {
				case ws:
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
				case c == ',':
					t.ph, t.ws = 5, 0
					dst.add(s)
				case c == '}':
					dst.add(s[:len(s)-1])
				}
				return
			}

		case kObject:
			np := int32(len(n.props))
			switch t.ph {
			case 0:
				if c == '{' {
					t.ph = 1
					dst.add(s)
				}
				return
			case 1, 6: // after '{' or ','
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
					return
				}
				if t.ph == 1 && c == '}' {
					if n.nextReq[t.n] == np {
						dst.add(s[:len(s)-1])
					}
					return
				}
				if c != '"' || t.n >= np {
					return
				}
				// Candidates: from t.n up to the first required property.
				last := min(n.nextReq[t.n], np-1, t.n+maxKeyCandidates-1)
				t.m = int64(uint64(1)<<(last-t.n+1) - 1)
				if last-t.n+1 == 64 {
					t.m = -1
				}
				t.ph, t.k, t.ws = 2, 1, 0
				dst.add(s)
				return
			case 2: // in a key
				if c == eof {
					return
				}
				mask := uint64(t.m)
				var left uint64
				chosen := int32(-1)
				for b := mask; b != 0; b &= b - 1 {
					j := int32(trailingZeros(b))
					key := n.props[t.n+j].key
					if int(t.k) < len(key) && int(key[t.k]) == c {
						left |= 1 << j
						if int(t.k)+1 == len(key) {
							chosen = t.n + j
						}
					}
				}
				if left == 0 {
					return
				}
				t.k++
				if chosen >= 0 {
					t.m = int64(chosen)
					t.n = chosen + 1
					t.ph, t.k = 3, 0
				} else {
					t.m = int64(left)
				}
				dst.add(s)
				return
			case 3: // after a key
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
				} else if c == ':' {
					t.ph, t.ws = 4, 0
					dst.add(s)
				}
				return
			case 4: // after ':'
				if ws {
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
					return
				}
				if c == eof {
					return
				}
				t.ph, t.ws = 5, 0
				st.push(dst, s, n.props[t.m].val, c, lvl)
				return
			case 5: // after a value
				switch {
				case ws:
					if t.ws < MaxWhitespace {
						t.ws++
						dst.add(s)
					}
				case c == ',':
					if t.n < np {
						t.ph, t.ws = 6, 0
						dst.add(s)
					}
				case c == '}':
					if n.nextReq[t.n] == np {
						dst.add(s[:len(s)-1])
					}
				}
				return
			}
		}
		return
	}
}

func trailingZeros(b uint64) int { return bits.TrailingZeros64(b) }

type verdict uint8

const (
	accept verdict = iota // the byte is taken
	reject                // the byte is refused
	ended                 // the value ended before the byte
)

// numberByte steps a JSON number; phases: 0 start, 1 after '-', 2 after a
// leading 0, 3 integer digits, 4 after '.', 5 fraction digits, 6 after
// 'e', 7 after the exponent's sign, 8 exponent digits.
func numberByte(t *frame, c int) verdict {
	d := isDigit(c)
	switch t.ph {
	case 0, 1:
		switch {
		case c == '-' && t.ph == 0:
			t.ph = 1
		case c == '0':
			t.ph = 2
		case d:
			t.ph, t.n = 3, 1
		default:
			return reject
		}
		return accept
	case 2, 3:
		switch {
		case d && t.ph == 3 && t.n < maxIntDigits:
			t.n++
		case d:
			return reject // no digit after a leading zero or past the limit
		case c == '.':
			t.ph = 4
		case c == 'e' || c == 'E':
			t.ph = 6
		default:
			return ended
		}
		return accept
	case 4:
		if !d {
			return reject
		}
		t.ph, t.n = 5, 1
		return accept
	case 5:
		switch {
		case d && t.n < maxFracDigits:
			t.n++
		case d:
			return reject
		case c == 'e' || c == 'E':
			t.ph = 6
		default:
			return ended
		}
		return accept
	case 6:
		switch {
		case c == '+' || c == '-':
			t.ph = 7
		case d:
			t.ph, t.n = 8, 1
		default:
			return reject
		}
		return accept
	case 7:
		if !d {
			return reject
		}
		t.ph, t.n = 8, 1
		return accept
	case 8:
		switch {
		case d && t.n < maxExpDigits:
			t.n++
		case d:
			return reject
		default:
			return ended
		}
		return accept
	}
	return reject
}

var pow10 = func() [maxIntDigits + 1]int64 {
	var p [maxIntDigits + 1]int64
	p[0] = 1
	for i := 1; i <= maxIntDigits; i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// feasible reports whether an integer whose sign is neg and whose digits
// so far make the magnitude v (k digits, k >= 1) can still end within
// [lo, hi], by stopping now or adding digits.
func feasible(neg bool, v int64, k int32, lo, hi int64) bool {
	maxLen := int32(maxIntDigits)
	if v == 0 {
		maxLen = k // no digit after a leading zero
	}
	for L := k; L <= maxLen; L++ {
		p := pow10[L-k]
		a, b := v*p, (v+1)*p-1 // magnitudes with this many digits
		if L == k {
			b = v
		}
		if neg {
			a, b = -b, -a
		}
		if a <= hi && b >= lo {
			return true
		}
	}
	return false
}

// integerByte steps an integer within the node's bounds; phases: 0
// start, 1 after '-', 2 digits, and for a bounded number 3 after '.', 4
// fraction digits. A negative number does not start with 0.
func integerByte(t *frame, n *node, c int) verdict {
	d := isDigit(c)
	neg := t.u8 == 1
	switch t.ph {
	case 3:
		if !d {
			return reject
		}
		t.ph, t.n = 4, 1
		return accept
	case 4:
		switch {
		case d && t.n < maxFracDigits:
			t.n++
			return accept
		case d:
			return reject
		}
		return ended
	case 0:
		if c == '-' {
			if n.lo > -1 { // no negative integer within the bounds
				return reject
			}
			t.ph, t.u8 = 1, 1
			return accept
		}
		if !d || !feasible(false, int64(c-'0'), 1, n.lo, n.hi) {
			return reject
		}
		t.ph, t.m, t.n = 2, int64(c-'0'), 1
		return accept
	case 1:
		if !d || c == '0' || !feasible(true, int64(c-'0'), 1, n.lo, n.hi) {
			return reject
		}
		t.ph, t.m, t.n = 2, int64(c-'0'), 1
		return accept
	case 2:
		if d && t.m != 0 && t.n < maxIntDigits {
			v := t.m*10 + int64(c-'0')
			if feasible(neg, v, t.n+1, n.lo, n.hi) {
				t.m, t.n = v, t.n+1
				return accept
			}
		}
		if d {
			return reject
		}
		val := t.m
		if neg {
			val = -val
		}
		if c == '.' && n.frac && (val >= 0 && val >= n.lo && val <= n.fracHi || val < 0 && val <= n.hi && val >= n.fracLo) {
			t.ph, t.n = 3, 0
			return accept
		}
		if val < n.lo || val > n.hi {
			return reject
		}
		return ended
	}
	return reject
}

// stringByte steps a string; phases: 0 before '"', 1 a character may
// start, 2 after '\\', 3 in a UTF-8 sequence, 4-7 the hex digits of \u,
// 255 closed.
func (st *stepper) stringByte(t *frame, n *node, c int) bool {
	counted := n.minLen > 0 || n.maxLen >= 0
	room := n.maxLen < 0 || t.n < n.maxLen
	switch t.ph {
	case 0:
		if c != '"' {
			return false
		}
		t.ph = 1
		return true
	case 1:
		switch {
		case c == '"':
			if t.n < n.minLen || n.re != nil && !n.re.accept[t.m] {
				return false
			}
			t.ph = 255
			return true
		case c == eof || c < 0x20 || !room:
			return false
		case n.re != nil:
			if c >= 0x80 {
				return false
			}
			next := n.re.next[t.m][c]
			if next < 0 || n.maxLen >= 0 && t.n+1+n.re.dist[next] > n.maxLen {
				return false
			}
			t.m = int64(next)
			t.n++
			return true
		case c == '\\':
			t.ph = 2
		case c < 0x80:
		case c >= 0xC2 && c <= 0xDF:
			t.ph, t.u8, t.lo8, t.hi8 = 3, 1, 0x80, 0xBF
		case c == 0xE0:
			t.ph, t.u8, t.lo8, t.hi8 = 3, 2, 0xA0, 0xBF
		case c == 0xED:
			t.ph, t.u8, t.lo8, t.hi8 = 3, 2, 0x80, 0x9F
		case c >= 0xE1 && c <= 0xEF:
			t.ph, t.u8, t.lo8, t.hi8 = 3, 2, 0x80, 0xBF
		case c == 0xF0:
			t.ph, t.u8, t.lo8, t.hi8 = 3, 3, 0x90, 0xBF
		case c >= 0xF1 && c <= 0xF3:
			t.ph, t.u8, t.lo8, t.hi8 = 3, 3, 0x80, 0xBF
		case c == 0xF4:
			t.ph, t.u8, t.lo8, t.hi8 = 3, 3, 0x80, 0x8F
		default:
			return false
		}
		if counted {
			t.n++
		}
		return true
	case 2:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			t.ph = 1
		case 'u':
			t.ph, t.lo8 = 4, 0
		default:
			return false
		}
		return true
	case 3:
		if c < int(t.lo8) || c > int(t.hi8) {
			return false
		}
		t.u8--
		t.lo8, t.hi8 = 0x80, 0xBF
		if t.u8 == 0 {
			t.ph, t.lo8, t.hi8 = 1, 0, 0
		}
		return true
	case 4, 5, 6, 7:
		h := hexVal(c)
		if h < 0 {
			return false
		}
		// No surrogate code points (\uD800-\uDFFF): a lone one is not
		// text.
		if t.ph == 4 && h == 0xD {
			t.lo8 = 1
		}
		if t.ph == 5 && t.lo8 == 1 && h >= 8 {
			return false
		}
		t.ph++
		if t.ph == 8 {
			t.ph, t.lo8 = 1, 0
		}
		return true
	}
	return false
}

func hexVal(c int) int {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return -1
}
