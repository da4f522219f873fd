package engine

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jamba-go/jamba/model"
)

// memStore is a StateStore in memory, as a test's shared medium.
type memStore struct {
	mu   sync.Mutex
	m    map[string][]byte
	n    map[string]int
	puts int
	fail error // every call fails with it when set (a store that is down)
	hang bool  // every call waits for its context to end (a store that hangs)
}

// hung waits out ctx when the store hangs.
func (s *memStore) hung(ctx context.Context) error {
	s.mu.Lock()
	h := s.hang
	s.mu.Unlock()
	if !h {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}, n: map[string]int{}} }

func (s *memStore) Index(ctx context.Context) ([]StoredState, error) {
	if err := s.hung(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []StoredState
	for k, v := range s.m {
		out = append(out, StoredState{Key: k, Tokens: s.n[k], Size: int64(len(v))})
	}
	return out, nil
}

func (s *memStore) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.hung(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	v, ok := s.m[key]
	if !ok {
		return nil, ErrStateNotFound
	}
	return slices.Clone(v), nil
}

func (s *memStore) Put(ctx context.Context, st StoredState, data []byte) error {
	if err := s.hung(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.m[st.Key], s.n[st.Key] = slices.Clone(data), st.Tokens
	s.puts++
	return nil
}

func (s *memStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	delete(s.n, key)
	return nil
}

// keys lists the tokens of each stored state, sorted.
func (s *memStore) lens() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, n := range s.n {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// TestStoreSurvivesRestart: a request's states are in the store when its
// stream ends (no Close: a killed process), the next engine on the store
// continues from them with every earlier token cached and the same bits
// as an engine that computes the whole prompt; a second engine sharing
// the store continues the first's conversation while the first runs.
func TestStoreSurvivesRestart(t *testing.T) {
	store := newMemStore()
	cfg := Config{MaxBatch: 2, StepTokens: 16, Store: store}
	first := newEngine(t, cfg)
	p := prompt(3, 40)
	r1 := runLogprobs(t, first, p, 8)
	// The whole state (prompt and the 7 answer tokens fed) and the state
	// at the end of the prompt.
	if got, want := store.lens(), []int{len(p), len(p) + len(r1.ids) - 1}; !slices.Equal(got, want) {
		t.Fatalf("stored states of %v tokens when the stream ended, want %v", got, want)
	}

	next := append(append(append([]int(nil), p...), r1.ids...), prompt(4, 12)[1:]...)
	fresh := newEngine(t, Config{MaxBatch: 2, StepTokens: 16, NoPrefixReuse: true})
	want := runLogprobs(t, fresh, next, 8)

	second := newEngine(t, cfg) // first is still running: a replica
	got := runLogprobs(t, second, next, 8)
	if wantCached := len(p) + len(r1.ids) - 1; got.cached != wantCached {
		t.Errorf("the second engine had %d prompt tokens cached, want %d (the earlier prompt and the answer tokens fed)", got.cached, wantCached)
	}
	sameResult(t, "continued from the store", got, want)
	if st := second.Stats(); st.StateLoads != 1 || st.StateErrors != 0 {
		t.Errorf("stats %+v", st)
	}

	// A turn whose earlier answer differs (re-tokenized otherwise)
	// continues from the state at the end of the prompt.
	other := append(append(append([]int(nil), p...), 7, 8, 9), prompt(5, 6)[1:]...)
	wantOther := runLogprobs(t, fresh, other, 4)
	third := newEngine(t, cfg)
	gotOther := runLogprobs(t, third, other, 4)
	if gotOther.cached != len(p) {
		t.Errorf("a prompt sharing only the earlier prompt had %d tokens cached, want %d", gotOther.cached, len(p))
	}
	sameResult(t, "continued from the prompt's state", gotOther, wantOther)
}

// TestStoreRefusesBadStates: a stored value that is corrupted, truncated,
// of another model or for other tokens is refused and deleted, and the
// request computes its prompt with the same result; a store that is down
// is a miss, never an error of the request.
func TestStoreRefusesBadStates(t *testing.T) {
	p := prompt(6, 30)
	next := append(append([]int(nil), p...), prompt(7, 9)[1:]...)
	fresh := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, NoPrefixReuse: true})
	want := runLogprobs(t, fresh, next, 6)

	good := newMemStore()
	runLogprobs(t, newEngine(t, Config{MaxBatch: 1, StepTokens: 16, Store: good, SnapshotBytes: -1}), p, 1)
	if len(good.m) != 1 {
		t.Fatalf("%d states stored", len(good.m))
	}
	var key string
	var value []byte
	for k, v := range good.m {
		key, value = k, v
	}
	otherModel := slices.Clone(value)
	copy(otherModel[16:], "ffffffffffff") // the identity's first characters, checksum redone
	reseal := func(b []byte) []byte {
		body := b[:len(b)-32]
		sum := sha256.Sum256(body)
		return append(slices.Clone(body), sum[:]...)
	}
	otherTokens := slices.Clone(value)
	otherTokens[16+64+4+4] ^= 1 // the second token id (after the identity and the count)
	for name, bad := range map[string][]byte{
		"corrupted":        append(append(slices.Clone(value[:len(value)/2]), value[len(value)/2]^1), value[len(value)/2+1:]...),
		"truncated":        value[:len(value)-7],
		"of another model": reseal(otherModel),
		"for other tokens": reseal(otherTokens),
	} {
		store := newMemStore()
		store.Put(context.Background(), StoredState{Key: key, Tokens: len(p)}, bad)
		var errs []error
		var mu sync.Mutex
		e := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, Store: store, OnStoreError: func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}})
		r := runLogprobs(t, e, next, 6)
		if r.cached != 0 {
			t.Fatalf("%s state: %d tokens cached", name, r.cached)
		}
		sameResult(t, name+" state", r, want)
		if _, ok := store.m[key]; ok {
			t.Errorf("%s state: still in the store", name)
		}
		if st := e.Stats(); st.StateRefused != 1 || len(errs) == 0 {
			t.Errorf("%s state: stats %+v, errors %v", name, st, errs)
		}
	}

	down := newMemStore()
	down.fail = fmt.Errorf("connection refused")
	e := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, Store: down})
	sameResult(t, "a store that is down", runLogprobs(t, e, next, 6), want)
	if st := e.Stats(); st.StateErrors < 2 {
		t.Errorf("a store that is down: %d errors counted", st.StateErrors)
	}
}

