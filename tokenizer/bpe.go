package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// maxID bounds token ids so that a malformed file cannot make the loader
// allocate gigabytes.
const maxID = 1 << 24

// bpe is a byte-pair-encoding model with Hugging Face semantics.
type bpe struct {
	vocab  map[string]int
	tokens []string // id -> token; holes are ""
	has    []bool

	merges map[uint64]mergeVal // (left id, right id) -> rank and result

	unkID        int
	hasUnk       bool
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix

	byteTok [256]int32 // ids of <0xNN> tokens, -1 if absent

	// Byte-level mode: ids of the characters bytes map to.
	blIDs   [256]int32
	blChars [256]string

	// Chunking of long pieces at boundaries no merge can cross.
	canChunk    bool
	asciiSingle [128]bool
	asciiPair   [128 * 128]bool
	pairs       map[uint64]struct{}

	cache  sync.Map // string -> []int32
	cacheN atomic.Int64
}

type mergeVal struct {
	rank, id int32
}

// maxCacheEntries bounds the word cache; past it words are not cached.
const maxCacheEntries = 1 << 18

// maxCachedLen is the longest piece (in bytes) that is cached.
const maxCachedLen = 256

type bpeJSON struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// parseModel reads the "model" object of tokenizer.json with
// encoding/json. It is the reference for fastModel, which reads the
// vocabulary and merges of the same object without a value per entry.
func parseModel(raw json.RawMessage) (*bpe, error) {
	var j bpeJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("invalid: %v", err)
	}
	m, err := newBPE(&j)
	if err != nil {
		return nil, err
	}
	if isNull(j.Vocab) {
		return nil, errors.New("field vocab: missing")
	}
	if err := json.Unmarshal(j.Vocab, &m.vocab); err != nil {
		return nil, fmt.Errorf("field vocab: %v", err)
	}
	if err := m.indexVocab(j.UnkToken); err != nil {
		return nil, err
	}
	merges, err := parseMerges(j.Merges)
	if err != nil {
		return nil, err
	}
	m.merges = make(map[uint64]mergeVal, len(merges))
	var buf []byte
	for i, mg := range merges {
		if buf, err = m.addMerge(i, []byte(mg[0]), []byte(mg[1]), buf); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// newBPE checks the model's type and takes its options.
func newBPE(j *bpeJSON) (*bpe, error) {
	if j.Type == "" && j.Merges == nil {
		return nil, errors.New("field type: missing")
	}
	if j.Type != "" && j.Type != "BPE" {
		return nil, fmt.Errorf("unsupported model type %q", j.Type)
	}
	m := &bpe{fuseUnk: j.FuseUnk, byteFallback: j.ByteFallback, ignoreMerges: j.IgnoreMerges}
	if j.ContinuingSubwordPrefix != nil {
		m.prefix = *j.ContinuingSubwordPrefix
	}
	if j.EndOfWordSuffix != nil {
		m.suffix = *j.EndOfWordSuffix
	}
	return m, nil
}

// indexVocab checks the ids of m.vocab and builds the id → token tables,
// the unknown token and the byte-fallback tokens.
func (m *bpe) indexVocab(unk *string) error {
	size := 0
	for tok, id := range m.vocab {
		if id < 0 || id >= maxID {
			return fmt.Errorf("field vocab: token %q has id %d out of range", tok, id)
		}
		if id+1 > size {
			size = id + 1
		}
	}
	m.tokens = make([]string, size)
	m.has = make([]bool, size)
	for tok, id := range m.vocab {
		if m.has[id] {
			return fmt.Errorf("field vocab: id %d is given to both %q and %q", id, m.tokens[id], tok)
		}
		m.tokens[id] = tok
		m.has[id] = true
	}
	if unk != nil {
		id, ok := m.vocab[*unk]
		if !ok {
			return fmt.Errorf("field unk_token: %q is not in the vocabulary", *unk)
		}
		m.unkID, m.hasUnk = id, true
	}
	name := []byte("<0x00>")
	for b := 0; b < 256; b++ {
		m.byteTok[b] = -1
		name[3], name[4] = "0123456789ABCDEF"[b>>4], "0123456789ABCDEF"[b&15]
		if id, ok := m.vocab[string(name)]; ok {
			m.byteTok[b] = int32(id)
		} else if m.byteFallback {
			return fmt.Errorf("field byte_fallback: true but token <0x%02X> is not in the vocabulary", b)
		}
	}
	return nil
}

// addMerge checks merge i, a and b, and records it; buf is scratch space,
// returned for reuse.
func (m *bpe) addMerge(i int, a, b, buf []byte) ([]byte, error) {
	key, rid, buf, err := m.resolveMerge(i, a, b, buf)
	if err != nil {
		return buf, err
	}
	m.recordMerge(i, key, rid, a, b)
	return buf, nil
}

// resolveMerge checks merge i and finds the ids it joins and makes. It
// only reads the vocabulary, so merges can be resolved in parallel.
func (m *bpe) resolveMerge(i int, a, b, buf []byte) (key uint64, rid int32, _ []byte, _ error) {
	aid, ok := m.vocab[string(a)]
	if !ok {
		return 0, 0, buf, fmt.Errorf("field merges[%d]: token %q is not in the vocabulary", i, a)
	}
	bid, ok := m.vocab[string(b)]
	if !ok {
		return 0, 0, buf, fmt.Errorf("field merges[%d]: token %q is not in the vocabulary", i, b)
	}
	plen := len(m.prefix)
	if len(b) < plen || (plen < len(b) && !utf8.RuneStart(b[plen])) {
		return 0, 0, buf, fmt.Errorf("field merges[%d]: right side %q is shorter than continuing_subword_prefix %q", i, b, m.prefix)
	}
	buf = append(append(buf[:0], a...), b[plen:]...)
	r, ok := m.vocab[string(buf)]
	if !ok {
		return 0, 0, buf, fmt.Errorf("field merges[%d]: result %q of merging %q and %q is not in the vocabulary", i, buf, a, b)
	}
	return pairKey(int32(aid), int32(bid)), int32(r), buf, nil
}

// recordMerge stores merge i (later merges of the same pair replace
// earlier ones) and notes, for initChunking, which characters it joins.
func (m *bpe) recordMerge(i int, key uint64, rid int32, a, b []byte) {
	m.merges[key] = mergeVal{int32(i), rid}
	ra, _ := utf8.DecodeLastRune(a)
	rb, _ := utf8.DecodeRune(b)
	if ra < 128 && rb < 128 {
		m.asciiPair[ra*128+rb] = true
	} else {
		if m.pairs == nil {
			m.pairs = map[uint64]struct{}{}
		}
		m.pairs[uint64(uint32(ra))<<32|uint64(uint32(rb))] = struct{}{}
	}
}

// parseMerges reads merges as ["a b", ...] or [["a","b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return nil, nil
	}
	if raw[0] != '[' {
		return nil, errors.New("field merges: not an array")
	}
	rest := bytes.TrimSpace(raw[1:])
	if len(rest) > 0 && rest[0] == '[' {
		var pairs [][]string
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return nil, fmt.Errorf("field merges: %v", err)
		}
		out := make([][2]string, len(pairs))
		for i, p := range pairs {
			if len(p) != 2 {
				return nil, fmt.Errorf("field merges[%d]: want 2 tokens, have %d", i, len(p))
			}
			out[i] = [2]string{p[0], p[1]}
		}
		return out, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("field merges: %v", err)
	}
	out := make([][2]string, len(lines))
	for i, l := range lines {
		a, b, ok := strings.Cut(l, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, fmt.Errorf("field merges[%d]: %q is not two tokens separated by a space", i, l)
		}
		out[i] = [2]string{a, b}
	}
	return out, nil
}

