// Package engine serves many generation requests at once on one model with
// continuous batching.
//
// One scheduler goroutine owns the model's [model.Workspace] and a pool of
// per-sequence caches. Requests wait in a bounded queue, join the running
// batch between two steps when a slot is free, and leave it as soon as they
// finish, fail or are cancelled. Each step is one [model.Workspace.Forward]
// call over every active sequence: the next token of each decoding sequence
// and a chunk of the prompt of each sequence still in prefill, within a
// token budget per step, so the weights are read once for all of them and a
// long prompt does not stall the others for longer than one chunk.
//
// Every request has its own sampler and seed. Its tokens come back as
// [Event] values on a bounded channel; a consumer that stops reading pauses
// its own sequence only. The request's context is checked before every step:
// a cancelled request leaves the batch and frees its state at once.
//
// The engine knows token ids only: text, chat templates, stop strings and
// HTTP belong to its callers.
package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

// Errors returned by [Engine.Submit] and carried by terminal events.
var (
	// ErrQueueFull means the queue holds Config.MaxQueue requests already;
	// the caller should retry later.
	ErrQueueFull = errors.New("engine: request queue is full")
	// ErrDraining means the engine no longer accepts requests because it
	// is shutting down.
	ErrDraining = errors.New("engine: shutting down, not accepting requests")
	// ErrShutdown ends requests that were still running when a drain ran
	// out of time or the engine was closed.
	ErrShutdown = errors.New("engine: shut down before the request finished")
	// ErrInvalidRequest wraps every reason a request is refused as
	// malformed (empty prompt, token out of range, prompt too long).
	ErrInvalidRequest = errors.New("engine: invalid request")
	// ErrNonFinite ends a request whose logits hold NaN or no finite value:
	// the model's numbers broke down and nothing it samples can be trusted.
	ErrNonFinite = errors.New("engine: the model produced non-finite logits")
	// ErrInternal wraps a panic recovered while serving a request.
	ErrInternal = errors.New("engine: internal error")
)

// Config sets the engine's limits. Zero fields take the defaults documented
// on each.
type Config struct {
	// MaxBatch is the number of sequences served at once (slots), each
	// with its own cache. Default 8.
	MaxBatch int
	// MaxQueue is the number of requests that may wait for a slot; one
	// more is refused with ErrQueueFull. Default 64.
	MaxQueue int
	// Context is the most tokens a sequence may hold, prompt and output
	// together. Default: the model's max_position_embeddings.
	Context int
	// StepTokens is the token budget of one step: decode tokens of the
	// running sequences first, then prompt chunks of sequences in prefill.
	// It bounds how long one step, and so every stream's next token, can
	// be delayed by a new prompt. Default 512, the prefill chunk of
	// model.Generate, so a sequence served alone is computed exactly as
	// Generate computes it. It must be at least MaxBatch.
	StepTokens int
	// PrefillChunk is the most prompt tokens a step takes while other
	// sequences are decoding in it: their next token waits for that much
	// prefill. With nothing decoding a step takes StepTokens of prompts.
	// Default 128.
	PrefillChunk int
	// EventBuffer is the number of events buffered per request before its
	// sequence pauses for the consumer. Default 64, at least 2.
	EventBuffer int
	// NoPrefixReuse turns off the reuse of finished sequences' states. By
	// default a slot keeps, after its request ends, the cache of the
	// tokens it computed (prompt and fed output) until another request
	// takes it; a new request whose prompt starts with all of those tokens
	// (and has at least one more) continues from that state instead of
	// computing them again, as the next turn of a chat does. The result is
	// the same bits as without reuse.
	NoPrefixReuse bool
	// SnapshotBytes is the memory per slot for copies of the Mamba state
	// taken during a request every so many tokens (a multiple of 512, at
	// most 32 per request): a later request that shares only part of a
	// finished one's tokens (a repeated prompt, a common beginning, a chat
	// turn whose earlier reply re-tokenizes differently) continues from the
	// last copy within the shared part. Default 64 MiB; negative: none,
	// so only whole states are continued.
	SnapshotBytes int64
}

