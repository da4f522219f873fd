package engine

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

// hostDevice is the CPU model behind a Backend other than the engine's
// own: the engine takes a device's paths (greedy choices through Argmax,
// prompt chunks without logits, copies of the Mamba state through
// Snapshot values, states released when it ends) with the CPU's
// arithmetic, so its tokens must be the CPU engine's, bit for bit.
type hostDevice struct {
	*cpuBackend
	ids      []int
	noLogits []bool
	chooses  int // Choose calls
	sampled  int // sampled (not greedy) tokens chosen
	mu       sync.Mutex
	live     int // states made and not freed
}

type hostDeviceState struct {
	*cpuState
	h *hostDevice
}

func (h *hostDevice) NewState(n int) (State, error) {
	st, err := h.cpuBackend.NewState(n)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.live++
	h.mu.Unlock()
	return &hostDeviceState{st.(*cpuState), h}, nil
}

func (s *hostDeviceState) CopyFrom(src State) error {
	return s.cpuState.CopyFrom(src.(*hostDeviceState).cpuState)
}

func (s *hostDeviceState) Free() {
	s.h.mu.Lock()
	s.h.live--
	s.h.mu.Unlock()
}

func (h *hostDevice) Forward(batch []Input) error {
	in := make([]Input, len(batch))
	h.noLogits = h.noLogits[:0]
	for i, x := range batch {
		in[i] = x
		in[i].State = x.State.(*hostDeviceState).cpuState
		h.noLogits = append(h.noLogits, x.NoLogits)
	}
	return h.cpuBackend.Forward(in)
}

func (h *hostDevice) Logits(i int) ([]float32, error) {
	if h.noLogits[i] {
		return nil, errors.New("logits of a NoLogits sequence asked for")
	}
	return h.cpuBackend.Logits(i)
}

// Choose takes the argmax of greedy choices and, for sampled ones, one
// draw of a sampler seeded by the request's seed and step: deterministic,
// but not the CPU sampler's sequence (as on a device).
func (h *hostDevice) Choose(cs []Choice) ([]int, error) {
	h.chooses++
	h.ids = h.ids[:0]
	for i, c := range cs {
		id := -1
		if c.Device && !h.noLogits[i] {
			l, _ := h.cpuBackend.Logits(i)
			if model.Finite(l) {
				p := c.Params
				p.Seed = p.Seed*1000003 + uint64(c.Step)
				id = sample.New(p, len(l)).Sample(l)
				if p.Temperature > 0 {
					h.sampled++
				}
			}
		}
		h.ids = append(h.ids, id)
	}
	return h.ids, nil
}

