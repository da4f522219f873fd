package kernels

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// MatMul computes dst = x · Wᵀ for T rows of activations:
//
//	for t < T, r < w.Rows: dst[t*w.Rows+r] = Σ_c x[t*w.Cols+c] · W[r,c]
//
// dst must hold T·w.Rows floats and x T·w.Cols floats; dst and x must not
// overlap.
//
// MatMul is batch-invariant: row t of dst depends on row t of x and on W
// only, bit for bit. It is the same whatever T, the position t, the other
// rows of x and the number of threads, so a sequence gets identical
// outputs decoded alone, in a batch with others, or among the tokens that
// a mixture of experts routes to one expert. Every path computes each
// output in one order:
//
//   - float32 and bfloat16 weights: one 8-lane float32 accumulator per
//     output, to which one fused multiply-add per 8 columns adds
//     W[r,c..c+8]·x[c..c+8] for c = 0, 8, 16, … in turn; the lanes are
//     added by one fixed tree, and the products of the last Cols%8
//     columns, summed on their own, are added to that (rowDot gives the
//     order; the pure-Go build, -tags purego, follows it with each
//     product rounded instead of fused);
//   - int8 weights: each row of x is rounded to int16 with its own scale
//     (max|x[t,:]| ↦ 32767, so each x[t,c] moves by at most
//     max|x[t,:]|/65534), Σ_c q[r,c]·x16[t,c] is an exact integer (int32
//     lanes over blocks of 4096 columns stay below 2^31, then float64,
//     exact below 2^53: any Cols below 2^31), and
//     dst = float32(sum·scale_t·Scales[r]) in float64. The rounding of x
//     adds at most Scales[r]·Σ_c|q[r,c]|·max|x[t,:]|/65534 to an output:
//     about 1/130 of the error the int8 rounding of the weights already
//     makes. A row of x holding Inf or NaN, or so small that its scale
//     overflows, is multiplied in float32 instead (rowDotI8Float).
//   - block-quantized weights (Blocks) whose format has a fused kernel
//     (BlockFormat.Dot: ggml's Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K): each
//     row of x is rounded to int16 in blocks of 32 with one scale each
//     (each value moves by at most 1/65534 of its block's largest
//     magnitude), and each output is a fixed sequence over the weight
//     blocks of exact integer lane sums, each scaled and added to 8 float32
//     lanes (blockdot.go gives the order; the assembly and the plain Go
//     give the same bits). A row of x with Inf or NaN is multiplied as
//     below instead. With SetActivationBits(8) the rows are rounded to
//     int8 instead, in blocks of 32 or (K-formats) 256, as llama.cpp does
//     (act8.go gives that order);
//   - F16 weights (DotF16): widened exactly, the float32 order;
//   - other block weights: each chunk of rows is widened to float32 by its
//     BlockFormat and multiplied by the float32 path, so the outputs are
//     bit for bit those of the dequantized float32 matrix (activations
//     stay float32: no rounding of x).
//
// The output rows are split among the worker threads (see SetThreads); the
// columns never are. With T = 1 (decoding) each thread streams its rows of
// W once, 4 at a time: from a matrix of 1 MiB on, a chunk of 4n rows as 4
// sequential streams of n rows (one row of each at a time), below that 4
// neighbouring rows. With a few tokens (T < 10: a batch of decoding
// sequences, or the tokens routed to one expert), and with int8 weights
// for any T, the tokens pass 2 or 3 at a time over chunks of W that stay
// in the L2 cache. From 10 tokens on (prefill) each thread packs 24 rows ×
// 256 columns of W at a time into a float32 panel and multiplies it with
// 3 tokens at a time in tiles of 3 × 4 outputs, keeping the partial 8-lane
// sums between panels. MatMul allocates nothing once its buffers have
// grown; concurrent calls are serialised.
func MatMul(dst, x []float32, T int, w *Matrix) {
	if !needsWork(dst, x, T, w) {
		return
	}
	R, C := w.Rows, w.Cols
	p := lockPool()
	defer p.mu.Unlock()
	m := &p.matmul
	*m = matMulTask{dst: dst, x: x, T: T, w: w, scratch: p.scratch}
	m.prepare(p.threads, &p.xq, &p.xb, &p.xa, p, &p.prep, rounding{})
	p.run(m, m.nchunks, T*R*C)
	*m = matMulTask{}
}

