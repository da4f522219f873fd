package engine

// Stored states: with Config.Store, the state a finished request leaves in
// its slot (what prefix reuse continues) is also written to a StateStore
// (a folder, a Redis server) before the request's terminal event is sent,
// and a request whose prompt continues a stored state that no free slot
// holds reads it back instead of computing those tokens. A server
// restarted, even after kill -9, continues earlier conversations, and
// several servers sharing one store continue each other's.
//
// Each request leaves up to two states: the whole sequence (prompt and the
// output tokens fed) and, when a copy of the Mamba state was taken at the
// end of the prompt, the state of the prompt alone. The next turn of a
// chat extends the first when the earlier answer re-tokenizes as it was
// generated, and the second in any case.
//
// A state is stored under StateKey(identity, ids): the sha256 of the
// model's identity and its token ids. Its value is
//
//	"JAMBASLT"  magic, 8 bytes
//	uint32      format version (stateVersion), little-endian
//	uint32      length of the model identity that follows
//	bytes       model.Model.Identity
//	uint32      number of token ids, then the ids as uint32
//	bytes       the state (cache.Seq.Encode)
//	[32]byte    sha256 of everything above
//
// A value that is missing, truncated, corrupted, of another version, made
// by another model or for other tokens is refused (and deleted from the
// store): the request computes its prompt instead, never continues a wrong
// state.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"slices"
	"sort"
	"time"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/sample"
)

const (
	stateMagic   = "JAMBASLT"
	stateVersion = 1
	// A store that does not answer must not hold requests up: finding
	// the candidates (Index) may take storeIndexTimeout, reading or
	// writing a state storeDataTimeout. A store that timed out is left
	// alone for storeBackoff: requests neither look it up nor wait for
	// their states to be written. A store that refuses at once (down)
	// costs nothing and is tried every time.
	storeIndexTimeout = 2 * time.Second
	storeDataTimeout  = 10 * time.Second
	storeBackoff      = 10 * time.Second
)

// StateStore keeps encoded states by key. Its methods are called from
// several goroutines at once. Every error is only a miss to the engine.
type StateStore interface {
	// Index lists the states held (their keys and token counts).
	Index(ctx context.Context) ([]StoredState, error)
	// Get returns the value stored under key, or an error wrapping
	// ErrStateNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put stores data under st.Key, making room within the store's budget
	// by dropping the least recently used states.
	Put(ctx context.Context, st StoredState, data []byte) error
	// Delete removes key's state, if there is one.
	Delete(ctx context.Context, key string) error
}

// StoredState is one entry of a StateStore.
type StoredState struct {
	Key    string // StateKey of the model identity and the ids
	Tokens int    // number of token ids
	Size   int64  // bytes of the value
}

// ErrStateNotFound is wrapped by StateStore.Get when the key holds nothing.
var ErrStateNotFound = errors.New("no stored state under this key")

// StateKey is the key of the state of ids computed by the model of this
// identity: hex sha256 of both.
func StateKey(identity string, ids []int) string {
	k := newKeyer(identity)
	k.add(ids)
	return k.key()
}

// keyer hashes an identity and a growing prefix of ids.
type keyer struct {
	h   hash.Hash
	buf []byte
}

func newKeyer(identity string) *keyer {
	h := sha256.New()
	fmt.Fprintf(h, "jamba state\x00%s\x00", identity)
	return &keyer{h: h}
}

func (k *keyer) add(ids []int) {
	k.buf = k.buf[:0]
	for _, t := range ids {
		k.buf = binary.LittleEndian.AppendUint32(k.buf, uint32(t))
	}
	k.h.Write(k.buf)
}

func (k *keyer) key() string { return hex.EncodeToString(k.h.Sum(nil)) }

// prefixKeys returns the keys of ids[:n] for each n in lens (ascending).
func prefixKeys(identity string, ids []int, lens []int) []string {
	k := newKeyer(identity)
	keys := make([]string, len(lens))
	at := 0
	for i, n := range lens {
		k.add(ids[at:n])
		at = n
		keys[i] = k.key()
	}
	return keys
}

// encodeState writes the value of a state of ids (sq holding exactly them).
func encodeState(identity string, ids []int, sq *cache.Seq) ([]byte, error) {
	head := make([]byte, 0, 20+len(identity)+4*len(ids))
	head = append(head, stateMagic...)
	head = binary.LittleEndian.AppendUint32(head, stateVersion)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(identity)))
	head = append(head, identity...)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(ids)))
	for _, t := range ids {
		head = binary.LittleEndian.AppendUint32(head, uint32(t))
	}
	var b bytes.Buffer
	b.Grow(len(head) + int(sq.EncodedSize()) + sha256.Size)
	b.Write(head)
	if err := sq.Encode(&b); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes(), nil
}

