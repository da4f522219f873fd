package engine

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
)

// greedyWith decodes n tokens greedily from p through a Workspace, with
// the adapter lr applied on the fly (nil: the base), stopping at an
// end-of-sequence token as the engine does.
func greedyWith(t *testing.T, m *model.Model, lr *model.LowRank, p []int, n int) []int {
	t.Helper()
	ws := m.NewWorkspace()
	c := m.NewCache(len(p) + n)
	toks := p
	var out []int
	eos := map[int]bool{}
	for _, id := range m.EOS() {
		eos[id] = true
	}
	for range n {
		if err := ws.Forward([]model.SeqInput{{Tokens: toks, Cache: c, Adapter: lr}}); err != nil {
			t.Fatal(err)
		}
		next := model.Argmax(ws.Logits(0))
		if eos[next] {
			break
		}
		out = append(out, next)
		toks = []int{next}
	}
	return out
}

// netHTTPAdapter is the demo model's net/http adapter in testdata, in the
// form applied on the fly.
func netHTTPAdapter(t *testing.T, m *model.Model) *model.LowRank {
	t.Helper()
	ad, err := lora.Load(filepath.Join("..", "testdata", "lora", "gostd-nethttp"), m.Config)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := lora.LowRankFor(m, ad)
	if err != nil {
		t.Fatal(err)
	}
	return lr
}

