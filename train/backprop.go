package train

import (
	"errors"
	"fmt"
	"math"

	"github.com/jamba-go/jamba/internal/buf"
	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
)

// Loss is the result of one forward pass over a batch.
type Loss struct {
	CE     float64 // mean next-token cross-entropy over every (row, position) pair
	Aux    float64 // load-balancing loss over all MoE layers (0 without experts)
	Total  float64 // CE + router_aux_loss_coef·Aux: the loss the gradient is of
	Tokens int     // number of predicted tokens (the CE terms)
}

// Backprop runs the training forward and backward passes of one model. The
// forward keeps what the backward needs; with Recompute it keeps only each
// layer's input and recomputes a layer's activations right before its
// backward, so activation memory is that of one layer plus L+1 hidden
// states. The Mamba scan stores its state only every scanChunk tokens in
// either mode and recomputes the states in between during the backward.
//
// A Backprop is not safe for concurrent use; it runs each pass on all CPUs
// unless Serial is set.
type Backprop struct {
	Config *model.Config
	Params *Params
	// Grad is the gradient in the layout of Params.Data. Backward adds to
	// it; ZeroGrad clears it.
	Grad []float32
	// Recompute trades one extra forward of compute for activation memory.
	Recompute bool
	// KeepLogits makes passes keep every position's logits in Logits
	// ([tokens, V], rows one after the other).
	KeepLogits bool
	Logits     []float32
	// LossMask, when set, restricts the cross-entropy to chosen targets for
	// the next passes: LossMask[r][t] says whether token t of row r (t ≥ 1)
	// is a target, predicted from position t−1; rows and masks must have
	// the same lengths. The loss is then the mean over the chosen targets
	// only (0 when a batch has none), and so is its gradient. nil: every
	// next token is a target.
	LossMask [][]bool
	// Serial runs every pass on the calling goroutine, its matrix products
	// through a kernels.Serial of its own, so that several Backprops can run
	// at once, one per core (the trainer's data-parallel workers). Each
	// token's forward values, and so the loss, are the same bits in both
	// modes; gradients differ by the order of the sums that the default
	// mode splits across goroutines.
	Serial bool

	lora *loraRun // the adapter trained instead of Params (SetLoRA), or nil

	d   dims
	act kernels.Activation
	w   weights // views of Params.Data
	g   weights // views of Grad
	pad int     // padding_idx, or -1

	// The current batch: all rows' tokens one after the other.
	ids      []int
	seqStart []int // first token of each row, plus the total
	n        int

	hs        [][]float32 // input of layer i; hs[L] is the last layer's output
	acts      []*layerActs
	finalRstd []float32
	finalXn   []float32
	dcur, dxn []float32
	rowLoss   []float64
	mixOut    []float32

	// Load balancing: counts of top-k choices and summed probabilities per
	// expert, pooled over all MoE layers, and the number of pooled rows.
	auxCount []float64
	auxPsum  []float64
	auxRows  int
	auxGrad  []float32 // ∂(scale·coef·aux)/∂p for every row and MoE layer

	bw     backScratch
	s      scratch
	part   partials
	target []int // each position's next token, or -1
	fill   []int
	chunks [][]float32 // per-goroutine scratch of the parallel loops
}

// chunkBufs returns a scratch buffer of size floats for each of the chunks
// of a parallel loop, valid until the next call.
func (e *Backprop) chunkBufs(chunks, size int) [][]float32 {
	for len(e.chunks) < chunks {
		e.chunks = append(e.chunks, nil)
	}
	for c := range chunks {
		buf.Grow(&e.chunks[c], size)
	}
	return e.chunks[:chunks]
}

// maxRow is the length of the current batch's longest row.
func (e *Backprop) maxRow() int {
	m := 0
	for s := 0; s < e.nseq(); s++ {
		m = max(m, e.seqStart[s+1]-e.seqStart[s])
	}
	return m
}

// dims are the sizes of a config.
type dims struct {
	H, V, I, L   int
	nH, nKV, hd  int
	Di, N, Kc, R int
	E, K         int
	eps          float32
}

