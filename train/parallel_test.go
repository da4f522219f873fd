package train

import (
	"math"
	"runtime"
	"testing"

	"github.com/jamba-go/jamba/model"
)

// TestWorkersMatchOneEngine checks data parallelism against one engine over
// the whole batch, on the random layouts of the gradient checks (MoE with a
// large aux coefficient among them) and ragged rows:
//
//   - the cross-entropy is the same bits: every token's forward values are
//     (MatMul and the per-token vector loops are batch- and
//     thread-invariant) and the terms are added in the same order;
//   - the aux loss is the same up to the float64 order of its pooled
//     probability sums (1e-12 relative);
//   - the gradient differs only by the order of float32 sums over tokens
//     (a worker sums its own tokens, then the workers' sums are added) and
//     over the default engine's per-goroutine partials: rounding of about
//     1e-7 relative per sum of O(1) terms, so 1e-5 relative L2 per tensor
//     is a bar that any real error (a missed share, a wrong scale, the aux
//     gradient of one share's statistics) is far above.
func TestWorkersMatchOneEngine(t *testing.T) {
	for ci, tc := range gradCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(t, tc.mod)
			p := randomParams(cfg, uint64(700+ci))
			lens := append(append([]int(nil), tc.lens...), 9, 23, 4, 11)
			rows := randomRows(uint64(800+ci), cfg.VocabSize, lens...)
			one, err := NewBackprop(p)
			if err != nil {
				t.Fatal(err)
			}
			want, err := one.Backward(rows, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			ref := make([]float64, len(one.Grad))
			for i, v := range one.Grad {
				ref[i] = float64(v)
			}
			for _, n := range []int{1, 2, 3, len(rows)} {
				ws, err := NewWorkers(p, n)
				if err != nil {
					t.Fatal(err)
				}
				ws.SetRecompute(n == 3)
				got, err := ws.Backward(rows, 0.5)
				if err != nil {
					t.Fatal(err)
				}
				if got.CE != want.CE || got.Tokens != want.Tokens {
					t.Errorf("%d workers: CE %v over %d tokens, one engine %v over %d", n, got.CE, got.Tokens, want.CE, want.Tokens)
				}
				if math.Abs(got.Aux-want.Aux) > 1e-12*math.Abs(want.Aux) || math.Abs(got.Total-want.Total) > 1e-12*want.Total {
					t.Errorf("%d workers: aux %v total %v, one engine %v %v", n, got.Aux, got.Total, want.Aux, want.Total)
				}
				g := ws.Grad()
				var worst float64
				for _, tn := range p.Tensors {
					rel, _ := relL2(g[tn.Offset:tn.Offset+tn.Size], ref[tn.Offset:tn.Offset+tn.Size])
					if rel > 1e-5 {
						t.Errorf("%d workers: %s: relative L2 difference %.3g", n, tn.Name, rel)
					}
					worst = max(worst, rel)
				}
				t.Logf("%d workers: worst relative L2 difference over all tensors %.2g", n, worst)
				if fwd, err := ws.Forward(rows); err != nil || fwd.CE != want.CE {
					t.Errorf("%d workers: Forward CE %v (%v), want %v", n, fwd.CE, err, want.CE)
				}
			}
		})
	}
}

