package engine

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/model"
)

// result is one request's output and how many prompt tokens it continued.
type result struct {
	ids    []int
	lps    []float32
	tops   []TokenLogprob
	cached int
}

// runLogprobs runs one greedy request past end-of-sequence with log-
// probabilities and 3 alternatives.
func runLogprobs(t *testing.T, e *Engine, p []int, n int) result {
	t.Helper()
	st, err := e.Submit(context.Background(), Request{Prompt: p, MaxTokens: n, IgnoreEOS: true, Logprobs: true, TopLogprobs: 3})
	if err != nil {
		t.Fatal(err)
	}
	var r result
	for ev := range st.Events() {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		if ev.HasToken() {
			r.ids = append(r.ids, ev.Token)
			r.lps = append(r.lps, ev.Logprob)
			r.tops = append(r.tops, ev.Top...)
		}
	}
	r.cached = st.CachedTokens()
	return r
}

// sameResult fails unless a and b have the same tokens, log-probability
// bits and alternatives.
func sameResult(t *testing.T, what string, a, b result) {
	t.Helper()
	if !slices.Equal(a.ids, b.ids) {
		t.Fatalf("%s: tokens %v, without reuse %v", what, a.ids, b.ids)
	}
	for i := range a.lps {
		if math.Float32bits(a.lps[i]) != math.Float32bits(b.lps[i]) {
			t.Fatalf("%s: token %d log-probability %v, without reuse %v", what, i, a.lps[i], b.lps[i])
		}
	}
	if !slices.Equal(a.tops, b.tops) {
		t.Fatalf("%s: top alternatives differ", what)
	}
}

// TestPrefixReuse: a request whose prompt continues the tokens of a
// finished one starts from that request's state. It reports the prompt
// tokens it did not compute, and its tokens, log-probabilities and top
// alternatives are the same bits as on an engine that computes the whole
// prompt. A prompt that leaves a state's tokens, or that ends where a state
// ends (its last token must still be computed for its logits), continues
// from the copy of the state taken at the end of an earlier prompt when it
// shares that prompt, and computes everything otherwise (every prompt here
// is shorter than the first copy at a multiple of 512).
func TestPrefixReuse(t *testing.T) {
	run := func(e *Engine, p []int, n int) result { t.Helper(); return runLogprobs(t, e, p, n) }
	same := func(what string, a, b result) { t.Helper(); sameResult(t, what, a, b) }
	// Prompts of 40 tokens and more in steps of 16: the reused state was
	// computed in other chunks than the whole prompt is without reuse.
	cfg := Config{MaxBatch: 2, StepTokens: 16}
	reuse := newEngine(t, cfg)
	cfg.NoPrefixReuse = true
	fresh := newEngine(t, cfg)

	p := prompt(1, 40)
	first := run(reuse, p, 12)
	if first.cached != 0 {
		t.Fatalf("the first request reused %d tokens", first.cached)
	}
	// The next turn: the prompt, the output and more. The last output
	// token was sampled but never fed, so the state holds one fewer.
	p2 := slices.Concat(p, first.ids, prompt(2, 10)[1:])
	got := run(reuse, p2, 12)
	if want := len(p) + len(first.ids) - 1; got.cached != want {
		t.Errorf("second turn reused %d tokens, want %d", got.cached, want)
	}
	want := run(fresh, p2, 12)
	if want.cached != 0 {
		t.Errorf("an engine without reuse reused %d tokens", want.cached)
	}
	same("second turn", got, want)

	// Exactly the tokens of the last state: its last token must be
	// computed again, so the request continues from the copy taken at the
	// end of the previous prompt.
	held := slices.Concat(p2, got.ids[:len(got.ids)-1])
	r := run(reuse, held, 5)
	if r.cached != len(p2) {
		t.Errorf("a prompt equal to a state's tokens continued %d, want the previous prompt's %d", r.cached, len(p2))
	}
	same("prompt equal to the state", r, run(fresh, held, 5))
	total := got.cached + r.cached

	// A prompt that leaves the state's tokens 3 tokens after the first
	// prompt: it continues from the copy at that prompt's end.
	off := slices.Clone(held)
	off[len(p)+3] = (off[len(p)+3] + 1) % 4000
	off = append(off, 77)
	r = run(reuse, off, 5)
	if r.cached != len(p) {
		t.Errorf("a prompt leaving the state after %d tokens continued %d, want %d", len(p)+3, r.cached, len(p))
	}
	same("diverging prompt", r, run(fresh, off, 5))
	total += r.cached

	// One that leaves it before the first copy: nothing to continue.
	early := slices.Clone(held)
	early[5] = (early[5] + 1) % 4000
	if r = run(reuse, early, 5); r.cached != 0 {
		t.Errorf("a prompt leaving the state after 5 tokens continued %d", r.cached)
	}
	same("early diverging prompt", r, run(fresh, early, 5))

	if st := reuse.Stats(); st.CachedTokens != uint64(total) {
		t.Errorf("Stats().CachedTokens = %d, want %d", st.CachedTokens, total)
	}
}