// NewBackprop returns a Backprop over p with a zero gradient.
func NewBackprop(p *Params) (*Backprop, error) {
	c := p.Config
	act, err := lookupActivation(c.HiddenAct)
	if err != nil {
		return nil, err
	}
	e := &Backprop{Config: c, Params: p, Grad: make([]float32, len(p.Data)), act: act, pad: -1}
	if c.PadTokenID != nil {
		e.pad = *c.PadTokenID
	}
	e.d = dims{
		H: c.HiddenSize, V: c.VocabSize, I: c.IntermediateSize, L: c.NumHiddenLayers,
		nH: c.NumAttentionHeads, nKV: c.NumKeyValueHeads, hd: c.HeadDimension(),
		Di: c.InnerSize(), N: c.MambaDState, Kc: c.MambaDConv, R: c.MambaDtRank,
		E: c.NumExperts, K: c.NumExpertsPerTok, eps: float32(c.RMSNormEps),
	}
	e.w = bindWeights(p, p.Data)
	e.g = bindWeights(p, e.Grad)
	return e, nil
}

// ZeroGrad clears the gradient.
func (e *Backprop) ZeroGrad() {
	pool{serial: e.Serial}.parallel(len(e.Grad), 1<<16, func(lo, hi int) { clear(e.Grad[lo:hi]) })
	if e.lora != nil {
		clear(e.lora.grad)
	}
}

// Forward computes the loss of a batch without gradients. Rows may differ
// in length; each needs at least two tokens (one prediction).
func (e *Backprop) Forward(rows [][]int) (Loss, error) { return e.pass(rows, false, 0) }

// Backward computes the loss of a batch and adds scale times its gradient to
// Grad (scale 1 for one batch; 1/k for each of k accumulated micro-batches).
func (e *Backprop) Backward(rows [][]int, scale float32) (Loss, error) {
	return e.pass(rows, true, scale)
}

// ErrShortRow is returned for a batch row with fewer than two tokens.
var ErrShortRow = errors.New("train: a row needs at least two tokens (one prediction)")

var errEmptyBatch = errors.New("train: empty batch")

func (e *Backprop) setBatch(rows [][]int) error {
	if err := checkBatch(rows, e.d.V); err != nil {
		return err
	}
	if err := checkMask(e.LossMask, rows); err != nil {
		return err
	}
	e.seqStart = buf.Grow(&e.seqStart, len(rows)+1)
	e.ids = e.ids[:0]
	for i, r := range rows {
		e.seqStart[i] = len(e.ids)
		e.ids = append(e.ids, r...)
	}
	e.seqStart[len(rows)] = len(e.ids)
	e.n = len(e.ids)
	return nil
}

func (e *Backprop) nseq() int { return len(e.seqStart) - 1 }

// actsFor returns the activation store of layer i.
func (e *Backprop) actsFor(i int) *layerActs {
	want := e.d.L
	if e.Recompute {
		want = 1
	}
	if len(e.acts) != want {
		e.acts = make([]*layerActs, want)
		for j := range e.acts {
			e.acts[j] = &layerActs{}
		}
	}
	if e.Recompute {
		return e.acts[0]
	}
	return e.acts[i]
}

func (e *Backprop) pass(rows [][]int, backward bool, scale float32) (Loss, error) {
	if err := e.setBatch(rows); err != nil {
		return Loss{}, err
	}
	count := e.predictions()
	ce := e.forward(backward, scale/float32(max(count, 1)))
	loss := makeLoss(ce, count, e.auxCount, e.auxPsum, e.auxRows, e.Config.RouterAuxLossCoef)
	if backward {
		e.backward(scale, e.auxCount, e.auxRows)
	}
	return loss, nil
}

// predictions is the number of cross-entropy terms of the current batch.
func (e *Backprop) predictions() int {
	if e.LossMask == nil {
		return e.n - e.nseq()
	}
	return maskCount(e.LossMask)
}

// maskCount is the number of targets a loss mask chooses (position 0 of a
// row predicts nothing and never counts).
func maskCount(mask [][]bool) int {
	n := 0
	for _, m := range mask {
		for t := 1; t < len(m); t++ {
			if m[t] {
				n++
			}
		}
	}
	return n
}

