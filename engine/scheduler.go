package engine

// The scheduler: one goroutine (run) that admits queued requests into
// slots, builds each step's batch (decode tokens first, then prompt
// chunks), runs the forward pass, samples and delivers tokens, and ends
// requests.

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"time"

	"github.com/jamba-go/jamba/model"
)

// seq is a request inside the engine.
type seq struct {
	req   Request
	ctx   context.Context
	out   *Stream
	slot  *slot
	limit int // total tokens (prompt and output) at which it stops

	fed       int // prompt tokens already computed
	generated int
	// group are the followers of a leader (SubmitGroup): they take a copy
	// of its state when its prompt is in. leader is set on a follower.
	group   []*seq
	leader  *seq
	chunk   int  // prompt tokens fed this step
	samples bool // this step's logits are to be sampled
	// pre is a stored state the prompt continues, read at Submit.
	pre *preloaded
}

func (e *Engine) run() {
	defer close(e.done)
	defer e.release()
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("%w: scheduler panic: %v", ErrInternal, r)
			e.fatal.Store(&err)
			e.failAll(err)
		}
	}()
	for {
		if !e.wait() {
			err := errClosed
			e.fatal.Store(&err)
			return
		}
		e.step()
	}
}

// wait blocks until there is work. It returns false when the engine is
// closed and empty.
func (e *Engine) wait() bool {
	for {
		e.mu.Lock()
		queued := len(e.queue)
		if queued == 0 && len(e.active) == 0 {
			close(e.idle)
			e.idle = make(chan struct{})
			if e.closed {
				e.mu.Unlock()
				return false
			}
			e.abort = nil // nothing left to abort
		}
		aborting := e.abort != nil || len(e.tasks) > 0
		e.mu.Unlock()
		if aborting || queued > 0 && len(e.active) < e.cfg.MaxBatch || e.runnable() || e.anyCancelled() {
			return true
		}
		if len(e.active) == 0 {
			<-e.wake
			continue
		}
		// Every running sequence waits for its consumer: poll for room,
		// cancellation and new requests.
		t := time.NewTimer(time.Millisecond)
		select {
		case <-e.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// runnable reports whether some active sequence can take part in a step.
func (e *Engine) runnable() bool {
	for _, s := range e.active {
		if s.hasRoom() {
			return true
		}
	}
	return false
}

// anyCancelled reports whether a running or queued request's context is
// done.
func (e *Engine) anyCancelled() bool {
	for _, s := range e.active {
		if s.ctx.Err() != nil {
			return true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.queue {
		if s.ctx.Err() != nil {
			return true
		}
	}
	return false
}

// hasRoom reports whether the stream can take one more token event and
// still keep room for a terminal event.
func (s *seq) hasRoom() bool { return cap(s.out.events)-len(s.out.events) >= 2 }

// step admits queued requests, drops cancelled ones, and runs one forward
// over every sequence that can advance.
func (e *Engine) step() {
	if e.cfg.Store != nil {
		e.takeReturned()
	}
	e.runTasks()
	e.admit()
	for _, s := range e.active {
		if err := s.ctx.Err(); err != nil {
			e.cancels.Add(1)
			e.finish(s, Event{Token: NoToken, Err: err})
		}
	}
	e.compact()

	// Decode tokens first, then prompt chunks in arrival order.
	budget := e.cfg.StepTokens
	e.batch = e.batch[:0]
	e.inStep = e.inStep[:0]
	for _, s := range e.active {
		if s.fed < len(s.req.Prompt) || !s.hasRoom() {
			continue
		}
		s.chunk, s.samples = 0, true
		e.batch = append(e.batch, Input{Tokens: s.slot.tok[:], State: s.slot.cache, Adapter: s.req.Adapter})
		e.inStep = append(e.inStep, s)
		budget--
	}
	if len(e.batch) > 0 {
		// Streams are decoding: give prompts at most PrefillChunk tokens of
		// this step, so that a long prompt delays their next token by one
		// such chunk only.
		budget = min(budget, e.cfg.PrefillChunk)
	}
	for _, s := range e.active {
		if s.fed >= len(s.req.Prompt) || budget <= 0 || s.waiting() {
			continue
		}
		n := min(len(s.req.Prompt)-s.fed, budget)
		if ev := s.slot.every; ev > 0 {
			n = min(n, ev-s.fed%ev) // end the chunk at the next snapshot
		}
		s.chunk, s.samples = n, s.fed+n == len(s.req.Prompt)
		e.batch = append(e.batch, Input{Tokens: s.req.Prompt[s.fed : s.fed+n], State: s.slot.cache, Adapter: s.req.Adapter, NoLogits: !s.samples})
		e.inStep = append(e.inStep, s)
		budget -= n
	}
	if len(e.batch) == 0 {
		return
	}
	if err := e.forward(); err != nil {
		// The caches of every sequence of the step are in an unknown state.
		for _, s := range e.inStep {
			s.slot.ids = s.slot.ids[:0]
			dropSnaps(s.slot, -1)
			e.failures.Add(1)
			e.finish(s, Event{Token: NoToken, Err: err})
		}
		e.compact()
		return
	}
	e.steps.Add(1)
	e.stepSeqs.Add(uint64(len(e.batch)))
	var toks int
	for _, in := range e.batch {
		toks += len(in.Tokens)
	}
	e.stepToks.Add(uint64(toks))
	ids := e.choose()
	for i, s := range e.inStep {
		sl := s.slot
		if s.chunk > 0 {
			sl.ids = append(sl.ids, s.req.Prompt[s.fed:s.fed+s.chunk]...)
			s.fed += s.chunk
			e.prompt.Add(uint64(s.chunk))
		} else {
			sl.ids = append(sl.ids, sl.tok[0])
		}
		snap(sl, s.chunk > 0 && s.fed == len(s.req.Prompt))
		if s.samples {
			var forked []*seq
			if len(s.group) > 0 && s.chunk > 0 {
				forked = e.forkFollowers(s, i)
			}
			e.advance(s, i, ids)
			for _, f := range forked {
				e.advance(f, i, ids)
			}
		}
	}
	e.compact()
}

// forward runs the model on e.batch, turning a panic into an error.
func (e *Engine) forward() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError("forward", r)
		}
	}()
	if err := e.be.Forward(e.batch); err != nil {
		return fmt.Errorf("%w: %v", ErrInternal, err)
	}
	return nil
}

// PanicError is the error of a request that a recovered panic ended. It
// wraps ErrInternal and carries the panic's value and stack, for the log
// of that request.
type PanicError struct {
	Where string // what the engine was doing: "forward" or "sampling"
	Value any    // the value passed to panic
	Stack []byte // the stack of the panicking goroutine
}

func newPanicError(where string, r any) *PanicError {
	return &PanicError{Where: where, Value: r, Stack: debug.Stack()}
}

func (e *PanicError) Error() string { return fmt.Sprintf("%v: %s: %v", ErrInternal, e.Where, e.Value) }

func (e *PanicError) Unwrap() error { return ErrInternal }

// choose has the backend choose on its device the next token of the
// step's sequences that sample from their logits as they are (onDevice),
// and returns the ids; nil when there are none or the backend leaves
// them to the engine (the CPU: advance samples from the logits, as
// always).
func (e *Engine) choose() []int {
	if e.cpu != nil {
		return nil
	}
	e.choices = e.choices[:0]
	some := false
	for _, s := range e.inStep {
		c := Choice{Device: s.samples && s.onDevice(), Params: s.req.Sampling, Step: s.generated}
		some = some || c.Device
		e.choices = append(e.choices, c)
	}
	if !some {
		return nil
	}
	ids, err := e.be.Choose(e.choices)
	if err != nil || len(ids) != len(e.inStep) {
		return nil // the logits still decide, through the host
	}
	return ids
}

// onDevice reports whether s's next token may be chosen on the backend's
// device: sampled from its logits as they are, with no penalties, bias,
// masks, constraint or log-probabilities.
func (s *seq) onDevice() bool {
	r, p := &s.req, s.req.Sampling
	return (p.RepetitionPenalty == 0 || p.RepetitionPenalty == 1) && p.PresencePenalty == 0 && p.FrequencyPenalty == 0 &&
		len(r.LogitBias) == 0 && !(s.generated < r.MinTokens && r.Constraint == nil) && !(s.generated == 0 && r.FirstAllowed != nil) &&
		r.Constraint == nil && !r.Logprobs && r.TopLogprobs == 0
}

// advance samples the next token of s from row i of the step's logits and
// delivers it; ids, when not nil, are the backend's choices of the step's
// sequences (choose), taken by the sequence they were made for and, when
// greedy, by the followers forked from it. A panic fails s alone.
func (e *Engine) advance(s *seq, i int, ids []int) {
	defer func() {
		if r := recover(); r != nil {
			e.failures.Add(1)
			e.finish(s, Event{Token: NoToken, Err: newPanicError("sampling", r)})
		}
	}()
	sl := s.slot
	r := &s.req
	if ids != nil && e.choices[i].Device && s.onDevice() && (e.inStep[i] == s || s.req.Sampling.Temperature <= 0 && e.choices[i].Params.Temperature <= 0) {
		if id := ids[i]; id >= 0 {
			e.deliver(s, id)
		} else {
			e.failures.Add(1)
			e.finish(s, Event{Token: NoToken, Err: e.nonFinite(sl)})
		}
		return
	}
	logits, err := e.be.Logits(i)
	if err != nil {
		e.failures.Add(1)
		e.finish(s, Event{Token: NoToken, Err: fmt.Errorf("%w: %v", ErrInternal, err)})
		return
	}
	if !model.Finite(logits) {
		e.failures.Add(1)
		e.finish(s, Event{Token: NoToken, Err: e.nonFinite(sl)})
		return
	}
	masked := s.generated < r.MinTokens && r.Constraint == nil
	healing := s.generated == 0 && r.FirstAllowed != nil
	if len(r.LogitBias) > 0 || masked || healing || r.Constraint != nil {
		x := sl.scratch[:len(logits)]
		copy(x, logits)
		for id, b := range r.LogitBias {
			x[id] += b
		}
		if healing {
			for id, ok := range r.FirstAllowed {
				if !ok {
					x[id] = float32(math.Inf(-1))
				}
			}
		}
		if masked {
			ninf := float32(math.Inf(-1))
			if !r.IgnoreEOS {
				for _, id := range e.m.EOS() {
					if id >= 0 && id < len(x) {
						x[id] = ninf
					}
				}
			}
			for _, id := range r.StopTokens {
				x[id] = ninf
			}
		}
		if r.Constraint != nil {
			r.Constraint.Mask(x)
		}
		logits = x
	}
	id := sl.smp.Sample(logits)
	if id < 0 {
		// Every logit was finite: only the constraint (with the bias)
		// can have left no token.
		err := ErrConstraint
		if r.Constraint == nil {
			err = e.nonFinite(sl)
		}
		e.failures.Add(1)
		e.finish(s, Event{Token: NoToken, Err: err})
		return
	}
	e.deliver(s, id)
}

// deliver ends s or sends id, the token sampled for it.
func (e *Engine) deliver(s *seq, id int) {
	sl, r := s.slot, &s.req
	if ((!r.IgnoreEOS || r.Constraint != nil) && e.m.IsEOS(id)) || contains(r.StopTokens, id) {
		e.finish(s, Event{Token: NoToken, Finish: model.FinishStop})
		return
	}
	if r.Constraint != nil && !r.Constraint.Accept(id) {
		e.failures.Add(1)
		e.finish(s, Event{Token: NoToken, Err: ErrConstraint})
		return
	}
	sl.smp.Accept(id)
	s.generated++
	s.out.generated.Add(1)
	e.gen.Add(1)
	ev := Event{Token: id}
	if r.Logprobs || r.TopLogprobs > 0 {
		k := r.TopLogprobs
		ev.Logprob = sl.smp.Logprobs(id, sl.topIDs[:k], sl.topLP[:k])
		if k > 0 {
			ev.Top = make([]TokenLogprob, 0, k)
			for j := range k {
				if sl.topIDs[j] >= 0 {
					ev.Top = append(ev.Top, TokenLogprob{Token: sl.topIDs[j], Logprob: sl.topLP[j]})
				}
			}
		}
	}
	if r.Constraint != nil && r.Constraint.Done() {
		ev.Finish = model.FinishStop
		e.finish(s, ev)
		return
	}
	// The token is fed at the next step: the cache then holds
	// len(prompt)+generated tokens.
	if len(r.Prompt)+s.generated >= s.limit {
		ev.Finish = model.FinishLength
		e.finish(s, ev)
		return
	}
	sl.tok[0] = id
	s.out.events <- ev
}

func contains(ids []int, id int) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// admit moves queued requests into free slots and ends queued requests that
// were cancelled or must be aborted.
func (e *Engine) admit() {
	e.mu.Lock()
	abort := e.abort
	if abort != nil {
		e.abort = nil
	}
	q := e.queue[:0]
	var drop []*seq
	for _, s := range e.queue {
		if s.ctx.Err() != nil || abort != nil {
			drop = append(drop, s)
		} else {
			q = append(q, s)
		}
	}
	clear(e.queue[len(q):])
	e.queue = q
	// In arrival order, while the slots last; a group takes a slot per
	// choice.
	n, slots := 0, 0
	for n < len(e.queue) && len(e.active)+slots+e.queue[n].slotsFor() <= e.cfg.MaxBatch {
		slots += e.queue[n].slotsFor()
		n++
	}
	admitted := append([]*seq(nil), e.queue[:n]...)
	e.queue = append(e.queue[:0], e.queue[n:]...)
	clear(e.queue[len(e.queue):cap(e.queue)])
	// Count the admitted requests as active before they leave the queue's
	// lock, so that no one sees them in neither place.
	e.nActive.Store(int64(len(e.active) + slots))
	e.mu.Unlock()

	for _, s := range drop {
		err := s.ctx.Err()
		if err == nil {
			err = abort
			e.failures.Add(1)
		} else {
			e.cancels.Add(1)
		}
		dropQueued(s, err)
	}
	if abort != nil {
		for _, s := range e.active {
			e.failures.Add(1)
			e.finish(s, Event{Token: NoToken, Err: abort})
		}
		e.compact()
	}
	var failed []*seq
	var errs []error
	for _, s := range admitted {
		var err error
		s.slot, err = e.takeSlot(s, false)
		e.active = append(e.active, s)
		e.requests.Add(1)
		if err != nil {
			failed, errs = append(failed, s), append(errs, err)
		}
		for _, f := range s.group {
			f.slot, err = e.takeSlot(f, true)
			e.active = append(e.active, f)
			if err != nil {
				failed, errs = append(failed, f), append(errs, err)
			}
		}
	}
	// A state the backend could not make (out of memory) fails its
	// request, once every follower has its slot.
	for i, s := range failed {
		e.failures.Add(1)
		e.finish(s, Event{Token: NoToken, Err: fmt.Errorf("%w: %v", ErrInternal, errs[i])})
	}
	if len(failed) > 0 {
		e.compact()
	}
	e.nActive.Store(int64(len(e.active)))
}

// finish sends s's terminal event, closes its stream and releases its
// slot. The caller removes it from e.active with compact.
func (e *Engine) finish(s *seq, ev Event) {
	sl := s.slot
	if sl == nil {
		return
	}
	s.slot = nil
	if e.cfg.Store == nil || !persistable(sl) || !e.persist(s, sl, ev) {
		s.out.events <- ev
		close(s.out.events)
		e.free = append(e.free, sl)
		if e.cfg.Store != nil {
			e.mu.Lock()
			e.addLocal(sl)
			e.mu.Unlock()
		}
	}
	if len(s.group) > 0 {
		e.endFollowers(s, ev)
	}
}

// compact removes finished sequences from e.active, keeping the order.
func (e *Engine) compact() {
	a := e.active[:0]
	for _, s := range e.active {
		if s.slot != nil {
			a = append(a, s)
		}
	}
	clear(e.active[len(a):])
	e.active = a
	e.nActive.Store(int64(len(a)))
}

// failAll ends every request with err; used when the scheduler dies.
func (e *Engine) failAll(err error) {
	for _, s := range e.active {
		if s.slot != nil {
			func() {
				defer func() { recover() }()
				e.finish(s, Event{Token: NoToken, Err: err})
			}()
		}
	}
	e.active = nil
	e.nActive.Store(0)
	e.mu.Lock()
	e.draining = true
	q := e.queue
	e.queue = nil
	e.mu.Unlock()
	for _, s := range q {
		dropQueued(s, err)
	}
}