// decodeState checks a stored value and returns its state, which must be
// of the model of identity and hold exactly the tokens want, with KV room
// for capacity tokens.
func (e *Engine) decodeState(data []byte, want []int, capacity int) (*cache.Seq, error) {
	if len(data) < 16+sha256.Size || string(data[:8]) != stateMagic {
		return nil, errors.New("not a state")
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, errors.New("checksum mismatch (truncated or corrupted)")
	}
	if v := binary.LittleEndian.Uint32(body[8:]); v != stateVersion {
		return nil, fmt.Errorf("format version %d, this engine reads %d", v, stateVersion)
	}
	r := bytes.NewReader(body[12:])
	var n uint32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || int64(n) > int64(r.Len()) {
		return nil, errors.New("bad identity length")
	}
	got := make([]byte, n)
	r.Read(got)
	if string(got) != e.identity {
		return nil, fmt.Errorf("made by another model (identity %.12s…)", got)
	}
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || int(n) != len(want) || int64(n)*4 > int64(r.Len()) {
		return nil, fmt.Errorf("holds %d tokens, want %d", n, len(want))
	}
	ids := make([]byte, 4*len(want))
	r.Read(ids)
	for i := range want {
		if t := binary.LittleEndian.Uint32(ids[4*i:]); int64(t) != int64(want[i]) {
			return nil, fmt.Errorf("token %d is %d, want %d", i, t, want[i])
		}
	}
	st, err := cache.Decode(r, e.m.CacheShape(), capacity, e.cfg.Context)
	if err != nil {
		return nil, err
	}
	if st.Len != len(want) || r.Len() != 0 {
		return nil, fmt.Errorf("a state of %d tokens for %d ids", st.Len, len(want))
	}
	return st, nil
}

// preloaded is a stored state read for a request before it is admitted.
type preloaded struct {
	st  *cache.Seq
	n   int    // tokens it holds: the prompt's first n
	key string // its key in the store
}

// lookup finds the longest stored state that the prompt continues (at
// least its last token is left to compute) and is longer than what the
// free slots hold, and reads it. nil when there is none or the store
// fails; a refused value is deleted from the store.
func (e *Engine) lookup(ctx context.Context, prompt []int, capacity int) *preloaded {
	if !e.storeAvailable() {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, storeIndexTimeout)
	index, err := e.cfg.Store.Index(ictx)
	cancel()
	if err != nil {
		e.storeError(fmt.Errorf("state store index: %w", err))
		return nil
	}
	ctx, cancel = context.WithTimeout(ctx, storeDataTimeout)
	defer cancel()
	e.mu.Lock()
	local := make([]StoredState, 0, len(e.localKeys))
	for k, n := range e.localKeys {
		local = append(local, StoredState{Key: k, Tokens: n.tokens})
	}
	e.mu.Unlock()
	byLen := map[int][]StoredState{}
	for _, list := range [][]StoredState{index, local} {
		for _, st := range list {
			if st.Tokens > 0 && st.Tokens < len(prompt) {
				byLen[st.Tokens] = append(byLen[st.Tokens], st)
			}
		}
	}
	lens := make([]int, 0, len(byLen))
	for n := range byLen {
		lens = append(lens, n)
	}
	sort.Ints(lens)
	keys := prefixKeys(e.identity, prompt, lens)
	isLocal := map[string]bool{}
	for _, st := range local {
		isLocal[st.Key] = true
	}
	for i := len(lens) - 1; i >= 0; i-- {
		for _, st := range byLen[lens[i]] {
			if st.Key != keys[i] {
				continue
			}
			if isLocal[st.Key] {
				return nil // a free slot holds it (or more): no read needed
			}
			data, err := e.cfg.Store.Get(ctx, st.Key)
			if err != nil {
				if !errors.Is(err, ErrStateNotFound) {
					e.storeError(fmt.Errorf("state store: reading %.16s: %w", st.Key, err))
					return nil
				}
				e.cfg.Store.Delete(ctx, st.Key)
				continue
			}
			sq, err := e.decodeState(data, prompt[:st.Tokens], capacity)
			if err != nil {
				e.stateRefused.Add(1)
				e.storeError(fmt.Errorf("state store: refused the state %.16s…: %w", st.Key, err))
				e.cfg.Store.Delete(ctx, st.Key)
				continue
			}
			e.stateLoads.Add(1)
			return &preloaded{st: sq, n: st.Tokens, key: st.Key}
		}
	}
	return nil
}

