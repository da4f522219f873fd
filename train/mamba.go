package train

import (
	"math"

	"github.com/jamba-go/jamba/internal/buf"
	"github.com/jamba-go/jamba/kernels"
)

// scanChunk is the interval, in tokens, at which the forward scan stores its
// state. The backward recomputes the states inside each chunk from the
// stored one, so the scan keeps Di·N floats per scanChunk tokens instead of
// per token (with N = 16 that is one Di-wide activation in all).
const scanChunk = 16

// mambaActs are the saved activations of a Mamba mixer.
type mambaActs struct {
	xz                []float32 // [n, 2Di]: in_proj output (x half, then gate z)
	convPre, xc       []float32 // [n, Di]: conv output before and after the activation
	dbc               []float32 // [n, R+2N]: x_proj output
	dtRaw, bRaw, cRaw []float32 // its dt, B and C parts
	dtn, bn, cn       []float32 // after the inner RMSNorms (the raw parts without them)
	rDt, rB, rC       []float32 // [n]: the norms' reciprocal RMS
	deltaPre, delta   []float32 // [n, Di]: dt_proj output + bias, and its softplus Δ
	ySSM              []float32 // [n, Di]: scan readout with the D skip
	yg                []float32 // [n, Di]: ySSM ⊙ silu(z), the out_proj input
	A                 []float32 // [Di, N]: −exp(A_log)
	states            []float32 // scan state at the start of every chunk of every row
	stateOff          []int     // first chunk of each row in states
}

// mambaForward runs the Mamba mixer (Jamba's, with the dt/B/C RMSNorms):
//
//	[x ; z]   = u·W_inᵀ (+ b_in)
//	xc        = act(causal depthwise conv(x) + b_conv)
//	[dt;B;C]  = xc·W_xᵀ, each RMS-normalised
//	Δ         = softplus(dt·W_dtᵀ + b_dt)
//	h_t       = exp(Δ_t·A) ⊙ h_{t−1} + Δ_t·B_t·xc_t,   A = −exp(A_log)
//	y_t       = h_t·C_t + D ⊙ xc_t
//	out       = (y ⊙ silu(z))·W_outᵀ (+ b_out)
func (e *Backprop) mambaForward(a *mambaActs, w *layerWeights, x, out []float32) {
	d, n := e.d, e.n
	Di, N, R, Kc, H := d.Di, d.N, d.R, d.Kc, d.H
	P := R + 2*N
	a.xz = buf.Grow(&a.xz, n*2*Di)
	e.s.linearBias(a.xz, x, n, w.inProj, w.inBias, 2*Di, H)
	e.loraForward(w.inProj, a.xz, x, n)

	// Causal depthwise conv: tap Kc−1 multiplies the current token.
	a.convPre, a.xc = buf.Grow(&a.convPre, n*Di), buf.Grow(&a.xc, n*Di)
	e.s.pool.parallel(Di, 16, func(c0, c1 int) {
		for s := 0; s < e.nseq(); s++ {
			r0, r1 := e.seqStart[s], e.seqStart[s+1]
			for t := r0; t < r1; t++ {
				for c := c0; c < c1; c++ {
					var acc float32
					if w.convB != nil {
						acc = w.convB[c]
					}
					wc := w.convW[c*Kc : (c+1)*Kc]
					for m, wv := range wc {
						if tt := t - (Kc - 1) + m; tt >= r0 {
							acc += wv * a.xz[tt*2*Di+c]
						}
					}
					a.convPre[t*Di+c] = acc
				}
			}
		}
	})
	// The activation and the softplus below run token by token, so that the
	// vector functions' lanes fall on the same channels whatever the batch
	// and the thread count: a token's values depend on neither.
	e.s.pool.parallel(n, rowChunk(Di), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			e.act.Apply(a.xc[t*Di:(t+1)*Di], a.convPre[t*Di:(t+1)*Di])
		}
	})

	a.dbc = buf.Grow(&a.dbc, n*P)
	e.s.linear(a.dbc, a.xc, n, w.xProj, P, Di)
	e.loraForward(w.xProj, a.dbc, a.xc, n)
	a.dtRaw, a.bRaw, a.cRaw = buf.Grow(&a.dtRaw, n*R), buf.Grow(&a.bRaw, n*N), buf.Grow(&a.cRaw, n*N)
	for t := 0; t < n; t++ {
		row := a.dbc[t*P : (t+1)*P]
		copy(a.dtRaw[t*R:(t+1)*R], row[:R])
		copy(a.bRaw[t*N:(t+1)*N], row[R:R+N])
		copy(a.cRaw[t*N:(t+1)*N], row[R+N:])
	}
	if w.dtNorm != nil {
		a.dtn, a.bn, a.cn = buf.Grow(&a.dtn, n*R), buf.Grow(&a.bn, n*N), buf.Grow(&a.cn, n*N)
		a.rDt, a.rB, a.rC = buf.Grow(&a.rDt, n), buf.Grow(&a.rB, n), buf.Grow(&a.rC, n)
		rmsNormForward(e.s.pool, a.dtn, a.rDt, a.dtRaw, w.dtNorm, n, d.eps)
		rmsNormForward(e.s.pool, a.bn, a.rB, a.bRaw, w.bNorm, n, d.eps)
		rmsNormForward(e.s.pool, a.cn, a.rC, a.cRaw, w.cNorm, n, d.eps)
	} else {
		a.dtn, a.bn, a.cn = a.dtRaw, a.bRaw, a.cRaw
	}

	a.deltaPre, a.delta = buf.Grow(&a.deltaPre, n*Di), buf.Grow(&a.delta, n*Di)
	e.s.linearBias(a.deltaPre, a.dtn, n, w.dtProj, w.dtBias, Di, R)
	e.loraForward(w.dtProj, a.deltaPre, a.dtn, n)
	e.s.pool.parallel(n, rowChunk(Di), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			softplusVec(a.delta[t*Di:(t+1)*Di], a.deltaPre[t*Di:(t+1)*Di])
		}
	})
	a.A = buf.Grow(&a.A, Di*N)
	for i, v := range w.aLog {
		a.A[i] = -float32(math.Exp(float64(v)))
	}
	e.scanForward(a, w)

	// yg = ySSM ⊙ silu(z)
	a.yg = buf.Grow(&a.yg, n*Di)
	e.s.pool.parallel(n, 16, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			yg := a.yg[t*Di : (t+1)*Di]
			kernels.SiLU(yg, a.xz[t*2*Di+Di:(t+1)*2*Di])
			for c, v := range a.ySSM[t*Di : (t+1)*Di] {
				yg[c] *= v
			}
		}
	})
	e.s.linearBias(out, a.yg, n, w.outProj, w.outBias, H, Di)
	e.loraForward(w.outProj, out, a.yg, n)
}

