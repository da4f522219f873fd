package model

import (
	"fmt"
	"math"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/kernels"
)

// SeqInput is one sequence's share of a forward call.
type SeqInput struct {
	// Tokens are the new tokens of the sequence (at least one). They continue
	// whatever Cache has already consumed: a prompt may be fed in chunks of
	// any size and gives the same logits as one pass.
	Tokens []int
	// Cache is the sequence's state, advanced by len(Tokens). Nil means a
	// fresh state used for this call only.
	Cache *cache.Seq
	// AllLogits asks for the logits of every new token; otherwise only the
	// last token's logits are computed.
	AllLogits bool
}

// Workspace holds the scratch memory of forward passes and their outputs. It
// grows to the largest batch seen and is reused, so a steady decode loop does
// not allocate. A Workspace is not safe for concurrent use; use one per
// goroutine.
type Workspace struct {
	m *Model

	// CaptureHidden makes Forward keep HF's hidden_states: L+1 entries of
	// [tokens·H] (the embeddings, the outputs of layers 0..L−2, and the
	// final-normed output of the last layer), tokens in batch order.
	CaptureHidden bool
	// CaptureRouter makes Forward keep the router logits of every MoE layer,
	// [tokens·E] each, in layer order.
	CaptureRouter bool
	Hidden        [][]float32
	Router        [][]float32

	logits    []float32
	logitOff  []int // first logits row of each sequence, plus one end entry
	headRows  []int
	seqStart  []int
	tmpCaches []*cache.Seq

	h, xn, mix, headIn                 []float32
	q, k, v, att, scores               []float32
	xz, convBuf, xc, dbc, dtn, delta   []float32
	y                                  []float32
	gate, up, ffOut                    []float32
	routerLogits, probs, expIn, expOut []float32
	expRows                            [][]int
	expWeights                         [][]float32
	topIdx                             []int
	topW                               []float32
}

// NewWorkspace returns an empty workspace for m.
func (m *Model) NewWorkspace() *Workspace {
	return &Workspace{m: m, expRows: make([][]int, m.Config.NumExperts), expWeights: make([][]float32, m.Config.NumExperts)}
}

// Logits returns the logits of sequence i of the last Forward call: one row
// of V floats per requested token (all tokens or the last). The slice is
// valid until the next Forward.
func (ws *Workspace) Logits(i int) []float32 {
	V := ws.m.Config.VocabSize
	return ws.logits[ws.logitOff[i]*V : ws.logitOff[i+1]*V]
}

func grow(b *[]float32, n int) []float32 {
	if cap(*b) < n {
		*b = make([]float32, n)
	}
	*b = (*b)[:n]
	return *b
}

func growInts(b *[]int, n int) []int {
	if cap(*b) < n {
		*b = make([]int, n)
	}
	*b = (*b)[:n]
	return *b
}

