package train

import (
	"github.com/jamba-go/jamba/internal/buf"
	"github.com/jamba-go/jamba/kernels"
)

// split is how parallelFor cuts n items (kernels.ParallelChunks).
func split(n, minChunk int) (chunks, step int) { return kernels.ParallelChunks(n, minChunk) }

// parallelFor runs fn over the chunks of split(n, minChunk) on the
// kernels' threads (kernels.ParallelFor): per-chunk partial sums added in
// chunk order are deterministic.
func parallelFor(n, minChunk int, fn func(chunk, lo, hi int)) { kernels.ParallelFor(n, minChunk, fn) }

// parallel is parallelFor without the chunk index.
func parallel(n, minChunk int, fn func(lo, hi int)) {
	parallelFor(n, minChunk, func(_, lo, hi int) { fn(lo, hi) })
}

// pool is how a Backprop spreads the loops of a pass: over GOMAXPROCS
// goroutines (parallelFor), or, when serial, on the calling goroutine alone
// as one chunk.
type pool struct{ serial bool }

// split is split for this pool.
func (p pool) split(n, minChunk int) (chunks, step int) {
	if !p.serial {
		return split(n, minChunk)
	}
	if n <= 0 {
		return 0, 0
	}
	return 1, n
}

// parallelFor is parallelFor for this pool.
func (p pool) parallelFor(n, minChunk int, fn func(chunk, lo, hi int)) {
	if !p.serial {
		parallelFor(n, minChunk, fn)
		return
	}
	if n > 0 {
		fn(0, 0, n)
	}
}

// parallel is parallel for this pool.
func (p pool) parallel(n, minChunk int, fn func(lo, hi int)) {
	if !p.serial {
		parallel(n, minChunk, fn)
		return
	}
	if n > 0 {
		fn(0, n)
	}
}

// rowChunk is the least number of rows of width floats that a goroutine
// takes in an element-wise loop: about 4096 floats.
func rowChunk(width int) int { return max(1, (1<<12)/max(width, 1)) }

// partials is a set of per-chunk accumulators of one size, summed in chunk
// order so that the result does not depend on goroutine timing.
type partials struct {
	buf  []float32
	size int
}

// reset prepares chunks zeroed accumulators of size floats.
func (p *partials) reset(chunks, size int) {
	p.size = size
	clear(buf.Grow(&p.buf, chunks*size))
}

// get returns chunk c's accumulator.
func (p *partials) get(c int) []float32 { return p.buf[c*p.size : (c+1)*p.size] }

// sumInto adds every accumulator, in chunk order, to dst.
func (p *partials) sumInto(pl pool, dst []float32) {
	chunks := len(p.buf) / max(p.size, 1)
	pl.parallel(p.size, 1<<12, func(lo, hi int) {
		for c := 0; c < chunks; c++ {
			src := p.buf[c*p.size:]
			for i := lo; i < hi; i++ {
				dst[i] += src[i]
			}
		}
	})
}

// matrix wraps a row-major float32 weight [rows, cols] for kernels.MatMul,
// in s (valid until the next call).
func (s *scratch) matrix(w []float32, rows, cols int) *kernels.Matrix {
	s.mat = kernels.Matrix{Rows: rows, Cols: cols, DType: kernels.F32, F32: w[:rows*cols]}
	return &s.mat
}

// linear computes y = x·Wᵀ for n rows: x [n, in], W [out, in], y [n, out].
func (s *scratch) linear(y, x []float32, n int, w []float32, out, in int) {
	if n == 0 {
		return
	}
	s.gemm(y, x, n, w, out, in)
}

// gemm sets dst [m, r] = a [m, k] · bᵀ (b is [r, k]) with kernels.MatMul
// (kernels.Serial's when the pool is serial). MatMul shares out the rows of
// its weight operand among its threads, 24 at a time; when b has too few
// rows to keep every thread busy and a has more, gemm computes dstᵀ = b·aᵀ
// instead (a as the weight operand) and transposes it. Either way each
// output is the same dot product summed in the same order (MatMul's order
// over k), so the choice changes no bit of the result.
func (s *scratch) gemm(dst, a []float32, m int, b []float32, r, k int) {
	if m == 0 || r == 0 {
		return
	}
	threads := 1
	if !s.pool.serial {
		threads = kernels.Threads()
	}
	if r >= m || r >= 2*24*threads {
		s.matMul(dst[:m*r], a[:m*k], m, s.matrix(b, r, k))
		return
	}
	tmp := buf.Grow(&s.d, r*m)
	s.matMul(tmp, b[:r*k], r, s.matrix(a, m, k))
	s.pool.transpose(dst[:m*r], tmp, r, m)
}

// matMul is kernels.MatMul, on the calling goroutine when the pool is serial.
func (s *scratch) matMul(dst, x []float32, T int, w *kernels.Matrix) {
	if s.pool.serial {
		s.ser.MatMul(dst, x, T, w)
		return
	}
	kernels.MatMul(dst, x, T, w)
}