// TestPrefixReuseLongest: with several finished states, a request continues
// the longest one its prompt starts with, while another request runs beside
// it, and the result is the same as without reuse; a request that matches
// no state takes a new slot rather than a free one's state while the slots
// are fewer than MaxBatch.
func TestPrefixReuseLongest(t *testing.T) {
	cfg := Config{MaxBatch: 3, StepTokens: 24}
	reuse := newEngine(t, cfg)
	cfg.NoPrefixReuse = true
	fresh := newEngine(t, cfg)
	a := prompt(3, 30)
	outA, _ := collect(t, submit(t, fresh, a, 4))
	b := slices.Concat(a, outA, prompt(4, 20)[1:])
	// Run both at once, so that b cannot continue a's state: two states,
	// a+outA[:3] and b+outB[:5], the first a prefix of the second.
	sa, sb := submit(t, reuse, a, 4), submit(t, reuse, b, 6)
	collect(t, sa)
	outB, _ := collect(t, sb)
	if sb.CachedTokens() != 0 {
		t.Fatalf("b reused %d tokens while a was running", sb.CachedTokens())
	}
	// An unrelated request takes the third slot and leaves both states.
	collect(t, submit(t, reuse, prompt(5, 50), 3))
	next := slices.Concat(b, outB, []int{42, 43})
	other := submit(t, reuse, prompt(6, 50), 20)
	st := submit(t, reuse, next, 8)
	got, _ := collect(t, st)
	collect(t, other)
	if want := len(b) + len(outB) - 1; st.CachedTokens() != want {
		t.Errorf("reused %d tokens, want the longer state's %d", st.CachedTokens(), want)
	}
	want, _ := collect(t, submit(t, fresh, next, 8))
	if !slices.Equal(got, want) {
		t.Errorf("tokens %v, without reuse %v", got, want)
	}
}

