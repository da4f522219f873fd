package engine

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

var (
	demoOnce  sync.Once
	demoModel *model.Model
	demoErr   error
)

// demoModelFor returns the embedded demo model, loaded once for the package.
func demoModelFor(t testing.TB) *model.Model {
	t.Helper()
	demoOnce.Do(func() { demoModel, demoErr = demo.Load(model.Options{}) })
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	return demoModel
}

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(demoModelFor(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// prompt returns a deterministic prompt of n tokens starting with BOS.
func prompt(i, n int) []int {
	p := []int{1}
	for j := 1; j < n; j++ {
		p = append(p, 100+(i*37+j*11)%3000)
	}
	return p
}

// collect reads a stream to its end.
func collect(t testing.TB, s *Stream) (ids []int, last Event) {
	t.Helper()
	for ev := range s.Events() {
		if ev.HasToken() {
			ids = append(ids, ev.Token)
		}
		last = ev
	}
	return ids, last
}

func generate(t testing.TB, p []int, maxTokens int) ([]int, model.FinishReason) {
	t.Helper()
	out, reason, err := demoModelFor(t).Generate(context.Background(), p, model.GenerateOptions{MaxTokens: maxTokens}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out, reason
}

func equalIDs(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGreedyMatchesGenerate checks that a request served alone gives
// exactly model.Generate's tokens, for prompts shorter and longer than one
// step's token budget.
func TestGreedyMatchesGenerate(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 4})
	for _, n := range []int{1, 7, 40, 700} {
		p := prompt(n, n)
		want, reason := generate(t, p, 24)
		s, err := e.Submit(context.Background(), Request{Prompt: p, MaxTokens: 24})
		if err != nil {
			t.Fatal(err)
		}
		got, last := collect(t, s)
		if !equalIDs(got, want) {
			t.Errorf("prompt of %d: got %v, want %v", n, got, want)
		}
		if string(last.Finish) != string(reason) || last.Err != nil {
			t.Errorf("prompt of %d: finish %q err %v, want %q", n, last.Finish, last.Err, reason)
		}
		if s.Generated() != len(want) || s.PromptTokens() != n {
			t.Errorf("prompt of %d: counts %d/%d", n, s.PromptTokens(), s.Generated())
		}
	}
}

// TestBatchMatchesSolo runs more requests than slots at once, with prompts
// long enough to be prefilled in several chunks next to decoding sequences,
// and checks every output against its solo run.
func TestBatchMatchesSolo(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 6, StepTokens: 64})
	const n = 20
	want := make([][]int, n)
	for i := range want {
		want[i], _ = generate(t, prompt(i, 3+i*9), 32)
	}
	streams := make([]*Stream, n)
	for i := range streams {
		var err error
		streams[i], err = e.Submit(context.Background(), Request{Prompt: prompt(i, 3+i*9), MaxTokens: 32})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range streams {
		got, last := collect(t, s)
		if last.Err != nil {
			t.Fatalf("request %d: %v", i, last.Err)
		}
		// kernels.MatMul is batch-invariant, so batched steps compute each
		// sequence bit for bit as solo ones: any difference is a
		// scheduling bug such as a mixed-up cache.
		if !equalIDs(got, want[i]) {
			t.Errorf("request %d: got %v, want %v", i, got, want[i])
		}
	}
	// A sequence leaves the batch just after its last event is sent.
	waitIdle(t, e, time.Second)
	st := e.Stats()
	if st.Active != 0 || st.Queued != 0 || st.Requests != n {
		t.Errorf("stats after the run: %+v", st)
	}
}

func TestSeededSamplingRepeats(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 3})
	p := sample.Params{Temperature: 0.9, TopP: 0.95, TopK: 40, Seed: 42}
	run := func() []int {
		s, err := e.Submit(context.Background(), Request{Prompt: prompt(3, 9), MaxTokens: 20, Sampling: p, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := collect(t, s)
		return ids
	}
	a := run()
	// Again while two other requests share the batch.
	var wg sync.WaitGroup
	for i := range 2 {
		s, err := e.Submit(context.Background(), Request{Prompt: prompt(i, 5), MaxTokens: 30, Sampling: sample.Params{Temperature: 1, Seed: uint64(i)}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); collect(t, s) }()
	}
	b := run()
	wg.Wait()
	if !equalIDs(a, b) || len(a) != 20 {
		t.Errorf("same seed gave %v then %v", a, b)
	}
}

func TestLengthLimits(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 2, Context: 16})
	// The context bounds the output when MaxTokens does not.
	s, err := e.Submit(context.Background(), Request{Prompt: prompt(1, 10), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	ids, last := collect(t, s)
	if len(ids) != 6 || last.Finish != model.FinishLength {
		t.Errorf("got %d tokens, finish %q; want 6, length", len(ids), last.Finish)
	}
	// A prompt of Context-1 tokens has room for exactly one.
	s, err = e.Submit(context.Background(), Request{Prompt: prompt(1, 15), MaxTokens: 1, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if ids, last := collect(t, s); len(ids) != 1 || last.Finish != model.FinishLength {
		t.Errorf("got %d tokens, finish %q; want 1, length", len(ids), last.Finish)
	}
	for _, r := range []Request{
		{Prompt: prompt(1, 16)},
		{Prompt: nil},
		{Prompt: []int{1, -1}},
		{Prompt: []int{1, 4096}},
		{Prompt: []int{1}, MaxTokens: -1},
		{Prompt: []int{1}, TopLogprobs: 21},
		{Prompt: []int{1}, StopTokens: []int{9999}},
		{Prompt: []int{1}, LogitBias: map[int]float32{5000: 1}},
		{Prompt: []int{1}, Sampling: sample.Params{Temperature: 3}},
	} {
		if _, err := e.Submit(context.Background(), r); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Submit(%+v) = %v, want ErrInvalidRequest", r, err)
		}
	}
}

func TestStopTokensAndMinTokens(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 2})
	p := prompt(5, 12)
	want, _ := generate(t, p, 20)
	if len(want) < 6 {
		t.Skipf("reference output too short: %v", want)
	}
	s, _ := e.Submit(context.Background(), Request{Prompt: p, MaxTokens: 20, StopTokens: []int{want[4]}})
	got, last := collect(t, s)
	// The stop token ends the request at its first occurrence, unsent.
	first := 0
	for first < len(want) && want[first] != want[4] {
		first++
	}
	if !equalIDs(got, want[:first]) || last.Finish != model.FinishStop {
		t.Errorf("stop token %d: got %v (%q), want %v", want[4], got, last.Finish, want[:first])
	}
	// MinTokens masks it until enough tokens are out.
	s, _ = e.Submit(context.Background(), Request{Prompt: p, MaxTokens: 20, StopTokens: []int{want[0]}, MinTokens: 3})
	got, _ = collect(t, s)
	if len(got) < 3 || contains(got[:3], want[0]) {
		t.Errorf("min tokens 3 with stop %d: got %v", want[0], got)
	}
	// A logit bias of +100 forces a token.
	s, _ = e.Submit(context.Background(), Request{Prompt: p, MaxTokens: 5, LogitBias: map[int]float32{777: 100}})
	got, _ = collect(t, s)
	if !equalIDs(got, []int{777, 777, 777, 777, 777}) {
		t.Errorf("bias towards 777: got %v", got)
	}
}

