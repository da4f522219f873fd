package cuda

import "fmt"

// DType of a device weight matrix.
type DType uint8

const (
	F32 DType = iota
	BF16
)

func (t DType) size() int64 {
	if t == BF16 {
		return 2
	}
	return 4
}

func (t DType) suffix() string {
	if t == BF16 {
		return "bf16"
	}
	return "f32"
}

// Matrix is a row-major weight matrix on the device ([Rows][Cols], PyTorch's
// [out, in]): y = W·x.
type Matrix struct {
	Ptr        uint64
	Rows, Cols int
	DType      DType
}

// Bytes is the matrix's storage size.
func (m *Matrix) Bytes() int64 { return int64(m.Rows) * int64(m.Cols) * m.DType.size() }

// Activation codes of the kernels (act() in jamba.cu).
const (
	actSiLU = iota
	actReLU
	actGELU
	actGELUTanh
)

func actCode(name string) (int, error) {
	switch name {
	case "silu", "swish":
		return actSiLU, nil
	case "relu":
		return actReLU, nil
	case "gelu":
		return actGELU, nil
	case "gelu_new", "gelu_pytorch_tanh", "gelu_fast":
		return actGELUTanh, nil
	}
	return 0, fmt.Errorf("cuda: hidden_act %q has no GPU kernel", name)
}

// gemvNames[dtype][nt] names the matrix-vector kernel for nt rows.
var gemvNames = func() (t [2][gemvMax + 1]string) {
	for _, dt := range []DType{F32, BF16} {
		for nt := 1; nt <= gemvMax; nt *= 2 {
			t[dt][nt] = fmt.Sprintf("gemv%d_%s", nt, dt.suffix())
		}
	}
	return
}()

// moeGemvNames[dtype] names the one-token expert kernels (constants: a
// name built per call would allocate in the decode loop).
var moeGemvNames = [2]string{"gemv_moe_f32", "gemv_moe_bf16"}

// maxSplits bounds the key splits of attention over long caches.
const maxSplits = 256

// gemvWarps is GEMV_WARPS in jamba.cu: the warps of a matrix-vector block,
// each computing one weight row (one row of x) or four (several).
const gemvWarps = 8

// groupedNames[unroll-1][dtype] names the grouped-expert kernels.
var groupedNames = [2][2]string{{"gemv_grouped_f32", "gemv_grouped_bf16"}, {"gemv_grouped_u2_f32", "gemv_grouped_u2_bf16"}}

// groupWarps is GROUP_WARPS in jamba.cu: the warps of a grouped-expert
// block, four weight rows each.
const groupWarps = 4

// moeMax is the most rows an MoE layer routes on the device (grouped
// matrix-vector kernels, no copy to the host); more rows group on the host
// for cuBLAS.
const moeMax = 64

// mmaMax bounds the rows of the tensor-core matrix-vector path.
const mmaMax = 64

// gemvMax is the most rows of x the matrix-vector kernels take at once.
const gemvMax = 8

// scratch is the device scratch a matrix product may need: the bf16
// halves of x and the stacked product of the split path.
type scratch struct {
	hi, y2 Buf
}

func (dev *Device) growBuf(b *Buf, bytes int64) error {
	if b.Bytes >= bytes {
		return nil
	}
	dev.Free(b)
	var err error
	*b, err = dev.Alloc(bytes)
	return err
}

// stackMax is the most rows of x the split product stacks into one cuBLAS
// call (weights read once); more rows take two calls.
const stackMax = 256

// MatMul computes y[n][Rows] = x[n][Cols] · Wᵀ in float32. x must hold at
// least 8 rows (the matrix-vector kernels read whole groups of rows).
//
// One row (gemvRows) uses the matrix-vector kernels (float32 arithmetic on
// the widened weights, as the CPU). More rows use cuBLAS: float32 weights in
// float32; bfloat16 weights against x split into two bfloat16 halves
// (hi + lo), each product accumulated in float32, which keeps x to about
// 16 significant bits instead of bfloat16's 8. Up to 32 rows against
// bfloat16 weights small in one dimension (mmdSmall) use mmd_bf16_* with
// the same arithmetic instead.
func (dev *Device) MatMul(y, x uint64, n int, w *Matrix, s *scratch) error {
	_, _, err := dev.matMul(y, x, 0, n, w, s, false)
	return err
}