// checkMask checks that a loss mask (nil: none) matches a batch's rows.
func checkMask(mask [][]bool, rows [][]int) error {
	if mask == nil {
		return nil
	}
	if len(mask) != len(rows) {
		return fmt.Errorf("train: a loss mask of %d rows for a batch of %d", len(mask), len(rows))
	}
	for i := range rows {
		if len(mask[i]) != len(rows[i]) {
			return fmt.Errorf("train: row %d has %d tokens, its loss mask %d", i, len(rows[i]), len(mask[i]))
		}
	}
	return nil
}

// makeLoss assembles a Loss from the summed cross-entropy of tokens
// predictions and the load-balancing statistics (per-expert top-k counts
// and summed probabilities over rows routed rows, pooled over all MoE
// layers):
//
//	aux = E · Σ_j count[j]/rows · psum[j]/rows
func makeLoss(ce float64, tokens int, count, psum []float64, rows int, coef float64) Loss {
	loss := Loss{Tokens: tokens, CE: ce / float64(max(tokens, 1))}
	if rows > 0 {
		var s float64
		rowsF := float64(rows)
		for j := range count {
			s += count[j] / rowsF * (psum[j] / rowsF)
		}
		loss.Aux = float64(len(count)) * s
	}
	loss.Total = loss.CE + coef*loss.Aux
	return loss
}

// forward runs the forward pass over the current batch (setBatch), keeping
// what the backward needs, and the LM head with the cross-entropy; with
// backward it also writes the gradient of gscale·Σ CE with respect to the
// final norm's output into e.dxn and adds the LM head's gradient. It
// returns the summed cross-entropy (e.rowLoss holds it per token) and
// leaves this batch's load-balancing statistics in auxCount, auxPsum and
// auxRows.
func (e *Backprop) forward(backward bool, gscale float32) float64 {
	e.s.pool = pool{serial: e.Serial}
	if e.lora != nil {
		e.lora.train = backward
	}
	d, n := e.d, e.n
	if len(e.hs) != d.L+1 {
		e.hs = make([][]float32, d.L+1)
	}
	for i := range e.hs {
		buf.Grow(&e.hs[i], n*d.H)
	}

	// Embedding lookup: h = embed_tokens[ids].
	h := e.hs[0]
	for t, id := range e.ids {
		copy(h[t*d.H:(t+1)*d.H], e.w.embed[id*d.H:(id+1)*d.H])
	}

	e.auxCount = resetF64(e.auxCount, d.E)
	e.auxPsum = resetF64(e.auxPsum, d.E)
	e.auxRows = 0
	for i := 0; i < d.L; i++ {
		e.layerForward(i, e.actsFor(i), true)
	}

	// Final norm, LM head and cross-entropy (with its backward, fused per
	// chunk of rows so the [tokens, V] logits need not be stored).
	e.finalXn = buf.Grow(&e.finalXn, n*d.H)
	e.finalRstd = buf.Grow(&e.finalRstd, n)
	rmsNormForward(e.s.pool, e.finalXn, e.finalRstd, e.hs[d.L], e.w.finalNorm, n, d.eps)
	var dxn []float32
	if backward {
		dxn = buf.Grow(&e.dxn, n*d.H)
		clear(dxn)
	}
	return e.headForwardBackward(dxn, backward, gscale)
}