// Product is one matrix of MatMulShared and its output.
type Product struct {
	Dst []float32
	W   *Matrix
}

// MatMulShared computes p.Dst = x · p.Wᵀ for each product p of ps in
// turn, as MatMul(p.Dst, x, T, p.W) does, bit for bit; the activations are
// rounded once for consecutive products whose weights round them alike
// (the query, key and value projections of one input, say). No Dst may
// overlap x.
func MatMulShared(x []float32, T int, ps []Product) {
	p := lockPool()
	defer p.mu.Unlock()
	m := &p.matmul
	var last rounding
	for _, pr := range ps {
		if !needsWork(pr.Dst, x, T, pr.W) {
			continue
		}
		R, C := pr.W.Rows, pr.W.Cols
		*m = matMulTask{dst: pr.Dst, x: x, T: T, w: pr.W, scratch: p.scratch}
		last = m.prepare(p.threads, &p.xq, &p.xb, &p.xa, p, &p.prep, last)
		p.run(m, m.nchunks, T*R*C)
	}
	*m = matMulTask{}
}

// prepare plans m for the given thread count and rounds the activations
// into xq (int8 weights), xb (weights with a fused block kernel) or xa (the
// same with 8-bit activations, SetActivationBits) when the weights'
// kernels read them so. r runs the rounding: rows of tokens, then the
// token groups of the several-token kernels, each spread over r's threads
// (every row and group is rounded alone, so the threads change no bit).
// With last equal to what m needs (a product before m on the same x
// rounded it so), the rounding is not repeated. It returns what m needs.
func (m *matMulTask) prepare(threads int, xq *xQuant, xb *xQ8, xa *xAct8, r runner, pt *prepTask, last rounding) rounding {
	m.plan(threads)
	T, w := m.T, m.w
	C := w.Cols
	k := rounding{cols: C}
	switch {
	case w.DType == I8:
		k = rounding{kind: roundI8, cols: C}
		m.q = xq
	case m.fused && w.Format.Dot == DotF16:
		return rounding{}
	case m.fused && actBits.Load() == 8:
		k.kind, k.elems = roundAct8, w.Format.Elems
		if T > 1 && useAVX2 {
			k.nt = act8MaxTokens(w.Format.Dot, w.Rows)
		}
		m.xa = xa
	case m.fused:
		k.kind, k.elems = roundQ8, w.Format.Elems
		if T > 1 && useAVX2 {
			// Up to 8 tokens per pass for the AVX-512 row-pair kernels of
			// the blocks of 32 (an even number of rows, as above).
			k.nt = groupTokens
			if useAVX512 && w.Rows%2 == 0 && w.Format.Elems == q8Block {
				k.nt = groupTokens512
			}
		}
		m.xb = xb
	default:
		return rounding{}
	}
	if k == last {
		return k
	}
	switch k.kind {
	case roundI8:
		xq.resize(T, C)
	case roundAct8:
		xa.resize(T, C, k.elems)
	case roundQ8:
		xb.resize(T, C)
	}
	// Chunks of tokens of at least prepWork values each.
	chunk := max(1, prepWork/C)
	*pt = prepTask{m: m, chunk: chunk, n: (T + chunk - 1) / chunk}
	r.run(pt, pt.n, prepCost*T*C)
	if k.nt == 0 {
		*pt = prepTask{}
		return k
	}
	n := 0
	if m.xa != nil {
		xa.layout(T, C, k.nt)
		n = len(xa.groups)
	} else {
		xb.layout(T, C, k.elems, k.nt)
		n = len(xb.groups)
	}
	if n > 0 { // no group when every row holds an Inf or a NaN
		*pt = prepTask{m: m, groups: true, n: n}
		r.run(pt, n, prepCost*T*C)
	}
	*pt = prepTask{}
	return k
}

