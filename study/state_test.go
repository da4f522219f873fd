package study

import (
	"math"
	"testing"

	"github.com/jamba-go/jamba/model"
)

// TestStateStatsFixture recomputes every Mamba layer's statistics in
// float64 from transformers' hidden states (the layer's input): input
// norm, in_proj, causal conv, SiLU, x_proj, the dt/B/C norms, dt_proj,
// softplus, then Δ's channel means, the decays, the memory lengths and
// the state norms of a float64 scan, and compares them with StateStats.
func TestStateStatsFixture(t *testing.T) {
	for _, name := range []string{"tiny-moe", "tiny-moe-variant", "tiny-dense"} {
		m, ids, hs := fixtureInputs(t, name)
		c := m.Config
		got, err := StateStats(m, ids)
		if err != nil {
			t.Fatal(err)
		}
		H, T := c.HiddenSize, len(ids)
		Di, N, Kc, R := c.InnerSize(), c.MambaDState, c.MambaDConv, c.MambaDtRank
		k := 0
		var worst [4]float64 // relative: dt means, decays, memory, state norms
		for li := range c.NumHiddenLayers {
			if c.Mixer(li) != model.Mamba {
				continue
			}
			if k >= len(got) || got[k].Layer != li {
				t.Fatalf("%s: layer %d missing from the statistics", name, li)
			}
			g := &got[k]
			k++
			w := m.Layers[li].Mamba
			in, xp, dtp := f64Matrix(w.InProj), f64Matrix(w.XProj), f64Matrix(w.DtProj)
			x := make([][]float64, T)
			for tt := range T {
				xn := rmsNorm64(hs[li][tt*H:(tt+1)*H], m.Layers[li].InputNorm, c.RMSNormEps)
				x[tt] = matVec64(in[:Di], xn)
				for i := range x[tt] {
					if w.InBias != nil {
						x[tt][i] += float64(w.InBias[i])
					}
				}
			}
			delta := make([][]float64, T)
			xc := make([][]float64, T)
			B := make([][]float64, T)
			for tt := range T {
				xc[tt] = make([]float64, Di)
				for ch := range Di {
					var s float64
					if w.ConvB != nil {
						s = float64(w.ConvB[ch])
					}
					for tap := range Kc {
						if src := tt - (Kc - 1) + tap; src >= 0 {
							s += float64(w.ConvW[ch*Kc+tap]) * x[src][ch]
						}
					}
					xc[tt][ch] = s / (1 + math.Exp(-s)) // SiLU
				}
				dbc := matVec64(xp, xc[tt])
				dt, b := dbc[:R], dbc[R:R+N]
				if w.DtNorm != nil {
					dt, b = rmsNorm64(dt, w.DtNorm, c.RMSNormEps), rmsNorm64(b, w.BNorm, c.RMSNormEps)
				}
				B[tt] = b
				delta[tt] = matVec64(dtp, dt)
				for ch := range Di {
					v := delta[tt][ch] + float64(w.DtBias[ch])
					delta[tt][ch] = math.Log1p(math.Exp(v))
				}
			}
			A := make([]float64, Di*N)
			for i := range A {
				A[i] = -math.Exp(float64(w.ALog[i]))
			}
			rel := func(i int, got, want float64) {
				worst[i] = max(worst[i], math.Abs(got-want)/math.Abs(want))
			}
			decay := make([]float64, N)
			for ch := range Di {
				var mean float64
				for tt := range T {
					mean += delta[tt][ch] / float64(T)
					for n := range N {
						decay[n] += math.Exp(delta[tt][ch]*A[ch*N+n]) / float64(T*Di)
					}
				}
				rel(0, g.DtMean[ch], mean)
				for n := range N {
					rel(2, g.Memory[ch*N+n], math.Log(100)/(-A[ch*N+n]*mean))
				}
			}
			for n := range N {
				rel(1, g.Decay[n], decay[n])
			}
			h := make([]float64, Di*N)
			for tt := range T {
				var ss float64
				for ch := range Di {
					for n := range N {
						i := ch*N + n
						h[i] = math.Exp(delta[tt][ch]*A[i])*h[i] + delta[tt][ch]*xc[tt][ch]*B[tt][n]
						ss += h[i] * h[i]
					}
				}
				rel(3, g.StateNorm[tt], math.Sqrt(ss))
			}
		}
		if k != len(got) {
			t.Fatalf("%s: %d layers of statistics, %d Mamba layers", name, len(got), k)
		}
		// Our float32 forward meets transformers' hidden states within
		// ~1e-6 relative here; Δ, its decays, the memory lengths and the
		// state norms (sums of positive terms, no cancellation) inherit
		// that: 2.3e-6 at most seen, 2e-5 leaves a margin of ten.
		for i, what := range []string{"mean dt", "decay", "memory length", "state norm"} {
			if worst[i] > 2e-5 {
				t.Errorf("%s: %s differs from float64 by %.3g relative", name, what, worst[i])
			}
		}
		t.Logf("%s: %d Mamba layers; relative differences dt %.2g, decay %.2g, memory %.2g, state norm %.2g", name, k, worst[0], worst[1], worst[2], worst[3])
	}
}

// TestLayerImportance: zeroing a mixer changes the predictions (KL > 0),
// consistently with the loss; and with a Mixer probe that leaves the output
// alone, nothing changes (the probe itself is inert).
func TestLayerImportance(t *testing.T) {
	m, ids, _ := fixtureInputs(t, "tiny-moe")
	base, imps, err := LayerImportances(m, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(imps) != m.Config.NumHiddenLayers {
		t.Fatalf("%d layers, want %d", len(imps), m.Config.NumHiddenLayers)
	}
	want, _, err := m.LossOverWindows(ids, len(ids), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same forward and the same float64 cross-entropy: equal up to
	// the summation order of the mean.
	if math.Abs(base-want) > 1e-9 {
		t.Fatalf("base loss %v, LossOverWindows %v", base, want)
	}
	// A probe that reads the mixer outputs without changing them leaves
	// every logit's bits as they are.
	ws := m.NewWorkspace()
	if err := ws.Forward([]model.SeqInput{{Tokens: ids, Logits: model.AllLogits}}); err != nil {
		t.Fatal(err)
	}
	plain := append([]float32(nil), ws.Logits(0)...)
	seen := 0
	ws.Probe = &model.Probe{Mixer: func(int, []float32) { seen++ }}
	if err := ws.Forward([]model.SeqInput{{Tokens: ids, Logits: model.AllLogits}}); err != nil {
		t.Fatal(err)
	}
	for i, v := range ws.Logits(0) {
		if math.Float32bits(v) != math.Float32bits(plain[i]) {
			t.Fatalf("logit %d changed under a read-only probe", i)
		}
	}
	if seen != m.Config.NumHiddenLayers {
		t.Fatalf("the Mixer probe saw %d layers, want %d", seen, m.Config.NumHiddenLayers)
	}
	for _, im := range imps {
		if !(im.KL > 1e-6) || !(im.LogitChange > 1e-6) {
			t.Errorf("layer %d: zeroing its mixer changed nothing (KL %g, logits %g)", im.Layer, im.KL, im.LogitChange)
		}
	}
}
