package train

import (
	"github.com/jamba-go/jamba/internal/buf"
	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
)

// mlpActs are the saved activations of a SwiGLU MLP over m rows.
type mlpActs struct {
	g, u, h []float32 // [m, I]: gate and up projections, h = act(g) ⊙ u
}

// mlpForward computes the SwiGLU MLP out = (act(x·W_gᵀ) ⊙ x·W_uᵀ)·W_dᵀ
// for m rows.
func (e *Backprop) mlpForward(a *mlpActs, w mlpWeights, x, out []float32, m int) {
	I := e.d.I
	a.g, a.u, a.h = buf.Grow(&a.g, m*I), buf.Grow(&a.u, m*I), buf.Grow(&a.h, m*I)
	e.swiglu(a.g, a.u, a.h, w, x, out, m)
}

// swiglu is mlpForward on explicit buffers (the experts share concatenated ones).
func (e *Backprop) swiglu(g, u, h []float32, w mlpWeights, x, out []float32, m int) {
	H, I := e.d.H, e.d.I
	e.s.linear(g, x, m, w.gate, I, H)
	e.s.linear(u, x, m, w.up, I, H)
	e.loraForward(w.gate, g, x, m)
	e.loraForward(w.up, u, x, m)
	// Token by token, so that the vector functions' lanes fall on the same
	// columns whatever the batch and the thread count.
	e.s.pool.parallel(m, rowChunk(I), func(lo, hi int) {
		lo, hi = lo*I, hi*I
		for r := lo; r < hi; r += I {
			e.act.Apply(h[r:r+I], g[r:r+I])
		}
		for i := lo; i < hi; i++ {
			h[i] *= u[i]
		}
	})
	e.s.linear(out, h, m, w.down, H, I)
	e.loraForward(w.down, out, h, m)
}

// mlpBackward adds the gradients of mlpForward given dout and adds the input
// gradient into dx:
//
//	dh = dout·W_d,  dg = dh ⊙ u ⊙ act'(g),  du = dh ⊙ act(g),  dx += dg·W_g + du·W_u
func (e *Backprop) mlpBackward(a *mlpActs, w, gw mlpWeights, x, dout, dx []float32, m int) {
	e.swigluBackward(a.g, a.u, a.h, w, gw, x, dout, dx, m)
}

func (e *Backprop) swigluBackward(g, u, h []float32, w, gw mlpWeights, x, dout, dx []float32, m int) {
	H, I := e.d.H, e.d.I
	b := &e.bw
	dh := buf.Grow(&b.da, m*I)
	clear(dh)
	e.s.linearBackward(dh, gw.down, nil, dout, h, w.down, m, H, I)
	e.loraBackward(w.down, dh, dout, h, m)
	dg, du := buf.Grow(&b.dg, m*I), buf.Grow(&b.du, m*I)
	e.s.pool.parallel(m, rowChunk(I), func(lo, hi int) {
		lo, hi = lo*I, hi*I
		for r := lo; r < hi; r += I {
			e.act.Derivative(dg[r:r+I], g[r:r+I])
			e.act.Apply(du[r:r+I], g[r:r+I])
		}
		for i := lo; i < hi; i++ {
			dg[i] *= dh[i] * u[i]
			du[i] *= dh[i]
		}
	})
	xt := e.s.transposeInputIfNeeded(x, m, H)
	e.s.linearBackwardT(dx, gw.gate, nil, dg, xt, w.gate, m, I, H)
	e.s.linearBackwardT(dx, gw.up, nil, du, xt, w.up, m, I, H)
	e.loraBackward(w.gate, dx, dg, x, m)
	e.loraBackward(w.up, dx, du, x, m)
}

// moeActs are the saved activations of a mixture-of-experts block.
type moeActs struct {
	probs  []float32 // [n, E]: softmax of the router logits
	expOff []int     // [E+1]: each expert's first slot in the slot arrays
	rows   []int     // [n·k]: the token of each slot, grouped by expert
	weight []float32 // [n·k]: its routing probability
	xin    []float32 // [n·k, H]: the slot's input
	g, u   []float32 // [n·k, I]
	h      []float32 // [n·k, I]
	out    []float32 // [n·k, H]: the expert's output before weighting
	top    []int     // [n, k]: each token's experts, most probable first
	slots  []int     // [n, k]: each token's slots, in increasing expert order
}

