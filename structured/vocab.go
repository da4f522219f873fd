package structured

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"unicode/utf8"
)

// Vocab is a vocabulary indexed by the bytes of its tokens: a trie laid
// out in depth-first order, so that a walk can skip a subtree whose
// prefix is refused.
type Vocab struct {
	size   int
	toks   [][]byte
	eos    []int
	all    trie // every token
	maxLen int
	// plain marks the tokens that are string content alone: complete
	// UTF-8 without '"', '\\' or control bytes. Inside a string without
	// length or pattern they are all allowed, so the walk of such a state
	// needs only special, the trie of the other tokens.
	plain   []uint64
	special trie
}

// trie is a trie laid out in depth-first order.
type trie struct {
	nodes []trieNode
	ids   []int32 // token ids in byte order; a node's tokens are ids[lo:hi]
}

type trieNode struct {
	skip   int32 // the index after this node's subtree
	lo, hi int32
	b      byte
	depth  uint16 // 1 for a token's first byte
}

// maxTokenBytes bounds the bytes of one token taken into the index;
// longer tokens are never generated under a grammar.
const maxTokenBytes = 1024

// NewVocab indexes tokens: tokens[id] is the text token id adds to the
// output (nil or empty: the token is never generated under a grammar,
// as special tokens are). len(tokens) is the number of logits. eos lists
// the end-of-sequence ids, allowed when the value is complete.
func NewVocab(tokens [][]byte, eos []int) *Vocab {
	v := &Vocab{size: len(tokens), toks: tokens}
	for _, id := range eos {
		if id >= 0 && id < len(tokens) {
			v.eos = append(v.eos, id)
		}
	}
	var order, other []int32
	v.plain = make([]uint64, (len(tokens)+63)/64)
	for id, t := range tokens {
		if len(t) == 0 || len(t) > maxTokenBytes || slices.Contains(v.eos, id) {
			continue
		}
		order = append(order, int32(id))
		v.maxLen = max(v.maxLen, len(t))
		if isPlain(t) {
			v.plain[id>>6] |= 1 << (id & 63)
		} else {
			other = append(other, int32(id))
		}
	}
	v.all = buildTrie(tokens, order)
	v.special = buildTrie(tokens, other)
	return v
}

// isPlain reports whether t is string content alone.
func isPlain(t []byte) bool {
	if !utf8.Valid(t) {
		return false
	}
	for _, c := range t {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func buildTrie(tokens [][]byte, order []int32) trie {
	order = slices.Clone(order)
	slices.SortStableFunc(order, func(a, b int32) int { return bytes.Compare(tokens[a], tokens[b]) })
	tr := trie{ids: order}
	var path []int32
	var prev []byte
	for i, id := range order {
		t := tokens[id]
		l := 0
		for l < len(prev) && l < len(t) && prev[l] == t[l] {
			l++
		}
		for len(path) > l {
			tr.nodes[path[len(path)-1]].skip = int32(len(tr.nodes))
			path = path[:len(path)-1]
		}
		for d := l; d < len(t); d++ {
			tr.nodes = append(tr.nodes, trieNode{b: t[d], depth: uint16(d + 1), lo: int32(i), hi: int32(i)})
			path = append(path, int32(len(tr.nodes)-1))
		}
		end := &tr.nodes[path[len(t)-1]]
		if end.hi == end.lo {
			end.lo = int32(i)
		}
		end.hi = int32(i + 1)
		prev = t
	}
	for len(path) > 0 {
		tr.nodes[path[len(path)-1]].skip = int32(len(tr.nodes))
		path = path[:len(path)-1]
	}
	return tr
}

// Size is the number of token ids (logits).
func (v *Vocab) Size() int { return v.size }

// Index pairs a grammar with a vocabulary. It caches the allowed-token
// set of each automaton state it has met, so it is best shared by every
// request with the same schema. It is safe for concurrent use.
type Index struct {
	g *Grammar
	v *Vocab

	mu    sync.Mutex
	cache map[string]*entry
	bytes int
}

// entry is what a state allows.
type entry struct {
	mask   []uint64 // allowed tokens
	canEnd bool     // end-of-sequence allowed
}

// maxCacheBytes bounds an index's cache; when full it starts again.
const maxCacheBytes = 8 << 20

// NewIndex pairs g and v.
func NewIndex(g *Grammar, v *Vocab) *Index {
	return &Index{g: g, v: v, cache: map[string]*entry{}}
}

// CacheEntries is the number of states whose token sets are cached.
func (ix *Index) CacheEntries() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.cache)
}

// Matcher follows one generation under an index: it masks the logits of
// tokens that would break the grammar and advances by the chosen token.
// It is not safe for concurrent use.
type Matcher struct {
	ix       *Index
	st       stepper
	cur, tmp multi
	levels   []multi
	key      []byte
	dead     bool
}

// NewMatcher starts a generation.
func (ix *Index) NewMatcher() *Matcher {
	m := &Matcher{ix: ix, st: stepper{g: ix.g}}
	ix.g.begin(&m.cur)
	return m
}

// Text is the bytes token id stands for, nil for a token that is never
// generated.
func (v *Vocab) Text(id int) []byte {
	if id < 0 || id >= len(v.toks) {
		return nil
	}
	return v.toks[id]
}