// rounding is how a product's activations are rounded (prepare): the
// zero value when they are not.
type rounding struct {
	kind  int // roundI8, roundAct8 or roundQ8
	cols  int // of x
	elems int // the weights' block (roundAct8, roundQ8)
	nt    int // tokens per group, 0 without groups
}

const (
	roundNone = iota
	roundI8
	roundAct8
	roundQ8
)

// prepWork is the fewest activations a thread rounds at once in prepare;
// prepCost weighs an activation's rounding against a multiply-add for
// pool.run's choice of threads (a few operations each: the scale, the
// rounding, the sums).
const (
	prepWork = 4096
	prepCost = 4
)

// runner runs a task over chunks on some threads: the pool's (MatMul) or
// the calling goroutine alone (Serial).
type runner interface {
	run(t task, nchunks, work int)
}

// serialRunner runs every chunk on the calling goroutine.
type serialRunner struct{}

func (serialRunner) run(t task, _, _ int) { t.do(0) }

// prepTask is the rounding of prepare: chunks of rows of x, or (groups)
// the token groups.
type prepTask struct {
	taskCounter
	m      *matMulTask
	groups bool
	chunk  int // tokens per chunk of rows
	n      int // chunks or groups
}

func (p *prepTask) do(int) {
	m := p.m
	C := m.w.Cols
	for {
		i := p.next(p.n)
		if i < 0 {
			return
		}
		switch {
		case p.groups && m.xa != nil:
			m.xa.fill(i, C)
		case p.groups:
			m.xb.fill(i, C)
		default:
			t0 := i * p.chunk
			t1 := min(t0+p.chunk, m.T)
			switch {
			case m.q != nil:
				m.q.rows(m.x, C, t0, t1)
			case m.xa != nil:
				m.xa.rows(m.x, C, t0, t1)
			default:
				m.xb.rows(m.x, C, t0, t1)
			}
		}
	}
}

// plan chooses the chunking of m's output rows for the given thread count.
func (m *matMulTask) plan(threads int) {
	R := m.w.Rows
	m.fused = fused(m.w)
	if m.w.DType == Blocks && !m.fused {
		m.planBlocks()
		return
	}
	rowBytes := int(m.w.Bytes()) / R
	perThread := (R + 8*threads - 1) / (8 * threads)
	m.align = m.rowAlign()
	up := func(c int) int { return (c + m.align - 1) / m.align * m.align }
	switch {
	case m.T == 1:
		// Guided chunks (see takeRows): each a multiple of m.align rows and at
		// least 32 KiB of weights, so that the prefetches stream.
		c := (32<<10 + rowBytes - 1) / rowBytes
		m.chunk = up(c)
		m.guided = threads
		m.nchunks = (R + m.chunk - 1) / m.chunk // bounds the threads woken
		return
	case m.fused && m.w.Format.Dot == DotF16 && m.T >= fewTokens && useAVX2:
		// Float16 prefill: the float panels, widened by packF16AVX2.
		m.chunk = m.panels(threads) * panelRows
		m.packed = true
	case m.T < fewTokens || m.w.DType == I8 || m.fused:
		// Chunks of W of 32 to 256 KiB stay in the L2 cache while the
		// tokens pass over them in groups of 2 or 3.
		c := max(perThread, (32<<10+rowBytes-1)/rowBytes)
		c = min(c, max(4, (256<<10)/rowBytes))
		m.chunk = up(c)
	default:
		m.chunk = m.panels(threads) * panelRows
		m.packed = true
	}
	m.nchunks = (R + m.chunk - 1) / m.chunk
}

// panels is the number of packed panels per chunk: panelGroup, or fewer
// for a matrix of fewer than chunksPerThread chunks a thread (0: no such
// limit), so that the threads still finish within a short chunk of each
// other.
func (m *matMulTask) panels(threads int) int {
	if chunksPerThread == 0 {
		return panelGroup
	}
	return min(panelGroup, max(1, m.w.Rows/(chunksPerThread*threads*panelRows)))
}