// Forward runs the model over a batch of independent sequences, each
// continuing its own cache. Every sequence's tokens share each weight read
// (one matrix product per layer for the whole batch).
func (ws *Workspace) Forward(seqs []SeqInput) error {
	m, c := ws.m, ws.m.Config
	H, V := c.HiddenSize, c.VocabSize
	total := 0
	ws.seqStart = growInts(&ws.seqStart, len(seqs)+1)
	ws.logitOff = growInts(&ws.logitOff, len(seqs)+1)
	ws.headRows = ws.headRows[:0]
	ws.tmpCaches = ws.tmpCaches[:0]
	shape := m.CacheShape
	for i := range seqs {
		s := &seqs[i]
		if len(s.Tokens) == 0 {
			return fmt.Errorf("model: sequence %d of the batch has no tokens", i)
		}
		for _, id := range s.Tokens {
			if id < 0 || id >= V {
				return fmt.Errorf("model: sequence %d: %w: %d not in [0, %d)", i, ErrTokenRange, id, V)
			}
		}
		if s.Cache == nil {
			ws.tmpCaches = append(ws.tmpCaches, cache.New(shape(), len(s.Tokens)))
		} else if len(s.Cache.Layers) != c.NumHiddenLayers {
			return fmt.Errorf("model: sequence %d: cache has %d layers, the model %d", i, len(s.Cache.Layers), c.NumHiddenLayers)
		}
		ws.seqStart[i] = total
		ws.logitOff[i] = len(ws.headRows)
		if s.AllLogits {
			for t := range s.Tokens {
				ws.headRows = append(ws.headRows, total+t)
			}
		} else {
			ws.headRows = append(ws.headRows, total+len(s.Tokens)-1)
		}
		total += len(s.Tokens)
	}
	ws.seqStart[len(seqs)] = total
	ws.logitOff[len(seqs)] = len(ws.headRows)
	caches := func(i int) *cache.Seq { return seqs[i].Cache }
	if len(ws.tmpCaches) > 0 {
		tmp := 0
		own := make([]*cache.Seq, len(seqs))
		for i := range seqs {
			if seqs[i].Cache == nil {
				own[i] = ws.tmpCaches[tmp]
				tmp++
			} else {
				own[i] = seqs[i].Cache
			}
		}
		caches = func(i int) *cache.Seq { return own[i] }
	}

	h := grow(&ws.h, total*H)
	for i := range seqs {
		for t, id := range seqs[i].Tokens {
			r := ws.seqStart[i] + t
			m.Embed.Row(h[r*H:(r+1)*H], id)
		}
	}
	ws.prepareCapture(total)
	if ws.CaptureHidden {
		copy(ws.Hidden[0], h)
	}
	eps := float32(c.RMSNormEps)
	moeIdx := 0
	for li := range m.Layers {
		l := &m.Layers[li]
		xn := grow(&ws.xn, total*H)
		rmsNormRows(xn, h, l.InputNorm, eps)
		mix := grow(&ws.mix, total*H)
		switch l.Mixer {
		case Attention:
			ws.attention(l.Attn, li, xn, mix, len(seqs), caches)
		case Mamba:
			ws.mamba(l.Mamba, li, xn, mix, len(seqs), caches)
		}
		addTo(h, mix)
		rmsNormRows(xn, h, l.PreFFNorm, eps)
		switch l.FFN {
		case Dense:
			ws.mlp(l.MLP, xn, mix, total)
		case MoE:
			ws.moe(l.MoE, xn, mix, total, moeIdx)
			moeIdx++
		}
		addTo(h, mix)
		if ws.CaptureHidden && li < len(m.Layers)-1 {
			copy(ws.Hidden[li+1], h)
		}
	}
	for i := range seqs {
		caches(i).Len += len(seqs[i].Tokens)
	}
	xn := grow(&ws.xn, total*H)
	rmsNormRows(xn, h, m.FinalNorm, eps)
	if ws.CaptureHidden {
		copy(ws.Hidden[len(m.Layers)], xn)
	}
	n := len(ws.headRows)
	in := grow(&ws.headIn, n*H)
	for j, r := range ws.headRows {
		copy(in[j*H:(j+1)*H], xn[r*H:(r+1)*H])
	}
	logits := grow(&ws.logits, n*V)
	kernels.MatMul(logits, in, n, m.LMHead)
	return nil
}

func (ws *Workspace) prepareCapture(total int) {
	c := ws.m.Config
	if ws.CaptureHidden {
		ws.Hidden = ws.Hidden[:0]
		for i := 0; i <= c.NumHiddenLayers; i++ {
			ws.Hidden = append(ws.Hidden, make([]float32, total*c.HiddenSize))
		}
	}
	if ws.CaptureRouter {
		ws.Router = ws.Router[:0]
		for i := 0; i < c.NumHiddenLayers; i++ {
			if c.FFN(i) == MoE {
				ws.Router = append(ws.Router, make([]float32, total*c.NumExperts))
			}
		}
	}
}

