package train

import (
	"math"

	"github.com/jamba-go/jamba/internal/buf"
	"github.com/jamba-go/jamba/kernels"
)

// attnActs are the saved activations of an attention layer. The attention
// probabilities are not stored: the backward recomputes them from q, k and
// the log-sum-exp of each query's scores.
type attnActs struct {
	q, k, v []float32 // [n, nH·hd], [n, nKV·hd], [n, nKV·hd]
	o       []float32 // [n, nH·hd]: softmax(q·kᵀ·scale)·v, heads concatenated
	lse     []float32 // [n, nH]: log Σ_j exp(score_j) of each query and head
}

// attnForward computes causal grouped-query attention without positional
// encoding, row by row of the batch:
//
//	q, k, v = x·Wqᵀ, x·Wkᵀ, x·Wvᵀ
//	o[t, h] = Σ_{j≤t} softmax_j(q[t,h]·k[j,g]·hd^-½) v[j,g]   (g = h / (nH/nKV))
//	out     = o·Woᵀ
func (e *Backprop) attnForward(a *attnActs, w *layerWeights, x, out []float32) {
	d, n := e.d, e.n
	qd, kvd := d.nH*d.hd, d.nKV*d.hd
	a.q, a.k, a.v = buf.Grow(&a.q, n*qd), buf.Grow(&a.k, n*kvd), buf.Grow(&a.v, n*kvd)
	e.s.linear(a.q, x, n, w.q, qd, d.H)
	e.s.linear(a.k, x, n, w.k, kvd, d.H)
	e.s.linear(a.v, x, n, w.v, kvd, d.H)
	e.loraForward(w.q, a.q, x, n)
	e.loraForward(w.k, a.k, x, n)
	e.loraForward(w.v, a.v, x, n)
	a.o, a.lse = buf.Grow(&a.o, n*qd), buf.Grow(&a.lse, n*d.nH)
	scale := float32(1 / math.Sqrt(float64(d.hd)))
	group := d.nH / d.nKV
	nseq := e.nseq()
	nch, _ := e.s.pool.split(nseq*d.nH, 1)
	bufs := e.chunkBufs(nch, e.maxRow())
	e.s.pool.parallelFor(nseq*d.nH, 1, func(ci, lo, hi int) {
		for task := lo; task < hi; task++ {
			s, hh := task/d.nH, task%d.nH
			g := hh / group
			r0, r1 := e.seqStart[s], e.seqStart[s+1]
			sc := bufs[ci][:r1-r0]
			for t := r0; t < r1; t++ {
				qv := a.q[t*qd+hh*d.hd : t*qd+(hh+1)*d.hd]
				m := t - r0 + 1
				mx := float32(math.Inf(-1))
				for j := 0; j < m; j++ {
					sv := kernels.Dot(qv, a.k[(r0+j)*kvd+g*d.hd:]) * scale
					sc[j] = sv
					mx = max(mx, sv)
				}
				for j := range sc[:m] {
					sc[j] -= mx
				}
				kernels.Exp(sc[:m], sc[:m])
				var sum float32
				for _, ev := range sc[:m] {
					sum += ev
				}
				inv := 1 / sum
				o := a.o[t*qd+hh*d.hd : t*qd+(hh+1)*d.hd]
				clear(o)
				for j := 0; j < m; j++ {
					kernels.Axpy(sc[j]*inv, a.v[(r0+j)*kvd+g*d.hd:(r0+j)*kvd+(g+1)*d.hd], o)
				}
				a.lse[t*d.nH+hh] = mx + float32(math.Log(float64(sum)))
			}
		}
	})
	e.s.linear(out, a.o, n, w.o, d.H, qd)
	e.loraForward(w.o, out, a.o, n)
}

// attnBackward adds the gradients of attnForward given dout, the gradient
// of its output, and adds the input gradient into dx. With P the attention
// probabilities (recomputed as exp(score − lse)) and D_t = do_t·o_t:
//
//	dP[t,j] = do_t·v_j,  dS[t,j] = P[t,j]·(dP[t,j] − D_t)
//	dq_t += hd^-½ Σ_j dS[t,j]·k_j,  dk_j += hd^-½ Σ_t dS[t,j]·q_t,  dv_j += Σ_t P[t,j]·do_t
//
// Work is split by (row, KV head), which owns its keys' and values' gradients.
func (e *Backprop) attnBackward(a *attnActs, w, gw *layerWeights, x, dout, dx []float32) {
	d, n := e.d, e.n
	qd, kvd := d.nH*d.hd, d.nKV*d.hd
	b := &e.bw
	do := buf.Grow(&b.do, n*qd)
	clear(do)
	e.s.linearBackward(do, gw.o, nil, dout, a.o, w.o, n, d.H, qd)
	e.loraBackward(w.o, do, dout, a.o, n)
	dq, dk, dv := buf.Grow(&b.dq, n*qd), buf.Grow(&b.dk, n*kvd), buf.Grow(&b.dv, n*kvd)
	clear(dq)
	clear(dk)
	clear(dv)
	scale := float32(1 / math.Sqrt(float64(d.hd)))
	group := d.nH / d.nKV
	nseq := e.nseq()
	hd := d.hd
	nch, _ := e.s.pool.split(nseq*d.nKV, 1)
	bufs := e.chunkBufs(nch, e.maxRow())
	e.s.pool.parallelFor(nseq*d.nKV, 1, func(ci, lo, hi int) {
		for task := lo; task < hi; task++ {
			s, g := task/d.nKV, task%d.nKV
			r0, r1 := e.seqStart[s], e.seqStart[s+1]
			p := bufs[ci][:r1-r0]
			for hh := g * group; hh < (g+1)*group; hh++ {
				for t := r0; t < r1; t++ {
					qv := a.q[t*qd+hh*hd : t*qd+(hh+1)*hd]
					dov := do[t*qd+hh*hd : t*qd+(hh+1)*hd]
					dt := kernels.Dot(dov, a.o[t*qd+hh*hd:])
					lse := a.lse[t*d.nH+hh]
					dqv := dq[t*qd+hh*hd : t*qd+(hh+1)*hd]
					m := t - r0 + 1
					for j := 0; j < m; j++ {
						p[j] = kernels.Dot(qv, a.k[(r0+j)*kvd+g*hd:])*scale - lse
					}
					kernels.Exp(p[:m], p[:m])
					for j := 0; j < m; j++ {
						off := (r0+j)*kvd + g*hd
						dp := kernels.Dot(dov, a.v[off:])
						ds := p[j] * (dp - dt) * scale
						kernels.Axpy(ds, a.k[off:off+hd], dqv)
						kernels.Axpy(ds, qv, dk[off:off+hd])
						kernels.Axpy(p[j], dov, dv[off:off+hd])
					}
				}
			}
		}
	})
	xt := e.s.transposeInputIfNeeded(x, n, d.H)
	e.s.linearBackwardT(dx, gw.q, nil, dq, xt, w.q, n, qd, d.H)
	e.s.linearBackwardT(dx, gw.k, nil, dk, xt, w.k, n, kvd, d.H)
	e.s.linearBackwardT(dx, gw.v, nil, dv, xt, w.v, n, kvd, d.H)
	e.loraBackward(w.q, dx, dq, x, n)
	e.loraBackward(w.k, dx, dk, x, n)
	e.loraBackward(w.v, dx, dv, x, n)
}