// backward finishes the backward pass that forward began: it adds scale
// times the gradient of the loss to Grad. count and rows are the
// load-balancing statistics that the aux loss is over: this batch's, or
// those pooled over the batches of several Backprops that make one pass.
func (e *Backprop) backward(scale float32, count []float64, rows int) {
	d, n := e.d, e.n
	// ∂(scale·coef·aux)/∂P[r][j] = scale·coef·E·count[j]/rows², the same for
	// every row of every MoE layer: only psum carries gradient.
	coef := e.Config.RouterAuxLossCoef
	e.auxGrad = buf.Grow(&e.auxGrad, d.E)
	for j := range e.auxGrad {
		e.auxGrad[j] = 0
		if rows > 0 {
			rowsF := float64(rows)
			e.auxGrad[j] = float32(float64(scale) * coef * float64(d.E) * count[j] / (rowsF * rowsF))
		}
	}

	dxn := e.dxn[:n*d.H]
	dcur := buf.Grow(&e.dcur, n*d.H)
	clear(dcur)
	rmsNormBackward(e.s.pool, &e.part, dcur, e.g.finalNorm, dxn, e.hs[d.L], e.finalRstd, e.w.finalNorm, n)
	for i := d.L - 1; i >= 0; i-- {
		a := e.actsFor(i)
		if e.Recompute {
			e.layerForward(i, a, false)
		}
		e.layerBackward(i, a, dcur)
	}

	// Embedding backward: the padding row gets nothing from the lookup.
	ge := e.g.embed
	e.s.pool.parallel(d.H, 16, func(lo, hi int) {
		for t, id := range e.ids {
			if id == e.pad {
				continue
			}
			dst, src := ge[id*d.H+lo:id*d.H+hi], dcur[t*d.H+lo:t*d.H+hi]
			for j, v := range src {
				dst[j] += v
			}
		}
	})
}

func resetF64(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n)
	}
	b = b[:n]
	clear(b)
	return b
}

// layerActs are the saved activations of one decoder layer.
type layerActs struct {
	rstd1, xn1 []float32 // input norm
	hmid       []float32 // residual stream after the mixer
	rstd2, xn2 []float32 // pre-FFN norm
	attn       attnActs
	mamba      mambaActs
	mlp        mlpActs
	moe        moeActs
}

// layerForward runs decoder layer i from e.hs[i] to e.hs[i+1]:
//
//	hmid = h + Mixer(RMSNorm(h; input_layernorm))
//	out  = hmid + FFN(RMSNorm(hmid; pre_ff_layernorm))
//
// first is false when the layer is recomputed for the backward, so the
// load-balancing statistics are not counted twice.
func (e *Backprop) layerForward(i int, a *layerActs, first bool) {
	d, n, c := e.d, e.n, e.Config
	w := &e.w.layers[i]
	h, out := e.hs[i], e.hs[i+1]
	a.xn1 = buf.Grow(&a.xn1, n*d.H)
	a.rstd1 = buf.Grow(&a.rstd1, n)
	rmsNormForward(e.s.pool, a.xn1, a.rstd1, h, w.inNorm, n, d.eps)
	mix := buf.Grow(&e.mixOut, n*d.H)
	switch c.Mixer(i) {
	case model.Attention:
		e.attnForward(&a.attn, w, a.xn1, mix)
	case model.Mamba:
		e.mambaForward(&a.mamba, w, a.xn1, mix)
	}
	a.hmid = buf.Grow(&a.hmid, n*d.H)
	for j := range a.hmid {
		a.hmid[j] = h[j] + mix[j]
	}
	a.xn2 = buf.Grow(&a.xn2, n*d.H)
	a.rstd2 = buf.Grow(&a.rstd2, n)
	rmsNormForward(e.s.pool, a.xn2, a.rstd2, a.hmid, w.ffNorm, n, d.eps)
	switch c.FFN(i) {
	case model.Dense:
		e.mlpForward(&a.mlp, w.mlp, a.xn2, mix, n)
	case model.MoE:
		e.moeForward(&a.moe, w, a.xn2, mix, first)
	}
	for j := range out {
		out[j] = a.hmid[j] + mix[j]
	}
}