// Snapshots of the Mamba state are taken at multiples of a spacing that is
// itself a multiple of snapQuantum, at most maxSnaps per request. A prompt
// chunk ends at each snapshot: 512, the default StepTokens, keeps the
// chunks of a prompt that starts from nothing as they were (chunks of 256
// made jamba-small's prefill about 5% slower).
const (
	snapQuantum = 512
	maxSnaps    = 32
)

func (c *Config) fill(m *model.Model) error {
	if c.MaxBatch == 0 {
		c.MaxBatch = 8
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = 64
	}
	if c.Context == 0 {
		c.Context = m.Config.MaxPositionEmbeddings
	}
	if c.StepTokens == 0 {
		c.StepTokens = max(512, c.MaxBatch)
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = 64
	}
	if c.PrefillChunk == 0 {
		c.PrefillChunk = 128
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = 64 << 20
	}
	switch {
	case c.MaxBatch < 1:
		return fmt.Errorf("engine: MaxBatch must be at least 1, got %d", c.MaxBatch)
	case c.MaxQueue < 0:
		return fmt.Errorf("engine: MaxQueue must not be negative, got %d", c.MaxQueue)
	case c.Context < 2:
		return fmt.Errorf("engine: Context must be at least 2 tokens, got %d", c.Context)
	case c.StepTokens < c.MaxBatch:
		return fmt.Errorf("engine: StepTokens (%d) must be at least MaxBatch (%d)", c.StepTokens, c.MaxBatch)
	case c.PrefillChunk < 1:
		return fmt.Errorf("engine: PrefillChunk must be positive, got %d", c.PrefillChunk)
	case c.EventBuffer < 2:
		return fmt.Errorf("engine: EventBuffer must be at least 2, got %d", c.EventBuffer)
	}
	return nil
}

// Request is one generation request in token ids.
type Request struct {
	// Prompt is the token ids to continue (at least one, each in the
	// vocabulary, fewer than Config.Context).
	Prompt []int
	// MaxTokens is the most tokens to generate; 0 means until the end of
	// the context.
	MaxTokens int
	// MinTokens is the number of tokens generated before end-of-sequence
	// and StopTokens may end the request: until then they are masked.
	MinTokens int
	// Sampling holds the sampling parameters and the seed.
	Sampling sample.Params
	// IgnoreEOS keeps generating past the model's end-of-sequence tokens.
	IgnoreEOS bool
	// StopTokens end the request like end-of-sequence tokens (not emitted).
	StopTokens []int
	// LogitBias is added to the logit of each id before sampling.
	LogitBias map[int]float32
	// Logprobs asks for the log-probability of each sampled token, and
	// TopLogprobs for that many most likely alternatives (at most 20).
	Logprobs    bool
	TopLogprobs int
	// Constraint, when set, restricts the tokens generated (structured
	// output); the request ends when it is Done. MinTokens does not apply
	// then, and end-of-sequence ends the request even with IgnoreEOS.
	Constraint Constraint
}

// MaxTopLogprobs is the most alternatives an event reports.
const MaxTopLogprobs = 20

// FinishReason says why a request ended normally.
type FinishReason string

const (
	// FinishStop: an end-of-sequence or stop token was sampled.
	FinishStop FinishReason = "stop"
	// FinishLength: MaxTokens were generated or the context is full.
	FinishLength FinishReason = "length"
)

// TokenLogprob is one token and its log-probability.
type TokenLogprob struct {
	Token   int
	Logprob float32
}