// chunksPerThread: see panels.
var chunksPerThread = 8

// rowAlign is the multiple of rows of the chunks: 16 for Q4_0 with 8-bit
// activations, whose kernels take 16 rows at a time (one per lane; fewer
// at the end of a chunk run slower), else 4.
func (m *matMulTask) rowAlign() int {
	if m.fused && m.w.Format.Dot == DotQ4_0 && actBits.Load() == 8 {
		return 16
	}
	return 4
}

// A Serial multiplies on the calling goroutine alone, with buffers of its
// own, so that several goroutines may multiply at once: data-parallel
// training gives each worker one. Its results are bit for bit those of
// MatMul (which is batch-invariant and thread-count invariant). A Serial
// is not safe for concurrent use; the zero value is ready.
type Serial struct {
	s    scratch
	xq   xQuant
	xb   xQ8
	xa   xAct8
	m    matMulTask
	prep prepTask
	sp   [1]*scratch
}

// MatMul is the package's MatMul run on the calling goroutine.
func (s *Serial) MatMul(dst, x []float32, T int, w *Matrix) {
	if !needsWork(dst, x, T, w) {
		return
	}
	s.sp[0] = &s.s
	m := &s.m
	*m = matMulTask{dst: dst, x: x, T: T, w: w, scratch: s.sp[:]}
	m.prepare(1, &s.xq, &s.xb, &s.xa, serialRunner{}, &s.prep, rounding{})
	m.do(0)
	*m = matMulTask{}
}

// needsWork checks the operands of a product (panicking, as an index out
// of range would, when dst, x or the weights are too short), does the
// products without arithmetic (no tokens, rows or columns) and reports
// whether any is left.
func needsWork(dst, x []float32, T int, w *Matrix) bool {
	R, C := w.Rows, w.Cols
	if T <= 0 || R == 0 {
		return false
	}
	_ = dst[T*R-1]
	if C == 0 {
		clear(dst[:T*R])
		return false
	}
	_ = x[T*C-1]
	checkStorage(w)
	return true
}

// checkStorage panics if the weights of w are fewer than Rows×Cols.
func checkStorage(w *Matrix) {
	n := w.Rows * w.Cols
	var got int
	switch w.DType {
	case F32:
		got = len(w.F32)
	case BF16:
		got = len(w.BF16)
	case I8:
		got = len(w.I8)
		if len(w.Scales) < w.Rows {
			got = -1
		}
	case Blocks:
		if w.validateBlocks() != nil {
			got = -1
		} else {
			got = n
		}
	}
	if got < n {
		panic(fmt.Sprintf("kernels: %v matrix %dx%d has short storage", w.DType, w.Rows, w.Cols))
	}
}

// matMulTask is MatMul split by chunks of output rows.
type matMulTask struct {
	taskCounter
	dst, x         []float32
	T              int
	w              *Matrix
	chunk, nchunks int
	packed         bool // T ≥ fewTokens, float or F16 weights: gemmPanel
	// guided > 0 (the thread count) hands out rows by takeRows instead of
	// fixed chunks; rows counts the rows handed out.
	guided  int
	rows    atomic.Int64
	align   int // chunks of rows are multiples of align (4, or 16: rowAlign)
	scratch []*scratch
	q       *xQuant // int8 weights: the rows of x rounded to int16
	fused   bool    // block weights with a fused kernel (BlockFormat.Dot)
	xb      *xQ8    // fused: the rows of x rounded to 16-bit blocks
	xa      *xAct8  // fused, 8-bit activations: the rows of x rounded to int8 blocks
}