// storeAvailable is false for storeBackoff after the store timed out.
func (e *Engine) storeAvailable() bool { return time.Now().UnixNano() >= e.storeDownUntil.Load() }

func (e *Engine) storeError(err error) {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		e.storeDownUntil.Store(time.Now().Add(storeBackoff).UnixNano())
		err = fmt.Errorf("%w (not used for the next %v)", err, storeBackoff)
	}
	e.stateErrors.Add(1)
	if e.cfg.OnStoreError != nil {
		e.cfg.OnStoreError(err)
	}
}

// localKey records that a free slot holds the state of key.
type localKey struct{ tokens, count int }

// addLocal and dropLocal keep e.localKeys (with e.mu held): the keys of
// the stored states that free slots hold, which lookup needs not read.
func (e *Engine) addLocal(sl *slot) {
	if sl.stored == "" {
		return
	}
	lk := e.localKeys[sl.stored]
	lk.tokens = len(sl.ids)
	lk.count++
	e.localKeys[sl.stored] = lk
}

func (e *Engine) dropLocal(sl *slot) {
	if sl.stored == "" {
		return
	}
	if lk := e.localKeys[sl.stored]; lk.count > 1 {
		lk.count--
		e.localKeys[sl.stored] = lk
	} else {
		delete(e.localKeys, sl.stored)
	}
	sl.stored = ""
}

// persistJob is a finished request whose slot's states are being stored:
// its terminal event is sent once they are.
type persistJob struct {
	sl     *slot
	out    *Stream
	ev     Event
	prompt int // the request's prompt length (a state is kept at its end)
}

// persistable reports whether sl holds a state worth storing.
// States computed with a LoRA adapter stay in their slot: the store keys
// states by the model's identity alone.
func persistable(sl *slot) bool {
	return len(sl.ids) > 0 && sl.cache != nil && sl.cache.Len() == len(sl.ids) && sl.adapter == nil
}

// writer stores the states of finished requests, one job at a time, then
// hands each slot back to the scheduler and sends the request's terminal
// event.
func (e *Engine) writer() {
	defer close(e.writerDone)
	for {
		e.mu.Lock()
		for len(e.jobs) == 0 && !e.writerStop {
			e.jobsCond.Wait()
		}
		if len(e.jobs) == 0 {
			e.mu.Unlock()
			return
		}
		j := e.jobs[0]
		e.jobs = slices.Delete(e.jobs, 0, 1)
		e.mu.Unlock()

		e.storeSlot(j.sl, j.prompt)
		e.mu.Lock()
		e.returned = append(e.returned, j.sl)
		e.mu.Unlock()
		j.out.events <- j.ev
		close(j.out.events)
		e.writes.Done()
	}
}

// storeSlot writes sl's whole state and the state at the end of its
// prompt (when a copy of the Mamba state was taken there), unless the
// store has them already; sl.stored is then the whole state's key.
func (e *Engine) storeSlot(sl *slot, prompt int) {
	ctx, cancel := context.WithTimeout(context.Background(), storeDataTimeout)
	defer cancel()
	lens := []int{len(sl.ids)}
	var at []float32
	for _, sn := range sl.snaps {
		if sn.pos == prompt && prompt < len(sl.ids) {
			lens, at = []int{prompt, len(sl.ids)}, sn.data.(hostSnapshot)
		}
	}
	keys := prefixKeys(e.identity, sl.ids, lens)
	whole := keys[len(keys)-1]
	if whole == sl.stored {
		return
	}
	sl.stored = ""
	put := func(key string, ids []int, sq *cache.Seq) bool {
		data, err := encodeState(e.identity, ids, sq)
		if err == nil {
			err = e.cfg.Store.Put(ctx, StoredState{Key: key, Tokens: len(ids), Size: int64(len(data))}, data)
		}
		if err != nil {
			e.storeError(fmt.Errorf("state store: writing a state of %d tokens: %w", len(ids), err))
			return false
		}
		e.stateSaves.Add(1)
		return true
	}
	if at != nil {
		if v, err := hostSeq(sl).View(prompt, at); err == nil {
			put(keys[0], sl.ids[:prompt], v)
		}
	}
	if put(whole, sl.ids, hostSeq(sl)) {
		sl.stored = whole
	}
}