// matMul is MatMul with two shortcuts of the stacked split cuBLAS path
// (2 to 256 rows of bfloat16 products): xs ≠ 0 holds x already split
// (hi rows then lo rows, as rmsnorm writes it), so that no split kernel
// runs; with halves, the two halves of the result are left stacked in
// s.y2 for the caller to add (at p, the lo half dhalf floats further)
// instead of add_halves summing them into y. Other paths ignore xs and
// write y (p = y, dhalf = 0).
func (dev *Device) matMul(y, x, xs uint64, n int, w *Matrix, s *scratch, halves bool) (p uint64, dhalf int64, err error) {
	err = dev.matMulInto(y, x, xs, n, w, s, halves, &dhalf)
	if dhalf != 0 {
		return s.y2.Ptr, dhalf, err
	}
	return y, 0, err
}

func (dev *Device) matMulInto(y, x, xs uint64, n int, w *Matrix, s *scratch, halves bool, dhalf *int64) error {
	if n <= 0 {
		return nil
	}
	if dev.enter() {
		defer dev.leave()
	}
	if n <= dev.mmaRows && dev.mmaFits(w) && n > dev.gemvRows {
		elems := int64(n) * int64(w.Cols)
		if err := dev.growBuf(&s.hi, 4*elems); err != nil {
			return err
		}
		if err := dev.launch("split_rows", [2]int{blocks(elems, 256)}, 256, s.hi.Ptr, x, ia(w.Cols), la(int64(n))); err != nil {
			return err
		}
		return dev.mma(y, w.Ptr, 0, 1, 1, 0, 0, s.hi.Ptr, 1, w.Rows, w.Cols, n, int64(n), &s.y2, dev.mmaWide)
	}
	if n <= dev.gemvRows {
		nt := 1
		for nt < n {
			nt *= 2
		}
		rpb := gemvWarps // one row per warp for one row of x, else four
		if nt > 1 {
			rpb *= 4
		}
		return dev.launch(gemvNames[w.DType][nt], [2]int{blocks(int64(w.Rows), rpb)}, 32*gemvWarps,
			y, w.Ptr, x, ia(w.Rows), ia(w.Cols), ia(n))
	}
	if n <= dev.mmdRows && dev.mmaFits(w) && x%16 == 0 && min(w.Rows, w.Cols) <= dev.mmdSmall {
		return dev.mmd(y, x, n, w, s)
	}
	m, k := int32(w.Rows), int32(w.Cols)
	if w.DType == F32 {
		return dev.gemm(cublasOpT, cublasOpN, m, int32(n), k, w.Ptr, cudaR32F, k, x, cudaR32F, k, false, y, cudaR32F, m, cublasCompute32F)
	}
	elems := int64(n) * int64(w.Cols)
	if err := dev.growBuf(&s.hi, 4*elems); err != nil {
		return err
	}
	if n <= stackMax {
		// [hi; lo] as 2n rows: one product reads the weights once, then
		// the two halves of the result are added.
		if err := dev.growBuf(&s.y2, 8*int64(n)*int64(w.Rows)); err != nil {
			return err
		}
		if xs == 0 {
			if err := dev.launch("split_bf16", [2]int{blocks(elems, 256)}, 256, s.hi.Ptr, s.hi.Ptr+uint64(2*elems), x, la(elems)); err != nil {
				return err
			}
			xs = s.hi.Ptr
		}
		if err := dev.gemmSplit(m, int32(2*n), k, w.Ptr, xs, s.y2.Ptr); err != nil {
			return err
		}
		out := int64(n) * int64(w.Rows)
		if halves {
			*dhalf = out
			return nil
		}
		return dev.launch("add_halves", [2]int{blocks(out, 256)}, 256, y, s.y2.Ptr, la(out))
	}
	lo := s.hi.Ptr + uint64(2*elems)
	if err := dev.launch("split_bf16", [2]int{blocks(elems, 256)}, 256, s.hi.Ptr, lo, x, la(elems)); err != nil {
		return err
	}
	if err := dev.gemm(cublasOpT, cublasOpN, m, int32(n), k, w.Ptr, cudaR16BF, k, s.hi.Ptr, cudaR16BF, k, false, y, cudaR32F, m, cublasCompute32F); err != nil {
		return err
	}
	return dev.gemm(cublasOpT, cublasOpN, m, int32(n), k, w.Ptr, cudaR16BF, k, lo, cudaR16BF, k, true, y, cudaR32F, m, cublasCompute32F)
}