// Event is one step of a request's output. Every event but a terminal one
// carries a token; the terminal event, the last before the channel is
// closed, has Finish or Err set (and may carry the last token too).
type Event struct {
	// Token is the generated id, or -1 when the event has none (an
	// end-of-sequence, a cancellation or an error).
	Token int
	// Logprob is Token's log-probability when Request.Logprobs is set.
	Logprob float32
	// Top lists the Request.TopLogprobs most likely tokens, most likely
	// first; nil when none were asked for.
	Top []TokenLogprob
	// Finish is set on the terminal event of a request that ended
	// normally.
	Finish FinishReason
	// Err is set on the terminal event of a request that failed or was
	// cancelled: the context's error, ErrShutdown, ErrNonFinite or an
	// ErrInternal.
	Err error
}

// Stream is the output of one submitted request.
type Stream struct {
	events       chan Event
	promptTokens int
	cachedTokens atomic.Int64

	generated atomic.Int64
	cancel    context.CancelFunc // SubmitGroup's per-choice context; nil: none
}

// Events returns the channel of the request's events. It is closed after
// the terminal event.
func (s *Stream) Events() <-chan Event { return s.events }

// PromptTokens is the number of prompt tokens of the request.
func (s *Stream) PromptTokens() int { return s.promptTokens }

// CachedTokens is the number of prompt tokens taken from a finished
// request's state instead of being computed (see Config.NoPrefixReuse); it
// is known once the request has left the queue.
func (s *Stream) CachedTokens() int { return int(s.cachedTokens.Load()) }

// Generated is the number of tokens generated so far.
func (s *Stream) Generated() int { return int(s.generated.Load()) }

// Stats is a snapshot of the engine's state and counters.
type Stats struct {
	Queued   int // requests waiting for a slot
	Active   int // sequences in the running batch
	MaxBatch int
	MaxQueue int
	// Counters since the engine started.
	Requests        uint64 // requests admitted into the batch
	PromptTokens    uint64 // prompt tokens computed
	CachedTokens    uint64 // prompt tokens taken from a finished request's state
	GeneratedTokens uint64 // tokens sampled and delivered
	Steps           uint64 // forward calls
	StepSequences   uint64 // Σ over steps of the sequences in the step
	StepTokens      uint64 // Σ over steps of the tokens computed in the step
	Cancelled       uint64 // requests ended by their context
	Failed          uint64 // requests ended by an error
}

// Engine schedules requests on one model. Its methods are safe for
// concurrent use.
type Engine struct {
	m   *model.Model
	cfg Config

	mu       sync.Mutex
	queue    []*seq
	draining bool
	closed   bool
	abort    error // set to end every request (drain timeout, Close)
	wake     chan struct{}
	idle     chan struct{} // closed and replaced when the engine has nothing to do

	done  chan struct{} // closed when the scheduler goroutine ends
	fatal atomic.Pointer[error]

	nActive  atomic.Int64
	requests atomic.Uint64
	prompt   atomic.Uint64
	cached   atomic.Uint64
	gen      atomic.Uint64
	steps    atomic.Uint64
	stepSeqs atomic.Uint64
	stepToks atomic.Uint64
	cancels  atomic.Uint64
	failures atomic.Uint64

	mambaFloats int // size of one sequence's Mamba state

	// Owned by the scheduler goroutine.
	ws     *model.Workspace
	active []*seq
	free   []*slot
	batch  []model.SeqInput
	inStep []*seq
}

// New starts an engine for m. The model must stay open until Close returns.
func New(m *model.Model, cfg Config) (*Engine, error) {
	if err := cfg.fill(m); err != nil {
		return nil, err
	}
	e := &Engine{
		m:    m,
		cfg:  cfg,
		wake: make(chan struct{}, 1),
		idle: make(chan struct{}),
		done: make(chan struct{}),
		ws:   m.NewWorkspace(),
	}
	e.mambaFloats = m.NewCache(1).MambaFloats()
	go e.run()
	return e, nil
}

// Config returns the engine's limits with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// VocabSize is the number of token ids of the model.
func (e *Engine) VocabSize() int { return e.m.Config.VocabSize }