// persist hands a finished request's slot to the writer, which sends ev
// once its states are stored. With MaxBatch jobs waiting already (a slow
// store), the states are not stored and ev is sent at once.
func (e *Engine) persist(s *seq, sl *slot, ev Event) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.jobs) >= e.cfg.MaxBatch || e.writerStop || !e.storeAvailable() {
		return false
	}
	e.writes.Add(1)
	e.jobs = append(e.jobs, persistJob{sl: sl, out: s.out, ev: ev, prompt: len(s.req.Prompt)})
	e.inTransit++
	e.jobsCond.Signal()
	return true
}

// takeReturned moves the slots the writer is done with to the free list,
// dropping the least recently used ones beyond MaxBatch slots in all.
// Called by the scheduler.
func (e *Engine) takeReturned() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, sl := range e.returned {
		e.inTransit--
		e.free = append(e.free, sl)
		e.addLocal(sl)
	}
	clear(e.returned)
	e.returned = e.returned[:0]
	for len(e.free) > 0 && len(e.active)+len(e.free)+e.inTransit > e.cfg.MaxBatch {
		e.dropLocal(e.free[0])
		e.free[0] = nil
		e.free = e.free[1:]
	}
}

// hostSeq is the cache.Seq of a slot of the CPU backend (persistable).
func hostSeq(sl *slot) *cache.Seq { return sl.cache.(*cpuState).c }

// removeFree takes free slot i out of the free list. Called by the
// scheduler.
func (e *Engine) removeFree(i int) *slot {
	sl := e.free[i]
	e.free = slices.Delete(e.free, i, i+1)
	if e.cfg.Store != nil {
		e.mu.Lock()
		e.dropLocal(sl)
		e.mu.Unlock()
	}
	return sl
}

// newSlot is a slot without a cache yet.
func (e *Engine) newSlot(p sample.Params) *slot {
	V := e.m.Config.VocabSize
	return &slot{
		smp:     sample.New(p, V),
		scratch: make([]float32, V),
		topIDs:  make([]int, MaxTopLogprobs),
		topLP:   make([]float32, MaxTopLogprobs),
	}
}

// task runs f on the scheduler goroutine, between steps, and waits for it.
func (e *Engine) task(ctx context.Context, f func()) error {
	done := make(chan struct{})
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errClosed
	}
	e.tasks = append(e.tasks, func() { f(); close(done) })
	e.mu.Unlock()
	e.signal()
	select {
	case <-done:
		return nil
	case <-e.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runTasks runs the queued tasks. Called by the scheduler.
func (e *Engine) runTasks() {
	e.mu.Lock()
	ts := e.tasks
	e.tasks = nil
	e.mu.Unlock()
	for _, f := range ts {
		f()
	}
}

// Export writes the states the free slots hold to store, as the writer
// does: each slot's whole state and the state at its last copy of the
// Mamba state (the end of the prompt, for a chat's slot). A chat saved
// under another name uses it.
func (e *Engine) Export(ctx context.Context, store StateStore) error {
	if e.cpu == nil {
		return fmt.Errorf("%w: the states are not on the host (saving them is not done on this backend)", ErrCPUOnly)
	}
	var errs []error
	err := e.task(ctx, func() {
		for _, sl := range e.free {
			if !persistable(sl) {
				continue
			}
			put := func(ids []int, sq *cache.Seq) {
				data, err := encodeState(e.identity, ids, sq)
				if err == nil {
					err = store.Put(ctx, StoredState{Key: StateKey(e.identity, ids), Tokens: len(ids), Size: int64(len(data))}, data)
				}
				if err != nil {
					errs = append(errs, err)
				}
			}
			if k := len(sl.snaps); k > 0 && sl.snaps[k-1].pos < len(sl.ids) {
				sn := sl.snaps[k-1]
				if v, err := hostSeq(sl).View(sn.pos, sn.data.(hostSnapshot)); err == nil {
					put(sl.ids[:sn.pos], v)
				}
			}
			put(sl.ids, hostSeq(sl))
		}
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// Forget drops the states the free slots hold, and their copies of the
// Mamba state: later requests compute their prompts whole (unless the
// store holds a state they continue).
func (e *Engine) Forget(ctx context.Context) error {
	return e.task(ctx, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, sl := range e.free {
			e.dropLocal(sl)
			sl.ids = sl.ids[:0]
			if sl.cache != nil && sl.cache.Reset() != nil {
				freeSlot(sl) // a new state is made when the slot is taken
			}
			dropSnaps(sl, -1)
		}
	})
}