func submit(t *testing.T, e *Engine, p []int, n int) *Stream {
	t.Helper()
	st, err := e.Submit(context.Background(), Request{Prompt: p, MaxTokens: n, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPrefixReuseSnapshots: a prompt that shares only part of a finished
// request's tokens continues from the last Mamba snapshot (every 512
// tokens here) within the shared part, with the same bits as computing it
// all; so does a repeated prompt. With SnapshotBytes < 0 only whole states
// are continued.
func TestPrefixReuseSnapshots(t *testing.T) {
	cfg := Config{MaxBatch: 2, StepTokens: 100}
	reuse := newEngine(t, cfg)
	cfg.NoPrefixReuse = true
	fresh := newEngine(t, cfg)
	cfg.NoPrefixReuse, cfg.SnapshotBytes = false, -1
	whole := newEngine(t, cfg)
	if every := reuse.snapEvery(704); every != snapQuantum {
		t.Fatalf("snapshot spacing %d for 704 tokens, want %d", every, snapQuantum)
	}

	a := prompt(7, 700)
	runLogprobs(t, reuse, a, 4)
	runLogprobs(t, whole, a, 4)
	// Shares 600 tokens: continues from the snapshot at 512.
	b := slices.Concat(a[:600], prompt(8, 50)[1:])
	got := runLogprobs(t, reuse, b, 6)
	if got.cached != 512 {
		t.Errorf("a prompt sharing 600 tokens continued %d, want 512", got.cached)
	}
	sameResult(t, "shared beginning", got, runLogprobs(t, fresh, b, 6))
	if r := runLogprobs(t, whole, b, 6); r.cached != 0 {
		t.Errorf("without snapshots a prompt sharing 600 tokens continued %d", r.cached)
	}
	// The same prompt again: its state holds it whole, but its last token
	// must be computed again, so it continues from the snapshot at 512.
	got = runLogprobs(t, reuse, b, 6)
	if got.cached != 512 {
		t.Errorf("a repeated prompt of %d tokens continued %d, want 512", len(b), got.cached)
	}
	sameResult(t, "repeated prompt", got, runLogprobs(t, fresh, b, 6))
	// Sharing fewer tokens than the first snapshot: nothing to continue.
	c := slices.Concat(a[:200], prompt(9, 30)[1:])
	if r := runLogprobs(t, reuse, c, 3); r.cached != 0 {
		t.Errorf("a prompt sharing 200 tokens continued %d", r.cached)
	}
}

// TestPrefixReuseBF16KV: with keys and values cached in bfloat16, continuing
// a whole state and rewinding to a snapshot give the bits of computing the
// whole prompt, as with float32.
func TestPrefixReuseBF16KV(t *testing.T) {
	m, err := demo.Load(model.Options{KVCache: "bf16"})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(cfg Config) *Engine {
		e, err := New(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	reuse := mk(Config{MaxBatch: 2, StepTokens: 100})
	fresh := mk(Config{MaxBatch: 2, StepTokens: 100, NoPrefixReuse: true})
	a := prompt(11, 700)
	first := runLogprobs(t, reuse, a, 5)
	next := slices.Concat(a, first.ids, []int{5, 6, 7})
	got := runLogprobs(t, reuse, next, 5)
	if want := len(a) + len(first.ids) - 1; got.cached != want {
		t.Errorf("continued %d tokens, want %d", got.cached, want)
	}
	sameResult(t, "whole state, bfloat16 KV", got, runLogprobs(t, fresh, next, 5))
	b := slices.Concat(a[:600], prompt(12, 20)[1:])
	got = runLogprobs(t, reuse, b, 5)
	if got.cached != 512 {
		t.Errorf("a prompt sharing 600 tokens continued %d, want 512", got.cached)
	}
	sameResult(t, "snapshot, bfloat16 KV", got, runLogprobs(t, fresh, b, 5))
}

// TestPrefillChunk: while a stream decodes, a new prompt enters the steps
// PrefillChunk tokens at a time (so the stream waits for one chunk per
// token at most), and its output is the same as computed alone; alone, a
// prompt takes whole StepTokens chunks.
func TestPrefillChunk(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 2, StepTokens: 512, PrefillChunk: 16, NoPrefixReuse: true})
	long := submit(t, e, prompt(21, 10), 400)
	<-long.Events() // decoding now
	before := e.Stats().Steps
	p := prompt(22, 100)
	st := submit(t, e, p, 5)
	got, _ := collect(t, st)
	steps := e.Stats().Steps - before
	collect(t, long)
	if steps < 100/16+1 {
		t.Errorf("a 100-token prompt beside a decoding stream took %d steps, want at least %d chunks of 16", steps, 100/16+1)
	}
	want, _ := generate(t, p, 5)
	if !slices.Equal(got, want) {
		t.Errorf("chunked beside a stream: %v, alone %v", got, want)
	}
	// Alone: one step for the prompt, then one per token.
	before = e.Stats().Steps
	collect(t, submit(t, e, prompt(23, 100), 1))
	if n := e.Stats().Steps - before; n != 1 {
		t.Errorf("a 100-token prompt alone took %d steps, want 1", n)
	}
}

// TestPrefixReuseEvictsOldCopies: with room for two copies of the Mamba
// state per slot, a conversation that goes on turn after turn on one slot
// keeps the newest copies, so every turn continues from the end of the
// previous prompt.
func TestPrefixReuseEvictsOldCopies(t *testing.T) {
	m := demoModelFor(t)
	floats := m.NewCache(1).MambaFloats()
	e := newEngine(t, Config{MaxBatch: 1, SnapshotBytes: int64(2 * 4 * floats)})
	if got := e.snapBudget(); got != 2 {
		t.Fatalf("budget of %d copies, want 2", got)
	}
	fresh := newEngine(t, Config{MaxBatch: 1, NoPrefixReuse: true})
	p := prompt(31, 30)
	for turn := 1; turn <= 5; turn++ {
		r := runLogprobs(t, e, p, 3)
		if want := len(p) - 10; turn > 1 && r.cached != want {
			t.Errorf("turn %d: continued %d tokens, want the previous prompt's %d", turn, r.cached, want)
		}
		sameResult(t, fmt.Sprintf("turn %d", turn), r, runLogprobs(t, fresh, p, 3))
		// The next turn repeats this prompt and adds 10 other tokens (not
		// this turn's output).
		p = slices.Concat(p, prompt(32+turn, 11)[1:])
	}
}