func (m *matMulTask) do(thread int) {
	R := m.w.Rows
	s := m.scratch[thread]
	if m.guided > 0 {
		for {
			r0, r1 := m.takeRows()
			if r0 >= r1 {
				return
			}
			switch {
			case m.xa != nil:
				fusedRows8(s, m.dst, m.x, m.T, m.w, m.xa, r0, r1)
			case m.xb != nil:
				fusedRows(s, m.dst, m.x, m.T, m.w, m.xb, r0, r1)
			case m.fused:
				f16Rows(s, m.dst, m.x, m.T, m.w, r0, r1)
			case m.q != nil:
				matMulI8(s, m.dst, m.x, m.T, m.w, m.q, r0, r1)
			default:
				matVecRows(m.dst[r0:r1], m.w, m.x, r0, r1)
			}
		}
	}
	for {
		i := m.next(m.nchunks)
		if i < 0 {
			return
		}
		r0 := i * m.chunk
		r1 := min(r0+m.chunk, R)
		switch {
		case m.xa != nil:
			fusedRows8(s, m.dst, m.x, m.T, m.w, m.xa, r0, r1)
		case m.xb != nil:
			fusedRows(s, m.dst, m.x, m.T, m.w, m.xb, r0, r1)
		case m.fused && !m.packed:
			f16Rows(s, m.dst, m.x, m.T, m.w, r0, r1)
		case m.w.DType == Blocks && !m.packed:
			blockRows(s, m.dst, m.x, m.T, m.w, r0, r1)
		case m.q != nil:
			matMulI8(s, m.dst, m.x, m.T, m.w, m.q, r0, r1)
		case m.T == 1:
			matVecRows(m.dst[r0:r1], m.w, m.x, r0, r1)
		case m.packed:
			gemmPanel(s, m.dst, m.x, m.T, m.w, r0, r1)
		default:
			matVecTokens(m.dst, m.x, m.T, m.w, r0, r1)
		}
	}
}

// takeRows hands out the next rows of a guided task: half of the remaining
// rows' share of each thread, rounded up to a multiple of m.align rows and at
// least m.chunk rows. (A quarter made more chunks, each starting its
// streams cold: about 2% slower on jamba-small's decode.) The chunks shrink as the work runs out, so
// that the threads finish within a small chunk of each other, while the
// first chunks are long enough to stream. Which thread computes a row
// does not change its bits.
func (m *matMulTask) takeRows() (r0, r1 int) {
	R := int64(m.w.Rows)
	for {
		lo := m.rows.Load()
		if lo >= R {
			return 0, 0
		}
		a := int64(m.align)
		c := max(int64(m.chunk), ((R-lo)/int64(2*m.guided)+a-1)/a*a)
		hi := min(R, lo+c)
		if m.rows.CompareAndSwap(lo, hi) {
			return int(lo), int(hi)
		}
	}
}

// streamsMinBytes is the size from which the assembly reads a matrix for
// one token as 4 long streams of rows (matVecF32StreamsAVX2 and the bf16
// one). Below it a matrix is likely to sit in the caches (the small
// models' layers), where that gains nothing and its scattered stores cost
// a little. Tests lower it to exercise the streams on small matrices.
var streamsMinBytes int64 = 1 << 20

// fewTokens is the number of tokens from which MatMul packs float weights
// into panels; below it, 2 or 3 tokens share each pass over the rows of W
// (packing costs about as much as 6 tokens' arithmetic on each panel).
var fewTokens = 10

// matVecTokens computes the outputs r0..r1 of T tokens in passes of 2 or 3
// tokens over those rows of W.
func matVecTokens(dst, x []float32, T int, w *Matrix, r0, r1 int) {
	R, C := w.Rows, w.Cols
	for t := 0; t < T; {
		nt := min(3, T-t)
		if T-t == 4 {
			nt = 2
		}
		if nt == 1 {
			matVecRows(dst[t*R+r0:t*R+r1], w, x[t*C:(t+1)*C], r0, r1)
		} else {
			matVecN(dst[t*R:], R, w, x[t*C:], C, nt, r0, r1)
		}
		t += nt
	}
}

// panelRows is the number of output rows packed together for the
// matrix-matrix kernel: 6 groups of 4.
const panelRows = 24

