package engine

// Prefix reuse: a finished request's slot keeps its state and copies of
// its Mamba state, and a new request takes the slot from which it can
// continue the most prompt tokens.

import (
	"slices"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

// slot is the reusable state of one running sequence.
type slot struct {
	cache State
	// ids are the tokens whose state cache holds (cache.Len of them), kept
	// after the request ends for a later one that continues them; empty
	// when the state is not to be trusted (a failed step).
	ids []int
	// snaps are copies of the Mamba state at some of those tokens, in
	// ascending position; spare holds unused copy buffers. every is the
	// current request's snapshot spacing (0: none).
	snaps []snapshot
	spare []Snapshot
	every int
	// stored is the key of the whole state in Config.Store, when the
	// store holds what the slot holds ("" otherwise).
	stored  string
	smp     *sample.Sampler
	tok     [1]int
	scratch []float32 // biased or masked logits
	topIDs  []int
	topLP   []float32
	// adapter is the LoRA adapter the state was computed with (nil: none).
	adapter *model.LowRank
}

// snapshot is the Mamba state of a sequence when it held pos tokens.
type snapshot struct {
	pos  int
	data Snapshot
}

// snapEvery is the snapshot spacing of a request of limit tokens: a
// multiple of snapQuantum such that its snapshots fit in SnapshotBytes
// (and are at most maxSnaps); 0 when none fits or reuse is off.
func (e *Engine) snapEvery(limit int) int {
	n := e.snapBudget()
	if n < 1 {
		return 0
	}
	per := (limit + n - 1) / n
	return max(1, (per+snapQuantum-1)/snapQuantum) * snapQuantum
}

// snapBudget is how many snapshots a slot may hold: SnapshotBytes' worth,
// at most maxSnaps; 0 when reuse or snapshots are off.
func (e *Engine) snapBudget() int {
	if e.cfg.NoPrefixReuse || e.cfg.SnapshotBytes < 0 || e.snapBytes == 0 {
		return 0
	}
	return min(maxSnaps, int(e.cfg.SnapshotBytes/e.snapBytes))
}

// dropSnaps moves sl's snapshots past position keep to its spare buffers.
func dropSnaps(sl *slot, keep int) {
	n := len(sl.snaps)
	for n > 0 && sl.snaps[n-1].pos > keep {
		n--
		sl.spare = append(sl.spare, sl.snaps[n].data)
		sl.snaps[n] = snapshot{}
	}
	sl.snaps = sl.snaps[:n]
}

// snap saves sl's Mamba state when its length is a multiple of its
// request's spacing, or when promptEnd (the whole prompt is in), into a
// buffer reserved at admission. The copy at the end of the prompt lets a
// later prompt that repeats this one and goes on differently (another
// continuation, a chat turn whose earlier reply re-tokenizes otherwise)
// continue from it.
func snap(sl *slot, promptEnd bool) {
	n := sl.cache.Len()
	if sl.every == 0 || n%sl.every != 0 && !promptEnd || len(sl.spare) == 0 || len(sl.snaps) == cap(sl.snaps) {
		return
	}
	if k := len(sl.snaps); k > 0 && sl.snaps[k-1].pos == n {
		return
	}
	buf := sl.spare[len(sl.spare)-1]
	sl.spare = sl.spare[:len(sl.spare)-1]
	if sl.cache.SaveMamba(buf) != nil {
		sl.spare = append(sl.spare, buf) // no copy: a later request computes more
		return
	}
	sl.snaps = append(sl.snaps, snapshot{pos: n, data: buf})
}

// takeSlot returns the slot for s. With prefix reuse, that is the free slot
// from which s can continue the most prompt tokens: its whole state, if
// s's prompt extends all its tokens, or else its last snapshot within the
// tokens they share (the slot is rewound to it); s then starts after them.
// When the stored state read at Submit (s.pre) continues more tokens, it
// becomes the cache of a slot taken as follows.
// Otherwise: a free slot that holds nothing, or a new one while there are
// fewer than MaxBatch, or else the free one left longest ago, reset.
//
// fresh (a follower, which starts from its leader's state) skips the
// search for a state to continue.
//
// An error (a backend out of memory) comes with a slot all the same, that
// holds nothing to continue: the request fails, and the slot is free.
func (e *Engine) takeSlot(s *seq, fresh bool) (*slot, error) {
	p := s.req.Prompt
	var sl *slot
	best, bestPos, bestSnap := -1, 0, -1
	empty := -1
	for i, f := range e.free {
		if len(f.ids) == 0 && empty < 0 {
			empty = i
		}
		if fresh || e.cfg.NoPrefixReuse || len(f.ids) == 0 || f.cache.Len() != len(f.ids) || f.adapter != s.req.Adapter {
			continue
		}
		// At least the prompt's last token is computed, for its logits.
		shared := commonPrefix(f.ids, p[:len(p)-1])
		pos, at := 0, -1
		if shared == len(f.ids) {
			pos = shared
		} else {
			for j := len(f.snaps) - 1; j >= 0; j-- {
				if f.snaps[j].pos <= shared {
					pos, at = f.snaps[j].pos, j
					break
				}
			}
		}
		if pos > bestPos {
			best, bestPos, bestSnap = i, pos, at
		}
	}
	pre := s.pre
	s.pre = nil
	if fresh || pre != nil && pre.n <= bestPos {
		pre = nil
	}
	if pre != nil {
		best = -1 // the stored state continues more of the prompt
	}
	if best >= 0 && bestSnap >= 0 {
		f := e.free[best]
		if f.cache.Rewind(bestPos, f.snaps[bestSnap].data) != nil {
			best = -1 // cannot happen: the snapshot is of this cache
		} else {
			f.ids = f.ids[:bestPos]
		}
	}
	if best < 0 && empty < 0 && len(e.free) > 0 && len(e.active)+len(e.free)+e.inTransit < e.cfg.MaxBatch {
		empty = -2 // a new slot: keep the free ones' states
	}
	switch {
	case best >= 0:
		sl = e.removeFree(best)
		dropSnaps(sl, bestPos)
		sl.smp.Reset(s.req.Sampling)
		s.fed = bestPos
		s.out.cachedTokens.Store(int64(bestPos))
		e.cached.Add(uint64(bestPos))
	case pre != nil:
		if empty != -2 && len(e.free) > 0 {
			sl = e.removeFree(max(empty, 0))
			dropSnaps(sl, -1)
			sl.smp.Reset(s.req.Sampling)
		} else {
			sl = e.newSlot(s.req.Sampling)
		}
		sl.cache = &cpuState{pre.st}
		sl.ids = append(sl.ids[:0], p[:pre.n]...)
		sl.stored = pre.key
		s.fed = pre.n
		s.out.cachedTokens.Store(int64(pre.n))
		e.cached.Add(uint64(pre.n))
	case empty != -2 && len(e.free) > 0:
		sl = e.removeFree(max(empty, 0))
		sl.ids = sl.ids[:0]
		dropSnaps(sl, -1)
		sl.smp.Reset(s.req.Sampling)
		if sl.cache != nil {
			if err := sl.cache.Reset(); err != nil {
				return sl, err
			}
		} else if err := e.newState(sl, s.limit); err != nil {
			return sl, err
		}
	default:
		sl = e.newSlot(s.req.Sampling)
		if err := e.newState(sl, s.limit); err != nil {
			return sl, err
		}
	}
	// Room for every token the request may add and for its snapshots, so
	// that its steps do not allocate.
	if err := sl.cache.Reserve(s.limit); err != nil {
		sl.ids = sl.ids[:0]
		return sl, err
	}
	if cap(sl.ids) < s.limit {
		sl.ids = append(make([]int, 0, s.limit), sl.ids...)
	}
	sl.every = e.snapEvery(s.limit)
	if sl.every > 0 {
		// The copies this request may take (at multiples of the spacing, and
		// one at the end of the prompt), within the slot's budget together
		// with those it keeps; the oldest kept copies make way if needed,
		// since a later request most likely continues a recent prompt.
		budget := e.snapBudget()
		want := min((s.limit-1)/sl.every-sl.cache.Len()/sl.every+1, budget)
		if over := len(sl.snaps) + want - budget; over > 0 {
			for _, old := range sl.snaps[:over] {
				sl.spare = append(sl.spare, old.data)
			}
			n := copy(sl.snaps, sl.snaps[over:])
			clear(sl.snaps[n:])
			sl.snaps = sl.snaps[:n]
		}
		room := max(0, budget-len(sl.snaps))
		need := min(want, room)
		for len(sl.spare) < need {
			buf, err := sl.cache.NewSnapshot()
			if err != nil {
				break // fewer copies: a later request computes more
			}
			sl.spare = append(sl.spare, buf)
		}
		// Keep spare buffers for later requests, within the budget.
		if len(sl.spare) > room {
			for _, b := range sl.spare[room:] {
				b.Free()
			}
			clear(sl.spare[room:])
			sl.spare = sl.spare[:room]
		}
		sl.snaps = slices.Grow(sl.snaps, len(sl.spare))
	}
	sl.smp.AcceptPrompt(s.req.Prompt)
	sl.adapter = s.req.Adapter
	return sl, nil
}

// newState gives sl a new empty state with room for capacity tokens; on
// failure sl has none.
func (e *Engine) newState(sl *slot, capacity int) error {
	st, err := e.be.NewState(capacity)
	if err != nil {
		sl.cache = nil
		return err
	}
	sl.cache = st
	return nil
}

// commonPrefix is the number of leading tokens a and b share.
func commonPrefix(a, b []int) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
