package cuda

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

// timedBackend times the calls the engine makes to its backend, one entry
// per step: the host time of Forward (the metadata upload and the
// launches), of Choose (the sampling launches, the wait for the step to
// end on the GPU and the ids' copy), and the time from the end of one
// step's Choose to the start of the next Forward (the scheduler: tokens
// delivered, the next batch built), while the GPU has nothing to do.
type timedBackend struct {
	engine.Backend
	fwd, choose, gap []time.Duration
	last             time.Time
	launches         []int64
	dev              *Device
}

func (b *timedBackend) Forward(batch []engine.Input) error {
	t := time.Now()
	if !b.last.IsZero() {
		b.gap = append(b.gap, t.Sub(b.last))
	} else {
		b.gap = append(b.gap, 0)
	}
	b.launches = append(b.launches, b.dev.Launches)
	err := b.Backend.Forward(batch)
	b.fwd = append(b.fwd, time.Since(t))
	b.choose = append(b.choose, 0)
	return err
}

func (b *timedBackend) Choose(cs []engine.Choice) ([]int, error) {
	t := time.Now()
	ids, err := b.Backend.Choose(cs)
	b.last = time.Now()
	b.choose[len(b.choose)-1] = b.last.Sub(t)
	b.launches[len(b.launches)-1] = b.dev.Launches - b.launches[len(b.launches)-1]
	return ids, err
}

// engineBench is the serving engine's decode on the GPU for one batch size
// and one kind of request.
type engineBench struct {
	Sequences int     `json:"sequences"`
	Requests  string  `json:"requests"`
	TokPerS   float64 `json:"decode_tokens_per_s"` // all sequences, from the streams' token times
	MsPerStep float64 `json:"ms_per_step"`
	// Host milliseconds per decode step (timedBackend): Forward, Choose,
	// the scheduler between steps; kernel launches per step.
	ForwardMs  float64 `json:"forward_ms"`
	ChooseMs   float64 `json:"choose_ms"`
	SchedMs    float64 `json:"scheduler_ms"`
	Launches   float64 `json:"launches_per_step"`
	ModelTokS  float64 `json:"model_decode_tokens_per_s"` // cuda.Bench, same shape and batch, same run
	ModelMs    float64 `json:"model_ms_per_step"`
	QueuedMs   float64 `json:"model_queued_ms_per_step"` // cuda.Bench's step with every launch issued first
	IssueMs    float64 `json:"model_issue_ms_per_step"`
	EngineFrac float64 `json:"engine_over_model"`
}