// kcBlock is the depth of a packed panel, a multiple of 8: 24 rows × 256
// float32 (24 KiB) stay in the L1 cache while the tokens pass over them.
var kcBlock = 256

// tokenBlock is the number of tokens whose partial sums a thread keeps
// between blocks of columns (a multiple of 3): 255 tokens × 24 rows × 8
// lanes of float32, 191 KiB a panel (panelGroup of them), stay in the L2
// cache, and a 256-token prompt packs each panel once.
const tokenBlock = 255

// Modes of the gemm kernels.
const (
	gemmLoad  = 1 // start from the partial sums in acc, not from zero
	gemmFinal = 2 // reduce the sums into the outputs, do not store them
)

// scratch is one thread's working memory for MatMul.
type scratch struct {
	panel []float32 // packed weights: panelRows × kcBlock
	acc   []float32 // partial sums: tokenBlock × panelRows × 8
	out   []float32 // the outputs of 3 tokens for a panel of fewer than panelRows rows
	tot   []float64 // int8 weights: exact sums of 3 tokens × a chunk of rows
	deq   []float32 // block weights: a chunk of rows widened to float32
	deqM  Matrix    // the float32 matrix over deq
	// blockOut holds the outputs of T tokens for a chunk of block rows.
	blockOut []float32
	// scores are Attention's attention weights of one query and head.
	scores []float32
	// Tiled Attention: the scores (then weights) of a tile's rows, its
	// queries, a block of packed keys and the gemm tiles' partial sums.
	attnS, attnX, attnO, attnP, attnAcc []float32
}

func newScratch() *scratch { return &scratch{} }

// gemmPanel computes the outputs r0..r1 (panels of panelRows of them, as
// many as s.acc grows to hold) of all T tokens with float weights, in the
// dot order: for each block of tokenBlock tokens and each kcBlock columns,
// it packs each panel of W in turn and runs the tiles of gemmTokens()
// tokens × 4 rows over it.
func gemmPanel(s *scratch, dst, x []float32, T int, w *Matrix, r0, r1 int) {
	R, C := w.Rows, w.Cols
	n := C &^ 7
	if !useAVX2 || n == 0 {
		for t := range T {
			matVecRows(dst[t*R+r0:t*R+r1], w, x[t*C:(t+1)*C], r0, r1)
		}
		return
	}
	np := (r1 - r0 + panelRows - 1) / panelRows
	if len(s.panel) < kcBlock*panelRows {
		s.panel = make([]float32, kcBlock*panelRows)
	}
	const accPanel = tokenBlock * panelRows * 8
	if len(s.acc) < np*accPanel {
		s.acc = make([]float32, np*accPanel)
		s.out = make([]float32, 6*panelRows)
	}
	tile := gemmTokens()
	for tb := 0; tb < T; tb += tokenBlock {
		te := min(tb+tokenBlock, T)
		for k0 := 0; k0 < n; k0 += kcBlock {
			kc := min(kcBlock, n-k0)
			mode := 0
			if k0 > 0 {
				mode |= gemmLoad
			}
			if k0+kc == n {
				mode |= gemmFinal
			}
			for g := range np {
				p0 := r0 + g*panelRows
				nr := min(panelRows, r1-p0)
				quads := (nr + 3) / 4
				acc := s.acc[g*accPanel:]
				packPanel(s.panel, w, p0, nr, k0, kc)
				for t := tb; t < te; t += tile {
					nt := min(tile, te-t)
					y, ldy := dst[t*R+p0:], R
					if nr%4 != 0 {
						y, ldy = s.out, 4*quads
					}
					gemmTile(y, ldy, acc[(t-tb)*quads*32:], x[t*C+k0:], C, s.panel, nt, quads, kc, mode)
					if mode&gemmFinal != 0 && nr%4 != 0 {
						for i := range nt {
							copy(dst[(t+i)*R+p0:(t+i)*R+p0+nr], s.out[i*ldy:])
						}
					}
				}
			}
		}
	}
	if n < C {
		for t := range T {
			finishRows(dst[t*R+r0:t*R+r1], w, x[t*C:(t+1)*C], r0, r1, n)
		}
	}
}