// IsEOS reports whether id is one of the model's end-of-sequence tokens.
func (e *Engine) IsEOS(id int) bool { return e.m.IsEOS(id) }

// Err returns the error that stopped the scheduler, or nil while it runs.
// An engine with an error serves nothing more.
func (e *Engine) Err() error {
	if p := e.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Done is closed when the scheduler goroutine has ended, after Close or a
// fatal error.
func (e *Engine) Done() <-chan struct{} { return e.done }

// Stats returns a snapshot of the queue, the batch and the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	q := len(e.queue)
	e.mu.Unlock()
	return Stats{
		Queued: q, Active: int(e.nActive.Load()),
		MaxBatch: e.cfg.MaxBatch, MaxQueue: e.cfg.MaxQueue,
		Requests: e.requests.Load(), PromptTokens: e.prompt.Load(), CachedTokens: e.cached.Load(),
		GeneratedTokens: e.gen.Load(), Steps: e.steps.Load(),
		StepSequences: e.stepSeqs.Load(), StepTokens: e.stepToks.Load(),
		Cancelled: e.cancels.Load(), Failed: e.failures.Load(),
	}
}

// Validate checks r against the model and the limits, as Submit does. The
// error wraps ErrInvalidRequest.
func (e *Engine) Validate(r *Request) error {
	V := e.m.Config.VocabSize
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, a...))
	}
	switch {
	case len(r.Prompt) == 0:
		return bad("the prompt is empty")
	case len(r.Prompt) >= e.cfg.Context:
		return bad("the prompt has %d tokens and the context %d: no room for one more", len(r.Prompt), e.cfg.Context)
	case r.MaxTokens < 0:
		return bad("MaxTokens must not be negative, got %d", r.MaxTokens)
	case r.MinTokens < 0:
		return bad("MinTokens must not be negative, got %d", r.MinTokens)
	case r.TopLogprobs < 0 || r.TopLogprobs > MaxTopLogprobs:
		return bad("TopLogprobs must be in [0, %d], got %d", MaxTopLogprobs, r.TopLogprobs)
	}
	for i, id := range r.Prompt {
		if id < 0 || id >= V {
			return bad("prompt token %d is %d, outside the vocabulary [0, %d)", i, id, V)
		}
	}
	for _, id := range r.StopTokens {
		if id < 0 || id >= V {
			return bad("stop token %d is outside the vocabulary [0, %d)", id, V)
		}
	}
	for id, b := range r.LogitBias {
		if id < 0 || id >= V {
			return bad("logit bias token %d is outside the vocabulary [0, %d)", id, V)
		}
		if math.IsNaN(float64(b)) || math.IsInf(float64(b), 0) {
			return bad("logit bias of token %d is not finite", id)
		}
	}
	// The zero TopP and RepetitionPenalty mean "off" to a Sampler.
	p := r.Sampling
	if p.TopP == 0 {
		p.TopP = 1
	}
	if p.RepetitionPenalty == 0 {
		p.RepetitionPenalty = 1
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	return nil
}

// Submit queues r. The request runs until it finishes, fails, or ctx is
// done; its events arrive on the returned stream. Submit fails at once with
// an ErrInvalidRequest, ErrQueueFull, ErrDraining or ctx's error. The
// engine keeps r's slices until the request ends.
func (e *Engine) Submit(ctx context.Context, r Request) (*Stream, error) {
	if err := e.Validate(&r); err != nil {
		return nil, err
	}
	return e.submit(ctx, r, nil)
}

func (e *Engine) newSeq(ctx context.Context, r Request) *seq {
	s := &seq{
		req: r,
		ctx: ctx,
		out: &Stream{events: make(chan Event, e.cfg.EventBuffer), promptTokens: len(r.Prompt)},
	}
	s.limit = e.cfg.Context
	if r.MaxTokens > 0 {
		s.limit = min(s.limit, len(r.Prompt)+r.MaxTokens)
	}
	return s
}

