package model

import (
	"fmt"
	"math"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/internal/buf"
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
	// Logits says which new tokens get logits: the last one's (the
	// default), every one's, or none.
	Logits LogitRows
	// Adapter, when set, is a LoRA adapter of this model applied to this
	// sequence alone (see LowRank); its cache must hold states computed
	// with the same adapter.
	Adapter *LowRank
}

// LogitRows says which of a sequence's new tokens the LM head runs on.
type LogitRows uint8

const (
	// LastLogits computes the last new token's logits only.
	LastLogits LogitRows = iota
	// AllLogits computes the logits of every new token.
	AllLogits
	// NoLogits skips the LM head for the sequence (a prompt chunk that is
	// not the last): Workspace.Logits is then empty for it.
	NoLogits
)

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
	// Probe, when set, observes the pass from inside (see Probe).
	Probe *Probe
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
	caches    []*cache.Seq // the state of each sequence of the current call

	h, xn, mix, headIn                     []float32
	q, k, v, att                           []float32
	xz, z, xc, dbc, dtn, delta, bBuf, cBuf []float32
	y                                      []float32
	gate, up                               []float32
	routerLogits, probs, expIn, expOut     []float32
	expRows                                [][]int
	expWeights                             [][]float32
	topIdx                                 []int
	probeW                                 []float32
	prods                                  [3]kernels.Product // products of one input

	trace *finiteTrace // set while locating non-finite values (finite.go)

	// The adapters of the current call: each token's (nil: none), and
	// whether any sequence has one; scratch of their products.
	tokAdapter   []*LowRank
	anyAdapter   bool
	loraU, loraT []float32
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

// Forward runs the model over a batch of independent sequences, each
// continuing its own cache. Every sequence's tokens share each weight read
// (one matrix product per layer for the whole batch).
func (ws *Workspace) Forward(seqs []SeqInput) error {
	m, c := ws.m, ws.m.Config
	H, V := c.HiddenSize, c.VocabSize
	total := 0
	ws.seqStart = buf.Grow(&ws.seqStart, len(seqs)+1)
	ws.logitOff = buf.Grow(&ws.logitOff, len(seqs)+1)
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
		switch s.Logits {
		case NoLogits:
		case AllLogits:
			for t := range s.Tokens {
				ws.headRows = append(ws.headRows, total+t)
			}
		case LastLogits:
			ws.headRows = append(ws.headRows, total+len(s.Tokens)-1)
		default:
			return fmt.Errorf("model: sequence %d: unknown LogitRows %d", i, s.Logits)
		}
		total += len(s.Tokens)
	}
	ws.seqStart[len(seqs)] = total
	ws.logitOff[len(seqs)] = len(ws.headRows)
	ws.anyAdapter = false
	for i := range seqs {
		if seqs[i].Adapter != nil {
			ws.anyAdapter = true
		}
	}
	if ws.anyAdapter {
		ws.tokAdapter = ws.tokAdapter[:0]
		for i := range seqs {
			for range seqs[i].Tokens {
				ws.tokAdapter = append(ws.tokAdapter, seqs[i].Adapter)
			}
		}
	}
	ws.caches = ws.caches[:0]
	tmp := 0
	for i := range seqs {
		if seqs[i].Cache != nil {
			ws.caches = append(ws.caches, seqs[i].Cache)
		} else {
			ws.caches = append(ws.caches, ws.tmpCaches[tmp])
			tmp++
		}
	}
	caches := ws.caches

	h := buf.Grow(&ws.h, total*H)
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
	if ws.trace != nil {
		ws.trace.check(stageEmbed, h)
	}
	eps := float32(c.RMSNormEps)
	moeIdx := 0
	for li := range m.Layers {
		l := &m.Layers[li]
		xn := buf.Grow(&ws.xn, total*H)
		rmsNormRows(xn, h, l.InputNorm, eps)
		mix := buf.Grow(&ws.mix, total*H)
		switch l.Mixer {
		case Attention:
			ws.attention(l.Attn, li, xn, mix, caches)
		case Mamba:
			ws.mamba(l.Mamba, li, xn, mix, caches)
		}
		if ws.Probe != nil && ws.Probe.Mixer != nil {
			ws.Probe.Mixer(li, mix[:total*H])
		}
		addTo(h, mix)
		rmsNormRows(xn, h, l.PreFFNorm, eps)
		switch l.FFN {
		case Dense:
			ws.mlp(l.MLP, xn, mix, total, nil)
		case MoE:
			ws.moe(l.MoE, xn, mix, total, moeIdx)
			moeIdx++
		}
		addTo(h, mix)
		if ws.CaptureHidden && li < len(m.Layers)-1 {
			copy(ws.Hidden[li+1], h)
		}
		if ws.trace != nil {
			ws.trace.check(li, h)
		}
	}
	for i := range seqs {
		caches[i].Len += len(seqs[i].Tokens)
	}
	xn := buf.Grow(&ws.xn, total*H)
	rmsNormRows(xn, h, m.FinalNorm, eps)
	if ws.CaptureHidden {
		copy(ws.Hidden[len(m.Layers)], xn)
	}
	if ws.trace != nil {
		ws.trace.check(stageFinalNorm, xn[:total*H])
	}
	n := len(ws.headRows)
	in := buf.Grow(&ws.headIn, n*H)
	for j, r := range ws.headRows {
		copy(in[j*H:(j+1)*H], xn[r*H:(r+1)*H])
	}
	logits := buf.Grow(&ws.logits, n*V)
	if n > 0 {
		kernels.MatMul(logits, in, n, m.LMHead)
	}
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