// softplusVec sets dst[i] = softplus(x[i]) with the vector kernel the
// inference forward uses (x itself above 20, as PyTorch).
func softplusVec(dst, x []float32) { kernels.Softplus(dst, x) }

// scanForward runs the selective scan of every row, writing ySSM and the
// state at the start of each chunk of scanChunk tokens.
func (e *Backprop) scanForward(a *mambaActs, w *layerWeights) {
	d, n := e.d, e.n
	Di, N := d.Di, d.N
	a.stateOff = buf.Grow(&a.stateOff, e.nseq()+1)
	chunks := 0
	for s := 0; s < e.nseq(); s++ {
		a.stateOff[s] = chunks
		chunks += (e.seqStart[s+1] - e.seqStart[s] + scanChunk - 1) / scanChunk
	}
	a.stateOff[e.nseq()] = chunks
	a.states = buf.Grow(&a.states, chunks*Di*N)
	a.ySSM = buf.Grow(&a.ySSM, n*Di)
	// Channels in parallel: each worker runs its block of channels through
	// every row with the single-threaded kernels.ScanStep.
	nch, step := e.s.pool.split(Di, 8)
	bufs := e.chunkBufs(nch, step*N)
	e.s.pool.parallelFor(Di, 8, func(ci, c0, c1 int) {
		nc := c1 - c0
		h := bufs[ci][:nc*N]
		for s := 0; s < e.nseq(); s++ {
			r0, r1 := e.seqStart[s], e.seqStart[s+1]
			clear(h)
			for t := r0; t < r1; t++ {
				if k := t - r0; k%scanChunk == 0 {
					off := (a.stateOff[s]+k/scanChunk)*Di*N + c0*N
					copy(a.states[off:off+nc*N], h)
				}
				kernels.ScanStep(h, a.A[c0*N:c1*N], a.delta[t*Di+c0:t*Di+c1], a.xc[t*Di+c0:t*Di+c1],
					a.bn[t*N:(t+1)*N], a.cn[t*N:(t+1)*N], w.d[c0:c1], a.ySSM[t*Di+c0:t*Di+c1], nc, N)
			}
		}
	})
}