// submit queues a validated request with the followers that continue
// from its prompt (SubmitGroup).
func (e *Engine) submit(ctx context.Context, r Request, followers []*seq) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := e.Err(); err != nil {
		return nil, err
	}
	s := e.newSeq(ctx, r)
	s.group = followers
	for _, f := range followers {
		f.leader = s
	}
	e.mu.Lock()
	switch {
	case e.draining:
		e.mu.Unlock()
		return nil, ErrDraining
	case len(e.queue) >= e.cfg.MaxQueue && e.freeSlots() == 0:
		e.mu.Unlock()
		return nil, ErrQueueFull
	}
	e.queue = append(e.queue, s)
	e.mu.Unlock()
	e.signal()
	return s.out, nil
}

// freeSlots is an estimate, read outside the scheduler, of how many
// requests the next step admits without queueing them. With e.mu held.
func (e *Engine) freeSlots() int {
	return max(0, e.cfg.MaxBatch-int(e.nActive.Load())-len(e.queue))
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Drain stops accepting requests and waits until every queued and running
// request has finished. When ctx ends first, the remaining requests end
// with ErrShutdown and Drain returns ctx's error once they are gone.
func (e *Engine) Drain(ctx context.Context) error {
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
	e.signal()
	idle := e.waitIdle()
	select {
	case <-idle:
		if err := e.Err(); err != nil && !errors.Is(err, errClosed) {
			return err
		}
		return nil
	case <-ctx.Done():
		e.Abort(ErrShutdown)
		<-idle
		return ctx.Err()
	}
}

// waitIdle returns a channel closed once the engine has no request left
// (or the scheduler has ended).
func (e *Engine) waitIdle() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for {
			e.mu.Lock()
			idle := e.idle
			busy := len(e.queue) > 0 || e.nActive.Load() > 0
			e.mu.Unlock()
			if !busy {
				return
			}
			select {
			case <-idle:
			case <-e.done:
				return
			}
		}
	}()
	return ch
}

// Abort ends every queued and running request with err at the next step.
// Requests submitted later are not affected.
func (e *Engine) Abort(err error) {
	e.mu.Lock()
	e.abort = err
	e.mu.Unlock()
	e.signal()
}

// Close ends every request with ErrShutdown, stops the scheduler and waits
// for it. The engine accepts nothing afterwards.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.draining = true
	e.closed = true
	e.abort = ErrShutdown
	e.mu.Unlock()
	e.signal()
	<-e.done
	if err := e.Err(); err != nil && !errors.Is(err, errClosed) {
		return err
	}
	return nil
}

var errClosed = errors.New("engine: closed")

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
}

// slot is the reusable state of one running sequence.
type slot struct {
	cache *cache.Seq
	// ids are the tokens whose state cache holds (cache.Len of them), kept
	// after the request ends for a later one that continues them; empty
	// when the state is not to be trusted (a failed step).
	ids []int
	// snaps are copies of the Mamba state at some of those tokens, in
	// ascending position; spare holds unused copy buffers. every is the
	// current request's snapshot spacing (0: none).
	snaps   []snapshot
	spare   [][]float32
	every   int
	smp     *sample.Sampler
	tok     [1]int
	scratch []float32 // biased or masked logits
	topIDs  []int
	topLP   []float32
}

// snapshot is the Mamba state of a sequence when it held pos tokens.
type snapshot struct {
	pos  int
	data []float32
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
	if e.cfg.NoPrefixReuse || e.cfg.SnapshotBytes < 0 || e.mambaFloats == 0 {
		return 0
	}
	return min(maxSnaps, int(e.cfg.SnapshotBytes/(4*int64(e.mambaFloats))))
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
	n := sl.cache.Len
	if sl.every == 0 || n%sl.every != 0 && !promptEnd || len(sl.spare) == 0 || len(sl.snaps) == cap(sl.snaps) {
		return
	}
	if k := len(sl.snaps); k > 0 && sl.snaps[k-1].pos == n {
		return
	}
	buf := sl.spare[len(sl.spare)-1]
	sl.spare = sl.spare[:len(sl.spare)-1]
	sl.cache.SaveMamba(buf)
	sl.snaps = append(sl.snaps, snapshot{pos: n, data: buf})
}

