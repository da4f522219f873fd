package model

import (
	"math"
	"sort"
)

// RoutingStats accumulates how the routers of a model's MoE layers spread
// tokens over the experts: per layer, the experts' top-k counts, their
// summed probabilities, the routers' entropy and, for top-2 routing, which
// pairs of experts are chosen together. Add takes the router logits that
// Workspace.Forward keeps with CaptureRouter.
type RoutingStats struct {
	Experts, TopK int
	Rows          int         // tokens routed (per layer)
	Count         [][]float64 // [layer][expert]: top-k selections
	ProbSum       [][]float64 // [layer][expert]: Σ softmax probabilities
	EntropySum    []float64   // [layer]: Σ of each token's router entropy, nats
	Pairs         []map[[2]int]int

	p   []float32
	idx []int
}

// NewRoutingStats returns empty statistics for m's MoE layers.
func NewRoutingStats(m *Model) *RoutingStats {
	c := m.Config
	n := 0
	for i := range c.NumHiddenLayers {
		if c.FFN(i) == MoE {
			n++
		}
	}
	s := &RoutingStats{Experts: c.NumExperts, TopK: c.NumExpertsPerTok,
		Count: make([][]float64, n), ProbSum: make([][]float64, n), EntropySum: make([]float64, n),
		Pairs: make([]map[[2]int]int, n), p: make([]float32, c.NumExperts), idx: make([]int, c.NumExperts)}
	for j := range n {
		s.Count[j] = make([]float64, c.NumExperts)
		s.ProbSum[j] = make([]float64, c.NumExperts)
		s.Pairs[j] = map[[2]int]int{}
	}
	return s
}

// Add counts rows tokens given the router logits of every MoE layer
// ([rows·E] each, in layer order). The probabilities are the softmax of the
// logits in float32 and the selection is their top k, ties to the lower
// index, as the forward pass routes.
func (s *RoutingStats) Add(router [][]float32, rows int) {
	E, k := s.Experts, s.TopK
	for j, lg := range router[:len(s.Count)] {
		for r := range rows {
			row := lg[r*E : (r+1)*E]
			mx := float32(math.Inf(-1))
			for _, v := range row {
				mx = max(mx, v)
			}
			var z float32
			for e, v := range row {
				s.p[e] = float32(math.Exp(float64(v - mx)))
				z += s.p[e]
			}
			var h float64
			for e := range s.p {
				s.p[e] /= z
				s.ProbSum[j][e] += float64(s.p[e])
				if pe := float64(s.p[e]); pe > 0 {
					h -= pe * math.Log(pe)
				}
			}
			s.EntropySum[j] += h
			for e := range s.idx {
				s.idx[e] = e
			}
			sort.SliceStable(s.idx, func(a, b int) bool { return s.p[s.idx[a]] > s.p[s.idx[b]] })
			for _, e := range s.idx[:k] {
				s.Count[j][e]++
			}
			if k == 2 {
				a, b := min(s.idx[0], s.idx[1]), max(s.idx[0], s.idx[1])
				s.Pairs[j][[2]int{a, b}]++
			}
		}
	}
	s.Rows += rows
}

// LayerAux is the load-balancing loss of MoE layer j alone (§4.7 of the
// architecture notes): E · Σ_e (count[e]/rows) · (psum[e]/rows).
func (s *RoutingStats) LayerAux(j int) float64 {
	var a float64
	n := float64(s.Rows)
	for e := range s.Experts {
		a += s.Count[j][e] / n * s.ProbSum[j][e] / n
	}
	return float64(s.Experts) * a
}

// Aux is the load-balancing loss pooled over all MoE layers, as training
// and Hugging Face compute it.
func (s *RoutingStats) Aux() float64 {
	L := len(s.Count)
	if L == 0 || s.Rows == 0 {
		return 0
	}
	n := float64(L * s.Rows)
	var a float64
	for e := range s.Experts {
		var c, p float64
		for j := range L {
			c += s.Count[j][e]
			p += s.ProbSum[j][e]
		}
		a += c / n * p / n
	}
	return float64(s.Experts) * a
}
