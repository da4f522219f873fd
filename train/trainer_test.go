package train

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/model"
)

// patternTokens returns a learnable stream: a random sequence (by seed) of
// 12 fixed phrases of 3–7 ids, so the loss can fall well below ln V.
func patternTokens(n, V int, seed uint64) []int32 {
	prng := rand.New(rand.NewPCG(99, 5))
	phrases := make([][]int32, 12)
	for i := range phrases {
		for range 3 + prng.IntN(5) {
			phrases[i] = append(phrases[i], int32(3+prng.IntN(V-3)))
		}
	}
	rng := rand.New(rand.NewPCG(seed, 5))
	var out []int32
	for len(out) < n {
		out = append(out, phrases[rng.IntN(len(phrases))]...)
	}
	return out[:n]
}

func trainOpts() Options {
	o := DefaultOptions()
	o.Seq, o.Batch, o.Accum = 16, 3, 2
	o.Steps, o.Warmup = 8, 2
	o.LR, o.MinLR = 3e-3, 3e-4
	o.EvalEvery, o.EvalTokens, o.SaveEvery = 2, 0, 3
	o.Seed = 42
	return o
}

// TestResumeIsExact trains 8 steps in one go and 4 + resume + 4 from a
// checkpoint, and requires bit-identical parameters, moments and metrics:
// the checkpoint holds every float32 exactly, the data order is a function
// of (seed, epoch, position), and the passes are deterministic.
func TestResumeIsExact(t *testing.T) {
	cfg := tinyConfig(t, nil)
	data := patternTokens(700, cfg.VocabSize, 1) // 43 rows of 16: epochs wrap within 8 steps
	val := patternTokens(100, cfg.VocabSize, 2)
	opts := trainOpts()

	full, err := NewTrainer(InitParams(cfg, 3), data, val, opts)
	if err != nil {
		t.Fatal(err)
	}
	dirA := t.TempDir()
	if err := full.Run(context.Background(), RunOptions{Dir: dirA}); err != nil {
		t.Fatal(err)
	}

	dirB := t.TempDir()
	first, err := NewTrainer(InitParams(cfg, 3), data, val, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Run(context.Background(), RunOptions{Dir: dirB, StopStep: 4}); err != nil {
		t.Fatal(err)
	}
	if first.StepsDone() != 4 {
		t.Fatalf("first leg stopped after %d steps", first.StepsDone())
	}
	second, err := Resume(dirB, data, val, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Run(context.Background(), RunOptions{Dir: dirB}); err != nil {
		t.Fatal(err)
	}
	if full.Data.Epoch == 0 {
		t.Errorf("the run did not reach a second epoch")
	}
	for name, pair := range map[string][2][]float32{
		"params": {full.Params.Data, second.Params.Data},
		"m":      {full.Opt.M, second.Opt.M},
		"v":      {full.Opt.V, second.Opt.V},
	} {
		for i := range pair[0] {
			if math.Float32bits(pair[0][i]) != math.Float32bits(pair[1][i]) {
				t.Fatalf("%s[%d]: %g in one run, %g with a resume", name, i, pair[0][i], pair[1][i])
			}
		}
	}
	if len(full.Metrics) != 8 || len(second.Metrics) != 8 {
		t.Fatalf("metrics: %d and %d lines", len(full.Metrics), len(second.Metrics))
	}
	for i, a := range full.Metrics {
		b := second.Metrics[i]
		same := func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) }
		if a.Step != b.Step || a.Tokens != b.Tokens || !same(a.Loss, b.Loss) || !same(a.ValLoss, b.ValLoss) ||
			!same(a.GradNorm, b.GradNorm) || !same(a.LR, b.LR) || !same(a.Aux, b.Aux) {
			t.Errorf("step %d: %+v in one run, %+v with a resume", a.Step, a, b)
		}
	}
	// The resumed folder holds the whole log and the plot.
	ms, err := ReadMetricsCSV(filepath.Join(dirB, metricsFile))
	if err != nil || len(ms) != 8 {
		t.Errorf("metrics.csv: %d lines, %v", len(ms), err)
	}
	if st, err := os.Stat(filepath.Join(dirB, plotFile)); err != nil || st.Size() == 0 {
		t.Errorf("loss plot: %v", err)
	}
	// The checkpoint loads in the model package.
	m, err := model.Load(dirB, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

// TestTrainingLearns runs 40 steps on a repetitive stream and requires the
// validation loss to fall far below its start (ln 24 ≈ 3.2): a broken
// gradient or update would leave it near the start.
func TestTrainingLearns(t *testing.T) {
	cfg := tinyConfig(t, func(c *model.Config) { c.HiddenSize, c.IntermediateSize = 16, 32; c.MambaDtRank = 2 })
	data := patternTokens(4000, cfg.VocabSize, 1)
	val := patternTokens(400, cfg.VocabSize, 2)
	opts := trainOpts()
	opts.Steps, opts.Warmup, opts.EvalEvery, opts.SaveEvery, opts.Accum = 40, 4, 40, 0, 1
	opts.LR, opts.MinLR = 1e-2, 1e-3
	tr, err := NewTrainer(InitParams(cfg, 3), data, val, opts)
	if err != nil {
		t.Fatal(err)
	}
	before, err := tr.Evaluate()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background(), RunOptions{Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	after := tr.Metrics[len(tr.Metrics)-1].ValLoss
	t.Logf("validation loss %.3f → %.3f", before, after)
	if !(after < before-1) {
		t.Errorf("validation loss %.3f → %.3f: not learning", before, after)
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{LR: 1, MinLR: 0.1, Warmup: 10, Steps: 110}
	for _, c := range []struct {
		step int
		want float64
	}{{0, 0.1}, {9, 1}, {10, 1}, {60, 0.55}, {110, 0.1}, {500, 0.1}} {
		if got := s.At(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("At(%d) = %g, want %g", c.step, got, c.want)
		}
	}
}

// TestAdamW checks one update against the formula computed in float64
// (float32 rounding: 1e-6 relative).
func TestAdamW(t *testing.T) {
	cfg := tinyConfig(t, nil)
	p := randomParams(cfg, 1)
	theta := append([]float32(nil), p.Data...)
	g := make([]float32, len(p.Data))
	for i := range g {
		g[i] = float32(math.Sin(float64(i)))
	}
	o := NewAdamW(p, 0.9, 0.95, 1e-8, 0.1)
	o.Update(g, 0.01)
	o.Update(g, 0.01)
	for i, tn := range p.Tensors {
		for j := tn.Offset; j < tn.Offset+tn.Size; j++ {
			th, gj := float64(theta[j]), float64(g[j])
			var m, v float64
			for step := 1; step <= 2; step++ {
				if Decays(tn) {
					th *= 1 - 0.01*0.1
				}
				m = 0.9*m + 0.1*gj
				v = 0.95*v + 0.05*gj*gj
				mh := m / (1 - math.Pow(0.9, float64(step)))
				vh := v / (1 - math.Pow(0.95, float64(step)))
				th -= 0.01 * mh / (math.Sqrt(vh) + 1e-8)
			}
			if math.Abs(float64(p.Data[j])-th) > 1e-6*math.Max(1, math.Abs(th)) {
				t.Fatalf("tensor %d %s[%d]: %g, want %g", i, tn.Name, j-tn.Offset, p.Data[j], th)
			}
		}
	}
	if !Decays(Tensor{Name: "model.layers.0.mamba.in_proj.weight", Shape: []int{4, 2}}) ||
		Decays(Tensor{Name: "model.layers.0.mamba.A_log", Shape: []int{4, 2}}) ||
		Decays(Tensor{Name: "model.layers.0.input_layernorm.weight", Shape: []int{4}}) {
		t.Error("Decays picks the wrong tensors")
	}
}

func TestLoaderEpochs(t *testing.T) {
	tokens := make([]int32, 100)
	for i := range tokens {
		tokens[i] = int32(i)
	}
	l, err := NewLoader(tokens, 10, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int32]bool{}
	for range 3 { // 9 of the 10 rows of epoch 0
		for _, r := range l.Next() {
			if r[0]%10 != 0 {
				t.Fatalf("epoch 0 row starts at %d", r[0])
			}
			seen[int32(r[0])] = true
		}
	}
	if len(seen) != 9 {
		t.Errorf("%d distinct rows in epoch 0, want 9", len(seen))
	}
	l.Next()
	if l.Epoch != 1 {
		t.Errorf("epoch %d after 12 rows of 10, want 1", l.Epoch)
	}
	if _, err := NewLoader(tokens[:5], 10, 1, 0); err == nil {
		t.Error("a stream shorter than a row was accepted")
	}
	if w := Windows(tokens, 30, 70); len(w) != 2 || w[1][0] != 30 {
		t.Errorf("Windows: %v", w)
	}
}