func (e *Engine) run() {
	defer close(e.done)
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
		aborting := e.abort != nil
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
	e.admit()
	for _, s := range e.active {
		if err := s.ctx.Err(); err != nil {
			e.cancels.Add(1)
			e.finish(s, Event{Token: -1, Err: err})
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
		e.batch = append(e.batch, model.SeqInput{Tokens: s.slot.tok[:], Cache: s.slot.cache})
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
		e.batch = append(e.batch, model.SeqInput{Tokens: s.req.Prompt[s.fed : s.fed+n], Cache: s.slot.cache})
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
			e.finish(s, Event{Token: -1, Err: err})
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
			e.advance(s, i)
			for _, f := range forked {
				e.advance(f, i)
			}
		}
	}
	e.compact()
}

// forward runs the model on e.batch, turning a panic into an error.
func (e *Engine) forward() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: forward: %v", ErrInternal, r)
			e.logPanic(r)
		}
	}()
	if err := e.ws.Forward(e.batch); err != nil {
		return fmt.Errorf("%w: %v", ErrInternal, err)
	}
	return nil
}

// logPanic keeps the stack of the last recovered panic for debugging.
func (e *Engine) logPanic(r any) {
	stack := debug.Stack()
	lastPanic.Store(&panicInfo{value: fmt.Sprint(r), stack: string(stack)})
}

type panicInfo struct{ value, stack string }

var lastPanic atomic.Pointer[panicInfo]

// LastPanic returns the value and stack trace of the most recent panic the
// engine recovered from, for logs; ok is false if there was none.
func LastPanic() (value, stack string, ok bool) {
	p := lastPanic.Load()
	if p == nil {
		return "", "", false
	}
	return p.value, p.stack, true
}

// advance samples the next token of s from row i of the step's logits and
// delivers it. A panic fails s alone.
func (e *Engine) advance(s *seq, i int) {
	defer func() {
		if r := recover(); r != nil {
			e.logPanic(r)
			e.failures.Add(1)
			e.finish(s, Event{Token: -1, Err: fmt.Errorf("%w: sampling: %v", ErrInternal, r)})
		}
	}()
	sl := s.slot
	logits := e.ws.Logits(i)
	if !model.Finite(logits) {
		e.failures.Add(1)
		e.finish(s, Event{Token: -1, Err: e.nonFinite(sl)})
		return
	}
	r := &s.req
	masked := s.generated < r.MinTokens && r.Constraint == nil
	if len(r.LogitBias) > 0 || masked || r.Constraint != nil {
		x := sl.scratch[:len(logits)]
		copy(x, logits)
		for id, b := range r.LogitBias {
			x[id] += b
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
		e.finish(s, Event{Token: -1, Err: err})
		return
	}
	if ((!r.IgnoreEOS || r.Constraint != nil) && e.m.IsEOS(id)) || contains(r.StopTokens, id) {
		e.finish(s, Event{Token: -1, Finish: FinishStop})
		return
	}
	if r.Constraint != nil && !r.Constraint.Accept(id) {
		e.failures.Add(1)
		e.finish(s, Event{Token: -1, Err: ErrConstraint})
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
		ev.Finish = FinishStop
		e.finish(s, ev)
		return
	}
	// The token is fed at the next step: the cache then holds
	// len(prompt)+generated tokens.
	if len(r.Prompt)+s.generated >= s.limit {
		ev.Finish = FinishLength
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
			e.finish(s, Event{Token: -1, Err: abort})
		}
		e.compact()
	}
	for _, s := range admitted {
		s.slot = e.takeSlot(s, false)
		e.active = append(e.active, s)
		e.requests.Add(1)
		for _, f := range s.group {
			f.slot = e.takeSlot(f, true)
			e.active = append(e.active, f)
		}
	}
	e.nActive.Store(int64(len(e.active)))
}