// panelGroup is the number of panels a chunk of the packed path holds
// (see panelsFor): they take turns on each block of kcBlock columns of
// the tokens, which stays in the L2 cache between them, so the tokens are
// read from memory or the L3 cache once per group instead of once per
// panel (+7–10% on jamba-3b's products on a Sapphire Rapids core, whose
// L2 holds 2 MiB). The grouping changes no bit: each output's sum runs
// over the columns in the same order.
var panelGroup = panelsFor(l2CacheBytes())

// panelsFor is the number of panels whose partial sums (tokenBlock ×
// panelRows × 8 float32 each, 191 KiB) fit, with a block of the tokens
// (tokenBlock × kcBlock float32, 255 KiB), in three quarters of an L2
// cache of l2 bytes: 4 in 2 MiB, 2 in 1 MiB, 1 in 512 KiB or less.
func panelsFor(l2 int) int {
	acc, xb := tokenBlock*panelRows*8*4, tokenBlock*kcBlock*4
	return min(4, max(1, (l2*3/4-xb)/acc))
}

// l2CacheBytes is the size of the first CPU's level-2 cache as Linux
// reports it (/sys/devices/system/cpu/cpu0/cache/indexN, the entry whose
// level is 2; its size reads e.g. "2048K"), or 1 MiB where it cannot be
// read.
func l2CacheBytes() int {
	const fallback = 1 << 20
	for i := range 8 {
		dir := "/sys/devices/system/cpu/cpu0/cache/index" + strconv.Itoa(i) + "/"
		level, err := os.ReadFile(dir + "level")
		if err != nil {
			break
		}
		if strings.TrimSpace(string(level)) != "2" {
			continue
		}
		b, err := os.ReadFile(dir + "size")
		if err != nil {
			break
		}
		return parseCacheSize(strings.TrimSpace(string(b)), fallback)
	}
	return fallback
}