// scanBlock is the number of channels whose chunk of states the scan
// backward recomputes at a time (a few KiB, so it stays in L1).
const scanBlock = 16

// scanBackward adds the gradients of the scan given dy = ∂L/∂ySSM: into dxc,
// ddelta, dbn, dcn (per token) and the A_log and D gradients. Going back
// through time with dh the gradient of the state h_t:
//
//	dh_t   = dh_t(from t+1) + dy_t·C_t
//	dC_t  += dy_t·h_t,   dD += dy_t·xc_t,   dxc_t += dy_t·D
//	dΔ_t  += Σ_n dh_t·(A·Ā_t·h_{t−1} + B_t·xc_t),   Ā_t = exp(Δ_t·A)
//	dA    += dh_t·Δ_t·Ā_t·h_{t−1}   (and dA_log = dA·A)
//	dB_t  += dh_t·Δ_t·xc_t,   dxc_t += Σ_n dh_t·Δ_t·B_t
//	dh_{t−1} = dh_t ⊙ Ā_t
//
// Channels run in parallel; B and C are shared by all channels, so their
// gradients are summed from per-chunk partials.
func (e *Backprop) scanBackward(a *mambaActs, w, g *layerWeights, dy, dxc, ddelta, dbn, dcn []float32) {
	d, n := e.d, e.n
	Di, N := d.Di, d.N
	chunks, _ := e.s.pool.split(Di, 8)
	e.part.reset(chunks, 2*n*N)
	hsz, asz := (scanChunk+1)*scanBlock*N, scanChunk*scanBlock*N
	bufs := e.chunkBufs(chunks, hsz+asz+scanBlock*N+scanBlock+5*scanBlock)
	e.s.pool.parallelFor(Di, 8, func(ci, c0, c1 int) {
		acc := e.part.get(ci)
		dB, dC := acc[:n*N], acc[n*N:]
		buf := bufs[ci]
		hbuf, abuf := buf[:hsz], buf[hsz:hsz+asz]
		dh, ybuf := buf[hsz+asz:hsz+asz+scanBlock*N], buf[hsz+asz+scanBlock*N:hsz+asz+scanBlock*N+scanBlock]
		// Per channel of a block: (dy, Δ, x) in, (Σu, Σsb) out.
		sv := buf[hsz+asz+scanBlock*N+scanBlock:][:3*scanBlock]
		so := buf[hsz+asz+scanBlock*N+4*scanBlock:][:2*scanBlock]
		for cb := c0; cb < c1; cb += scanBlock {
			ce := min(cb+scanBlock, c1)
			nc := ce - cb
			sz := nc * N
			for s := 0; s < e.nseq(); s++ {
				clear(dh)
				r0, r1 := e.seqStart[s], e.seqStart[s+1]
				nch := (r1 - r0 + scanChunk - 1) / scanChunk
				for k := nch - 1; k >= 0; k-- {
					t0 := r0 + k*scanChunk
					t1 := min(t0+scanChunk, r1)
					off := (a.stateOff[s]+k)*Di*N + cb*N
					copy(hbuf[:sz], a.states[off:off+sz])
					// Recompute h_t inside the chunk with the forward's own
					// step (bit-identical states) and Ā_t = exp(Δ_t·A) with
					// the same exponential.
					for t := t0; t < t1; t++ {
						j := t - t0
						prev, cur, av := hbuf[j*sz:(j+1)*sz], hbuf[(j+1)*sz:(j+2)*sz], abuf[j*sz:(j+1)*sz]
						copy(cur, prev)
						kernels.ScanStep(cur, a.A[cb*N:ce*N], a.delta[t*Di+cb:t*Di+ce], a.xc[t*Di+cb:t*Di+ce],
							a.bn[t*N:(t+1)*N], a.cn[t*N:(t+1)*N], w.d[cb:ce], ybuf[:nc], nc, N)
						for c := cb; c < ce; c++ {
							dl := a.delta[t*Di+c]
							o := (c - cb) * N
							for q, av0 := range a.A[c*N : (c+1)*N] {
								av[o+q] = dl * av0
							}
						}
						kernels.Exp(av, av)
					}
					for t := t1 - 1; t >= t0; t-- {
						j := t - t0
						prev, cur, av := hbuf[j*sz:(j+1)*sz], hbuf[(j+1)*sz:(j+2)*sz], abuf[j*sz:(j+1)*sz]
						B, C := a.bn[t*N:(t+1)*N], a.cn[t*N:(t+1)*N]
						dBt, dCt := dB[t*N:(t+1)*N], dC[t*N:(t+1)*N]
						for c := cb; c < ce; c++ {
							i := c - cb
							sv[3*i], sv[3*i+1], sv[3*i+2] = dy[t*Di+c], a.delta[t*Di+c], a.xc[t*Di+c]
						}
						// u = dh·Ā·h_{t−1}·A gives dΔ (Σ u) and dA_log (u·Δ);
						// sb = Σ dh·B gives the B̄x path's dΔ and dxc.
						kernels.ScanBackStep(dh[:sz], cur, prev, av, a.A[cb*N:ce*N], g.aLog[cb*N:ce*N], B, C, dBt, dCt, sv, so, nc, N)
						for c := cb; c < ce; c++ {
							i := c - cb
							dyv, dl, xv := sv[3*i], sv[3*i+1], sv[3*i+2]
							su, sb := so[2*i], so[2*i+1]
							g.d[c] += dyv * xv
							dxc[t*Di+c] += dyv*w.d[c] + sb*dl
							ddelta[t*Di+c] += su + sb*xv
						}
					}
				}
			}
		}
	})
	tmp := buf.Grow(&e.bw.dpre, 2*n*N)
	clear(tmp)
	e.part.sumInto(e.s.pool, tmp)
	e.s.pool.addInto(dbn[:n*N], tmp[:n*N])
	e.s.pool.addInto(dcn[:n*N], tmp[n*N:])
}