// takeSlot returns the slot for s. With prefix reuse, that is the free slot
// from which s can continue the most prompt tokens: its whole state, if
// s's prompt extends all its tokens, or else its last snapshot within the
// tokens they share (the slot is rewound to it); s then starts after them.
// Otherwise: a free slot that holds nothing, or a new one while there are
// fewer than MaxBatch, or else the free one left longest ago, reset.
//
// fresh (a follower, which starts from its leader's state) skips the
// search for a state to continue.
func (e *Engine) takeSlot(s *seq, fresh bool) *slot {
	p := s.req.Prompt
	var sl *slot
	best, bestPos, bestSnap := -1, 0, -1
	empty := -1
	for i, f := range e.free {
		if len(f.ids) == 0 && empty < 0 {
			empty = i
		}
		if fresh || e.cfg.NoPrefixReuse || len(f.ids) == 0 || f.cache.Len != len(f.ids) {
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
	if best >= 0 && bestSnap >= 0 {
		f := e.free[best]
		if f.cache.Rewind(bestPos, f.snaps[bestSnap].data) != nil {
			best = -1 // cannot happen: the snapshot is of this cache
		} else {
			f.ids = f.ids[:bestPos]
		}
	}
	if best < 0 && empty < 0 && len(e.free) > 0 && len(e.active)+len(e.free) < e.cfg.MaxBatch {
		empty = -2 // a new slot: keep the free ones' states
	}
	switch {
	case best >= 0:
		sl = e.free[best]
		e.free = slices.Delete(e.free, best, best+1)
		dropSnaps(sl, bestPos)
		sl.smp.Reset(s.req.Sampling)
		s.fed = bestPos
		s.out.cachedTokens.Store(int64(bestPos))
		e.cached.Add(uint64(bestPos))
	case empty != -2 && len(e.free) > 0:
		i := max(empty, 0)
		sl = e.free[i]
		e.free = slices.Delete(e.free, i, i+1)
		sl.cache.Reset()
		sl.ids = sl.ids[:0]
		dropSnaps(sl, -1)
		sl.smp.Reset(s.req.Sampling)
	default:
		V := e.m.Config.VocabSize
		sl = &slot{
			cache:   e.m.NewCache(s.limit),
			smp:     sample.New(s.req.Sampling, V),
			scratch: make([]float32, V),
			topIDs:  make([]int, MaxTopLogprobs),
			topLP:   make([]float32, MaxTopLogprobs),
		}
	}
	// Room for every token the request may add and for its snapshots, so
	// that its steps do not allocate.
	sl.cache.Reserve(s.limit)
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
		want := min((s.limit-1)/sl.every-sl.cache.Len/sl.every+1, budget)
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
			sl.spare = append(sl.spare, make([]float32, e.mambaFloats))
		}
		// Keep spare buffers for later requests, within the budget.
		if len(sl.spare) > room {
			clear(sl.spare[room:])
			sl.spare = sl.spare[:room]
		}
		sl.snaps = slices.Grow(sl.snaps, len(sl.spare))
	}
	sl.smp.AcceptPrompt(s.req.Prompt)
	return sl
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

// finish sends s's terminal event, closes its stream and releases its
// slot. The caller removes it from e.active with compact.
func (e *Engine) finish(s *seq, ev Event) {
	if s.slot == nil {
		return
	}
	s.out.events <- ev
	close(s.out.events)
	e.free = append(e.free, s.slot)
	s.slot = nil
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
				e.finish(s, Event{Token: -1, Err: err})
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
