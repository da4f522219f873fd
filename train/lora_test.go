package train

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
)

// dropoutTargets is every target but the experts, whose adapters take no
// dropout (lora.Config.Validate).
func dropoutTargets() []string {
	var ts []string
	for _, t := range lora.Targets {
		if t != "experts" {
			ts = append(ts, t)
		}
	}
	return ts
}

// randomAdapter is an adapter of every target on cfg with O(1)-scaled
// random A and B (B non-zero, unlike a fresh adapter, so that A's gradient
// is not zero).
func randomAdapter(t testing.TB, cfg *model.Config, rank int, alpha, dropout float64, seed uint64) *lora.Adapter {
	t.Helper()
	targets := lora.Targets
	if dropout > 0 {
		targets = dropoutTargets()
	}
	ad, err := lora.New(cfg, lora.Config{Rank: rank, Alpha: alpha, Dropout: dropout, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 5))
	for i, m := range ad.Modules {
		for j := range ad.A(i) {
			ad.A(i)[j] = float32(rng.NormFloat64() / math.Sqrt(float64(m.In)))
		}
		for j := range ad.B(i) {
			ad.B(i)[j] = float32(0.5 * rng.NormFloat64() / math.Sqrt(float64(rank)))
		}
	}
	return ad
}

// mergedTheta returns the base parameters with every adapter module merged
// (W + s·B·A), in float64, from the adapter's factors fac (in its layout).
func mergedTheta(p *Params, ad *lora.Adapter, fac []float64) []float64 {
	theta := make([]float64, len(p.Data))
	for i, v := range p.Data {
		theta[i] = float64(v)
	}
	r := ad.Config.Rank
	s := ad.Config.Scale()
	for _, m := range ad.Modules {
		tn, _ := p.Lookup(m.Weight())
		w := theta[tn.Offset : tn.Offset+tn.Size]
		A, B := fac[m.AOff:m.AOff+r*m.In], fac[m.BOff:m.BOff+m.Out*r]
		for o := 0; o < m.Out; o++ {
			for k := 0; k < r; k++ {
				b := s * B[o*r+k]
				for j := 0; j < m.In; j++ {
					w[o*m.In+j] += b * A[k*m.In+j]
				}
			}
		}
	}
	return theta
}