// TestEngineBench measures the serving engine's continuous-batching
// decode on the GPU when JAMBA_ENGINE_BENCH names a config.json: random
// bfloat16 weights of that shape made on the GPU, N requests submitted at
// once (JAMBA_BENCH_BATCHES, default 1,8,32; Config.MaxBatch N), each of 8
// random prompt tokens and JAMBA_BENCH_GEN (64) timed tokens after 8 of
// warm-up, once greedy, once sampled with temperature 1, once with
// temperature 0.8, top-k 40 and top-p 0.95 and once with temperature 0.8
// and top-p 0.95 (each request its own seed).
// The speed is all streams' tokens over the time between the last
// stream's 8th token and its last, beside cuda.Bench's model-level decode
// of the same batch in the same run (with the step queued whole, for
// what CUDA graphs could save). It checks nothing about speed; the
// numbers go to JAMBA_BENCH_OUT as JSON.
func TestEngineBench(t *testing.T) {
	path := os.Getenv("JAMBA_ENGINE_BENCH")
	if path == "" {
		t.Skip("JAMBA_ENGINE_BENCH not set")
	}
	dev := gpu(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := model.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	gen := 64
	if v, err := strconv.Atoi(os.Getenv("JAMBA_BENCH_GEN")); err == nil {
		gen = v
	}
	var batches []int
	for _, s := range strings.Split(os.Getenv("JAMBA_BENCH_BATCHES"), ",") {
		if b, err := strconv.Atoi(s); err == nil {
			batches = append(batches, b)
		}
	}
	if len(batches) == 0 {
		batches = []int{1, 8, 32}
	}
	m, err := NewRandom(dev, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := Bench(m, BenchOptions{GenTokens: 32, Batches: batches, Seed: 1, Queued: true, Progress: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	// The engine reads the configuration, end-of-sequence ids and identity
	// from a model.Model: here one without weights.
	cm := &model.Model{Config: c}
	modes := []struct {
		name string
		p    sample.Params
	}{
		{"greedy", sample.Params{}},
		{"temperature 1", sample.Params{Temperature: 1}},
		{"T 0.8, top-k 40, top-p 0.95", sample.Params{Temperature: 0.8, TopK: 40, TopP: 0.95}},
		{"T 0.8, top-p 0.95", sample.Params{Temperature: 0.8, TopP: 0.95}},
	}
	var out []engineBench
	for _, n := range batches {
		for _, md := range modes {
			eb := runEngineBench(t, dev, cm, m, n, gen, md.p)
			key := fmt.Sprint(n)
			eb.Requests = md.name
			eb.ModelTokS, eb.ModelMs = r.Decode[key], r.DecodeMsPerStep[key]
			eb.QueuedMs, eb.IssueMs = r.QueuedMsPerStep[key], r.IssueMsPerStep[key]
			eb.EngineFrac = eb.TokPerS / eb.ModelTokS
			t.Logf("N=%d %-28s engine %7.1f tok/s (%.3f ms/step: forward %.3f, choose %.3f, scheduler %.3f; %.0f launches)  model %7.1f tok/s (%.3f ms; queued %.3f, issue %.3f)  engine/model %.3f",
				n, md.name, eb.TokPerS, eb.MsPerStep, eb.ForwardMs, eb.ChooseMs, eb.SchedMs, eb.Launches, eb.ModelTokS, eb.ModelMs, eb.QueuedMs, eb.IssueMs, eb.EngineFrac)
			out = append(out, eb)
		}
	}
	js, _ := json.Marshal(struct {
		Model  *BenchResult  `json:"model"`
		Engine []engineBench `json:"engine"`
	}{r, out})
	t.Logf("%s", js)
	if p := os.Getenv("JAMBA_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runEngineBench runs n requests of sampling parameters p at once through
// an engine of n slots over m and measures their decode.
func runEngineBench(t *testing.T, dev *Device, cm *model.Model, m *Model, n, gen int, p sample.Params) engineBench {
	t.Helper()
	const warm, promptLen = 8, 8
	tb := &timedBackend{Backend: EngineBackend(m), dev: dev}
	e, err := engine.NewOn(cm, tb, engine.Config{MaxBatch: n, MaxQueue: n, Context: 4096, EventBuffer: 2 * (warm + gen + 2)})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(n), 5))
	times := make([][]time.Time, n)
	errs := make(chan error, n)
	for i := range n {
		prompt := make([]int, promptLen)
		for j := range prompt {
			prompt[j] = 3 + rng.IntN(cm.Config.VocabSize-3)
		}
		q := p
		q.Seed = uint64(100 + i)
		s, err := e.Submit(context.Background(), engine.Request{Prompt: prompt, MaxTokens: warm + gen + 1, IgnoreEOS: true, Sampling: q})
		if err != nil {
			t.Fatal(err)
		}
		times[i] = make([]time.Time, 0, warm+gen+1)
		go func() {
			var err error
			for ev := range s.Events() {
				if ev.HasToken() {
					times[i] = append(times[i], time.Now())
				}
				if ev.Err != nil {
					err = ev.Err
				}
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	var ta, tb2 time.Time
	for i := range n {
		if len(times[i]) < warm+gen {
			t.Fatalf("request %d: %d tokens, want %d", i, len(times[i]), warm+gen+1)
		}
		if a := times[i][warm-1]; a.After(ta) {
			ta = a
		}
		if b := times[i][warm+gen-1]; b.After(tb2) {
			tb2 = b
		}
	}
	el := tb2.Sub(ta).Seconds()
	r := engineBench{Sequences: n, TokPerS: float64(n*gen) / el, MsPerStep: el * 1e3 / float64(gen)}
	// Steps: the first computes the prompts (and the first token); the
	// next ones decode. Average the decode steps of the timed window.
	lo, hi := warm, min(warm+gen, len(tb.fwd))
	ms := func(d []time.Duration) float64 {
		var s time.Duration
		for _, x := range d[lo:hi] {
			s += x
		}
		return s.Seconds() * 1e3 / float64(hi-lo)
	}
	r.ForwardMs, r.ChooseMs, r.SchedMs = ms(tb.fwd), ms(tb.choose), ms(tb.gap)
	var l int64
	for _, x := range tb.launches[lo:hi] {
		l += x
	}
	r.Launches = float64(l) / float64(hi-lo)
	return r
}