func addTo(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// rmsNormRows applies RMSNorm to each row of len(w) floats:
// y = w ⊙ x / sqrt(mean(x²) + eps), computed in float32.
func rmsNormRows(dst, x, w []float32, eps float32) {
	n := len(w)
	for r := 0; r+n <= len(x); r += n {
		rmsNorm(dst[r:r+n], x[r:r+n], w, eps)
	}
}

func rmsNorm(dst, x, w []float32, eps float32) {
	var ss float32
	for _, v := range x {
		ss += v * v
	}
	inv := float32(1 / math.Sqrt(float64(ss/float32(len(x))+eps)))
	for i, v := range x {
		dst[i] = w[i] * (v * inv)
	}
}

// attention computes causal grouped-query attention without positional
// encoding for every sequence, appending the new keys and values to each
// sequence's cache first.
func (ws *Workspace) attention(a *AttnWeights, li int, xn, out []float32, nseq int, caches func(int) *cache.Seq) {
	c := ws.m.Config
	total := ws.seqStart[nseq]
	nH, nKV, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDimension()
	qd, kvd := nH*hd, nKV*hd
	q := grow(&ws.q, total*qd)
	k := grow(&ws.k, total*kvd)
	v := grow(&ws.v, total*kvd)
	kernels.MatMul(q, xn, total, a.Q)
	kernels.MatMul(k, xn, total, a.K)
	kernels.MatMul(v, xn, total, a.V)
	att := grow(&ws.att, total*qd)
	scale := float32(1 / math.Sqrt(float64(hd)))
	group := nH / nKV
	for s := 0; s < nseq; s++ {
		r0, r1 := ws.seqStart[s], ws.seqStart[s+1]
		cs := caches(s)
		past := cs.Len
		cs.AppendKV(li, k[r0*kvd:r1*kvd], v[r0*kvd:r1*kvd])
		K, Vc := cs.Layers[li].K, cs.Layers[li].V
		scores := grow(&ws.scores, past+r1-r0)
		for t := 0; t < r1-r0; t++ {
			n := past + t + 1 // keys visible to this query
			row := (r0 + t) * qd
			for hh := 0; hh < nH; hh++ {
				g := hh / group
				qv := q[row+hh*hd : row+(hh+1)*hd]
				sc := scores[:n]
				mx := float32(math.Inf(-1))
				for j := 0; j < n; j++ {
					sv := kernels.Dot(qv, K[j*kvd+g*hd:j*kvd+(g+1)*hd]) * scale
					sc[j] = sv
					mx = max(mx, sv)
				}
				var sum float32
				for j := range sc {
					e := float32(math.Exp(float64(sc[j] - mx)))
					sc[j] = e
					sum += e
				}
				o := att[row+hh*hd : row+(hh+1)*hd]
				clear(o)
				inv := 1 / sum
				for j := 0; j < n; j++ {
					kernels.Axpy(sc[j]*inv, Vc[j*kvd+g*hd:j*kvd+(g+1)*hd], o)
				}
			}
		}
	}
	kernels.MatMul(out, att, total, a.O)
}

// mamba runs the Mamba mixer with Jamba's dt/B/C RMSNorms for every sequence,
// continuing each sequence's conv window and SSM state.
func (ws *Workspace) mamba(w *MambaWeights, li int, xn, out []float32, nseq int, caches func(int) *cache.Seq) {
	c := ws.m.Config
	total := ws.seqStart[nseq]
	Di, N, Kc, R := c.InnerSize(), c.MambaDState, c.MambaDConv, c.MambaDtRank
	eps := float32(c.RMSNormEps)
	act := activations[c.HiddenAct]
	xz := grow(&ws.xz, total*2*Di)
	kernels.MatMul(xz, xn, total, w.InProj)
	if w.InBias != nil {
		for t := 0; t < total; t++ {
			addTo(xz[t*2*Di:(t+1)*2*Di], w.InBias)
		}
	}
	xc := grow(&ws.xc, total*Di)
	// Causal depthwise conv over [previous Kc−1 inputs ; new inputs].
	for s := 0; s < nseq; s++ {
		r0, r1 := ws.seqStart[s], ws.seqStart[s+1]
		T := r1 - r0
		st := caches(s).Layers[li].Conv // [(Kc−1)][Di], oldest first
		buf := grow(&ws.convBuf, (Kc-1+T)*Di)
		copy(buf, st)
		for t := 0; t < T; t++ {
			copy(buf[(Kc-1+t)*Di:(Kc+t)*Di], xz[(r0+t)*2*Di:(r0+t)*2*Di+Di])
		}
		for t := 0; t < T; t++ {
			dst := xc[(r0+t)*Di : (r0+t+1)*Di]
			for ch := 0; ch < Di; ch++ {
				var acc float32
				if w.ConvB != nil {
					acc = w.ConvB[ch]
				}
				wc := w.ConvW[ch*Kc : (ch+1)*Kc]
				for j := 0; j < Kc; j++ {
					acc += wc[j] * buf[(t+j)*Di+ch]
				}
				dst[ch] = act(acc)
			}
		}
		copy(st, buf[T*Di:])
	}
	// Selective parameters dt, B, C and their RMSNorms.
	P := R + 2*N
	dbc := grow(&ws.dbc, total*P)
	kernels.MatMul(dbc, xc, total, w.XProj)
	dtn := grow(&ws.dtn, total*R)
	for t := 0; t < total; t++ {
		row := dbc[t*P : (t+1)*P]
		if w.DtNorm != nil {
			rmsNorm(dtn[t*R:(t+1)*R], row[:R], w.DtNorm, eps)
			rmsNorm(row[R:R+N], row[R:R+N], w.BNorm, eps)
			rmsNorm(row[R+N:], row[R+N:], w.CNorm, eps)
		} else {
			copy(dtn[t*R:(t+1)*R], row[:R])
		}
	}
	delta := grow(&ws.delta, total*Di)
	kernels.MatMul(delta, dtn, total, w.DtProj)
	for t := 0; t < total; t++ {
		d := delta[t*Di : (t+1)*Di]
		for ch := range d {
			d[ch] = softplus(d[ch] + w.DtBias[ch])
		}
	}
	// Selective scan, D skip and SiLU gate.
	y := grow(&ws.y, total*Di)
	for s := 0; s < nseq; s++ {
		r0, r1 := ws.seqStart[s], ws.seqStart[s+1]
		hs := caches(s).Layers[li].SSM // [Di][N]
		for t := r0; t < r1; t++ {
			B := dbc[t*P+R : t*P+R+N]
			C := dbc[t*P+R+N : (t+1)*P]
			scanStep(hs, w.A, delta[t*Di:(t+1)*Di], xc[t*Di:(t+1)*Di], B, C, w.D, y[t*Di:(t+1)*Di], N)
			z := xz[t*2*Di+Di : (t+1)*2*Di]
			yt := y[t*Di : (t+1)*Di]
			for ch := range yt {
				yt[ch] *= silu(z[ch])
			}
		}
	}
	kernels.MatMul(out, y, total, w.OutProj)
	if w.OutBias != nil {
		for t := 0; t < total; t++ {
			addTo(out[t*c.HiddenSize:(t+1)*c.HiddenSize], w.OutBias)
		}
	}
}

// scanStep advances the SSM state h ([Di][N]) by one token and writes the
// readout with the D skip:
//
//	h[c,n] = exp(Δ[c]·A[c,n])·h[c,n] + Δ[c]·B[n]·x[c]
//	y[c]   = Σ_n h[c,n]·C[n] + D[c]·x[c]
func scanStep(h, A, delta, x, B, C, D, y []float32, N int) {
	for ch := range y {
		d, xv := delta[ch], x[ch]
		hc := h[ch*N : (ch+1)*N]
		ac := A[ch*N : (ch+1)*N]
		var acc float32
		for n := range hc {
			hv := float32(math.Exp(float64(d*ac[n])))*hc[n] + d*B[n]*xv
			hc[n] = hv
			acc += hv * C[n]
		}
		y[ch] = acc + D[ch]*xv
	}
}

// mlp computes the SwiGLU MLP down(act(gate(x)) ⊙ up(x)) for n rows.
func (ws *Workspace) mlp(f *MLPWeights, x, out []float32, n int) {
	c := ws.m.Config
	I := c.IntermediateSize
	g := grow(&ws.gate, n*I)
	u := grow(&ws.up, n*I)
	kernels.MatMul(g, x, n, f.Gate)
	kernels.MatMul(u, x, n, f.Up)
	act := activations[c.HiddenAct]
	for i := range g {
		g[i] = act(g[i]) * u[i]
	}
	kernels.MatMul(out, g, n, f.Down)
}

// moe routes each row to its top-k experts (softmax first, no
// renormalisation) and sums their outputs weighted by the probabilities.
// Rows are grouped by expert so each expert's weights are read once.
func (ws *Workspace) moe(e *MoEWeights, x, out []float32, n, moeIdx int) {
	c := ws.m.Config
	E, K, H := c.NumExperts, c.NumExpertsPerTok, c.HiddenSize
	logits := grow(&ws.routerLogits, n*E)
	kernels.MatMul(logits, x, n, e.Router)
	if ws.CaptureRouter {
		copy(ws.Router[moeIdx], logits)
	}
	probs := grow(&ws.probs, n*E)
	copy(probs, logits)
	for j := range ws.expRows {
		ws.expRows[j] = ws.expRows[j][:0]
		ws.expWeights[j] = ws.expWeights[j][:0]
	}
	top := growInts(&ws.topIdx, K)
	for r := 0; r < n; r++ {
		p := probs[r*E : (r+1)*E]
		softmax(p)
		topK(p, top)
		for _, j := range top {
			ws.expRows[j] = append(ws.expRows[j], r)
			ws.expWeights[j] = append(ws.expWeights[j], p[j])
		}
	}
	clear(out[:n*H])
	for j := 0; j < E; j++ {
		rows := ws.expRows[j]
		if len(rows) == 0 {
			continue
		}
		in := grow(&ws.expIn, len(rows)*H)
		for i, r := range rows {
			copy(in[i*H:(i+1)*H], x[r*H:(r+1)*H])
		}
		res := grow(&ws.expOut, len(rows)*H)
		ws.mlp(&e.Experts[j], in, res, len(rows))
		for i, r := range rows {
			kernels.Axpy(ws.expWeights[j][i], res[i*H:(i+1)*H], out[r*H:(r+1)*H])
		}
	}
}

// softmax replaces x by exp(x − max) / Σ, in float32 with float64 exponentials.
func softmax(x []float32) {
	mx := float32(math.Inf(-1))
	for _, v := range x {
		mx = max(mx, v)
	}
	var sum float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - mx)))
		x[i] = e
		sum += e
	}
	inv := 1 / sum
	for i := range x {
		x[i] *= inv
	}
}

// topK writes the indices of the len(idx) largest entries of p into idx,
// largest first; ties go to the lower index.
func topK(p []float32, idx []int) {
	for k := range idx {
		best := -1
		for j, v := range p {
			taken := false
			for _, t := range idx[:k] {
				if t == j {
					taken = true
					break
				}
			}
			if !taken && (best < 0 || v > p[best]) {
				best = j
			}
		}
		idx[k] = best
	}
}