// TestAdapterRequests runs requests with a LoRA adapter (the demo model's
// net/http adapter in testdata, applied on the fly) beside requests without
// one in one engine: each gives the greedy tokens of a plain decode with
// its adapter, alone and batched together; a finished request's state is
// continued only by a later request of the same adapter (an adapter
// request whose prompt continues a base request's text computes it again).
func TestAdapterRequests(t *testing.T) {
	m := demoModelFor(t)
	lr := netHTTPAdapter(t, m)
	e := newEngine(t, Config{MaxBatch: 4})
	ctx := context.Background()
	const n = 24
	run := func(p []int, a *model.LowRank, cached bool, what string) []int {
		t.Helper()
		s, err := e.Submit(ctx, Request{Prompt: p, MaxTokens: n, Adapter: a})
		if err != nil {
			t.Fatal(err)
		}
		ids, last := collect(t, s)
		if want := greedyWith(t, m, a, p, n); last.Err != nil || !equalIDs(ids, want) {
			t.Errorf("%s: %v (%v), want %v", what, ids, last.Err, want)
		}
		if got := s.CachedTokens() > 0; got != cached {
			t.Errorf("%s: %d prompt tokens continued from an earlier state", what, s.CachedTokens())
		}
		return ids
	}
	cat := func(parts ...[]int) []int {
		var out []int
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	p := prompt(2, 40)
	if equalIDs(greedyWith(t, m, nil, p, n), greedyWith(t, m, lr, p, n)) {
		t.Fatalf("the adapter does not change the greedy tokens")
	}
	b := run(p, nil, false, "base")
	// A prompt that continues the base's finished state, with the adapter:
	// computed again.
	q := cat(p, b, []int{5})
	a := run(q, lr, false, "adapter continuing the base's text")
	// The adapter continuing its own state, and the base its own.
	run(cat(q, a, []int{6}), lr, true, "adapter continuing the adapter's text")
	run(cat(p, b, []int{7}), nil, true, "base continuing the base's text")
	want := map[*model.LowRank][]int{nil: greedyWith(t, m, nil, p, n), lr: greedyWith(t, m, lr, p, n)}
	submit := func(a *model.LowRank) *Stream {
		s, err := e.Submit(ctx, Request{Prompt: p, MaxTokens: n, Adapter: a})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Together in one batch.
	s1, s2, s3 := submit(lr), submit(nil), submit(lr)
	for i, c := range []struct {
		a *model.LowRank
		s *Stream
	}{{lr, s1}, {nil, s2}, {lr, s3}} {
		ids, last := collect(t, c.s)
		if last.Err != nil || !equalIDs(ids, want[c.a]) {
			t.Errorf("batched request %d: %v (%v), want %v", i, ids, last.Err, want[c.a])
		}
	}
	if st := e.Stats(); st.StepSequences <= st.Steps {
		t.Errorf("the batched requests never shared a step: %+v", st)
	}
}

// TestAdapterStatesNotStored: with a state store, a request with an
// adapter writes nothing to it (the store keys states by the model alone),
// nor to an export of the free slots,
// and one whose prompt continues a stored base state does not read it; a
// base request still stores and reads.
func TestAdapterStatesNotStored(t *testing.T) {
	m := demoModelFor(t)
	lr := netHTTPAdapter(t, m)
	store := newMemStore()
	ctx := context.Background()
	const n = 8
	p := prompt(4, 30)
	run := func(e *Engine, p []int, a *model.LowRank) *Stream {
		t.Helper()
		s, err := e.Submit(ctx, Request{Prompt: p, MaxTokens: n, Adapter: a})
		if err != nil {
			t.Fatal(err)
		}
		ids, last := collect(t, s)
		if want := greedyWith(t, m, a, p, n); last.Err != nil || !equalIDs(ids, want) {
			t.Errorf("%v (%v), want %v", ids, last.Err, want)
		}
		return s
	}
	e := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, Store: store})
	run(e, p, lr)
	store.mu.Lock()
	puts := store.puts
	store.mu.Unlock()
	if puts != 0 {
		t.Fatalf("an adapter request stored %d states", puts)
	}
	// Nor does an export of the free slots (a chat's save) take its state.
	exported := newMemStore()
	if err := e.Export(ctx, exported); err != nil {
		t.Fatal(err)
	}
	if exported.puts != 0 {
		t.Fatalf("an export stored %d states of an adapter request", exported.puts)
	}
	run(e, p, nil)
	store.mu.Lock()
	puts = store.puts
	store.mu.Unlock()
	if puts == 0 {
		t.Fatalf("a base request stored nothing")
	}
	// A second engine on the same store: the base continues the stored
	// state, the adapter computes its prompt.
	longer := append(append([]int(nil), p...), greedyWith(t, m, nil, p, n)...)
	longer = append(longer, 9)
	e2 := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, Store: store})
	if s := run(e2, longer, lr); s.CachedTokens() != 0 {
		t.Errorf("the adapter request continued %d tokens of a base state", s.CachedTokens())
	}
	e3 := newEngine(t, Config{MaxBatch: 1, StepTokens: 16, Store: store})
	if s := run(e3, longer, nil); s.CachedTokens() == 0 {
		t.Errorf("the base request did not continue its stored state")
	}
}

// TestAdapterGroup: the choices of a group with an adapter each give the
// adapter's greedy tokens (the followers continue the leader's state,
// computed with it); a group whose requests name different adapters is
// refused, since a follower would continue another adapter's state.
func TestAdapterGroup(t *testing.T) {
	m := demoModelFor(t)
	lr := netHTTPAdapter(t, m)
	e := newEngine(t, Config{MaxBatch: 3})
	ctx := context.Background()
	const n = 16
	p := prompt(3, 30)
	r := Request{Prompt: p, MaxTokens: n, Adapter: lr}
	base := r
	base.Adapter = nil
	for _, g := range [][]Request{{r, base}, {base, r}} {
		if _, err := e.SubmitGroup(ctx, g); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("a group of the base and an adapter: %v", err)
		}
	}
	sts, err := e.SubmitGroup(ctx, []Request{r, r, r})
	if err != nil {
		t.Fatal(err)
	}
	want := greedyWith(t, m, lr, p, n)
	for i, st := range sts {
		if ids, last := collect(t, st); last.Err != nil || !equalIDs(ids, want) {
			t.Errorf("choice %d: %v (%v), want %v", i, ids, last.Err, want)
		}
	}
}
