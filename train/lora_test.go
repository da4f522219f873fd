package train

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
)

// randomAdapter is an adapter of every target on cfg with O(1)-scaled
// random A and B (B non-zero, unlike a fresh adapter, so that A's gradient
// is not zero).
func randomAdapter(t testing.TB, cfg *model.Config, rank int, alpha, dropout float64, seed uint64) *lora.Adapter {
	t.Helper()
	ad, err := lora.New(cfg, lora.Config{Rank: rank, Alpha: alpha, Dropout: dropout, Targets: lora.Targets})
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
			e, err := NewBackprop(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.SetLoRA(l); err != nil {
				t.Fatal(err)
			}
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
				rel, maxAbs := relL2(got[tn.Offset:tn.Offset+tn.Size], fd[tn.Offset:tn.Offset+tn.Size])
				var norm float64
				for _, w := range fd[tn.Offset : tn.Offset+tn.Size] {
					norm = max(norm, math.Abs(w))
				}
				if norm < 1e-9 {
					if maxAbs > 1e-6 {
						t.Errorf("%s: finite differences give zero, ours has max |g| = %g", tn.Name, maxAbs)
					}
					continue
				}
				worst = max(worst, rel)
				if rel > 1e-3 {
					t.Errorf("%s: relative L2 error %.3g against finite differences", tn.Name, rel)
				}
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
			e, err := NewBackprop(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.SetLoRA(l); err != nil {
				t.Fatal(err)
			}
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
					for _, m := range ad.Modules {
						if lora.TargetOf(m.Weight()) != target {
							continue
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
