package kernels

import "fmt"

// MatMul computes dst = x · Wᵀ for T rows of activations:
//
//	for t < T, r < w.Rows: dst[t*w.Rows+r] = Σ_c x[t*w.Cols+c] · W[r,c]
//
// dst must hold T·w.Rows floats and x T·w.Cols floats; dst and x must not
// overlap. The sum is accumulated in float32, except for int8 weights with
// T = 1: there x is rounded to int16 with one scale (max|x| ↦ 32767, so each
// x[c] moves by at most max|x|/65534) and Σ q·x is exact in int32 over
// blocks of 4096 columns; the row scale multiplies the sum. That rounding of
// x adds at most Scales[r]·Σ_c|q[r,c]|·max|x|/65534 to output r: about 1/130
// of the error the int8 rounding of the weights already makes. With T > 1
// the int8 weights, times their scale, multiply x in float32.
//
// The output rows are split among the worker threads (see SetThreads). With
// T = 1 (decoding) each thread streams its rows of W once. With a few tokens
// (T < 10: a batch of decoding sequences, or the tokens routed to one
// expert) the tokens pass 2 or 3 at a time over chunks of W that stay in
// the L2 cache. From 10 tokens on (prefill) each thread packs 24 rows × 256
// columns of W at a time into a float32 panel and multiplies it with every
// group of 4 rows of x, so W is read once for all T tokens and the inner
// kernel is arithmetic-bound. MatMul allocates nothing; concurrent calls are
// serialised.
func MatMul(dst, x []float32, T int, w *Matrix) {
	R, C := w.Rows, w.Cols
	if T <= 0 || R == 0 {
		return
	}
	_ = dst[T*R-1]
	if C == 0 {
		clear(dst[:T*R])
		return
	}
	_ = x[T*C-1]
	checkStorage(w)
	p := lockPool()
	defer p.mu.Unlock()
	m := &p.matmul
	*m = matMulTask{dst: dst, x: x, T: T, w: w, scratch: p.scratch}
	var work int
	switch {
	case T < fewTokens && T > 1:
		// Chunks of W of 32 to 256 KiB stay in the L2 cache while the
		// tokens pass over them in groups of 2 or 3.
		rowBytes := int(w.Bytes()) / R
		c := (R + 8*p.threads - 1) / (8 * p.threads)
		c = max(c, (32<<10+rowBytes-1)/rowBytes)
		c = min(c, max(4, (256<<10)/rowBytes))
		m.chunk = (c + 3) &^ 3
		work = T * R * C
	case T == 1:
		// About 8 chunks per thread, each a multiple of 4 rows and at
		// least 32 KiB of weights, so that the hardware prefetcher streams.
		rowBytes := int(w.Bytes()) / R
		c := (R + 8*p.threads - 1) / (8 * p.threads)
		c = max(c, (32<<10+rowBytes-1)/rowBytes)
		m.chunk = (c + 3) &^ 3
		work = R * C
		if w.DType == I8 {
			quantizeX(&p.xq, x[:C])
			m.q = &p.xq
		}
	default:
		m.chunk = panelWidth
		work = T * R * C
	}
	m.nchunks = (R + m.chunk - 1) / m.chunk
	p.run(m, m.nchunks, work)
	*m = matMulTask{}
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
	scratch        []*scratch
	q              *xQuant // int8 weights, T = 1: x rounded to int16
}

// xQuant is a vector rounded to int16: x[i] ≈ scale·v[i].
type xQuant struct {
	v     []int16
	scale float32
}

func (m *matMulTask) do(thread int) {
	R := m.w.Rows
	for {
		i := m.next(m.nchunks)
		if i < 0 {
			return
		}
		r0 := i * m.chunk
		r1 := min(r0+m.chunk, R)
		switch {
		case m.T == 1:
			matVecRows(m.dst[r0:r1], m.w, m.x, r0, r1, m.q)
		case m.T < fewTokens:
			matVecTokens(m.dst, m.x, m.T, m.w, r0, r1)
		default:
			gemmPanel(m.scratch[thread], m.dst, m.x, m.T, m.w, r0, r1)
		}
	}
}