// Mask sets the logit of every token that may not come next to -Inf.
// End-of-sequence tokens keep theirs only when the value may end here.
func (m *Matcher) Mask(logits []float32) {
	e := m.lookup()
	ninf := float32(math.Inf(-1))
	var saved [8]float32
	eos := m.ix.v.eos
	if e.canEnd {
		for i, id := range eos[:min(len(eos), len(saved))] {
			saved[i] = logits[id]
		}
	}
	n := len(logits)
	for w, bits := range e.mask {
		if bits == ^uint64(0) {
			continue
		}
		base := w << 6
		if bits == 0 && base+64 <= n {
			x := logits[base : base+64]
			for i := range x {
				x[i] = ninf
			}
			continue
		}
		for inv := ^bits; inv != 0; inv &= inv - 1 {
			i := base + trailingZeros(inv)
			if i >= n {
				break
			}
			logits[i] = ninf
		}
	}
	if e.canEnd {
		for i, id := range eos[:min(len(eos), len(saved))] {
			logits[id] = saved[i]
		}
	}
}

// Allowed reports whether id may come next (end-of-sequence ids: whether
// the value may end).
func (m *Matcher) Allowed(id int) bool {
	e := m.lookup()
	if slices.Contains(m.ix.v.eos, id) {
		return e.canEnd
	}
	return id >= 0 && id < m.ix.v.size && e.mask[id>>6]&(1<<(id&63)) != 0
}

// CanEnd reports whether the output may end here: the value is complete.
func (m *Matcher) CanEnd() bool { return m.lookup().canEnd }

// Accept advances past token id. It returns false, and the matcher
// refuses everything from then on, if id was not allowed.
func (m *Matcher) Accept(id int) bool {
	t := m.ix.v.Text(id)
	if m.dead || len(t) == 0 {
		m.dead = true
		return false
	}
	for _, c := range t {
		m.st.feed(&m.cur, int(c), &m.tmp)
		m.cur, m.tmp = m.tmp, m.cur
		if m.cur.len() == 0 {
			m.dead = true
			return false
		}
	}
	return true
}

// Done reports whether the value is complete and nothing may follow it.
func (m *Matcher) Done() bool {
	if m.dead || m.cur.len() == 0 {
		return false
	}
	doc := &m.ix.g.nodes[0]
	if doc.free {
		return false // more text may always follow
	}
	for i := range m.cur.ends {
		s := m.cur.stack(i)
		if len(s) != 1 || s[0].ph != 1 && s[0].ph != 2 || s[0].ph == 1 && len(doc.suffix) > 0 {
			return false
		}
	}
	return true
}

// Reset starts the generation again.
func (m *Matcher) Reset() {
	m.dead = false
	m.ix.g.begin(&m.cur)
}

// lookup returns the cached entry of the current state, computing it on
// a miss.
func (m *Matcher) lookup() *entry {
	if m.dead {
		return &entry{mask: make([]uint64, (m.ix.v.size+63)/64)}
	}
	m.key = m.stateKey(m.key[:0])
	ix := m.ix
	ix.mu.Lock()
	e := ix.cache[string(m.key)]
	ix.mu.Unlock()
	if e != nil {
		return e
	}
	e = m.compute()
	ix.mu.Lock()
	if ix.bytes > maxCacheBytes {
		clear(ix.cache)
		ix.bytes = 0
	}
	ix.cache[string(m.key)] = e
	ix.bytes += 8*len(e.mask) + len(m.key) + 64
	ix.mu.Unlock()
	return e
}

// inFreeString reports whether some way of reading the output is inside
// a string without length or pattern, where a character may start: every
// plain token is allowed there.
func (m *Matcher) inFreeString() bool {
	for i := range m.cur.ends {
		s := m.cur.stack(i)
		t := &s[len(s)-1]
		n := &m.ix.g.nodes[t.node]
		if n.kind == kString && t.ph == 1 && n.minLen == 0 && n.maxLen < 0 && n.re == nil {
			return true
		}
	}
	return false
}

// stateKey encodes the current state exactly.
func (m *Matcher) stateKey(b []byte) []byte {
	for i := range m.cur.ends {
		b = binary.LittleEndian.AppendUint32(b, uint32(m.cur.ends[i]))
	}
	b = append(b, 0xff)
	for _, f := range m.cur.frames {
		b = binary.LittleEndian.AppendUint32(b, uint32(f.node))
		b = binary.LittleEndian.AppendUint32(b, uint32(f.n))
		b = binary.LittleEndian.AppendUint32(b, uint32(f.k))
		b = append(b, f.ph, f.ws, f.u8, f.lo8, f.hi8)
		b = binary.LittleEndian.AppendUint64(b, uint64(f.m))
	}
	return b
}

// compute walks the trie from the current state.
func (m *Matcher) compute() *entry {
	v := m.ix.v
	e := &entry{mask: make([]uint64, (v.size+63)/64)}
	for len(m.levels) <= v.maxLen {
		m.levels = append(m.levels, multi{})
	}
	tr := &v.all
	if m.inFreeString() {
		copy(e.mask, v.plain)
		tr = &v.special
	}
	lv := m.levels
	lv[0] = m.cur
	for i := 0; i < len(tr.nodes); {
		nd := &tr.nodes[i]
		d := nd.depth
		m.st.feed(&lv[d-1], int(nd.b), &lv[d])
		if lv[d].len() == 0 {
			i = int(nd.skip)
			continue
		}
		for _, id := range tr.ids[nd.lo:nd.hi] {
			e.mask[id>>6] |= 1 << (id & 63)
		}
		i++
	}
	lv[0] = multi{}
	m.st.feed(&m.cur, eof, &m.tmp)
	e.canEnd = m.tmp.len() > 0
	return e
}