// moeGemv computes y[s] = W_{idx[s]} · x[s / xdiv] for slots s < nslots
// (one token's experts), where W holds E matrices of rows×cols, estride
// elements apart.
func (dev *Device) moeGemv(y uint64, W uint64, dt DType, estride int64, idx, x uint64, xdiv, nslots, rows, cols int) error {
	return dev.launch(moeGemvNames[dt], [2]int{blocks(int64(rows), gemvWarps), nslots}, 32*gemvWarps,
		y, W, la(estride), idx, x, ia(xdiv), ia(rows), ia(cols))
}

// groupedGemv computes y[s] = W_e · x[s / xdiv] for every routing slot s,
// e its expert, from the per-expert slot lists and chunks of moe_lists
// (off, list, work): W holds E matrices of rows×cols, estride elements
// apart; there are at most maxWork chunks.
func (dev *Device) groupedGemv(y uint64, W uint64, dt DType, estride int64, maxWork int, off, list, work, x uint64, xdiv, rows, cols int) error {
	return dev.launch(groupedNames[dev.groupedUnroll][dt], [2]int{blocks(int64(rows), 4*groupWarps), maxWork}, 32*groupWarps,
		y, W, la(estride), off, list, work, x, ia(xdiv), ia(rows), ia(cols))
}

// mmaWarps is MMA_WARPS in jamba.cu: the warps of an mma_bf16 block, 16
// weight rows each.
const mmaWarps = 4

// mmaFits reports whether the tensor-core kernel takes w: bfloat16 rows of
// a multiple of 8 columns (16-byte loads).
func (dev *Device) mmaFits(w *Matrix) bool { return w.DType == BF16 && w.Cols%8 == 0 }

// mma runs mma_bf16: y[s][r] = W_e[r] · x[s / xdiv] for the slots of each
// of experts matrices (estride elements apart; off, list from moe_lists,
// or off = 0 for one matrix over slots 0 .. n−1), x split into xs by
// split_rows; total is the number of slots (rows of y), active the number
// of matrices expected to have slots; wide picks mma_bf16_wide. When the weight
// rows give too few blocks to keep the GPU's memory busy, the columns are
// split over several blocks whose partial sums go through part.
func (dev *Device) mma(y, W uint64, estride int64, experts, active int, off, list, xs uint64, xdiv, rows, cols, n int, total int64, part *Buf, wide bool) error {
	name, mt := "mma_bf16", 1
	switch {
	case wide:
		name, mt = "mma_bf16_wide", 2
	case dev.mmaDeep:
		name = "mma_bf16_deep"
	}
	rb := blocks(int64(rows), 16*mmaWarps*mt)
	splits, have := 1, rb*active
	if target := dev.mmaBlocks * dev.SMs; have < target {
		splits = max(1, min((target+have-1)/have, cols/256))
	}
	kchunk := (cols + splits - 1) / splits
	kchunk = (kchunk + 127) &^ 127
	splits = (cols + kchunk - 1) / kchunk
	if splits > 1 {
		if err := dev.growBuf(part, 4*int64(splits)*total*int64(rows)); err != nil {
			return err
		}
	}
	if err := dev.launch3(name, [3]int{rb, experts, splits}, 32*mmaWarps,
		y, part.Ptr, W, la(estride), off, list, xs, ia(xdiv), ia(rows), ia(cols), ia(n), la(total), ia(kchunk)); err != nil {
		return err
	}
	if splits == 1 {
		return nil
	}
	return dev.launch("sum_parts", [2]int{blocks(total*int64(rows), 256)}, 256, y, part.Ptr, la(total*int64(rows)), ia(splits))
}