// moeForward routes each token to its top-k experts by softmax probability
// (softmax first, no renormalisation) and sums their outputs weighted by the
// probabilities. With first set it adds the token's choices and
// probabilities to the load-balancing statistics.
func (e *Backprop) moeForward(a *moeActs, w *layerWeights, x, out []float32, first bool) {
	d, n := e.d, e.n
	E, K, H, I := d.E, d.K, d.H, d.I
	a.probs = buf.Grow(&a.probs, n*E)
	e.s.linear(a.probs, x, n, w.router, E, H)
	e.loraForward(w.router, a.probs, x, n)
	a.top = buf.Grow(&a.top, n*K)
	e.s.pool.parallel(n, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			p := a.probs[r*E : (r+1)*E]
			model.RouterSoftmax(p)
			model.TopK(p, a.top[r*K:(r+1)*K])
		}
	})
	if first {
		for r := 0; r < n; r++ {
			for _, j := range a.top[r*K : (r+1)*K] {
				e.auxCount[j]++
			}
			for j, v := range a.probs[r*E : (r+1)*E] {
				e.auxPsum[j] += float64(v)
			}
		}
		e.auxRows += n
	}
	// Group slots by expert, tokens in order within each expert.
	a.expOff = buf.Grow(&a.expOff, E+1)
	clear(a.expOff)
	for _, j := range a.top {
		a.expOff[j+1]++
	}
	for j := 0; j < E; j++ {
		a.expOff[j+1] += a.expOff[j]
	}
	a.rows = buf.Grow(&a.rows, n*K)
	a.weight = buf.Grow(&a.weight, n*K)
	fill := buf.Grow(&e.fill, E)
	clear(fill)
	for r := 0; r < n; r++ {
		for _, j := range a.top[r*K : (r+1)*K] {
			s := a.expOff[j] + fill[j]
			fill[j]++
			a.rows[s] = r
			a.weight[s] = a.probs[r*E+j]
		}
	}
	// slots[r*K+i]: token r's slots in increasing expert order, so that
	// sums over a token's experts run in the inference forward's order.
	a.slots = buf.Grow(&a.slots, n*K)
	filled := buf.Grow(&e.fill, n)
	clear(filled)
	for j := 0; j < E; j++ {
		for s := a.expOff[j]; s < a.expOff[j+1]; s++ {
			r := a.rows[s]
			a.slots[r*K+filled[r]] = s
			filled[r]++
		}
	}
	m := n * K
	a.xin, a.out = buf.Grow(&a.xin, m*H), buf.Grow(&a.out, m*H)
	a.g, a.u, a.h = buf.Grow(&a.g, m*I), buf.Grow(&a.u, m*I), buf.Grow(&a.h, m*I)
	e.s.pool.parallel(m, 64, func(lo, hi int) {
		for s := lo; s < hi; s++ {
			r := a.rows[s]
			copy(a.xin[s*H:(s+1)*H], x[r*H:(r+1)*H])
		}
	})
	for j := 0; j < E; j++ {
		s0, s1 := a.expOff[j], a.expOff[j+1]
		if s0 < s1 {
			e.swiglu(a.g[s0*I:s1*I], a.u[s0*I:s1*I], a.h[s0*I:s1*I], w.experts[j], a.xin[s0*H:s1*H], a.out[s0*H:s1*H], s1-s0)
		}
	}
	e.s.pool.parallel(n, 32, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			o := out[r*H : (r+1)*H]
			clear(o)
			for _, s := range a.slots[r*K : (r+1)*K] {
				kernels.Axpy(a.weight[s], a.out[s*H:(s+1)*H], o)
			}
		}
	})
}

// moeBackward adds the gradients of moeForward given dout and adds the input
// gradient into dx. The routing weight of slot s (token r, expert j) gets
// dout_r·out_s; the load-balancing term adds e.auxGrad[j] to every
// probability; the softmax backward then gives the router logits' gradient:
// dlogit = p ⊙ (dp − Σ p·dp).
func (e *Backprop) moeBackward(a *moeActs, w, g *layerWeights, x, dout, dx []float32) {
	d, n := e.d, e.n
	E, K, H, I := d.E, d.K, d.H, d.I
	b := &e.bw
	dp := buf.Grow(&b.dprobs, n*E)
	for r := 0; r < n; r++ {
		copy(dp[r*E:(r+1)*E], e.auxGrad)
	}
	m := n * K
	dexp, dxin := buf.Grow(&b.dout, m*H), buf.Grow(&b.dxin, m*H)
	for j := 0; j < E; j++ {
		e.s.pool.parallel(a.expOff[j+1]-a.expOff[j], 64, func(lo, hi int) {
			for s := a.expOff[j] + lo; s < a.expOff[j]+hi; s++ {
				r := a.rows[s]
				do := dout[r*H : (r+1)*H]
				dp[r*E+j] += kernels.Dot(do, a.out[s*H:(s+1)*H])
				de := dexp[s*H : (s+1)*H]
				wt := a.weight[s]
				for i, v := range do {
					de[i] = wt * v
				}
			}
		})
	}
	clear(dxin)
	for j := 0; j < E; j++ {
		s0, s1 := a.expOff[j], a.expOff[j+1]
		if s0 == s1 {
			continue
		}
		e.swigluBackward(a.g[s0*I:s1*I], a.u[s0*I:s1*I], a.h[s0*I:s1*I], w.experts[j], g.experts[j],
			a.xin[s0*H:s1*H], dexp[s0*H:s1*H], dxin[s0*H:s1*H], s1-s0)
	}
	e.s.pool.parallel(n, 32, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dst := dx[r*H : (r+1)*H]
			for _, s := range a.slots[r*K : (r+1)*K] {
				for i, v := range dxin[s*H : (s+1)*H] {
					dst[i] += v
				}
			}
		}
	})
	for r := 0; r < n; r++ {
		p, dpr := a.probs[r*E:(r+1)*E], dp[r*E:(r+1)*E]
		var dot float32
		for j, v := range p {
			dot += v * dpr[j]
		}
		for j, v := range p {
			dpr[j] = v * (dpr[j] - dot)
		}
	}
	e.s.linearBackward(dx, g.router, nil, dp, x, w.router, n, E, H)
	e.loraBackward(w.router, dx, dp, x, n)
}
