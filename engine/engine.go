// Package engine serves many generation requests at once on one model with
// continuous batching.
//
// One scheduler goroutine owns the model's [Backend] (the model itself on
// the CPU, or its weights on a GPU) and a pool of per-sequence states.
// Requests wait in a bounded queue, join the running batch between two
// steps when a slot is free, and leave it as soon as they finish, fail or
// are cancelled. Each step is one [Backend.Forward] call over every active
// sequence: the next token of each decoding sequence
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
	"sync"
	"sync/atomic"

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
	// be delayed by a new prompt. Default model.PrefillChunk, the prefill
	// chunk of model.Generate, so a sequence served alone is computed
	// exactly as Generate computes it. It must be at least MaxBatch.
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
	// taken during a request every so many tokens (a multiple of
	// model.PrefillChunk, at
	// most 32 per request): a later request that shares only part of a
	// finished one's tokens (a repeated prompt, a common beginning, a chat
	// turn whose earlier reply re-tokenizes differently) continues from the
	// last copy within the shared part. Default 64 MiB; negative: none,
	// so only whole states are continued.
	SnapshotBytes int64
	// Store, when set, keeps the states finished requests leave in their
	// slots beyond the engine's memory and lifetime: each is written there
	// before the request's terminal event is sent, and a request whose
	// prompt continues a stored state that no free slot holds reads it
	// instead of computing those tokens (see persist.go). A folder keeps
	// them across restarts, a shared Redis server across replicas.
	Store StateStore
	// OnStoreError, when set, is called with each failure of the store and
	// each stored state refused (the engine carries on without them).
	OnStoreError func(error)
}

// Snapshots of the Mamba state are taken at multiples of a spacing that is
// itself a multiple of snapQuantum, at most maxSnaps per request. A prompt
// chunk ends at each snapshot: model.PrefillChunk, the default StepTokens,
// keeps the chunks of a prompt that starts from nothing as they were
// (chunks of 256 made jamba-small's prefill about 5% slower).
const (
	snapQuantum = model.PrefillChunk
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
		c.StepTokens = max(model.PrefillChunk, c.MaxBatch)
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
	// FirstAllowed, when not nil, has one entry per vocabulary id: the
	// first generated token must be one marked true (token healing, see
	// textgen.Heal).
	FirstAllowed []bool
	// Logprobs asks for the log-probability of each sampled token, and
	// TopLogprobs for that many most likely alternatives (at most 20).
	Logprobs    bool
	TopLogprobs int
	// Constraint, when set, restricts the tokens generated (structured
	// output); the request ends when it is Done. MinTokens does not apply
	// then, and end-of-sequence ends the request even with IgnoreEOS.
	Constraint Constraint
	// Adapter, when set, is a LoRA adapter of the engine's model applied to
	// this request on the fly (model.LowRank): requests of different
	// adapters and of none share the batch. A finished request's state is
	// continued only by later requests of the same adapter.
	Adapter *model.LowRank
}

// MaxTopLogprobs is the most alternatives an event reports.
const MaxTopLogprobs = 20

// TokenLogprob is one token and its log-probability.
type TokenLogprob struct {
	Token   int
	Logprob float32
}

// Event is one step of a request's output. Every event but a terminal one
// carries a token; the terminal event, the last before the channel is
// closed, has Finish or Err set (and may carry the last token too).
type Event struct {
	// Token is the generated id, or NoToken when the event has none (an
	// end-of-sequence, a cancellation or an error): see HasToken.
	Token int
	// Logprob is Token's log-probability when Request.Logprobs is set.
	Logprob float32
	// Top lists the Request.TopLogprobs most likely tokens, most likely
	// first; nil when none were asked for.
	Top []TokenLogprob
	// Finish is set on the terminal event of a request that ended
	// normally.
	Finish model.FinishReason
	// Err is set on the terminal event of a request that failed or was
	// cancelled: the context's error, ErrShutdown, ErrNonFinite or an
	// ErrInternal.
	Err error
}

// NoToken is the Token of an event that carries none.
const NoToken = -1