// TestStoreHangs: a store that does not answer holds the first request up
// for storeIndexTimeout at most, and is then left alone: the next
// requests neither look it up nor wait for a write, and answer the same.
func TestStoreHangs(t *testing.T) {
	p := prompt(9, 20)
	fresh := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, NoPrefixReuse: true})
	want := runLogprobs(t, fresh, p, 4)

	store := newMemStore()
	store.hang = true
	var mu sync.Mutex
	var errs []string
	e := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, Store: store, OnStoreError: func(err error) {
		mu.Lock()
		errs = append(errs, err.Error())
		mu.Unlock()
	}})
	start := time.Now()
	sameResult(t, "the first request on a hung store", runLogprobs(t, e, p, 4), want)
	// The timeout, and a margin for this shared machine.
	if el := time.Since(start); el > storeIndexTimeout+time.Second {
		t.Errorf("the first request took %v with a hung store", el)
	}
	start = time.Now()
	sameResult(t, "the next request", runLogprobs(t, e, p, 4), want)
	if el := time.Since(start); el > storeIndexTimeout/2 {
		t.Errorf("the next request took %v: it waited for the hung store again", el)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 || !strings.Contains(errs[0], "not used for the next") {
		t.Errorf("errors reported: %q", errs)
	}
}

// TestExportForget: Export writes the free slot's state to another store,
// which another engine continues; Forget drops the slot's state so that
// the next request computes its prompt.
func TestExportForget(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 1, StepTokens: 16})
	p := prompt(8, 20)
	runLogprobs(t, e, p, 1)
	saved := newMemStore()
	if err := e.Export(context.Background(), saved); err != nil {
		t.Fatal(err)
	}
	if got := saved.lens(); !slices.Equal(got, []int{len(p)}) {
		t.Fatalf("exported states of %v tokens", got)
	}
	next := append(slices.Clone(p), 5, 6, 7)
	other := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, Store: saved})
	if r := runLogprobs(t, other, next, 2); r.cached != len(p) {
		t.Errorf("continuing the exported state: %d cached, want %d", r.cached, len(p))
	}
	if err := e.Forget(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := runLogprobs(t, e, next, 2); r.cached != 0 {
		t.Errorf("after Forget: %d cached", r.cached)
	}
}

// FuzzDecodeState: any bytes given as a stored value are refused with an
// error or decoded into a state of exactly the tokens asked for; nothing
// panics or allocates past the context.
func FuzzDecodeState(f *testing.F) {
	m := demoModelFor(f)
	e, err := New(m, Config{MaxBatch: 1, Context: 64})
	if err != nil {
		f.Fatal(err)
	}
	defer e.Close()
	want := []int{1, 5, 9}
	sq := m.NewCache(8)
	ws := m.NewWorkspace()
	if err := ws.Forward([]model.SeqInput{{Tokens: want, Cache: sq}}); err != nil {
		f.Fatal(err)
	}
	good, err := encodeState(e.identity, want, sq)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(stateMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := e.decodeState(data, want, 8)
		if err == nil && st.Len != len(want) {
			t.Fatalf("decoded a state of %d tokens for %d", st.Len, len(want))
		}
	})
}