// mmdMax is the most rows of x the dense tensor-core kernels take (4·NT
// of mmd_bf16_8).
const mmdMax = 32

// mmdNames[i] names the dense tensor-core kernel for up to 4<<i rows of x:
// 4 warps of 32 weight rows for i < 2, 8 warps of 16 weight rows from 2
// (mmdThreads).
var mmdNames = [4]string{"mmd_bf16_1", "mmd_bf16_2", "mmd_bf16_4", "mmd_bf16_8"}

func mmdThreads(i int) int {
	if i < 2 {
		return 128
	}
	return 256
}

// mmdRowsBlock and mmdKC are MMD_ROWS and MMD_KC in jamba.cu: the weight
// rows of a block and the columns of x staged at a time.
const (
	mmdRowsBlock = 128
	mmdKC        = 128
)

// mmdShared is the dynamic shared memory of the kernel for up to 4<<i rows
// of x: x's chunk split into 2·4<<i rows of mmdKC+32 bf16, and the warps'
// rings of two chunks of their weight rows.
func mmdShared(i int) int { return 2*(4<<i)*(mmdKC+32)*2 + 2*mmdRowsBlock*mmdKC*2 }

// mmd computes y[n][Rows] = x[n][Cols] · Wᵀ for 2 ≤ n ≤ 32 with mmd_bf16_*:
// bfloat16 weights read once, x split into bf16 halves inside the kernel
// (the split cuBLAS path's arithmetic, without its split and add kernels).
// When the weight rows give fewer blocks than fit on the GPU at once, the
// columns are split over several blocks (up to one wave of them) whose
// partial sums sum_parts adds in order.
func (dev *Device) mmd(y, x uint64, n int, w *Matrix, s *scratch) error {
	i := 0
	for 4<<i < n {
		i++
	}
	name, shared, threads := mmdNames[i], mmdShared(i), mmdThreads(i)
	if dev.mmdFit[i] == 0 {
		fit, err := dev.sharedSetup(name, threads, shared)
		if err != nil {
			return err
		}
		dev.mmdFit[i] = fit
	}
	per := dev.mmdBlocks
	if per == 0 {
		per = dev.mmdFit[i]
	}
	rb := blocks(int64(w.Rows), mmdRowsBlock)
	splits := max(1, min(per*dev.SMs/rb, w.Cols/mmdKC))
	kchunk := (w.Cols + splits - 1) / splits
	kchunk = (kchunk + mmdKC - 1) / mmdKC * mmdKC
	splits = (w.Cols + kchunk - 1) / kchunk
	total := int64(n) * int64(w.Rows)
	if splits > 1 {
		if err := dev.growBuf(&s.y2, 4*int64(splits)*total); err != nil {
			return err
		}
	}
	if err := dev.launchShared(name, [3]int{rb, 1, splits}, threads, shared,
		y, s.y2.Ptr, w.Ptr, x, ia(w.Rows), ia(w.Cols), ia(n), ia(kchunk)); err != nil {
		return err
	}
	if splits == 1 {
		return nil
	}
	return dev.launch("sum_parts", [2]int{blocks(total, 256)}, 256, y, s.y2.Ptr, la(total), ia(splits))
}

// RMSNorm writes out[r] = rmsnorm(h[r] (+= delta[r] when delta ≠ 0)) · w for rows of n.
func (dev *Device) RMSNorm(out, h, delta, w uint64, rows, n int, eps float32) error {
	return dev.rmsNorm(out, h, delta, 0, w, rows, n, eps, 0)
}

// rmsNorm is RMSNorm with delta the two halves of a stacked split product
// (the lo half dhalf floats after the hi half; 0: one delta) and, with
// xs ≠ 0, the output also written split into bf16 hi rows then lo rows
// (the input of matMul's xs).
func (dev *Device) rmsNorm(out, h, delta uint64, dhalf int64, w uint64, rows, n int, eps float32, xs uint64) error {
	return dev.launch("rmsnorm", [2]int{rows}, 512, out, h, delta, la(dhalf), w, ia(n), fa(eps), xs)
}
