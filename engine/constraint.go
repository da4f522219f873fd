package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Constraint restricts the tokens a request may generate, as structured
// output does (structured.Matcher implements it). The engine calls it
// from its scheduler goroutine only.
type Constraint interface {
	// Mask sets the logits of the tokens that may not come next to -Inf;
	// end-of-sequence tokens keep theirs only where the output may end.
	Mask(logits []float32)
	// Accept advances past the sampled token; false means it was not
	// allowed.
	Accept(id int) bool
	// Done reports that the output is complete: nothing may follow, and
	// the request ends with FinishStop.
	Done() bool
}

// ErrConstraint ends a request whose constraint allows no token: the
// vocabulary cannot continue the output (or the logit bias removed every
// token it could).
var ErrConstraint = errors.New("engine: no token can continue the constrained output")

// SubmitGroup queues the choices of one request: requests with the same
// prompt and adapter, each with its own sampling parameters, seed and
// constraint. The prompt is computed once, by the first; when it is in,
// the others start from a copy of its state (attention keys and values and
// Mamba state), sampling their first token from the same logits. The group
// is admitted at once and takes len(rs) slots, so len(rs) may not exceed
// Config.MaxBatch. The streams are in the order of rs; each choice runs
// under its own context derived from ctx, which [Stream.Cancel] ends.
func (e *Engine) SubmitGroup(ctx context.Context, rs []Request) ([]*Stream, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: no request in the group", ErrInvalidRequest)
	}
	if len(rs) > e.cfg.MaxBatch {
		return nil, fmt.Errorf("%w: %d choices need %d slots and the engine has %d", ErrInvalidRequest, len(rs), len(rs), e.cfg.MaxBatch)
	}
	for i := range rs {
		if err := e.Validate(&rs[i]); err != nil {
			return nil, err
		}
		if i > 0 && !slices.Equal(rs[i].Prompt, rs[0].Prompt) {
			return nil, fmt.Errorf("%w: the requests of a group must share their prompt", ErrInvalidRequest)
		}
		// The followers continue the leader's state and its first logits:
		// those of its adapter.
		if i > 0 && rs[i].Adapter != rs[0].Adapter {
			return nil, fmt.Errorf("%w: the requests of a group must share their adapter", ErrInvalidRequest)
		}
	}
	followers := make([]*seq, len(rs)-1)
	for i := range followers {
		c, cancel := context.WithCancel(ctx)
		followers[i] = e.newSeq(c, rs[i+1])
		followers[i].out.cancel = cancel
	}
	c, cancel := context.WithCancel(ctx)
	st, err := e.submit(c, rs[0], followers)
	if err != nil {
		cancel()
		for _, f := range followers {
			f.out.cancel()
		}
		return nil, err
	}
	st.cancel = cancel
	out := []*Stream{st}
	for _, f := range followers {
		out = append(out, f.out)
	}
	return out, nil
}

// Cancel ends the request of a stream made by SubmitGroup as its
// context's cancellation does (for one choice of a group: a stop string
// ended it). It does nothing for a stream made by Submit, which ends with
// its context.
func (s *Stream) Cancel() {
	if s.cancel != nil {
		s.cancel()
	}
}

// slotsFor is the number of slots s needs: its own and its followers'.
func (s *seq) slotsFor() int { return 1 + len(s.group) }

// waiting reports whether s is a follower whose leader has not finished
// the prompt yet.
func (s *seq) waiting() bool { return s.leader != nil && s.fed < len(s.req.Prompt) }

// fork gives s's waiting followers a copy of its state, once its prompt
// is in, and samples their first token from row i of the step's logits.
func (e *Engine) forkFollowers(s *seq, i int) []*seq {
	var ready []*seq
	for _, f := range s.group {
		if f.slot == nil || !f.waiting() {
			continue
		}
		if err := f.slot.cache.CopyFrom(s.slot.cache); err != nil {
			e.failures.Add(1)
			e.finish(f, Event{Token: NoToken, Err: fmt.Errorf("%w: %v", ErrInternal, err)})
			continue
		}
		f.slot.ids = append(f.slot.ids[:0], s.slot.ids...)
		f.fed = len(f.req.Prompt)
		f.out.cachedTokens.Store(s.out.cachedTokens.Load())
		ready = append(ready, f)
	}
	return ready
}

// endFollowers ends the followers still waiting for a leader that ended
// before its prompt was in.
func (e *Engine) endFollowers(s *seq, ev Event) {
	err := ev.Err
	if err == nil {
		err = fmt.Errorf("%w: the first choice ended before its prompt was computed", ErrInternal)
	}
	for _, f := range s.group {
		if f.slot != nil && f.waiting() {
			e.finish(f, Event{Token: NoToken, Err: err})
		}
	}
}

// dropQueued ends a request that never left the queue, and its
// followers.
func dropQueued(s *seq, err error) {
	s.out.events <- Event{Token: NoToken, Err: err}
	close(s.out.events)
	for _, f := range s.group {
		f.out.events <- Event{Token: NoToken, Err: err}
		close(f.out.events)
	}
}