func rmsNorm(dst, x, w []float32, eps float32) { kernels.RMSNorm(dst, x, w, eps) }

// attention computes causal grouped-query attention without positional
// encoding for every sequence, appending the new keys and values to each
// sequence's cache first.
func (ws *Workspace) attention(a *AttnWeights, li int, xn, out []float32, caches []*cache.Seq) {
	nseq := len(caches)
	c := ws.m.Config
	total := ws.seqStart[nseq]
	nH, nKV, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDimension()
	qd, kvd := nH*hd, nKV*hd
	q := buf.Grow(&ws.q, total*qd)
	k := buf.Grow(&ws.k, total*kvd)
	v := buf.Grow(&ws.v, total*kvd)
	ws.prods = [3]kernels.Product{{Dst: q, W: a.Q}, {Dst: k, W: a.K}, {Dst: v, W: a.V}}
	kernels.MatMulShared(xn, total, ws.prods[:])
	ws.adapt(q, xn, total, a.Q, nil)
	ws.adapt(k, xn, total, a.K, nil)
	ws.adapt(v, xn, total, a.V, nil)
	att := buf.Grow(&ws.att, total*qd)
	scale := float32(1 / math.Sqrt(float64(hd)))
	for s := 0; s < nseq; s++ {
		r0, r1 := ws.seqStart[s], ws.seqStart[s+1]
		cs := caches[s]
		past := cs.Len
		cs.AppendKV(li, k[r0*kvd:r1*kvd], v[r0*kvd:r1*kvd])
		l := &cs.Layers[li]
		// Score buffers sized to the cache capacity, so that decode steps
		// do not regrow them.
		if ws.Probe != nil && ws.Probe.Attention != nil {
			ws.probeAttention(li, s, q[r0*qd:r1*qd], l, r1-r0, past, scale)
		}
		if cs.Shape().KVBF16 {
			kernels.AttentionBF16(att[r0*qd:r1*qd], q[r0*qd:r1*qd], l.K16, l.V16, r1-r0, past, nH, nKV, hd, scale, cap(l.K16)/kvd)
		} else {
			kernels.Attention(att[r0*qd:r1*qd], q[r0*qd:r1*qd], l.K, l.V, r1-r0, past, nH, nKV, hd, scale, cap(l.K)/kvd)
		}
	}
	kernels.MatMul(out, att, total, a.O)
	ws.adapt(out, att, total, a.O, nil)
}

