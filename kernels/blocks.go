package kernels

import "fmt"

// BlockFormat describes block-quantized weights, such as the Q4_K or Q8_0
// blocks of a GGUF file: each run of Elems weights of a row is stored as one
// block of Bytes bytes, and Dequantize widens whole blocks to float32. The
// package knows no format itself; the loader supplies them.
type BlockFormat struct {
	Name  string // for messages and reports ("Q4_K")
	Elems int    // weights per block
	Bytes int    // bytes per block
	// Dequantize writes the len(dst)/Elems blocks of src as float32 to dst
	// (len(dst) is a multiple of Elems and src holds exactly those blocks).
	// It must be deterministic: the same bytes give the same floats.
	Dequantize func(dst []float32, src []byte)
	// Dot, when set (and Elems and Bytes are its block's), multiplies
	// the blocks directly with activations rounded to 16-bit blocks (see
	// blockdot.go), or to 8-bit ones as llama.cpp does after
	// SetActivationBits(8) (act8.go); NoDot widens rows to float32.
	Dot BlockDot
}

// BitsPerWeight is the storage cost of one weight.
func (f *BlockFormat) BitsPerWeight() float64 { return float64(8*f.Bytes) / float64(f.Elems) }

// rowBytes is the size of one row of cols weights.
func (f *BlockFormat) rowBytes(cols int) int { return cols / f.Elems * f.Bytes }

// blockChunkFloats is how many dequantized weights MatMul keeps per thread
// at a time (64 KiB: a chunk of rows stays in the L2 cache while every token
// passes over it).
const blockChunkFloats = 16 << 10

// blockRows computes the outputs r0..r1 of all T tokens with block-quantized
// weights: it widens those rows to float32 once, exactly as Row does, and
// multiplies them with the float32 kernels (one token, a few tokens, or the
// packed panel from fewTokens on). Since every float32 path sums each
// output in the same order, the result is bit for bit
// MatMul's on a float32 matrix holding the dequantized weights (on the same
// code path: assembly or pure Go), whatever T, the chunking and the thread.
func blockRows(s *scratch, dst, x []float32, T int, w *Matrix, r0, r1 int) {
	R, C := w.Rows, w.Cols
	nr := r1 - r0
	if len(s.deq) < nr*C {
		s.deq = make([]float32, nr*C)
	}
	rb := w.Format.rowBytes(C)
	deq := s.deq[:nr*C]
	w.Format.Dequantize(deq, w.Q[r0*rb:r1*rb])
	s.deqM = Matrix{Rows: nr, Cols: C, DType: F32, F32: deq}
	defer func() { s.deqM = Matrix{} }()
	if T == 1 {
		matVecRows(dst[r0:r1], &s.deqM, x[:C], 0, nr)
		return
	}
	// Several tokens: the float32 kernels for T tokens over these rows,
	// into a buffer of nr outputs per token, then into place.
	if len(s.blockOut) < T*nr {
		s.blockOut = make([]float32, T*nr)
	}
	out := s.blockOut[:T*nr]
	if T >= fewTokens && nr <= panelRows {
		gemmPanel(s, out, x, T, &s.deqM, 0, nr)
	} else {
		matVecTokens(out, x, T, &s.deqM, 0, nr)
	}
	for t := range T {
		copy(dst[t*R+r0:t*R+r1], out[t*nr:(t+1)*nr])
	}
}

// planBlocks chooses fixed chunks of rows: for a few tokens, rows whose
// dequantized weights fit blockChunkFloats (at least 4 rows); from
// fewTokens on, one panel of the packed matrix-matrix kernel.
func (m *matMulTask) planBlocks() {
	R, C := m.w.Rows, m.w.Cols
	c := max(4, (blockChunkFloats/C)&^3)
	if m.T >= fewTokens {
		c = panelRows // one packed panel per chunk
	}
	m.chunk = min(c, R)
	m.nchunks = (R + m.chunk - 1) / m.chunk
}

// validateBlocks checks a block-quantized matrix's geometry and storage.
func (m *Matrix) validateBlocks() error {
	f := m.Format
	if f == nil || f.Elems <= 0 || f.Bytes <= 0 || f.Dequantize == nil {
		return fmt.Errorf("kernels: block matrix %dx%d has no usable block format", m.Rows, m.Cols)
	}
	if m.Cols%f.Elems != 0 {
		return fmt.Errorf("kernels: %s matrix %dx%d: %d columns are not a multiple of the block size %d", f.Name, m.Rows, m.Cols, m.Cols, f.Elems)
	}
	if want := m.Rows * f.rowBytes(m.Cols); len(m.Q) != want {
		return fmt.Errorf("kernels: %s matrix %dx%d has %d bytes, want %d", f.Name, m.Rows, m.Cols, len(m.Q), want)
	}
	return nil
}