func TestLogprobs(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 2})
	s, _ := e.Submit(context.Background(), Request{Prompt: prompt(2, 8), MaxTokens: 6, Logprobs: true, TopLogprobs: 3})
	n := 0
	for ev := range s.Events() {
		if !ev.HasToken() {
			continue
		}
		n++
		if len(ev.Top) != 3 || ev.Top[0].Token != ev.Token || ev.Top[0].Logprob != ev.Logprob {
			t.Errorf("greedy token %d (%g): top %v", ev.Token, ev.Logprob, ev.Top)
		}
		if ev.Logprob > 0 || ev.Top[1].Logprob > ev.Top[0].Logprob || ev.Top[2].Logprob > ev.Top[1].Logprob {
			t.Errorf("logprobs not sorted or positive: %v", ev.Top)
		}
	}
	if n == 0 {
		t.Error("no tokens")
	}
}

// waitIdle waits until the engine has no request left.
func waitIdle(t testing.TB, e *Engine, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := e.Stats()
		if st.Active == 0 && st.Queued == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine still busy after %v: %+v", within, st)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCancel(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 1, MaxQueue: 4})
	ctx, cancel := context.WithCancel(context.Background())
	long := Request{Prompt: prompt(1, 5), IgnoreEOS: true} // runs to the end of the 8192 context
	running, err := e.Submit(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	qctx, qcancel := context.WithCancel(context.Background())
	queued, err := e.Submit(qctx, long)
	if err != nil {
		t.Fatal(err)
	}
	<-running.Events() // decoding
	qcancel()
	if _, last := collect(t, queued); !errors.Is(last.Err, context.Canceled) {
		t.Errorf("queued request ended with %+v", last)
	}
	cancel()
	if _, last := collect(t, running); !errors.Is(last.Err, context.Canceled) {
		t.Errorf("running request ended with %+v", last)
	}
	waitIdle(t, e, time.Second)
	if st := e.Stats(); st.Cancelled != 2 {
		t.Errorf("stats: %+v", st)
	}
	// The slot serves the next request normally.
	want, _ := generate(t, prompt(9, 9), 10)
	s, _ := e.Submit(context.Background(), Request{Prompt: prompt(9, 9), MaxTokens: 10})
	if got, _ := collect(t, s); !equalIDs(got, want) {
		t.Errorf("after cancel: got %v, want %v", got, want)
	}
}

// TestSlowConsumer checks that a stream nobody reads pauses only itself.
func TestSlowConsumer(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 2, EventBuffer: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck, err := e.Submit(ctx, Request{Prompt: prompt(1, 5), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := generate(t, prompt(2, 6), 40)
	s, _ := e.Submit(context.Background(), Request{Prompt: prompt(2, 6), MaxTokens: 40})
	if got, _ := collect(t, s); !equalIDs(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if n := len(stuck.Events()); n > 3 {
		t.Errorf("unread stream holds %d events, more than the buffer allows", n)
	}
	cancel()
	collect(t, stuck)
	waitIdle(t, e, time.Second)
}

func TestQueueFull(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 1, MaxQueue: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := Request{Prompt: prompt(1, 5), IgnoreEOS: true}
	var streams []*Stream
	for i := 0; ; i++ {
		s, err := e.Submit(ctx, long)
		if errors.Is(err, ErrQueueFull) {
			if i < 3 {
				t.Fatalf("queue full after %d requests, want 3 (1 slot, 2 queued)", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
		if i == 0 {
			<-s.Events() // running
		}
		if i > 5 {
			t.Fatal("queue never filled")
		}
	}
	if st := e.Stats(); st.Queued != 2 || st.Active != 1 {
		t.Errorf("stats: %+v", st)
	}
	cancel()
	for _, s := range streams {
		collect(t, s)
	}
	waitIdle(t, e, time.Second)
}

func TestDrain(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 2})
	s, _ := e.Submit(context.Background(), Request{Prompt: prompt(1, 5), MaxTokens: 30, IgnoreEOS: true})
	done := make(chan []int)
	go func() { ids, _ := collect(t, s); done <- ids }()
	if err := e.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ids := <-done; len(ids) != 30 {
		t.Errorf("drained request gave %d tokens, want 30", len(ids))
	}
	if _, err := e.Submit(context.Background(), Request{Prompt: []int{1}}); !errors.Is(err, ErrDraining) {
		t.Errorf("Submit while draining: %v", err)
	}

	// A drain that runs out of time ends the rest with ErrShutdown.
	e2 := newEngine(t, Config{MaxBatch: 1})
	s1, _ := e2.Submit(context.Background(), Request{Prompt: prompt(1, 5), IgnoreEOS: true})
	s2, _ := e2.Submit(context.Background(), Request{Prompt: prompt(1, 5), IgnoreEOS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	go collect(t, s1)
	if err := e2.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain = %v", err)
	}
	if _, last := collect(t, s2); !errors.Is(last.Err, ErrShutdown) {
		t.Errorf("queued request ended with %+v", last)
	}
}

// TestPanicFailsOneRequest injects a panic into the sampling of one
// request and checks that the others finish normally.
func TestPanicFailsOneRequest(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 4})
	// A bias on a token outside the vocabulary, queued past validation,
	// makes sampling panic with an index out of range.
	bad := Request{Prompt: prompt(1, 5), MaxTokens: 10, LogitBias: map[int]float32{1 << 20: 1}}
	if e.Validate(&bad) == nil {
		t.Fatal("validation accepted a bias outside the vocabulary")
	}
	sb, err := e.submit(context.Background(), bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := generate(t, prompt(2, 5), 10)
	sg, _ := e.Submit(context.Background(), Request{Prompt: prompt(2, 5), MaxTokens: 10})
	_, last := collect(t, sb)
	var pe *PanicError
	if !errors.Is(last.Err, ErrInternal) || !errors.As(last.Err, &pe) || len(pe.Stack) == 0 {
		t.Errorf("bad request ended with %+v, want a PanicError with its stack", last)
	}
	if got, last := collect(t, sg); !equalIDs(got, want) || last.Err != nil {
		t.Errorf("good request: got %v %+v, want %v", got, last, want)
	}
	if e.Err() != nil {
		t.Errorf("engine died: %v", e.Err())
	}
}

func TestCloseEndsEverything(t *testing.T) {
	e, err := New(demoModelFor(t), Config{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := e.Submit(context.Background(), Request{Prompt: prompt(1, 5), IgnoreEOS: true})
	s2, _ := e.Submit(context.Background(), Request{Prompt: prompt(1, 5), IgnoreEOS: true})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Stream{s1, s2} {
		if _, last := collect(t, s); !errors.Is(last.Err, ErrShutdown) {
			t.Errorf("ended with %+v", last)
		}
	}
	if _, err := e.Submit(context.Background(), Request{Prompt: []int{1}}); err == nil {
		t.Error("Submit after Close succeeded")
	}
	// Done is closed when the scheduler goroutine has returned.
	select {
	case <-e.Done():
	default:
		t.Error("scheduler still running")
	}
}

// TestStepAllocs checks that decode steps allocate nothing once the slots
// and the workspace have their size: the events are values in a buffered
// channel.
func TestStepAllocs(t *testing.T) {
	m := demoModelFor(t)
	cpu := newCPUBackend(m)
	e := &Engine{m: m, cfg: Config{MaxBatch: 4}, be: cpu, cpu: cpu, wake: make(chan struct{}, 1), idle: make(chan struct{}), done: make(chan struct{})}
	if err := e.cfg.fill(m); err != nil {
		t.Fatal(err)
	}
	// The workspace's attention scores grow with the longest sequence
	// seen; one long forward first keeps that growth, which belongs to
	// the model, out of the count.
	if err := e.cpu.ws.Forward([]model.SeqInput{{Tokens: prompt(0, 256)}}); err != nil {
		t.Fatal(err)
	}
	var streams []*Stream
	for i := range 4 {
		s, err := e.Submit(context.Background(), Request{Prompt: prompt(i, 6), IgnoreEOS: true, Sampling: sample.Params{Temperature: 0.8, TopK: 50, Seed: 1}})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	drain := func() {
		for _, s := range streams {
			for len(s.events) > 0 {
				<-s.events
			}
		}
	}
	for range 3 {
		e.step()
		drain()
	}
	allocs := testing.AllocsPerRun(50, func() {
		e.step()
		drain()
	})
	if allocs != 0 {
		t.Errorf("a decode step of 4 sequences allocates %.1f times", allocs)
	}
	if e.Stats().Active != 4 {
		t.Errorf("stats: %+v", e.Stats())
	}
}

func BenchmarkDecodeStep(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run("batch="+string(rune('0'+n)), func(b *testing.B) {
			m := demoModelFor(b)
			cpu := newCPUBackend(m)
			e := &Engine{m: m, cfg: Config{MaxBatch: n}, be: cpu, cpu: cpu, wake: make(chan struct{}, 1), idle: make(chan struct{}), done: make(chan struct{})}
			e.cfg.fill(m)
			var streams []*Stream
			for i := range n {
				s, _ := e.Submit(context.Background(), Request{Prompt: prompt(i, 6), IgnoreEOS: true})
				streams = append(streams, s)
			}
			b.ReportAllocs()
			for b.Loop() {
				e.step()
				for _, s := range streams {
					for len(s.events) > 0 {
						<-s.events
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// TestFirstAllowed: the first token is the most likely of the allowed ones
// (greedy), later tokens are unrestricted, and a mask of the wrong size is
// refused.
func TestFirstAllowed(t *testing.T) {
	e := newEngine(t, Config{MaxBatch: 1})
	p := prompt(3, 9)
	free, _ := generate(t, p, 4)
	V := e.VocabSize()
	allowed := make([]bool, V)
	for id := range allowed {
		allowed[id] = id != free[0] // ban the unrestricted choice
	}
	st, err := e.Submit(context.Background(), Request{Prompt: p, MaxTokens: 4, IgnoreEOS: true, FirstAllowed: allowed})
	if err != nil {
		t.Fatal(err)
	}
	got, last := collect(t, st)
	if last.Err != nil || len(got) != 4 {
		t.Fatalf("got %v, %+v", got, last)
	}
	// The reference: the model's logits after the prompt, the banned id
	// excluded.
	ws := demoModelFor(t).NewWorkspace()
	if err := ws.Forward([]model.SeqInput{{Tokens: p}}); err != nil {
		t.Fatal(err)
	}
	lg := append([]float32(nil), ws.Logits(0)...)
	lg[free[0]] = float32(math.Inf(-1))
	if want := model.Argmax(lg); got[0] != want {
		t.Errorf("first token %d, want %d (the best allowed)", got[0], want)
	}
	if want, _ := generate(t, append(append([]int(nil), p...), got[0]), 3); !equalIDs(got[1:], want) {
		t.Errorf("tokens after the first %v, want the unrestricted %v", got[1:], want)
	}
	if _, err := e.Submit(context.Background(), Request{Prompt: p, FirstAllowed: allowed[:V-1]}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("a short mask: %v", err)
	}
}