// probeAttention hands the attention weights of one sequence's new
// queries q in layer li to the probe.
func (ws *Workspace) probeAttention(li, s int, q []float32, l *cache.Layer, T, past int, scale float32) {
	c := ws.m.Config
	nH, nKV, hd := c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDimension()
	w := buf.Grow(&ws.probeW, nH*T*(past+T))
	if l.K16 != nil {
		kernels.AttentionWeights(w, q, nil, l.K16, T, past, nH, nKV, hd, scale)
	} else {
		kernels.AttentionWeights(w, q, l.K, nil, T, past, nH, nKV, hd, scale)
	}
	ws.Probe.Attention(li, s, w, T, past)
}

// mamba runs the Mamba mixer with Jamba's dt/B/C RMSNorms for every sequence,
// continuing each sequence's conv window and SSM state.
func (ws *Workspace) mamba(w *MambaWeights, li int, xn, out []float32, caches []*cache.Seq) {
	nseq := len(caches)
	c := ws.m.Config
	total := ws.seqStart[nseq]
	Di, N, Kc, R := c.InnerSize(), c.MambaDState, c.MambaDConv, c.MambaDtRank
	eps := float32(c.RMSNormEps)
	x := buf.Grow(&ws.xz, total*Di)
	z := buf.Grow(&ws.z, total*Di)
	ws.prods = [3]kernels.Product{{Dst: x, W: w.InX}, {Dst: z, W: w.InZ}}
	kernels.MatMulShared(xn, total, ws.prods[:2])
	ws.adapt(x, xn, total, w.InX, nil)
	ws.adapt(z, xn, total, w.InZ, nil)
	if w.InBias != nil {
		addRows(x, w.InXBias)
		addRows(z, w.InZBias)
	}
	// Causal depthwise conv continuing each sequence's window, then the activation.
	xc := buf.Grow(&ws.xc, total*Di)
	for s := 0; s < nseq; s++ {
		r0, r1 := ws.seqStart[s], ws.seqStart[s+1]
		kernels.ConvSeq(xc[r0*Di:r1*Di], caches[s].Layers[li].Conv, x[r0*Di:r1*Di], w.ConvWT, w.ConvB, r1-r0, Di, Kc)
	}
	ws.activate(xc)
	// Selective parameters dt, B, C and their RMSNorms.
	P := R + 2*N
	dbc := buf.Grow(&ws.dbc, total*P)
	kernels.MatMul(dbc, xc, total, w.XProj)
	ws.adapt(dbc, xc, total, w.XProj, nil)
	dtn := buf.Grow(&ws.dtn, total*R)
	B := buf.Grow(&ws.bBuf, total*N)
	C := buf.Grow(&ws.cBuf, total*N)
	for t := 0; t < total; t++ {
		row := dbc[t*P : (t+1)*P]
		dt, bt, ct := dtn[t*R:(t+1)*R], B[t*N:(t+1)*N], C[t*N:(t+1)*N]
		if w.DtNorm != nil {
			kernels.RMSNorm(dt, row[:R], w.DtNorm, eps)
			kernels.RMSNorm(bt, row[R:R+N], w.BNorm, eps)
			kernels.RMSNorm(ct, row[R+N:], w.CNorm, eps)
		} else {
			copy(dt, row[:R])
			copy(bt, row[R:R+N])
			copy(ct, row[R+N:])
		}
	}
	delta := buf.Grow(&ws.delta, total*Di)
	kernels.MatMul(delta, dtn, total, w.DtProj)
	ws.adapt(delta, dtn, total, w.DtProj, nil)
	addRows(delta, w.DtBias)
	kernels.Softplus(delta, delta)
	// Selective scan with the D skip, then the SiLU gate.
	y := buf.Grow(&ws.y, total*Di)
	for s := 0; s < nseq; s++ {
		r0, r1 := ws.seqStart[s], ws.seqStart[s+1]
		if ws.Probe != nil && ws.Probe.Mamba != nil {
			ws.Probe.Mamba(li, s, ScanInputs{T: r1 - r0, Di: Di, N: N, State: caches[s].Layers[li].SSM, A: w.A, D: w.D,
				Delta: delta[r0*Di : r1*Di], X: xc[r0*Di : r1*Di], B: B[r0*N : r1*N], C: C[r0*N : r1*N]})
		}
		kernels.ScanSeq(caches[s].Layers[li].SSM, w.A, delta[r0*Di:r1*Di], xc[r0*Di:r1*Di],
			B[r0*N:r1*N], C[r0*N:r1*N], w.D, y[r0*Di:r1*Di], r1-r0, Di, N)
	}
	kernels.SiLU(z, z)
	mulInPlace(y, z)
	kernels.MatMul(out, y, total, w.OutProj)
	ws.adapt(out, y, total, w.OutProj, nil)
	if w.OutBias != nil {
		addRows(out[:total*c.HiddenSize], w.OutBias)
	}
}