// TestLoRAFiniteDifferences compares the adapter's float32 gradient with
// float64 central differences of the reference loss of the merged weights
// (W + s·B·A, which is what the adapted layers compute without dropout),
// on every layout of TestFiniteDifferences with every target adapted
// (experts and router included). The differences are exact to far below
// float32 rounding (see TestFiniteDifferences); the bar of 1e-3 relative L2
// per tensor is the same. It also checks that the frozen base gets no
// weight gradient from the products, that the loss equals the reference
// of the merged weights, and that recomputed activations give the same
// gradient bits.
func TestLoRAFiniteDifferences(t *testing.T) {
	if testing.Short() {
		t.Skip("finite differences")
	}
	for ci, tc := range gradCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(t, tc.mod)
			p := randomParams(cfg, uint64(100+ci))
			rows := randomRows(uint64(200+ci), cfg.VocabSize, tc.lens...)
			ad := randomAdapter(t, cfg, 2, 3, 0, uint64(300+ci))
			l := NewLoRA(cfg, ad)
			e := loraBackprop(t, p, l)
			loss, err := e.Backward(rows, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := append([]float32(nil), e.LoRAGrad()...)

			// Recomputed activations: the same bits.
			e2, _ := NewBackprop(p)
			e2.Recompute = true
			if err := e2.SetLoRA(l); err != nil {
				t.Fatal(err)
			}
			if _, err := e2.Backward(rows, 1); err != nil {
				t.Fatal(err)
			}
			for i, v := range e2.LoRAGrad() {
				if v != got[i] {
					t.Fatalf("recomputed activations: gradient %d is %v, stored %v", i, v, got[i])
				}
			}

			fac := make([]float64, len(ad.Data))
			for i, v := range ad.Data {
				fac[i] = float64(v)
			}
			pad := *cfg.PadTokenID
			total := func() float64 {
				theta := mergedTheta(p, ad, fac)
				padRow := theta[pad*cfg.HiddenSize : (pad+1)*cfg.HiddenSize]
				ce, aux := refLoss(t, p, theta, rows, padRow)
				return ce + cfg.RouterAuxLossCoef*aux
			}
			want := total()
			if rel := math.Abs(loss.Total-want) / want; rel > 1e-5 {
				t.Errorf("loss %.9g, float64 reference of the merged weights %.9g", loss.Total, want)
			}
			const h, samples = 1e-5, 12
			rng := rand.New(rand.NewPCG(uint64(ci), 9))
			fd := make([]float64, len(fac))
			for _, tn := range l.Params.Tensors {
				idx := rng.Perm(tn.Size)
				if len(idx) > samples {
					idx = idx[:samples]
				}
				for _, j := range idx {
					i := tn.Offset + j
					v := fac[i]
					fac[i] = v + h
					lp := total()
					fac[i] = v - h
					lm := total()
					fac[i] = v
					fd[i] = (lp - lm) / (2 * h)
				}
				// Entries not sampled compare as equal.
				for j := range tn.Size {
					if !containsInt(idx, j) {
						fd[tn.Offset+j] = float64(got[tn.Offset+j])
					}
				}
			}
			worst := 0.0
			for _, tn := range l.Params.Tensors {
				worst = max(worst, checkTensorGrad(t, tn.Name, got[tn.Offset:tn.Offset+tn.Size], fd[tn.Offset:tn.Offset+tn.Size]))
			}
			// The base's weight matrices get nothing from the products.
			for _, m := range ad.Modules {
				for _, v := range p.View(e.Grad, m.Weight()) {
					if v != 0 {
						t.Fatalf("%s: the frozen base weight has a gradient", m.Weight())
					}
				}
			}
			t.Logf("%d modules, %d adapter parameters, loss %.6f, worst relative L2 error %.2e", len(ad.Modules), len(ad.Data), loss.Total, worst)
		})
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestLoRAFixtureFiniteDifferences checks the gradient on the fixture
// models tiny-moe and tiny-dense (their real weights, the fixture batch)
// with a rank-4 adapter of every target, by directional derivatives (a
// reference loss of tiny-moe takes about 0.15 s).
func TestLoRAFixtureFiniteDifferences(t *testing.T) {
	if testing.Short() {
		t.Skip("finite differences")
	}
	for fi, name := range []string{"tiny-moe", "tiny-dense"} {
		t.Run(name, func(t *testing.T) {
			dir := testutil.Fixture(t, filepath.Join("models", name))
			p, err := LoadParams(dir)
			if err != nil {
				t.Fatal(err)
			}
			cfg := p.Config
			rows := fixtureRows(t, dir)
			ad := randomAdapter(t, cfg, 4, 8, 0, uint64(40+fi))
			l := NewLoRA(cfg, ad)
			e := loraBackprop(t, p, l)
			loss, err := e.Backward(rows, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := e.LoRAGrad()
			fac := make([]float64, len(ad.Data))
			for i, v := range ad.Data {
				fac[i] = float64(v)
			}
			total := func() float64 {
				theta := mergedTheta(p, ad, fac)
				ce, aux := refLoss(t, p, theta, rows, nil)
				return ce + cfg.RouterAuxLossCoef*aux
			}
			want := total()
			if rel := math.Abs(loss.Total-want) / want; rel > 1e-5 {
				t.Errorf("loss %.9g, float64 reference of the merged weights %.9g", loss.Total, want)
			}
			// One directional derivative per (target, factor): a random
			// direction v over every A (or every B) of that target's
			// modules, compared as |g·v − fd| / (‖g‖·‖v‖). A formula error
			// in one module moves this by O(1) of that module's share; the
			// float32 gradient's rounding (about 1e-6 relative) and the
			// difference's (far below, see TestFiniteDifferences) stay under
			// 1e-5, so the bar is 1e-4.
			const h = 1e-5
			rng := rand.New(rand.NewPCG(uint64(fi), 13))
			worst := 0.0
			checked := 0
			for _, target := range lora.Targets {
				for _, factor := range []string{"A", "B"} {
					v := make([]float64, len(fac))
					var dot, gn, vn float64
					for i, m := range ad.Modules {
						if lora.TargetOf(m.Weight()) != target || (factor == "A" && ad.SharesA(i)) {
							continue // an expert's up_proj shares its gate_proj's A
						}
						lo, hi := m.AOff, m.AOff+ad.Config.Rank*m.In
						if factor == "B" {
							lo, hi = m.BOff, m.BOff+m.Out*ad.Config.Rank
						}
						for k := lo; k < hi; k++ {
							v[k] = rng.NormFloat64()
							dot += v[k] * float64(got[k])
							gn += float64(got[k]) * float64(got[k])
							vn += v[k] * v[k]
						}
					}
					if vn == 0 {
						continue
					}
					base := append([]float64(nil), fac...)
					for k := range fac {
						fac[k] = base[k] + h*v[k]
					}
					lp := total()
					for k := range fac {
						fac[k] = base[k] - h*v[k]
					}
					lm := total()
					copy(fac, base)
					fd := (lp - lm) / (2 * h)
					rel := math.Abs(dot-fd) / math.Sqrt(gn*vn)
					worst = max(worst, rel)
					checked++
					if rel > 1e-4 {
						t.Errorf("%s lora_%s: directional derivative %.9g, finite differences %.9g (error %.2e of ‖g‖‖v‖)", target, factor, dot, fd, rel)
					}
				}
			}
			t.Logf("%d modules, loss %.6f, %d directions, worst error %.2e", len(ad.Modules), loss.Total, checked, worst)
		})
	}
}

// TestLoRAResumeIsExact trains an adapter (dropout on, two data-parallel
// workers) for 8 steps in one run and as 4 + resume + 4, and requires
// bit-identical adapters, moments and metrics, an untouched base, a
// falling training loss, and a saved folder that lora.Load reads back.
func TestLoRAResumeIsExact(t *testing.T) {
	cfg := tinyConfig(t, nil)
	data := patternTokens(700, cfg.VocabSize, 1)
	val := patternTokens(100, cfg.VocabSize, 2)
	baseDir := t.TempDir()
	base := InitParams(cfg, 3)
	if err := base.Save(baseDir, "F32"); err != nil {
		t.Fatal(err)
	}
	opts := trainOpts()
	opts.LR, opts.MinLR = 3e-2, 3e-3
	opts.Workers = 2
	opts.LoRA = &LoRAOptions{Rank: 2, Alpha: 4, Dropout: 0.1, Targets: dropoutTargets(), Base: baseDir}

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
	second, err := Resume(dirB, data, val, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Run(context.Background(), RunOptions{Dir: dirB}); err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2][]float32{
		"adapter": {full.LoRA.Adapter.Data, second.LoRA.Adapter.Data},
		"m":       {full.Opt.M, second.Opt.M},
		"v":       {full.Opt.V, second.Opt.V},
		"base":    {base.Data, second.Params.Data},
	} {
		if len(pair[0]) != len(pair[1]) {
			t.Fatalf("%s: %d and %d values", name, len(pair[0]), len(pair[1]))
		}
		for i := range pair[0] {
			if math.Float32bits(pair[0][i]) != math.Float32bits(pair[1][i]) {
				t.Fatalf("%s[%d]: %g in one run, %g with a resume", name, i, pair[0][i], pair[1][i])
			}
		}
	}
	if len(full.Opt.M) != len(full.LoRA.Adapter.Data) {
		t.Fatalf("the optimizer holds %d moments for %d adapter parameters", len(full.Opt.M), len(full.LoRA.Adapter.Data))
	}
	for i, a := range full.Metrics {
		b := second.Metrics[i]
		if a.Loss != b.Loss || a.GradNorm != b.GradNorm || !(a.ValLoss == b.ValLoss || math.IsNaN(a.ValLoss) && math.IsNaN(b.ValLoss)) {
			t.Errorf("step %d: %+v in one run, %+v with a resume", a.Step, a, b)
		}
	}
	if first, last := full.Metrics[1].ValLoss, full.Metrics[len(full.Metrics)-1].ValLoss; !(last < first) {
		t.Errorf("validation loss %g after the first steps, %g at the end", first, last)
	}
	ad, err := lora.Load(dirA, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range ad.Data {
		if v != full.LoRA.Adapter.Data[i] {
			t.Fatalf("saved adapter value %d: %g, trained %g", i, v, full.LoRA.Adapter.Data[i])
		}
	}
	if _, err := os.Stat(filepath.Join(dirA, "model.safetensors")); err == nil {
		t.Errorf("a LoRA run saved the whole model")
	}
}

// TestLoRADropout checks the dropout of the adapters' input: the masks are
// a function of the seed (same seed, same bits; another seed, another
// loss), recomputed activations draw the same ones, evaluation passes use
// none, and the gradient of the loss under fixed masks matches central
// differences of the float32 engine's loss under the same masks. That loss
// is float32 (rounding about 1e-6 of a loss near 6), so the step is 1e-2
// along a unit direction: rounding then costs about 1e-4 of the derivative
// and truncation O(h²) as much, hence the 1e-2 bar (a missing mask or
// scale moves the derivative by O(p) = 30%).
func TestLoRADropout(t *testing.T) {
	cfg := tinyConfig(t, nil)
	p := randomParams(cfg, 7)
	rows := randomRows(8, cfg.VocabSize, 9, 7)
	ad := randomAdapter(t, cfg, 3, 6, 0.3, 9)
	l := NewLoRA(cfg, ad)
	run := func(recompute bool, seed uint64) (Loss, []float32) {
		e, err := NewBackprop(p)
		if err != nil {
			t.Fatal(err)
		}
		e.Recompute = recompute
		if err := e.SetLoRA(l); err != nil {
			t.Fatal(err)
		}
		e.SetDropoutSeed(seed)
		loss, err := e.Backward(rows, 1)
		if err != nil {
			t.Fatal(err)
		}
		return loss, append([]float32(nil), e.LoRAGrad()...)
	}
	l1, g1 := run(false, 1)
	l2, g2 := run(true, 1)
	l3, _ := run(false, 2)
	if l1.Total != l2.Total {
		t.Errorf("recomputed: loss %v, stored %v", l2.Total, l1.Total)
	}
	for i := range g1 {
		if g1[i] != g2[i] {
			t.Fatalf("recomputed activations: gradient %d differs", i)
		}
	}
	if l1.Total == l3.Total {
		t.Errorf("two dropout seeds give the same loss %v", l1.Total)
	}
	// Evaluation: no dropout, so the loss is that of the merged weights.
	e, _ := NewBackprop(p)
	if err := e.SetLoRA(l); err != nil {
		t.Fatal(err)
	}
	ev, err := e.Forward(rows)
	if err != nil {
		t.Fatal(err)
	}
	fac := make([]float64, len(ad.Data))
	for i, v := range ad.Data {
		fac[i] = float64(v)
	}
	ce, aux := refLoss(t, p, mergedTheta(p, ad, fac), rows, nil)
	if want := ce + cfg.RouterAuxLossCoef*aux; math.Abs(ev.Total-want)/want > 1e-5 {
		t.Errorf("evaluation loss %.9g, merged reference %.9g", ev.Total, want)
	}
	// Central differences under the masks of seed 1: the loss of a pass
	// with a backward (dropout on), computed with a zero scale.
	lossAt := func() float64 {
		e, _ := NewBackprop(p)
		if err := e.SetLoRA(l); err != nil {
			t.Fatal(err)
		}
		e.SetDropoutSeed(1)
		loss, err := e.Backward(rows, 0)
		if err != nil {
			t.Fatal(err)
		}
		return loss.Total
	}
	rng := rand.New(rand.NewPCG(4, 4))
	orig := append([]float32(nil), ad.Data...)
	for _, target := range []string{"in_proj", "x_proj", "dt_proj", "out_proj", "q_proj", "o_proj", "router", "experts", "gate_proj", "down_proj"} {
		v := make([]float64, len(ad.Data))
		var vn float64
		for _, m := range ad.Modules {
			if lora.TargetOf(m.Weight()) == target {
				for k := m.AOff; k < m.BOff+m.Out*ad.Config.Rank; k++ {
					v[k] = rng.NormFloat64()
					vn += v[k] * v[k]
				}
			}
		}
		if vn == 0 {
			continue
		}
		var dot float64
		for k := range v {
			v[k] /= math.Sqrt(vn)
			dot += v[k] * float64(g1[k])
		}
		const h = 1e-2
		for k := range ad.Data {
			ad.Data[k] = float32(float64(orig[k]) + h*v[k])
		}
		lp := lossAt()
		for k := range ad.Data {
			ad.Data[k] = float32(float64(orig[k]) - h*v[k])
		}
		lm := lossAt()
		copy(ad.Data, orig)
		fd := (lp - lm) / (2 * h)
		if math.Abs(dot-fd) > 1e-2*max(math.Abs(fd), 1e-3) {
			t.Errorf("%s: directional derivative %.6g, finite differences %.6g", target, dot, fd)
		}
	}
}

// TestLoRAMergedInference checks that the inference forward of a model
// with the adapter merged (lora.Merge, after a save and lora.Load round
// trip) gives the training forward's logits with the adapter applied on the
// fly, within 1e-5 of the largest logit (float32 sums in another order:
// the merged W + s·B·A against x·Wᵀ + s·(x·Aᵀ)·Bᵀ), on both tiny fixtures;
// that the base model loaded beside it (ShareWeights) keeps its own
// logits; and that Merge refuses an adapter of another shape.
func TestLoRAMergedInference(t *testing.T) {
	for fi, name := range []string{"tiny-moe", "tiny-dense"} {
		t.Run(name, func(t *testing.T) {
			dir := testutil.Fixture(t, filepath.Join("models", name))
			base, err := model.Load(dir, model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			p, err := ParamsFromModel(base)
			if err != nil {
				t.Fatal(err)
			}
			ad := randomAdapter(t, p.Config, 4, 8, 0, uint64(60+fi))
			adDir := t.TempDir()
			if err := ad.Save(adDir); err != nil {
				t.Fatal(err)
			}
			loaded, err := lora.Load(adDir, p.Config)
			if err != nil {
				t.Fatal(err)
			}
			merged := base.ShareWeights()
			if err := lora.Merge(merged, loaded); err != nil {
				t.Fatal(err)
			}
			if merged.Identity() == base.Identity() {
				t.Errorf("the merged model has the base's identity")
			}
			rows := fixtureRows(t, dir)
			e, err := NewBackprop(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.SetLoRA(NewLoRA(p.Config, ad)); err != nil {
				t.Fatal(err)
			}
			e.KeepLogits = true
			if _, err := e.Forward(rows); err != nil {
				t.Fatal(err)
			}
			eb, _ := NewBackprop(p)
			eb.KeepLogits = true
			if _, err := eb.Forward(rows); err != nil {
				t.Fatal(err)
			}
			V := p.Config.VocabSize
			off := 0
			for i, r := range rows {
				for _, c := range []struct {
					name string
					m    *model.Model
					want []float32
				}{{"merged", merged, e.Logits}, {"base", base, eb.Logits}} {
					ws := c.m.NewWorkspace()
					if err := ws.Forward([]model.SeqInput{{Tokens: r, Logits: model.AllLogits}}); err != nil {
						t.Fatal(err)
					}
					got := ws.Logits(0)
					want := c.want[off*V : (off+len(r))*V]
					var diff, scale float64
					for j, w := range want {
						diff = max(diff, math.Abs(float64(got[j]-w)))
						scale = max(scale, math.Abs(float64(w)))
					}
					if diff > 1e-5*scale {
						t.Errorf("%s, row %d: max |logit difference| %.3g, max |logit| %.3g", c.name, i, diff, scale)
					}
				}
				off += len(r)
			}
			// The adapter changes the logits (it is not a no-op).
			var moved float64
			for j := range e.Logits {
				moved = max(moved, math.Abs(float64(e.Logits[j]-eb.Logits[j])))
			}
			if moved < 1e-3 {
				t.Errorf("the adapter moves the logits by only %g", moved)
			}
		})
	}
	other, err := lora.New(tinyConfig(t, nil), lora.Config{Rank: 2, Alpha: 2, Targets: []string{"in_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(testutil.Fixture(t, filepath.Join("models", "tiny-dense")), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := lora.Merge(m.ShareWeights(), other); err == nil {
		t.Errorf("an adapter of another model merged without an error")
	}
}

// TestLoRALossMask checks that a LoRA run honours the loss mask. On the
// Backprop and on workers, the adapter's gradient under a mask is that of
// the float64 reference's masked loss of the merged weights (a directional
// derivative along the gradient itself: (L(f+h·ĝ)−L(f−h·ĝ))/2h = |g|; the
// step and the 1e-3 bar are TestLoRAFiniteDifferences'), and the workers'
// masked cross-entropy is one Backprop's bit for bit with the gradient up
// to the order of float32 sums (TestWorkersMatchOneEngine's 1e-5). Through
// a trainer (one Backprop, two workers), the first step's loss and the
// validation after it are the reference's masked loss over the chosen
// targets only (float32 forward against float64: 1e-5 relative, as in
// TestFiniteDifferences).
func TestLoRALossMask(t *testing.T) {
	cfg := tinyConfig(t, nil)
	pad := *cfg.PadTokenID
	H := cfg.HiddenSize
	// refCE is the reference's masked cross-entropy and aux loss of the
	// merged weights of p and the factors fac (adapter ad's layout).
	refCE := func(p *Params, ad *lora.Adapter, fac []float64, rows [][]int, mask [][]bool) (float64, float64) {
		theta := mergedTheta(p, ad, fac)
		return refMaskedLoss(t, p, theta, rows, mask, theta[pad*H:(pad+1)*H])
	}
	f64 := func(v []float32) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}

	p := randomParams(cfg, 51)
	rows := randomRows(52, cfg.VocabSize, 9, 6, 8)
	mask := randomMask(53, rows)
	ad := randomAdapter(t, cfg, 2, 4, 0, 54)
	l := NewLoRA(cfg, ad)
	e := loraBackprop(t, p, l)
	e.LossMask = mask
	one, err := e.Backward(rows, 1)
	if err != nil {
		t.Fatal(err)
	}
	g := f64(e.LoRAGrad())
	if one.Tokens != maskCount(mask) {
		t.Fatalf("%d targets, the mask chooses %d", one.Tokens, maskCount(mask))
	}
	fac := f64(ad.Data)
	if ce, _ := refCE(p, ad, fac, rows, mask); math.Abs(one.CE-ce) > 1e-5*ce {
		t.Errorf("masked LoRA loss %.9g, float64 reference %.9g", one.CE, ce)
	}
	var norm float64
	for _, v := range g {
		norm += v * v
	}
	norm = math.Sqrt(norm)
	const h = 1e-5
	total := func(sign float64) float64 {
		f := make([]float64, len(fac))
		for i := range f {
			f[i] = fac[i] + sign*h*g[i]/norm
		}
		ce, aux := refCE(p, ad, f, rows, mask)
		return ce + cfg.RouterAuxLossCoef*aux
	}
	if dd := (total(1) - total(-1)) / (2 * h); math.Abs(dd-norm) > 1e-3*norm {
		t.Errorf("directional derivative of the masked loss %.6g, |gradient| %.6g", dd, norm)
	}
	ws, err := NewWorkers(p, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range ws.Backprops {
		if err := b.SetLoRA(l); err != nil {
			t.Fatal(err)
		}
	}
	ws.LossMask = mask
	two, err := ws.Backward(rows, 1)
	if err != nil {
		t.Fatal(err)
	}
	if two.CE != one.CE || two.Tokens != one.Tokens {
		t.Errorf("2 workers: CE %v over %d targets, one Backprop %v over %d", two.CE, two.Tokens, one.CE, one.Tokens)
	}
	if rel, _ := relL2(ws.Grad(), g); rel > 1e-5 {
		t.Errorf("2 workers: adapter gradient differs from one Backprop's by %.3g relative L2", rel)
	}

	// Through a trainer: every third token is a target.
	data := patternTokens(400, cfg.VocabSize, 1)
	val := patternTokens(96, cfg.VocabSize, 2)
	dm, vm := everyThird(len(data)), everyThird(len(val))
	for _, workers := range []int{0, 2} {
		opts := trainOpts()
		opts.Accum, opts.Workers = 1, workers
		opts.LoRA = &LoRAOptions{Rank: 2, Alpha: 4, Targets: lora.Targets}
		base := InitParams(cfg, 5)
		tr, err := NewTrainer(base, data, val, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.SetLossMask(dm, vm); err != nil {
			t.Fatal(err)
		}
		// Non-zero factors, so that the adapter changes the loss.
		copy(tr.LoRA.Adapter.Data, randomAdapter(t, cfg, 2, 4, 0, 55).Data)
		ld, err := NewLoader(data, opts.Seq, opts.Batch, opts.Seed)
		if err != nil {
			t.Fatal(err)
		}
		ld.Mask = dm
		batch := ld.Next()
		want, _ := refCE(base, tr.LoRA.Adapter, f64(tr.LoRA.Adapter.Data), batch, ld.RowMask)
		full, _ := refCE(base, tr.LoRA.Adapter, f64(tr.LoRA.Adapter.Data), batch, nil)
		m, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(m.Loss-want) > 1e-5*want {
			t.Errorf("%d workers: first step's loss %.9g, reference masked loss %.9g (unmasked %.9g)", workers, m.Loss, want, full)
		}
		got, err := tr.Evaluate()
		if err != nil {
			t.Fatal(err)
		}
		want, _ = refCE(base, tr.LoRA.Adapter, f64(tr.LoRA.Adapter.Data), tr.Val, WindowMasks(vm, opts.Seq, opts.EvalTokens))
		if math.Abs(got-want) > 1e-5*want {
			t.Errorf("%d workers: masked validation after a step %.9g, reference %.9g", workers, got, want)
		}
	}
}

// loraBackprop is a Backprop of p training the adapter l.
func loraBackprop(t *testing.T, p *Params, l *LoRA) *Backprop {
	t.Helper()
	e, err := NewBackprop(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetLoRA(l); err != nil {
		t.Fatal(err)
	}
	return e
}