func (m *bpe) idToTok(id int) (string, bool) {
	if id < 0 || id >= len(m.tokens) || !m.has[id] {
		return "", false
	}
	return m.tokens[id], true
}

// initByteLevel prepares the byte-to-id table of byte-level mode.
func (m *bpe) initByteLevel() {
	for b := 0; b < 256; b++ {
		c := string(byteToRune[b])
		m.blChars[b] = c
		m.blIDs[b] = -1
		if m.prefix == "" && m.suffix == "" {
			if id, ok := m.vocab[c]; ok {
				m.blIDs[b] = int32(id)
			}
		}
	}
}

// initChunking computes which adjacent character pairs a merge can join.
// A long piece can then be cut where no merge can ever cross, and the parts
// encoded on their own (and cached) with the same result.
// The pairs themselves (asciiPair, pairs) are noted by addMerge as the
// merges are read.
func (m *bpe) initChunking(byteLevel bool) {
	if byteLevel || m.prefix != "" || m.suffix != "" {
		m.pairs, m.asciiPair = nil, [128 * 128]bool{}
		return
	}
	m.canChunk = true
	for c := 0; c < 128; c++ {
		_, m.asciiSingle[c] = m.vocab[string(rune(c))]
	}
}

// minChunkLen is the piece length from which chunking is tried.
const minChunkLen = 24