// activate applies hidden_act in place.
func (ws *Workspace) activate(x []float32) {
	ws.m.act.Apply(x, x)
}

// addRows adds the vector b to every len(b)-long row of x.
func addRows(x, b []float32) {
	n := len(b)
	for r := 0; r+n <= len(x); r += n {
		addTo(x[r:r+n], b)
	}
}

func mulInPlace(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] *= src[i]
	}
}

// mlp computes the SwiGLU MLP down(act(gate(x)) ⊙ up(x)) for n rows, row i
// being token rows[i] of the batch (rows nil: token i), for the adapters.
func (ws *Workspace) mlp(f *MLPWeights, x, out []float32, n int, rows []int) {
	c := ws.m.Config
	I := c.IntermediateSize
	g := buf.Grow(&ws.gate, n*I)
	u := buf.Grow(&ws.up, n*I)
	ws.prods = [3]kernels.Product{{Dst: g, W: f.Gate}, {Dst: u, W: f.Up}}
	kernels.MatMulShared(x, n, ws.prods[:2])
	ws.adapt(g, x, n, f.Gate, rows)
	ws.adapt(u, x, n, f.Up, rows)
	ws.activate(g)
	mulInPlace(g, u)
	kernels.MatMul(out, g, n, f.Down)
	ws.adapt(out, g, n, f.Down, rows)
}

// moe routes each row to its top-k experts (softmax first, no
// renormalisation) and sums their outputs weighted by the probabilities.
// Rows are grouped by expert so each expert's weights are read once.
func (ws *Workspace) moe(e *MoEWeights, x, out []float32, n, moeIdx int) {
	c := ws.m.Config
	E, K, H := c.NumExperts, c.NumExpertsPerTok, c.HiddenSize
	logits := buf.Grow(&ws.routerLogits, n*E)
	kernels.MatMul(logits, x, n, e.Router)
	ws.adapt(logits, x, n, e.Router, nil)
	if ws.CaptureRouter {
		copy(ws.Router[moeIdx], logits)
	}
	probs := buf.Grow(&ws.probs, n*E)
	copy(probs, logits)
	for j := range ws.expRows {
		ws.expRows[j] = ws.expRows[j][:0]
		ws.expWeights[j] = ws.expWeights[j][:0]
	}
	top := buf.Grow(&ws.topIdx, K)
	for r := 0; r < n; r++ {
		p := probs[r*E : (r+1)*E]
		RouterSoftmax(p)
		TopK(p, top)
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
		in := buf.Grow(&ws.expIn, len(rows)*H)
		for i, r := range rows {
			copy(in[i*H:(i+1)*H], x[r*H:(r+1)*H])
		}
		res := buf.Grow(&ws.expOut, len(rows)*H)
		ws.mlp(&e.Experts[j], in, res, len(rows), rows)
		for i, r := range rows {
			kernels.Axpy(ws.expWeights[j][i], res[i*H:(i+1)*H], out[r*H:(r+1)*H])
		}
	}
}

// RouterSoftmax replaces router logits x by their probabilities,
// exp(x − max) / Σ, in float32 with float64 exponentials. Training uses it
// too, so that both route alike.
func RouterSoftmax(x []float32) {
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

// TopK writes the indices of the len(idx) largest entries of p into idx,
// largest first; ties go to the lower index.
func TopK(p []float32, idx []int) {
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
