package engine

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

// The choices of a group compute the prompt once and each generate what
// the same request alone generates (same seed, same bits).
func TestGroupComputesPromptOnce(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 6, NoPrefixReuse: true})
	p := prompt(3, 40)
	var rs []Request
	for i := range 4 {
		rs = append(rs, Request{Prompt: p, MaxTokens: 12, Sampling: sample.Params{Temperature: 1, TopP: 1, Seed: uint64(100 + i)}})
	}
	// Alone, one at a time.
	var want [][]int
	for _, r := range rs {
		st, err := e.Submit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		ids, last := collect(t, st)
		if last.Finish != model.FinishLength {
			t.Fatalf("finish %q, err %v", last.Finish, last.Err)
		}
		want = append(want, ids)
	}
	before := e.Stats()
	sts, err := e.SubmitGroup(context.Background(), rs)
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[string]bool{}
	for i, st := range sts {
		ids, last := collect(t, st)
		if last.Finish != model.FinishLength || !equalIDs(ids, want[i]) {
			t.Errorf("choice %d: %v (%q %v), alone %v", i, ids, last.Finish, last.Err, want[i])
		}
		if st.PromptTokens() != len(p) {
			t.Errorf("choice %d: PromptTokens %d", i, st.PromptTokens())
		}
		distinct[string(rune(ids[0]))+string(rune(ids[1]))+string(rune(ids[2]))] = true
	}
	after := e.Stats()
	if got := after.PromptTokens - before.PromptTokens; got != uint64(len(p)) {
		t.Errorf("the group computed %d prompt tokens, want %d (once)", got, len(p))
	}
	if got := after.GeneratedTokens - before.GeneratedTokens; got != 4*12 {
		t.Errorf("generated %d tokens, want 48", got)
	}
	if len(distinct) < 2 {
		t.Errorf("four seeds gave the same beginning: %v", distinct)
	}
}

func TestGroupLimits(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 2})
	r := Request{Prompt: prompt(1, 5), MaxTokens: 2}
	if _, err := e.SubmitGroup(context.Background(), []Request{r, r, r}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("3 choices on 2 slots: %v", err)
	}
	other := r
	other.Prompt = prompt(2, 5)
	if _, err := e.SubmitGroup(context.Background(), []Request{r, other}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("different prompts: %v", err)
	}
	// A group waits for enough free slots behind a running request.
	long, _ := e.Submit(context.Background(), Request{Prompt: prompt(3, 5), MaxTokens: 30})
	sts, err := e.SubmitGroup(context.Background(), []Request{r, r})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range append(sts, long) {
		if _, last := collect(t, st); last.Err != nil {
			t.Fatal(last.Err)
		}
	}
}

// Cancelling a group ends every choice, also those waiting for the
// prompt.
func TestGroupCancel(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 4, StepTokens: 8, PrefillChunk: 8})
	ctx, cancel := context.WithCancel(context.Background())
	r := Request{Prompt: prompt(4, 300), MaxTokens: 50}
	sts, err := e.SubmitGroup(ctx, []Request{r, r, r})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for i, st := range sts {
		if _, last := collect(t, st); !errors.Is(last.Err, context.Canceled) {
			t.Errorf("choice %d ended with %v, %q", i, last.Err, last.Finish)
		}
	}
	// The engine still serves.
	st, _ := e.Submit(context.Background(), Request{Prompt: prompt(5, 5), MaxTokens: 3})
	if ids, last := collect(t, st); len(ids) != 3 || last.Err != nil {
		t.Fatalf("after the cancel: %v %v", ids, last.Err)
	}
}

// onlyTokens allows a fixed sequence of tokens, then is done.
type onlyTokens struct {
	seq []int
	pos int
}

func (c *onlyTokens) Mask(x []float32) {
	for i := range x {
		if c.pos >= len(c.seq) || i != c.seq[c.pos] {
			x[i] = float32(math.Inf(-1))
		}
	}
}
func (c *onlyTokens) Accept(id int) bool {
	if c.pos >= len(c.seq) || id != c.seq[c.pos] {
		return false
	}
	c.pos++
	return true
}
func (c *onlyTokens) Done() bool { return c.pos == len(c.seq) }

// A constraint decides the tokens whatever the model prefers, and ends
// the request when it is done; logit bias and sampling come before it.
func TestConstraint(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 2})
	want := []int{500, 17, 2999}
	st, err := e.Submit(context.Background(), Request{Prompt: prompt(6, 8), MaxTokens: 20, MinTokens: 10,
		Sampling: sample.Params{Temperature: 1, TopP: 1, Seed: 9}, LogitBias: map[int]float32{17: -100},
		Constraint: &onlyTokens{seq: want}})
	if err != nil {
		t.Fatal(err)
	}
	ids, last := collect(t, st)
	if !equalIDs(ids, want) || last.Finish != model.FinishStop {
		t.Fatalf("got %v %q %v, want %v and stop", ids, last.Finish, last.Err, want)
	}
	// A constraint that allows no token of the vocabulary (the demo model
	// has 4096) cannot go on: the request fails with ErrConstraint rather
	// than emitting something else.
	st, _ = e.Submit(context.Background(), Request{Prompt: prompt(6, 8), MaxTokens: 20,
		Constraint: &onlyTokens{seq: []int{5000}}})
	if ids, last := collect(t, st); len(ids) != 0 || !errors.Is(last.Err, ErrConstraint) {
		t.Fatalf("a constraint allowing nothing: %v %+v", ids, last)
	}
}