// chunk cuts long pieces at boundaries no merge can cross.
func (m *bpe) chunk(pieces []piece) []piece {
	if !m.canChunk {
		return pieces
	}
	long := false
	for _, p := range pieces {
		if len(p.s) >= minChunkLen {
			long = true
			break
		}
	}
	if !long {
		return pieces
	}
	out := make([]piece, 0, len(pieces))
	for _, p := range pieces {
		s := p.s
		if len(s) < minChunkLen {
			out = append(out, p)
			continue
		}
		if m.ignoreMerges {
			if _, ok := m.vocab[s]; ok {
				out = append(out, p)
				continue
			}
		}
		start := 0
		prevOK := false
		var prev rune
		for i := 0; i < len(s); {
			r, size := rune(s[i]), 1
			ok := false
			if r < utf8.RuneSelf {
				ok = m.asciiSingle[r]
			} else {
				r, size = utf8.DecodeRuneInString(s[i:])
				_, ok = m.vocab[s[i:i+size]]
				if r == utf8.RuneError && size == 1 {
					ok = false
				}
			}
			if ok && prevOK && i > start {
				var joined bool
				if r < 128 && prev < 128 {
					joined = m.asciiPair[prev*128+r]
				} else {
					_, joined = m.pairs[uint64(uint32(prev))<<32|uint64(uint32(r))]
				}
				if !joined {
					out = append(out, piece{s[start:i], p.first && start == 0})
					start = i
				}
			}
			prev, prevOK = r, ok
			i += size
		}
		out = append(out, piece{s[start:], p.first && start == 0})
	}
	return out
}

// encodePiece appends the ids of one pre-tokenized piece. With byteLevel the
// piece holds raw bytes that map to characters through the GPT-2 byte table.
func (m *bpe) encodePiece(s string, byteLevel bool, out []int) []int {
	if s == "" {
		return out
	}
	if m.ignoreMerges {
		w := s
		if byteLevel {
			w = byteLevelString(s)
		}
		if id, ok := m.vocab[w]; ok {
			return append(out, id)
		}
	}
	// Single character fast path.
	if !byteLevel && m.prefix == "" && m.suffix == "" {
		if _, size := utf8.DecodeRuneInString(s); size == len(s) {
			if id, ok := m.vocab[s]; ok {
				return append(out, id)
			}
		}
	}
	cacheable := len(s) <= maxCachedLen
	if cacheable {
		if v, ok := m.cache.Load(s); ok {
			for _, id := range v.([]int32) {
				out = append(out, int(id))
			}
			return out
		}
	}
	var buf [64]int32
	ids := m.initial(s, byteLevel, buf[:0])
	ids = m.mergeAll(ids)
	if cacheable && m.cacheN.Load() < maxCacheEntries {
		c := make([]int32, len(ids))
		copy(c, ids)
		if _, loaded := m.cache.LoadOrStore(strings.Clone(s), c); !loaded {
			m.cacheN.Add(1)
		}
	}
	for _, id := range ids {
		out = append(out, int(id))
	}
	return out
}

// initial returns the symbols of a word before merging: one per character,
// with byte fallback and unknown-token handling as Hugging Face does.
func (m *bpe) initial(s string, byteLevel bool, ids []int32) []int32 {
	unk := false // an unknown symbol is pending
	plain := m.prefix == "" && m.suffix == ""
	for i := 0; i < len(s); {
		var ch string
		size := 1
		if byteLevel {
			c := s[i]
			if plain {
				if id := m.blIDs[c]; id >= 0 {
					if unk {
						ids = append(ids, int32(m.unkID))
						unk = false
					}
					ids = append(ids, id)
					i++
					continue
				}
			}
			ch = m.blChars[c]
		} else {
			if c := s[i]; c >= utf8.RuneSelf {
				_, size = utf8.DecodeRuneInString(s[i:])
			}
			ch = s[i : i+size]
		}
		tok := ch
		if !plain {
			if i > 0 && m.prefix != "" {
				tok = m.prefix + tok
			}
			if i+size == len(s) && m.suffix != "" {
				tok += m.suffix
			}
		}
		i += size
		if id, ok := m.vocab[tok]; ok {
			if unk {
				ids = append(ids, int32(m.unkID))
				unk = false
			}
			ids = append(ids, int32(id))
			continue
		}
		if m.byteFallback {
			all := true
			for k := 0; k < len(tok); k++ {
				if m.byteTok[tok[k]] < 0 {
					all = false
					break
				}
			}
			if all {
				for k := 0; k < len(tok); k++ {
					ids = append(ids, m.byteTok[tok[k]])
				}
				continue
			}
		}
		if m.hasUnk {
			if unk && !m.fuseUnk {
				ids = append(ids, int32(m.unkID))
			}
			unk = true
		}
	}
	if unk {
		ids = append(ids, int32(m.unkID))
	}
	return ids
}