// linearBias computes y = x·Wᵀ + b (b may be nil).
func (s *scratch) linearBias(y, x []float32, n int, w, b []float32, out, in int) {
	s.linear(y, x, n, w, out, in)
	if b != nil {
		for t := 0; t < n; t++ {
			row := y[t*out : (t+1)*out]
			for i, v := range b[:out] {
				row[i] += v
			}
		}
	}
}

// scratch holds reusable buffers for the backward products, and how they
// run.
type scratch struct {
	a, b, c, d []float32
	pool       pool
	ser        kernels.Serial // the products of a serial pool
	mat        kernels.Matrix
	// frozen skips the weight and bias gradients of linearBackward (the
	// base weights under a LoRA adapter): only dx is computed.
	frozen bool
}

// transpose writes the transpose of src [rows, cols] to dst [cols, rows].
func (p pool) transpose(dst, src []float32, rows, cols int) {
	nb := (cols + transposeBlock - 1) / transposeBlock
	if p.serial {
		transposeBlocks(dst, src, rows, cols, 0, nb)
		return
	}
	parallel(nb, 4, func(lo, hi int) { transposeBlocks(dst, src, rows, cols, lo, hi) })
}

const transposeBlock = 32

// transposeBlocks is transpose for the blocks lo..hi of transposeBlock
// columns of src.
func transposeBlocks(dst, src []float32, rows, cols, lo, hi int) {
	const blk = transposeBlock
	for c0 := lo * blk; c0 < min(hi*blk, cols); c0 += blk {
		kernels.TransposeCols(dst, src, rows, cols, c0, min(c0+blk, cols))
	}
}

// addInto computes dst[i] += src[i].
func (p pool) addInto(dst, src []float32) {
	src = src[:len(dst)]
	if p.serial {
		addRange(dst, src)
		return
	}
	parallel(len(dst), 1<<14, func(lo, hi int) { addRange(dst[lo:hi], src[lo:hi]) })
}

func addRange(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// linearBackward is the backward of y = x·Wᵀ (+ b) for n rows given dy
// [n, out]: it adds dyᵀ·x to dw [out, in], the column sums of dy to db
// (when db is not nil) and dy·W to dx [n, in] (when dx is not nil).
//
// Both products run through kernels.MatMul on transposed operands
// (dx = dy·(Wᵀ)ᵀ, dW = dyᵀ·(xᵀ)ᵀ), so they get its packed, multi-threaded
// kernel; linearBackwardRef is the plain-loop reference.
func (s *scratch) linearBackward(dx, dw, db, dy, x, w []float32, n, out, in int) {
	if n == 0 {
		return
	}
	if s.frozen {
		s.linearBackwardT(dx, nil, nil, dy, nil, w, n, out, in)
		return
	}
	s.linearBackwardT(dx, dw, db, dy, s.transposeInput(x, n, in), w, n, out, in)
}

// transposeInput returns xᵀ [in, n] for linearBackwardT, in a buffer that
// stays valid until the next transposeInput (so layers whose projections
// share an input transpose it once).
func (s *scratch) transposeInput(x []float32, n, in int) []float32 {
	xt := buf.Grow(&s.b, in*n)
	s.pool.transpose(xt, x[:n*in], n, in)
	return xt
}

// transposeInputIfNeeded is transposeInput, or nil when the weights are
// frozen (their gradients, the only use of xᵀ, are not computed).
func (s *scratch) transposeInputIfNeeded(x []float32, n, in int) []float32 {
	if s.frozen {
		return nil
	}
	return s.transposeInput(x, n, in)
}

// linearBackwardT is linearBackward given xᵀ [in, n] instead of x.
func (s *scratch) linearBackwardT(dx, dw, db, dy, xt, w []float32, n, out, in int) {
	if n == 0 {
		return
	}
	if s.frozen {
		dw, db = nil, nil
	}
	dy = dy[:n*out]
	if db != nil {
		for t := 0; t < n; t++ {
			row := dy[t*out : (t+1)*out]
			for i, v := range row {
				db[i] += v
			}
		}
	}
	if dx != nil {
		wt := buf.Grow(&s.a, in*out)
		s.pool.transpose(wt, w[:out*in], out, in)
		tmp := buf.Grow(&s.c, n*in)
		s.gemm(tmp, dy, n, wt, in, out)
		s.pool.addInto(dx[:n*in], tmp)
	}
	if dw == nil {
		return
	}
	dyt := buf.Grow(&s.a, out*n)
	s.pool.transpose(dyt, dy, n, out)
	tmp := buf.Grow(&s.c, out*in)
	s.gemm(tmp, dyt, out, xt, in, n)
	s.pool.addInto(dw[:out*in], tmp)
}

// linearBackwardRef is the plain-loop reference of linearBackward.
func linearBackwardRef(dx, dw, db, dy, x, w []float32, n, out, in int) {
	for t := 0; t < n; t++ {
		for o := 0; o < out; o++ {
			g := dy[t*out+o]
			if db != nil {
				db[o] += g
			}
			for i := 0; i < in; i++ {
				dw[o*in+i] += g * x[t*in+i]
				if dx != nil {
					dx[t*in+i] += g * w[o*in+i]
				}
			}
		}
	}
}
