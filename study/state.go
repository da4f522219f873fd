package study

import (
	"math"
	"sort"

	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
)

// MemoryFraction is the fraction below which a state component counts as
// forgotten: the effective memory length is the number of tokens until
// its decay reaches 1%.
const MemoryFraction = 0.01

// LayerState describes how one Mamba layer's state evolves over a
// sequence.
type LayerState struct {
	Layer    int
	T, Di, N int
	// DtMean is, per channel, the mean over the tokens of the step Δ
	// (after dt_proj, its bias and softplus).
	DtMean []float64 // [Di]
	// Decay is, per state dimension n, the mean over tokens and channels
	// of the per-token decay factor exp(Δ_{t,c}·A_{c,n}).
	Decay []float64 // [N]
	// StateNorm is the Frobenius norm of the state after each token.
	StateNorm []float64 // [T]
	// Memory is, per state component (c, n), the effective memory length
	// in tokens: ln(1/MemoryFraction) / (|A_{c,n}|·DtMean[c]), the number of
	// tokens of average step after which the component keeps 1% of its
	// value.
	Memory []float64 // [Di·N]
}

// MemoryQuantiles returns the given quantiles (in [0, 1]) of the layer's
// memory lengths.
func (s *LayerState) MemoryQuantiles(qs ...float64) []float64 { return quantiles(s.Memory, qs) }

// DtQuantiles returns quantiles of the per-channel mean Δ.
func (s *LayerState) DtQuantiles(qs ...float64) []float64 { return quantiles(s.DtMean, qs) }

func quantiles(xs []float64, qs []float64) []float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	out := make([]float64, len(qs))
	for i, q := range qs {
		if len(s) == 0 {
			out[i] = math.NaN()
			continue
		}
		// Linear interpolation between order statistics.
		pos := q * float64(len(s)-1)
		lo := int(math.Floor(pos))
		hi := min(lo+1, len(s)-1)
		out[i] = s[lo] + (pos-float64(lo))*(s[hi]-s[lo])
	}
	return out
}

// StateStats runs m over ids from an empty state and returns the state
// statistics of every Mamba layer, in layer order. The states are those of
// the forward pass: the scan is replayed from the very operands the
// forward hands its scan (kernels.ScanStep, the same arithmetic).
func StateStats(m *model.Model, ids []int) ([]LayerState, error) {
	var out []LayerState
	ws := m.NewWorkspace()
	ws.Probe = &model.Probe{Mamba: func(li, s int, in model.ScanInputs) {
		out = append(out, stateOf(li, in))
	}}
	if err := ws.Forward([]model.SeqInput{{Tokens: ids, Logits: model.NoLogits}}); err != nil {
		return nil, err
	}
	return out, nil
}

// stateOf computes a layer's statistics from its scan operands.
func stateOf(li int, in model.ScanInputs) LayerState {
	T, Di, N := in.T, in.Di, in.N
	st := LayerState{Layer: li, T: T, Di: Di, N: N, DtMean: make([]float64, Di), Decay: make([]float64, N),
		StateNorm: make([]float64, T), Memory: make([]float64, Di*N)}
	for t := range T {
		for c := range Di {
			d := float64(in.Delta[t*Di+c])
			st.DtMean[c] += d
			for n := range N {
				st.Decay[n] += math.Exp(d * float64(in.A[c*N+n]))
			}
		}
	}
	for c := range Di {
		st.DtMean[c] /= float64(T)
	}
	for n := range N {
		st.Decay[n] /= float64(T * Di)
	}
	for c := range Di {
		for n := range N {
			st.Memory[c*N+n] = math.Log(1/MemoryFraction) / (math.Abs(float64(in.A[c*N+n])) * st.DtMean[c])
		}
	}
	h := append([]float32(nil), in.State...)
	y := make([]float32, Di)
	for t := range T {
		kernels.ScanStep(h, in.A, in.Delta[t*Di:(t+1)*Di], in.X[t*Di:(t+1)*Di], in.B[t*N:(t+1)*N], in.C[t*N:(t+1)*N], in.D, y, Di, N)
		var ss float64
		for _, v := range h {
			ss += float64(v) * float64(v)
		}
		st.StateNorm[t] = math.Sqrt(ss)
	}
	return st
}

// LayerImportance is how much a model's predictions on a text change when
// one layer's mixer output is zeroed (the residual stream then carries the
// layer's input past its mixer; its FFN still runs).
type LayerImportance struct {
	Layer int
	Mixer model.MixerKind
	// KL is the mean over positions of KL(p ‖ p_ablated) of the next-token
	// distributions, nats.
	KL float64
	// LossDelta is the change of the mean next-token cross-entropy.
	LossDelta float64
	// LogitChange is the mean over positions of ‖z_ablated − z‖₂ / ‖z‖₂.
	LogitChange float64
}

// LayerImportances returns the base loss of m on ids and, for every layer,
// the effect of zeroing its mixer.
func LayerImportances(m *model.Model, ids []int) (float64, []LayerImportance, error) {
	ws := m.NewWorkspace()
	V := m.Config.VocabSize
	run := func() ([]float32, error) {
		if err := ws.Forward([]model.SeqInput{{Tokens: ids, Logits: model.AllLogits}}); err != nil {
			return nil, err
		}
		return append([]float32(nil), ws.Logits(0)...), nil
	}
	base, err := run()
	if err != nil {
		return 0, nil, err
	}
	T := len(ids)
	lossOf := func(lg []float32) float64 {
		var s float64
		for t := 0; t+1 < T; t++ {
			s += model.CrossEntropy(lg[t*V:(t+1)*V], ids[t+1])
		}
		return s / float64(max(T-1, 1))
	}
	baseLoss := lossOf(base)
	var out []LayerImportance
	for li := range m.Config.NumHiddenLayers {
		ws.Probe = &model.Probe{Mixer: func(l int, mix []float32) {
			if l == li {
				clear(mix)
			}
		}}
		lg, err := run()
		ws.Probe = nil
		if err != nil {
			return 0, nil, err
		}
		imp := LayerImportance{Layer: li, Mixer: m.Config.Mixer(li), LossDelta: lossOf(lg) - baseLoss}
		for t := range T {
			p, q := base[t*V:(t+1)*V], lg[t*V:(t+1)*V]
			imp.KL += kl(p, q)
			var d, n float64
			for j := range p {
				d += (float64(q[j]) - float64(p[j])) * (float64(q[j]) - float64(p[j]))
				n += float64(p[j]) * float64(p[j])
			}
			imp.LogitChange += math.Sqrt(d / n)
		}
		imp.KL /= float64(T)
		imp.LogitChange /= float64(T)
		out = append(out, imp)
	}
	return baseLoss, out, nil
}

// kl is KL(softmax(p) ‖ softmax(q)) in float64.
func kl(p, q []float32) float64 {
	lse := func(x []float32) float64 {
		mx := math.Inf(-1)
		for _, v := range x {
			mx = max(mx, float64(v))
		}
		var z float64
		for _, v := range x {
			z += math.Exp(float64(v) - mx)
		}
		return mx + math.Log(z)
	}
	lp, lq := lse(p), lse(q)
	var s float64
	for j := range p {
		a := float64(p[j]) - lp
		s += math.Exp(a) * (a - (float64(q[j]) - lq))
	}
	return s
}