// fewTokens is the number of tokens from which MatMul packs W into panels;
// below it, 2 or 3 tokens share each pass over the rows of W (packing costs
// about as much as 6 tokens' arithmetic on each panel).
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
		matVecN(dst[t*R:], R, w, x[t*C:], C, nt, r0, r1)
		t += nt
	}
}

// panelWidth is the number of output rows packed together for the
// matrix-matrix kernel: 3 vectors of 8 float32.
const panelWidth = 24

// kcBlock is the depth of a packed panel: 24×256 float32 (24 KiB) stay in
// the L1 cache while every 4 rows of x pass over them.
var kcBlock = 256

// scratch is one thread's working memory for the matrix-matrix product.
type scratch struct {
	panel []float32 // kcBlock × panelWidth
	tile  []float32 // 4 × panelWidth: a partial tile
	xtail []float32 // 4 × kcBlock: the last rows of x when T%4 != 0
}

func newScratch() *scratch {
	return &scratch{tile: make([]float32, 4*panelWidth)}
}

// gemmPanel computes the outputs r0..r1 (at most panelWidth of them) of all
// T tokens.
func gemmPanel(s *scratch, dst, x []float32, T int, w *Matrix, r0, r1 int) {
	R, C := w.Rows, w.Cols
	nr := r1 - r0
	if len(s.panel) < kcBlock*panelWidth {
		s.panel = make([]float32, kcBlock*panelWidth)
		s.xtail = make([]float32, 4*kcBlock)
	}
	for k0 := 0; k0 < C; k0 += kcBlock {
		kc := min(kcBlock, C-k0)
		packPanel(s.panel, w, r0, nr, k0, kc)
		add := k0 > 0
		t := 0
		if nr == panelWidth {
			for ; t+4 <= T; t += 4 {
				gemmTile(dst[t*R+r0:], R, x[t*C+k0:], C, s.panel, kc, add)
			}
		}
		for ; t < T; t += 4 {
			tn := min(4, T-t)
			xs, ldx := x[t*C+k0:], C
			if tn < 4 {
				xs, ldx = s.xtail, kc
				for i := 0; i < 4; i++ {
					row := xs[i*kc : (i+1)*kc]
					if i < tn {
						copy(row, x[(t+i)*C+k0:])
					} else {
						clear(row)
					}
				}
			}
			gemmTile(s.tile, panelWidth, xs, ldx, s.panel, kc, false)
			for i := 0; i < tn; i++ {
				out := dst[(t+i)*R+r0 : (t+i)*R+r1]
				tile := s.tile[i*panelWidth : i*panelWidth+nr]
				if add {
					for j, v := range tile {
						out[j] += v
					}
				} else {
					copy(out, tile)
				}
			}
		}
	}
}

// packPanel widens rows r0..r0+nr (nr ≤ panelWidth) and columns k0..k0+kc
// of w to float32, transposed: dst[k*panelWidth+j] = W[r0+j, k0+k], with
// zeros for j ≥ nr. Int8 weights are multiplied by their row scale.
func packPanel(dst []float32, w *Matrix, r0, nr, k0, kc int) {
	for g := 0; g < panelWidth; g += 8 {
		done := 0
		if g+8 <= nr {
			done = pack8(dst[g:], w, r0+g, k0, kc)
		}
		for k := done; k < kc; k++ {
			out := dst[k*panelWidth+g : k*panelWidth+g+8]
			for j := range out {
				if r := g + j; r < nr {
					out[j] = weightAt(w, r0+r, k0+k)
				} else {
					out[j] = 0
				}
			}
		}
	}
}

// weightAt returns W[r,c] as float32.
func weightAt(w *Matrix, r, c int) float32 {
	i := r*w.Cols + c
	switch w.DType {
	case BF16:
		return BF16ToF32(w.BF16[i])
	case I8:
		return w.Scales[r] * float32(w.I8[i])
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