// smallWord is the symbol count up to which merging scans for the best pair
// instead of using a heap.
const smallWord = 48

// mergeAll applies merges by rank, leftmost first among equal ranks.
func (m *bpe) mergeAll(ids []int32) []int32 {
	n := len(ids)
	if n < 2 {
		return ids
	}
	if n > smallWord {
		return m.mergeHeap(ids)
	}
	const none = int32(1<<31 - 1)
	var rbuf [smallWord]int32
	var nbuf [smallWord]int32
	ranks := rbuf[:n-1]
	news := nbuf[:n-1]
	for i := 0; i+1 < n; i++ {
		if mv, ok := m.merges[pairKey(ids[i], ids[i+1])]; ok {
			ranks[i], news[i] = mv.rank, mv.id
		} else {
			ranks[i] = none
		}
	}
	for len(ids) > 1 {
		best, br := -1, none
		for i, r := range ranks {
			if r < br {
				best, br = i, r
			}
		}
		if best < 0 {
			break
		}
		ids[best] = news[best]
		copy(ids[best+1:], ids[best+2:])
		ids = ids[:len(ids)-1]
		copy(ranks[best:], ranks[best+1:])
		copy(news[best:], news[best+1:])
		ranks = ranks[:len(ranks)-1]
		news = news[:len(news)-1]
		if best > 0 {
			if mv, ok := m.merges[pairKey(ids[best-1], ids[best])]; ok {
				ranks[best-1], news[best-1] = mv.rank, mv.id
			} else {
				ranks[best-1] = none
			}
		}
		if best < len(ranks) {
			if mv, ok := m.merges[pairKey(ids[best], ids[best+1])]; ok {
				ranks[best], news[best] = mv.rank, mv.id
			} else {
				ranks[best] = none
			}
		}
	}
	return ids
}

type heapItem struct {
	rank, pos, id int32
}

func (a heapItem) less(b heapItem) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

type mergeHeap []heapItem

func (h *mergeHeap) push(x heapItem) {
	*h = append(*h, x)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *mergeHeap) pop() heapItem {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		c := l
		if r := l + 1; r < len(s) && s[r].less(s[l]) {
			c = r
		}
		if !s[c].less(s[i]) {
			break
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
	*h = s
	return top
}

// mergeHeap merges a long word with a priority queue over a linked list of
// symbols: O(n log n).
func (m *bpe) mergeHeap(ids []int32) []int32 {
	n := len(ids)
	prev := make([]int32, n)
	next := make([]int32, n)
	alive := make([]bool, n)
	h := make(mergeHeap, 0, n)
	for i := 0; i < n; i++ {
		prev[i] = int32(i - 1)
		next[i] = int32(i + 1)
		alive[i] = true
		if i+1 < n {
			if mv, ok := m.merges[pairKey(ids[i], ids[i+1])]; ok {
				h.push(heapItem{mv.rank, int32(i), mv.id})
			}
		}
	}
	next[n-1] = -1
	for len(h) > 0 {
		top := h.pop()
		p := top.pos
		if !alive[p] {
			continue
		}
		q := next[p]
		if q < 0 {
			continue
		}
		mv, ok := m.merges[pairKey(ids[p], ids[q])]
		if !ok || mv.rank != top.rank || mv.id != top.id {
			continue
		}
		ids[p] = top.id
		alive[q] = false
		nq := next[q]
		next[p] = nq
		if nq >= 0 {
			prev[nq] = p
		}
		if pp := prev[p]; pp >= 0 {
			if mv, ok := m.merges[pairKey(ids[pp], ids[p])]; ok {
				h.push(heapItem{mv.rank, pp, mv.id})
			}
		}
		if nq >= 0 {
			if mv, ok := m.merges[pairKey(ids[p], ids[nq])]; ok {
				h.push(heapItem{mv.rank, p, mv.id})
			}
		}
	}
	out := ids[:0]
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, ids[i])
	}
	return out
}
