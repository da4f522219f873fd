package train

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

// TestLogitsMatchInference checks that the training forward computes what
// the inference forward (model.Workspace.Forward) computes, on every fixture
// (loaded by the model package itself) and on random configs. Both are
// float32 with the same formulas; they differ only in summation order and in
// the exponential's implementation, about 1e-7 relative per operation, so
// 1e-5 of the largest |logit| is a tight bar.
func TestLogitsMatchInference(t *testing.T) {
	check := func(t *testing.T, m *model.Model, p *Params, rows [][]int) {
		e, err := NewBackprop(p)
		if err != nil {
			t.Fatal(err)
		}
		e.KeepLogits = true
		if _, err := e.Forward(rows); err != nil {
			t.Fatal(err)
		}
		ws := m.NewWorkspace()
		V := p.Config.VocabSize
		off := 0
		for i, r := range rows {
			if err := ws.Forward([]model.SeqInput{{Tokens: r, Logits: model.AllLogits}}); err != nil {
				t.Fatal(err)
			}
			want := ws.Logits(0)
			got := e.Logits[off*V : (off+len(r))*V]
			off += len(r)
			var diff, scale float64
			for j, w := range want {
				diff = max(diff, math.Abs(float64(got[j]-w)))
				scale = max(scale, math.Abs(float64(w)))
			}
			if diff > 1e-5*scale {
				t.Errorf("row %d: max |logit difference| %.3g, max |logit| %.3g", i, diff, scale)
			}
		}
	}
	for _, name := range tinyFixtures {
		t.Run(name, func(t *testing.T) {
			dir := testutil.Fixture(t, filepath.Join("models", name))
			m, err := model.Load(dir, model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			p, err := ParamsFromModel(m)
			if err != nil {
				t.Fatal(err)
			}
			check(t, m, p, fixtureRows(t, dir))
		})
	}
	for ci, tc := range gradCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(t, tc.mod)
			p := randomParams(cfg, uint64(100+ci))
			check(t, savedModel(t, p), p, randomRows(uint64(300+ci), cfg.VocabSize, tc.lens...))
		})
	}
}

// savedModel saves p as a float32 checkpoint and loads it with the model package.
func savedModel(t *testing.T, p *Params) *model.Model {
	t.Helper()
	dir := t.TempDir()
	if err := p.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestRecomputeIsExact checks that recomputing activations in the backward
// gives bit-identical gradients: the recomputation runs the same code on
// the same inputs, and every reduction has a fixed order.
func TestRecomputeIsExact(t *testing.T) {
	cfg := tinyConfig(t, func(c *model.Config) { c.NumHiddenLayers = 4 })
	p := randomParams(cfg, 5)
	rows := randomRows(6, cfg.VocabSize, 40, 33)
	var grads [2][]float32
	var losses [2]Loss
	for i, rc := range []bool{false, true} {
		e, err := NewBackprop(p)
		if err != nil {
			t.Fatal(err)
		}
		e.Recompute = rc
		if losses[i], err = e.Backward(rows, 1); err != nil {
			t.Fatal(err)
		}
		grads[i] = e.Grad
	}
	if losses[0] != losses[1] {
		t.Errorf("losses differ: %+v vs %+v", losses[0], losses[1])
	}
	for i := range grads[0] {
		if grads[0][i] != grads[1][i] {
			t.Fatalf("gradient %d differs: %g vs %g", i, grads[0][i], grads[1][i])
		}
	}
}

// TestBackwardScaleAndAccumulation checks that Backward adds scale times the
// gradient: two half-scaled passes give the one full pass's gradient. The
// halving itself is exact, but some gradients are summed straight into Grad,
// so the second pass rounds in a different order: float32 rounding, 1e-6
// relative L2 over the whole gradient.
func TestBackwardScaleAndAccumulation(t *testing.T) {
	cfg := tinyConfig(t, nil)
	p := randomParams(cfg, 9)
	rows := randomRows(10, cfg.VocabSize, 12, 12)
	e, err := NewBackprop(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Backward(rows, 1); err != nil {
		t.Fatal(err)
	}
	full := make([]float64, len(e.Grad))
	for i, v := range e.Grad {
		full[i] = float64(v)
	}
	e.ZeroGrad()
	for range 2 {
		if _, err := e.Backward(rows, 0.5); err != nil {
			t.Fatal(err)
		}
	}
	if rel, _ := relL2(e.Grad, full); rel > 1e-6 {
		t.Errorf("two half passes differ from one full pass by %.3g relative L2", rel)
	}
}

// TestLinearBackward checks the fast linear backward (transposes through
// kernels.MatMul) against the plain loops. Both accumulate in float32 over
// at most 70 terms of O(1) values, so 1e-5 absolute is rounding only.
func TestLinearBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randv := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	for _, sh := range [][3]int{{1, 1, 1}, {7, 5, 3}, {70, 33, 29}, {4, 64, 24}} {
		n, out, in := sh[0], sh[1], sh[2]
		x, w, dy := randv(n*in), randv(out*in), randv(n*out)
		dx0, dw0, db0 := randv(n*in), randv(out*in), randv(out)
		dx1, dw1, db1 := append([]float32(nil), dx0...), append([]float32(nil), dw0...), append([]float32(nil), db0...)
		var s scratch
		s.linearBackward(dx0, dw0, db0, dy, x, w, n, out, in)
		linearBackwardRef(dx1, dw1, db1, dy, x, w, n, out, in)
		for name, pair := range map[string][2][]float32{"dx": {dx0, dx1}, "dw": {dw0, dw1}, "db": {db0, db1}} {
			for i := range pair[0] {
				if d := math.Abs(float64(pair[0][i] - pair[1][i])); d > 1e-5 {
					t.Fatalf("%v %s[%d]: %g vs reference %g", sh, name, i, pair[0][i], pair[1][i])
				}
			}
		}
	}
}

// TestBatchErrors checks the errors for malformed batches.
func TestBatchErrors(t *testing.T) {
	cfg := tinyConfig(t, nil)
	e, err := NewBackprop(randomParams(cfg, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, rows := range [][][]int{nil, {{1}}, {{1, 2}, {3}}, {{1, 24}}, {{-1, 2}}} {
		if _, err := e.Backward(rows, 1); err == nil {
			t.Errorf("batch %v: no error", rows)
		}
	}
}