// parseCacheSize reads a size such as "2048K" or "1M" (sysfs's format), or
// returns fallback.
func parseCacheSize(s string, fallback int) int {
	unit := 1
	switch {
	case strings.HasSuffix(s, "K"):
		unit, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		unit, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 1<<20 {
		return fallback
	}
	return n * unit
}

// gemmTokens is the most tokens of a gemm tile: 6 with AVX-512 (its 32
// registers hold 24 accumulators), else 3. The tile's size changes no bit.
func gemmTokens() int {
	if useAVX512 {
		return 6
	}
	return 3
}

// packPanel packs rows r0..r0+nr and columns k0..k0+kc (kc a multiple of
// 8) of w for the gemm kernels: groups of 4 rows widened to float32 and
// interleaved by 8 columns, dst[q*4*kc+4*k+8*j+l] = W[r0+4q+j, k0+k+l]
// for k a multiple of 8, with zeros for rows past nr. Packing changes no
// value.
func packPanel(dst []float32, w *Matrix, r0, nr, k0, kc int) {
	for q := 0; 4*q < nr; q++ {
		p := dst[q*4*kc : (q+1)*4*kc]
		if 4*q+4 <= nr {
			pack4(p, w, r0+4*q, k0, kc)
			continue
		}
		for k := 0; k < kc; k += 8 {
			for j := range 4 {
				out := p[4*k+8*j : 4*k+8*j+8]
				if r := 4*q + j; r < nr {
					for l := range out {
						out[l] = weightAt(w, r0+r, k0+k+l)
					}
				} else {
					clear(out)
				}
			}
		}
	}
}

// xQuant holds the rows of x rounded to int16 for int8 weights, each row
// with its own scale: x[t*C+c] ≈ scale[t]·v[t*C+c]. A row with ok[t]
// false (Inf or NaN in it, or a scale that overflows) is multiplied in
// float32 instead.
type xQuant struct {
	v     []int16
	scale []float32
	ok    []bool
}

// resize makes room for T rows of C columns.
func (q *xQuant) resize(T, C int) {
	if cap(q.v) < T*C {
		q.v = make([]int16, T*C)
	}
	if cap(q.scale) < T {
		q.scale = make([]float32, T)
		q.ok = make([]bool, T)
	}
	q.v, q.scale, q.ok = q.v[:T*C], q.scale[:T], q.ok[:T]
}

// rows rounds rows t0..t1 of x (rows of C columns; resize first). Rows
// are independent: several threads may round disjoint ranges at once.
func (q *xQuant) rows(x []float32, C, t0, t1 int) {
	for t := t0; t < t1; t++ {
		q.scale[t], q.ok[t] = quantizeRow(q.v[t*C:(t+1)*C], x[t*C:(t+1)*C])
	}
}

// quantizeRow rounds x to int16 with the scale max|x|/32767, which it
// returns: q[c] = round(x[c]·(32767/max|x|)), ties to even. It returns
// ok = false, leaving q unset, if x holds Inf or NaN or if max|x| is so
// small that 32767/max|x| overflows.
func quantizeRow(q []int16, x []float32) (scale float32, ok bool) {
	m := absMax(x)
	if !(m <= math.MaxFloat32) {
		return 0, false
	}
	if m == 0 {
		clear(q)
		return 0, true
	}
	inv := 32767 / m
	if inv > math.MaxFloat32 {
		return 0, false
	}
	quantI16(q, x, inv)
	return m / 32767, true
}

// matMulI8 computes the outputs r0..r1 of all T tokens with int8 weights,
// 3 tokens per pass over those rows: the exact sums of dotI8, the sums of
// the last columns that it leaves, and the scales.
func matMulI8(s *scratch, dst, x []float32, T int, w *Matrix, q *xQuant, r0, r1 int) {
	R, C := w.Rows, w.Cols
	rows := r1 - r0
	if len(s.tot) < 3*rows {
		s.tot = make([]float64, 3*rows)
	}
	for t0 := 0; t0 < T; t0 += 3 {
		nt := min(3, T-t0)
		n := dotI8(s.tot, rows, w, q.v[t0*C:], nt, r0, r1)
		for t := t0; t < t0+nt; t++ {
			out := dst[t*R+r0 : t*R+r1]
			if !q.ok[t] {
				xt := x[t*C : (t+1)*C]
				for r := r0; r < r1; r++ {
					out[r-r0] = rowDotI8Float(w, r, xt)
				}
				continue
			}
			tot := s.tot[(t-t0)*rows : (t-t0+1)*rows]
			if n < C {
				qt := q.v[t*C+n : (t+1)*C]
				for r := r0; r < r1; r++ {
					tot[r-r0] += float64(dotI8Exact(w.I8[r*C+n:(r+1)*C], qt))
				}
			}
			xs := float64(q.scale[t])
			sc := w.Scales[r0:r1]
			out, tot = out[:len(sc)], tot[:len(sc)]
			for i, v := range tot {
				out[i] = float32(v * xs * float64(sc[i]))
			}
		}
	}
}

// weightAt returns W[r,c] of float weights as float32.
func weightAt(w *Matrix, r, c int) float32 {
	i := r*w.Cols + c
	if w.DType == BF16 {
		return BF16ToF32(w.BF16[i])
	}
	if w.DType == Blocks { // F16 (the packed path's only blocks)
		return F16ToF32(uint16(w.Q[2*i]) | uint16(w.Q[2*i+1])<<8)
	}
	return w.F32[i]
}

// MatMulGeneric is the plain-Go reference of MatMul.
func MatMulGeneric(dst, x []float32, T int, w *Matrix) {
	R, C := w.Rows, w.Cols
	_ = dst[T*R-1]
	_ = x[T*C-1]
	row := make([]float32, C)
	for r := 0; r < R; r++ {
		w.Row(row, r)
		for t := 0; t < T; t++ {
			xt := x[t*C : (t+1)*C]
			var s float32
			for c, v := range row {
				s += xt[c] * v
			}
			dst[t*R+r] = s
		}
	}
}