// run submits every request at once and returns each one's tokens and
// cached prompt tokens.
func runAll(t *testing.T, e *Engine, rs []Request) ([][]int, []int) {
	t.Helper()
	streams := make([]*Stream, len(rs))
	for i, r := range rs {
		s, err := e.Submit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	out := make([][]int, len(rs))
	cached := make([]int, len(rs))
	for i, s := range streams {
		ids, last := collect(t, s)
		if last.Err != nil {
			t.Fatalf("request %d: %v", i, last.Err)
		}
		out[i], cached[i] = ids, s.CachedTokens()
	}
	return out, cached
}

// TestOtherBackend runs the engine on a backend other than the CPU's
// (hostDevice) against the CPU engine: the same tokens for a batch of
// greedy and sampled requests, a continued prompt and one that shares only
// the previous prompt (its copy of the Mamba state), and parallel choices;
// what only the CPU does is refused; every state is freed at Close.
func TestOtherBackend(t *testing.T) {
	m := demoModelFor(t)
	h := &hostDevice{cpuBackend: newCPUBackend(m)}
	cfg := Config{MaxBatch: 4, Context: 256}
	dev, err := NewOn(m, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := New(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()

	rs := []Request{
		{Prompt: prompt(0, 9), MaxTokens: 12, IgnoreEOS: true},
		{Prompt: prompt(1, 30), MaxTokens: 7, IgnoreEOS: true},
		{Prompt: prompt(2, 3), MaxTokens: 15, IgnoreEOS: true, Sampling: sample.Params{Temperature: 0.9, TopK: 40, Seed: 5}},
		{Prompt: prompt(3, 17), MaxTokens: 10, IgnoreEOS: true, Logprobs: true},
	}
	want, _ := runAll(t, cpu, rs)
	got, _ := runAll(t, dev, rs)
	for i := range rs {
		// Request 2's draws are the backend's (its own random sequence).
		if i != 2 && !slices.Equal(got[i], want[i]) {
			t.Errorf("request %d: %v, the CPU engine %v", i, got[i], want[i])
		}
	}
	// The backend's draws follow the request's seed and step.
	h2 := &hostDevice{cpuBackend: newCPUBackend(m)}
	dev2, err := NewOn(m, h2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := runAll(t, dev2, rs[2:3])
	if err := dev2.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got[2]) != 15 || !slices.Equal(again[0], got[2]) {
		t.Errorf("sampled on the backend: %v, again alone %v", got[2], again[0])
	}
	if h.chooses == 0 || h.sampled == 0 {
		t.Errorf("the backend chose %d times, %d sampled tokens", h.chooses, h.sampled)
	}
	if st := dev.Stats(); st.StepSequences <= st.Steps {
		t.Errorf("no step batched several sequences: %+v", st)
	}

	// Prefix reuse: the first prompt and its output continued (the whole
	// state), and the second prompt followed by other tokens (the copy of
	// the Mamba state at the end of that prompt, then a rewind).
	ext := append(append(slices.Clone(rs[0].Prompt), got[0]...), 7, 8, 9)
	other := append(slices.Clone(rs[1].Prompt), 11, 12)
	rs2 := []Request{{Prompt: ext, MaxTokens: 6, IgnoreEOS: true}, {Prompt: other, MaxTokens: 6, IgnoreEOS: true}}
	cold, err := New(m, Config{MaxBatch: 4, Context: 256, NoPrefixReuse: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cold.Close()
	want2, _ := runAll(t, cold, rs2)
	got2, cached := runAll(t, dev, rs2)
	for i := range rs2 {
		if !slices.Equal(got2[i], want2[i]) {
			t.Errorf("continued request %d: %v, computed whole %v", i, got2[i], want2[i])
		}
	}
	// The last token of a request that ends at its length is not fed.
	if w := len(rs[0].Prompt) + len(got[0]) - 1; cached[0] != w || cached[1] != len(rs[1].Prompt) {
		t.Errorf("cached tokens %v, want [%d %d]", cached, w, len(rs[1].Prompt))
	}

	// Top-k 1 draws the greedy token on the backend too.
	tk := Request{Prompt: prompt(4, 6), MaxTokens: 8, IgnoreEOS: true, Sampling: sample.Params{Temperature: 1, TopK: 1, Seed: 3}}
	g1, _ := runAll(t, dev, []Request{tk})
	tk.Sampling = sample.Params{}
	c1, _ := runAll(t, cpu, []Request{tk})
	if !slices.Equal(g1[0], c1[0]) {
		t.Errorf("top-k 1 on the backend: %v, greedy on the CPU %v", g1[0], c1[0])
	}

	// Parallel choices take copies of the leader's state.
	streams, err := dev.SubmitGroup(context.Background(), []Request{rs[0], rs[0], rs[0]})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range streams {
		ids, last := collect(t, s)
		if last.Err != nil || !slices.Equal(ids, want[0]) {
			t.Errorf("choice %d: %v (%v), want %v", i, ids, last.Err, want[0])
		}
	}

	// What only the CPU does.
	if _, err := dev.Submit(context.Background(), Request{Prompt: prompt(0, 3), Adapter: &model.LowRank{}}); !errors.Is(err, ErrCPUOnly) || !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("a LoRA adapter: %v", err)
	}
	if err := dev.Export(context.Background(), nil); !errors.Is(err, ErrCPUOnly) {
		t.Errorf("Export: %v", err)
	}
	if _, err := NewOn(m, h, Config{Store: newMemStore()}); !errors.Is(err, ErrCPUOnly) {
		t.Errorf("a store: %v", err)
	}
	if err := dev.Forget(context.Background()); err != nil {
		t.Error(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if h.live != 0 {
		t.Errorf("%d states not freed after Close", h.live)
	}
}

// TestOtherBackendNonFinite: a device's argmax of −1 ends the request with
// ErrNonFinite, without running the CPU model to locate the layer.
func TestOtherBackendNonFinite(t *testing.T) {
	m := demoModelFor(t)
	h := &nanDevice{hostDevice{cpuBackend: newCPUBackend(m)}}
	e, err := NewOn(m, h, Config{MaxBatch: 1, Context: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s, err := e.Submit(context.Background(), Request{Prompt: prompt(0, 5), MaxTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, last := collect(t, s)
	if !errors.Is(last.Err, ErrNonFinite) {
		t.Errorf("terminal event %+v", last)
	}
}

type nanDevice struct{ hostDevice }

func (h *nanDevice) Logits(i int) ([]float32, error) {
	l, err := h.hostDevice.Logits(i)
	if err == nil {
		l[3] = float32(math.NaN())
	}
	return l, err
}

func (h *nanDevice) Choose(cs []Choice) ([]int, error) {
	ids, err := h.hostDevice.Choose(cs)
	for i := range ids {
		ids[i] = -1
	}
	return ids, err
}