// mambaBackward adds the gradients of mambaForward given dout, the gradient
// of its output, and adds the input gradient into dx.
func (e *Backprop) mambaBackward(a *mambaActs, w, g *layerWeights, x, dout, dx []float32) {
	d, n := e.d, e.n
	Di, N, R, Kc, H := d.Di, d.N, d.R, d.Kc, d.H
	P := R + 2*N
	b := &e.bw

	// out = yg·W_outᵀ + b_out
	dyg := buf.Grow(&b.dyg, n*Di)
	clear(dyg)
	e.s.linearBackward(dyg, g.outProj, g.outBias, dout, a.yg, w.outProj, n, H, Di)
	e.loraBackward(w.outProj, dyg, dout, a.yg, n)

	// yg = ySSM ⊙ silu(z): dySSM reuses dyg; dz goes to the gate half of dxz.
	dxz := buf.Grow(&b.dxz, n*2*Di)
	clear(dxz)
	nch, _ := e.s.pool.split(n, 16)
	bufs := e.chunkBufs(nch, Di)
	e.s.pool.parallelFor(n, 16, func(ci, lo, hi int) {
		sig := bufs[ci][:Di]
		for t := lo; t < hi; t++ {
			z := a.xz[t*2*Di+Di : (t+1)*2*Di]
			dz := dxz[t*2*Di+Di : (t+1)*2*Di]
			y, dyr := a.ySSM[t*Di:(t+1)*Di], dyg[t*Di:(t+1)*Di]
			kernels.Sigmoids(sig, z)
			for c, zv := range z {
				s := sig[c]
				dz[c] = dyr[c] * y[c] * (s * (1 + zv*(1-s)))
				dyr[c] *= zv * s
			}
		}
	})

	dxc, ddelta := buf.Grow(&b.dxc, n*Di), buf.Grow(&b.ddelta, n*Di)
	dbn, dcn := buf.Grow(&b.dbn, n*N), buf.Grow(&b.dcn, n*N)
	clear(dxc)
	clear(ddelta)
	clear(dbn)
	clear(dcn)
	e.scanBackward(a, w, g, dyg, dxc, ddelta, dbn, dcn)

	// Δ = softplus(dtn·W_dtᵀ + b_dt)
	nch, _ = e.s.pool.split(n, rowChunk(Di))
	bufs = e.chunkBufs(nch, Di)
	e.s.pool.parallelFor(n, rowChunk(Di), func(ci, lo, hi int) {
		sig := bufs[ci][:Di]
		for t := lo; t < hi; t++ {
			pre, dd := a.deltaPre[t*Di:(t+1)*Di], ddelta[t*Di:(t+1)*Di]
			kernels.Sigmoids(sig, pre)
			for i, v := range pre {
				if v <= 20 { // softplus is the identity above 20
					dd[i] *= sig[i]
				}
			}
		}
	})
	ddtn := buf.Grow(&b.ddtn, n*R)
	clear(ddtn)
	e.s.linearBackward(ddtn, g.dtProj, g.dtBias, ddelta, a.dtn, w.dtProj, n, Di, R)
	e.loraBackward(w.dtProj, ddtn, ddelta, a.dtn, n)

	// The inner RMSNorms.
	ddt, db, dc := ddtn, dbn, dcn
	if w.dtNorm != nil {
		ddt, db, dc = buf.Grow(&b.ddtRaw, n*R), buf.Grow(&b.dbRaw, n*N), buf.Grow(&b.dcRaw, n*N)
		clear(ddt)
		clear(db)
		clear(dc)
		rmsNormBackward(e.s.pool, &e.part, ddt, g.dtNorm, ddtn, a.dtRaw, a.rDt, w.dtNorm, n)
		rmsNormBackward(e.s.pool, &e.part, db, g.bNorm, dbn, a.bRaw, a.rB, w.bNorm, n)
		rmsNormBackward(e.s.pool, &e.part, dc, g.cNorm, dcn, a.cRaw, a.rC, w.cNorm, n)
	}
	ddbc := buf.Grow(&b.ddbc, n*P)
	for t := 0; t < n; t++ {
		row := ddbc[t*P : (t+1)*P]
		copy(row[:R], ddt[t*R:(t+1)*R])
		copy(row[R:R+N], db[t*N:(t+1)*N])
		copy(row[R+N:], dc[t*N:(t+1)*N])
	}
	// [dt;B;C] = xc·W_xᵀ
	e.s.linearBackward(dxc, g.xProj, nil, ddbc, a.xc, w.xProj, n, P, Di)
	e.loraBackward(w.xProj, dxc, ddbc, a.xc, n)

	// xc = act(convPre); convPre = conv(x) + b_conv. Channels are independent.
	nch, step := e.s.pool.split(Di, 16)
	bufs = e.chunkBufs(nch, step)
	e.s.pool.parallelFor(Di, 16, func(ci, c0, c1 int) {
		dact := bufs[ci][:c1-c0]
		for s := 0; s < e.nseq(); s++ {
			r0, r1 := e.seqStart[s], e.seqStart[s+1]
			for t := r0; t < r1; t++ {
				e.act.Derivative(dact, a.convPre[t*Di+c0:t*Di+c1])
				for c := c0; c < c1; c++ {
					gp := dxc[t*Di+c] * dact[c-c0]
					if g.convB != nil {
						g.convB[c] += gp
					}
					wc, gw := w.convW[c*Kc:(c+1)*Kc], g.convW[c*Kc:(c+1)*Kc]
					for m := range wc {
						if tt := t - (Kc - 1) + m; tt >= r0 {
							gw[m] += gp * a.xz[tt*2*Di+c]
							dxz[tt*2*Di+c] += wc[m] * gp
						}
					}
				}
			}
		}
	})

	// [x ; z] = u·W_inᵀ + b_in
	e.s.linearBackward(dx, g.inProj, g.inBias, dxz, x, w.inProj, n, 2*Di, H)
	e.loraBackward(w.inProj, dx, dxz, x, n)
}