// HasToken reports whether the event carries a generated token.
func (ev Event) HasToken() bool { return ev.Token != NoToken }

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
	// Config.Store: states read from it and written to it, values it
	// held that were refused (corrupted, of another model or version),
	// and its failures (refusals included).
	StateLoads, StateSaves, StateRefused, StateErrors uint64
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

	snapBytes int64 // size of one copy of a sequence's Mamba state

	// Owned by the scheduler goroutine. cpu is be when the model runs on
	// the CPU, nil on another backend (whose states cannot be stored,
	// and which takes no LoRA adapters).
	be     Backend
	cpu    *cpuBackend
	active []*seq
	free   []*slot

	identity string // the model's, for stored states

	// Stored states (Config.Store), under mu: the finished requests whose
	// states the writer goroutine is storing, the slots it is done with,
	// how many slots it holds, the keys of stored states that free slots
	// hold, and functions the scheduler is to run between steps (task).
	jobs       []persistJob
	jobsCond   *sync.Cond
	writerStop bool
	writerDone chan struct{}
	writes     sync.WaitGroup // jobs whose terminal event is not sent yet
	returned   []*slot
	inTransit  int
	localKeys  map[string]localKey
	tasks      []func()

	stateLoads, stateSaves, stateErrors, stateRefused atomic.Uint64
	storeDownUntil                                    atomic.Int64 // unix ns; see storeBackoff

	batch   []Input
	inStep  []*seq
	choices []Choice // of the step's sequences, for Backend.Choose
}

// ErrCPUOnly wraps the refusal of what only the CPU backend does: saved
// states (Config.Store, Export) and LoRA adapters.
var ErrCPUOnly = errors.New("engine: only on the CPU")

// New starts an engine for m on the CPU. The model must stay open until
// Close returns.
func New(m *model.Model, cfg Config) (*Engine, error) { return NewOn(m, nil, cfg) }

// NewOn starts an engine for m computed by b (nil: m itself, on the CPU),
// which must hold m's weights: m gives the engine the configuration, the
// end-of-sequence ids and the identity. The engine closes b when its
// scheduler ends; m and b must stay open until Close returns. Saved states
// (Config.Store) and LoRA adapters are refused on a backend other than the
// CPU's (ErrCPUOnly).
func NewOn(m *model.Model, b Backend, cfg Config) (*Engine, error) {
	if err := cfg.fill(m); err != nil {
		return nil, err
	}
	if cfg.NoPrefixReuse {
		cfg.Store = nil
	}
	e := &Engine{
		m:    m,
		cfg:  cfg,
		wake: make(chan struct{}, 1),
		idle: make(chan struct{}),
		done: make(chan struct{}),
	}
	if b == nil {
		e.cpu = newCPUBackend(m)
		b = e.cpu
	} else if cfg.Store != nil {
		return nil, fmt.Errorf("%w: saved states (Config.Store) are kept from CPU states; on this backend turn them off", ErrCPUOnly)
	}
	e.be = b
	e.snapBytes = b.SnapshotBytes()
	e.identity = m.Identity()
	if e.cfg.Store != nil {
		e.localKeys = map[string]localKey{}
		e.jobsCond = sync.NewCond(&e.mu)
		e.writerDone = make(chan struct{})
		go e.writer()
	}
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
		StateLoads: e.stateLoads.Load(), StateSaves: e.stateSaves.Load(),
		StateRefused: e.stateRefused.Load(), StateErrors: e.stateErrors.Load(),
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
	case r.Adapter != nil && e.cpu == nil:
		return fmt.Errorf("%w: %w: LoRA adapters are applied on the CPU only", ErrInvalidRequest, ErrCPUOnly)
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
	if r.FirstAllowed != nil && len(r.FirstAllowed) != V {
		return bad("FirstAllowed has %d entries, the vocabulary %d", len(r.FirstAllowed), V)
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
	if e.cfg.Store != nil && r.Adapter == nil { // stored states are the base model's
		s.pre = e.lookup(ctx, r.Prompt, s.limit)
	}
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
	written := make(chan struct{})
	go func() {
		<-idle
		e.writes.Wait() // the terminal events that wait for a store
		close(written)
	}()
	select {
	case <-written:
		if err := e.Err(); err != nil && !errors.Is(err, errClosed) {
			return err
		}
		return nil
	case <-ctx.Done():
		e.Abort(ErrShutdown)
		<-idle
		e.writes.Wait()
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
	if e.cfg.Store != nil {
		// The writer stores what it was given, then ends.
		e.mu.Lock()
		e.writerStop = true
		e.jobsCond.Broadcast()
		e.mu.Unlock()
		<-e.writerDone
	}
	if err := e.Err(); err != nil && !errors.Is(err, errClosed) {
		return err
	}
	return nil
}

var errClosed = errors.New("engine: closed")
