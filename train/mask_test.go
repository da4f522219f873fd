package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/jamba-go/jamba/internal/ref"
)

// refMaskedLoss is refLoss with the cross-entropy restricted to the targets
// of mask (see ref.MaskedLoss).
func refMaskedLoss(t testing.TB, p *Params, theta []float64, rows [][]int, mask [][]bool, padRow []float64) (ce, aux float64) {
	t.Helper()
	c, err := ref.ConfigOf(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	weights := func(name string) []float64 {
		tn, ok := p.Lookup(name)
		if !ok {
			return nil
		}
		return theta[tn.Offset : tn.Offset+tn.Size]
	}
	pad := -1
	if p.Config.PadTokenID != nil {
		pad = *p.Config.PadTokenID
	}
	return ref.MaskedLoss(c, weights, rows, mask, pad, padRow)
}

// randomMask chooses about a third of every row's targets; row 1 gets
// none, so that a row that only feeds context is covered.
func randomMask(seed uint64, rows [][]int) [][]bool {
	rng := rand.New(rand.NewPCG(seed, 13))
	m := make([][]bool, len(rows))
	for i, r := range rows {
		m[i] = make([]bool, len(r))
		for t := range r {
			m[i][t] = i != 1 && rng.IntN(3) == 0
		}
	}
	return m
}

// everyThird is a loss mask of n tokens that chooses every third one
// (positions 1, 4, 7, ...).
func everyThird(n int) []bool {
	m := make([]bool, n)
	for i := range m {
		m[i] = i%3 == 1
	}
	return m
}

// TestLossMaskFiniteDifferences checks the gradient of a loss restricted to
// chosen targets against float64 central differences of the reference's
// masked loss, on the hybrid MoE layout (the aux loss still over every
// token). The step and the bar are TestFiniteDifferences' (see there):
// central differences at h = 1e-5 are exact far below float32's own
// rounding, and 1e-3 relative L2 per tensor catches any formula error (a
// gradient from a masked target, a wrong count in the mean).
func TestLossMaskFiniteDifferences(t *testing.T) {
	cfg := tinyConfig(t, nil)
	p := randomParams(cfg, 31)
	rows := randomRows(32, cfg.VocabSize, 9, 6, 8)
	mask := randomMask(33, rows)
	e, err := NewBackprop(p)
	if err != nil {
		t.Fatal(err)
	}
	e.LossMask = mask
	loss, err := e.Backward(rows, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := maskCount(mask); loss.Tokens != want || want == 0 {
		t.Fatalf("%d targets, the mask chooses %d", loss.Tokens, want)
	}
	theta := make([]float64, len(p.Data))
	for i, v := range p.Data {
		theta[i] = float64(v)
	}
	// The padding id's lookup reads a fixed copy of its row (no lookup
	// gradient, as in transformers; see refLoss).
	pad := *cfg.PadTokenID
	padRow := append([]float64(nil), theta[pad*cfg.HiddenSize:(pad+1)*cfg.HiddenSize]...)
	total := func() float64 {
		ce, aux := refMaskedLoss(t, p, theta, rows, mask, padRow)
		return ce + cfg.RouterAuxLossCoef*aux
	}
	// float32 forward against float64: 1e-5 relative, as in
	// TestFiniteDifferences.
	if want := total(); math.Abs(loss.Total-want) > 1e-5*want {
		t.Errorf("masked loss %.9g, float64 reference %.9g", loss.Total, want)
	}
	if full, _ := refMaskedLoss(t, p, theta, rows, nil, padRow); math.Abs(full-loss.CE) < 1e-3 {
		t.Fatalf("the masked loss %.6f equals the full one %.6f: the mask chooses nothing", loss.CE, full)
	}
	const h, samples = 1e-5, 30
	rng := rand.New(rand.NewPCG(34, 3))
	worst := 0.0
	for _, tn := range p.Tensors {
		idx := rng.Perm(tn.Size)[:min(samples, tn.Size)]
		got := make([]float32, len(idx))
		want := make([]float64, len(idx))
		for k, j := range idx {
			i := tn.Offset + j
			got[k] = e.Grad[i]
			v := theta[i]
			theta[i] = v + h
			lp := total()
			theta[i] = v - h
			lm := total()
			theta[i] = v
			want[k] = (lp - lm) / (2 * h)
		}
		worst = max(worst, checkTensorGrad(t, tn.Name, got, want))
	}
	t.Logf("masked loss %.6f over %d targets, worst relative L2 error %.2e", loss.Total, loss.Tokens, worst)
}

// TestLossMaskProperties checks what a mask must not change: a mask that
// chooses every target gives the unmasked pass's loss and gradient bit for
// bit (same targets, same count, same order of sums); workers give one
// Backprop's masked cross-entropy bit for bit and its gradient up to the
// order of float32 sums (TestWorkersMatchOneEngine's 1e-5 bar); a batch
// without targets has zero cross-entropy and only the aux loss's gradient;
// a mask of the wrong shape is an error.
func TestLossMaskProperties(t *testing.T) {
	cfg := tinyConfig(t, nil)
	p := randomParams(cfg, 41)
	rows := randomRows(42, cfg.VocabSize, 7, 9, 5, 6)
	pass := func(mask [][]bool) (Loss, []float32) {
		e, err := NewBackprop(p)
		if err != nil {
			t.Fatal(err)
		}
		e.LossMask = mask
		l, err := e.Backward(rows, 1)
		if err != nil {
			t.Fatal(err)
		}
		return l, e.Grad
	}
	plain, gPlain := pass(nil)
	all := make([][]bool, len(rows))
	none := make([][]bool, len(rows))
	for i, r := range rows {
		all[i] = make([]bool, len(r))
		none[i] = make([]bool, len(r))
		for j := range r {
			all[i][j] = true
		}
	}
	full, gFull := pass(all)
	if full != plain {
		t.Errorf("all-targets mask: %+v, no mask %+v", full, plain)
	}
	for i := range gFull {
		if gFull[i] != gPlain[i] {
			t.Fatalf("all-targets mask: gradient %d is %g, without a mask %g", i, gFull[i], gPlain[i])
		}
	}

	mask := randomMask(43, rows)
	one, gOne := pass(mask)
	ws, err := NewWorkers(p, 3)
	if err != nil {
		t.Fatal(err)
	}
	ws.LossMask = mask
	got, err := ws.Backward(rows, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got.CE != one.CE || got.Tokens != one.Tokens {
		t.Errorf("3 workers: CE %v over %d targets, one Backprop %v over %d", got.CE, got.Tokens, one.CE, one.Tokens)
	}
	ref := make([]float64, len(gOne))
	for i, v := range gOne {
		ref[i] = float64(v)
	}
	if rel, _ := relL2(ws.Grad(), ref); rel > 1e-5 {
		t.Errorf("3 workers: gradient differs from one Backprop's by %.3g relative L2", rel)
	}

	empty, gEmpty := pass(none)
	if empty.CE != 0 || empty.Tokens != 0 || empty.Aux == 0 {
		t.Errorf("no targets: %+v, want CE 0 over 0 targets and the aux loss", empty)
	}
	// Only the routers and what feeds them carry the aux gradient; the LM
	// head sees no target.
	head, _ := p.Lookup("lm_head.weight")
	for _, v := range gEmpty[head.Offset : head.Offset+head.Size] {
		if v != 0 {
			t.Fatalf("no targets: the LM head has gradient %g", v)
		}
	}

	e, _ := NewBackprop(p)
	e.LossMask = all[:2]
	if _, err := e.Forward(rows); err == nil {
		t.Error("a mask of 2 rows for 4 rows: no error")
	}
	e.LossMask = [][]bool{all[0], all[1][:3], all[2], all[3]}
	if _, err := e.Forward(rows); err == nil {
		t.Error("a mask row shorter than its row: no error")
	}
}

// TestTrainerLossMask checks that a trainer hands each batch its rows' mask:
// the first step's loss is the masked loss of the loader's first batch
// under the initial parameters (the same bits with one Backprop or two
// workers), and validation is the mean cross-entropy of the masked targets
// of the validation windows, recomputed from the logits.
func TestTrainerLossMask(t *testing.T) {
	cfg := tinyConfig(t, nil)
	data := patternTokens(400, cfg.VocabSize, 1)
	val := patternTokens(96, cfg.VocabSize, 2)
	dm, vm := everyThird(len(data)), everyThird(len(val))
	for _, workers := range []int{0, 2} {
		opts := trainOpts()
		opts.Accum, opts.Workers = 1, workers
		p := InitParams(cfg, 5)
		p0 := p.Clone()
		tr, err := NewTrainer(p, data, val, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.SetLossMask(dm[:10], vm); err == nil {
			t.Error("a mask shorter than the data: no error")
		}
		if err := tr.SetLossMask(dm, vm); err != nil {
			t.Fatal(err)
		}

		// Validation before any step, from the logits.
		got, err := tr.Evaluate()
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewBackprop(p0)
		if err != nil {
			t.Fatal(err)
		}
		e.KeepLogits = true
		var sum float64
		var n int
		V := cfg.VocabSize
		for w, row := range tr.Val {
			if _, err := e.Forward([][]int{row}); err != nil {
				t.Fatal(err)
			}
			for p := 1; p < len(row); p++ {
				if !vm[w*opts.Seq+p] {
					continue
				}
				lg := e.Logits[(p-1)*V : p*V]
				mx := math.Inf(-1)
				for _, v := range lg {
					mx = max(mx, float64(v))
				}
				var z float64
				for _, v := range lg {
					z += math.Exp(float64(v) - mx)
				}
				sum += mx + math.Log(z) - float64(lg[row[p]])
				n++
			}
		}
		// float32 logits, float64 sums in both: the terms agree to about
		// 1e-7, their means to far better than 1e-6.
		if want := sum / float64(n); math.Abs(got-want) > 1e-6*want {
			t.Errorf("%d workers: masked validation %.9f, from the logits %.9f", workers, got, want)
		}

		// The first step's loss: the loader's first batch with its mask.
		ld, err := NewLoader(data, opts.Seq, opts.Batch, opts.Seed)
		if err != nil {
			t.Fatal(err)
		}
		ld.Mask = dm
		rows := ld.Next()
		ref, err := NewBackprop(p0)
		if err != nil {
			t.Fatal(err)
		}
		ref.LossMask = ld.RowMask
		want, err := ref.Forward(rows)
		if err != nil {
			t.Fatal(err)
		}
		m, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		if m.Loss != want.CE {
			t.Errorf("%d workers: first step's loss %v, masked loss of its batch %v", workers, m.Loss, want.CE)
		}
		// The mask does not outlive the step: a plain pass of other rows runs.
		if _, err := tr.Backprop.Forward([][]int{{1, 2, 3}}); err != nil {
			t.Errorf("%d workers: a pass after the step: %v", workers, err)
		}
	}
}

// TestEvaluateErrorDropsMask: an evaluation that fails (a validation mask
// of the wrong shape) leaves no mask behind for the next pass.
func TestEvaluateErrorDropsMask(t *testing.T) {
	cfg := tinyConfig(t, nil)
	data := patternTokens(200, cfg.VocabSize, 1)
	val := patternTokens(64, cfg.VocabSize, 2)
	for _, workers := range []int{0, 2} {
		opts := trainOpts()
		opts.Workers = workers
		tr, err := NewTrainer(InitParams(cfg, 5), data, val, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.SetLossMask(everyThird(len(data)), everyThird(len(val))); err != nil {
			t.Fatal(err)
		}
		for i := range tr.valMask {
			tr.valMask[i] = tr.valMask[i][1:]
		}
		if _, err := tr.Evaluate(); err == nil {
			t.Fatalf("%d workers: a validation mask of the wrong shape: no error", workers)
		}
		rows := [][]int{{1, 2, 3}}
		if tr.Workers != nil {
			_, err = tr.Workers.Forward(rows)
		} else {
			_, err = tr.Backprop.Forward(rows)
		}
		if err != nil {
			t.Errorf("%d workers: a pass after the failed evaluation: %v", workers, err)
		}
	}
}