// layerBackward turns dcur, the gradient of layer i's output, into the
// gradient of its input, adding the weight gradients.
func (e *Backprop) layerBackward(i int, a *layerActs, dcur []float32) {
	d, n, c := e.d, e.n, e.Config
	w, g := &e.w.layers[i], &e.g.layers[i]
	dxn := buf.Grow(&e.dxn, n*d.H)
	clear(dxn)
	switch c.FFN(i) {
	case model.Dense:
		e.mlpBackward(&a.mlp, w.mlp, g.mlp, a.xn2, dcur, dxn, n)
	case model.MoE:
		e.moeBackward(&a.moe, w, g, a.xn2, dcur, dxn)
	}
	// dcur becomes the gradient of hmid: the residual plus the norm's path.
	rmsNormBackward(e.s.pool, &e.part, dcur, g.ffNorm, dxn, a.hmid, a.rstd2, w.ffNorm, n)
	clear(dxn)
	switch c.Mixer(i) {
	case model.Attention:
		e.attnBackward(&a.attn, w, g, a.xn1, dcur, dxn)
	case model.Mamba:
		e.mambaBackward(&a.mamba, w, g, a.xn1, dcur, dxn)
	}
	rmsNormBackward(e.s.pool, &e.part, dcur, g.inNorm, dxn, e.hs[i], a.rstd1, w.inNorm, n)
}

// headRows is how many rows of logits are computed at a time.
func (e *Backprop) headRows() int {
	return max(16, min(e.n, (1<<22)/max(e.d.V, 1)))
}

// headForwardBackward computes logits = xn·lm_headᵀ for every position, the
// summed cross-entropy of predicting each row's next token (HF's shift: t
// predicts t+1; a row's last position predicts nothing), and with backward
// the gradient of gscale·Σ CE into dxn and the LM head (or the tied
// embedding). It returns the summed cross-entropy.
func (e *Backprop) headForwardBackward(dxn []float32, backward bool, gscale float32) float64 {
	d, n := e.d, e.n
	V, H := d.V, d.H
	if e.KeepLogits {
		e.Logits = buf.Grow(&e.Logits, n*V)
	}
	buf.Grow(&e.rowLoss, n)
	target := buf.Grow(&e.target, n)
	for s := 0; s < e.nseq(); s++ {
		r0, r1 := e.seqStart[s], e.seqStart[s+1]
		for t := r0; t < r1; t++ {
			target[t] = -1
			if t+1 < r1 && (e.LossMask == nil || e.LossMask[s][t+1-r0]) {
				target[t] = e.ids[t+1]
			}
		}
	}
	chunk := e.headRows()
	var logits []float32
	for t0 := 0; t0 < n; t0 += chunk {
		m := min(chunk, n-t0)
		logits = buf.Grow(&e.bw.logits, m*V)
		xn := e.finalXn[t0*H : (t0+m)*H]
		e.s.linear(logits, xn, m, e.w.lmHead, V, H)
		if e.KeepLogits {
			copy(e.Logits[t0*V:], logits)
		}
		e.s.pool.parallel(m, 4, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row := logits[r*V : (r+1)*V]
				tg := target[t0+r]
				if tg < 0 {
					e.rowLoss[t0+r] = 0
					clear(row)
					continue
				}
				mx := float32(math.Inf(-1))
				for _, v := range row {
					mx = max(mx, v)
				}
				target := row[tg]
				for j := range row {
					row[j] -= mx
				}
				kernels.Exp(row, row)
				var sum float64
				for _, v := range row {
					sum += float64(v)
				}
				e.rowLoss[t0+r] = float64(mx) + math.Log(sum) - float64(target)
				if backward {
					// d CE / d logit = softmax − onehot(target).
					f := gscale / float32(sum)
					for j := range row {
						row[j] *= f
					}
					row[tg] -= gscale
				}
			}
		})
		if backward {
			e.s.linearBackward(dxn[t0*H:(t0+m)*H], e.g.lmHead, nil, logits, xn, e.w.lmHead, m, V, H)
		}
	}
	var ce float64
	for _, v := range e.rowLoss {
		ce += v
	}
	return ce
}

// backScratch holds the gradient buffers of the layer being differentiated
// and other per-pass temporaries; one layer is processed at a time, so all
// layers share them.
type backScratch struct {
	logits                         []float32
	dq, dk, dv, do                 []float32
	dxz, dyg, dxc, ddelta, ddtn    []float32
	ddbc, dbn, dcn, ddtRaw, dbRaw  []float32
	dcRaw, dpre                    []float32
	da, dg, du, dxin, dout, dprobs []float32
}