// TestWorkersResumeIsExact is TestResumeIsExact with data-parallel workers
// (3 workers for batches of 3 rows, and 2 for a ragged share), and checks
// that the run is reproducible for a given worker count and that the
// validation loss does not depend on it.
func TestWorkersResumeIsExact(t *testing.T) {
	cfg := tinyConfig(t, nil)
	data := patternTokens(700, cfg.VocabSize, 1)
	val := patternTokens(100, cfg.VocabSize, 2)
	for _, n := range []int{2, 3} {
		opts := trainOpts()
		opts.Workers = n
		full, err := NewTrainer(InitParams(cfg, 3), data, val, opts)
		if err != nil {
			t.Fatal(err)
		}
		if full.Workers == nil || len(full.Workers.Backprops) != n {
			t.Fatalf("%d workers asked, trainer has %v", n, full.Workers)
		}
		if err := full.Run(t.Context(), RunOptions{Dir: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		first, err := NewTrainer(InitParams(cfg, 3), data, val, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := first.Run(t.Context(), RunOptions{Dir: dir, StopStep: 5}); err != nil {
			t.Fatal(err)
		}
		second, err := Resume(dir, data, val, nil)
		if err != nil {
			t.Fatal(err)
		}
		if second.Opts.Workers != n || second.Workers == nil {
			t.Fatalf("resumed with %d workers, saved %d", second.Opts.Workers, n)
		}
		if err := second.Run(t.Context(), RunOptions{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		for i := range full.Params.Data {
			if math.Float32bits(full.Params.Data[i]) != math.Float32bits(second.Params.Data[i]) {
				t.Fatalf("%d workers: parameter %d: %g in one run, %g with a resume", n, i, full.Params.Data[i], second.Params.Data[i])
			}
		}
		for i, a := range full.Metrics {
			b := second.Metrics[i]
			if a.Loss != b.Loss || a.GradNorm != b.GradNorm || math.Float64bits(a.ValLoss) != math.Float64bits(b.ValLoss) {
				t.Errorf("%d workers, step %d: %+v in one run, %+v with a resume", n, a.Step, a, b)
			}
		}

		// Validation does not depend on the worker count: one engine over
		// the same parameters gives the same bits.
		single, err := NewTrainer(full.Params, data, val, trainOpts())
		if err != nil {
			t.Fatal(err)
		}
		a, err := full.Evaluate()
		if err != nil {
			t.Fatal(err)
		}
		b, err := single.Evaluate()
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("validation loss %v with %d workers, %v with one engine", a, n, b)
		}
	}
	opts := trainOpts()
	opts.Workers = opts.Batch + 1
	if _, err := NewTrainer(InitParams(cfg, 3), data, val, opts); err == nil {
		t.Error("more workers than rows per batch were accepted")
	}
}

// TestWorkersAllocation checks that a data-parallel step allocates only
// small bookkeeping once the first step has grown the buffers: under 2% of
// what the first step allocated.
func TestWorkersAllocation(t *testing.T) {
	t.Run("full", func(t *testing.T) { testWorkersAllocation(t, nil) })
	t.Run("lora", func(t *testing.T) {
		testWorkersAllocation(t, &LoRAOptions{Rank: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"in_proj", "x_proj", "dt_proj", "out_proj", "q_proj", "o_proj", "router"}})
	})
	// Adapters on the experts take no dropout (lora.Config.Validate).
	t.Run("lora-experts", func(t *testing.T) {
		testWorkersAllocation(t, &LoRAOptions{Rank: 4, Alpha: 8, Targets: []string{"in_proj", "q_proj", "experts"}})
	})
}

func testWorkersAllocation(t *testing.T, lo *LoRAOptions) {
	cfg := tinyConfig(t, func(c *model.Config) { c.HiddenSize, c.IntermediateSize = 32, 64 })
	data := patternTokens(20000, cfg.VocabSize, 1)
	opts := trainOpts()
	opts.Seq, opts.Batch, opts.Accum, opts.Workers = 64, 4, 2, 2
	opts.Steps, opts.EvalEvery, opts.SaveEvery = 20, 0, 0
	opts.LoRA = lo
	tr, err := NewTrainer(InitParams(cfg, 3), data, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	alloc := func() uint64 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.TotalAlloc
	}
	a0 := alloc()
	if _, err := tr.Step(); err != nil {
		t.Fatal(err)
	}
	first := alloc() - a0
	// The experts' buffers grow to the largest group the routing has
	// made so far: a few more steps let them reach it.
	for range 4 {
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
	}
	const steps = 4
	a1 := alloc()
	for range steps {
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
	}
	per := (alloc() - a1) / steps
	t.Logf("first step allocated %d bytes, later steps %d each", first, per)
	if per*50 > first {
		t.Errorf("a step allocates %d bytes after the first (%d)", per, first)
	}
}
