package cuda

import (
	"fmt"
	"unsafe"
)

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
// Up to 8 rows use the matrix-vector kernels (float32 arithmetic on the
// widened weights, as the CPU). More rows use cuBLAS: float32 weights in
// float32; bfloat16 weights against x split into two bfloat16 halves
// (hi + lo), each product accumulated in float32, which keeps x to about
// 16 significant bits instead of bfloat16's 8.
func (dev *Device) MatMul(y, x uint64, n int, w *Matrix, s *scratch) error {
	if n <= 0 {
		return nil
	}
	if dev.enter() {
		defer dev.leave()
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
	one, zero := float32(1), float32(0)
	b := dev.b
	m, k := int32(w.Rows), int32(w.Cols)
	if w.DType == F32 {
		return cublasCheck("cublasGemmEx", b.gemmEx(dev.blas, cublasOpT, cublasOpN, m, int32(n), k,
			unsafe.Pointer(&one), w.Ptr, cudaR32F, k, x, cudaR32F, k, unsafe.Pointer(&zero), y, cudaR32F, m,
			cublasCompute32F, cublasGemmDefault))
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
		if err := dev.launch("split_bf16", [2]int{blocks(elems, 256)}, 256, s.hi.Ptr, s.hi.Ptr+uint64(2*elems), x, la(elems)); err != nil {
			return err
		}
		if err := cublasCheck("cublasGemmEx", b.gemmEx(dev.blas, cublasOpT, cublasOpN, m, int32(2*n), k,
			unsafe.Pointer(&one), w.Ptr, cudaR16BF, k, s.hi.Ptr, cudaR16BF, k, unsafe.Pointer(&zero), s.y2.Ptr, cudaR32F, m,
			cublasCompute32F, cublasGemmDefault)); err != nil {
			return err
		}
		out := int64(n) * int64(w.Rows)
		return dev.launch("add_halves", [2]int{blocks(out, 256)}, 256, y, s.y2.Ptr, la(out))
	}
	lo := s.hi.Ptr + uint64(2*elems)
	if err := dev.launch("split_bf16", [2]int{blocks(elems, 256)}, 256, s.hi.Ptr, lo, x, la(elems)); err != nil {
		return err
	}
	if err := cublasCheck("cublasGemmEx", b.gemmEx(dev.blas, cublasOpT, cublasOpN, m, int32(n), k,
		unsafe.Pointer(&one), w.Ptr, cudaR16BF, k, s.hi.Ptr, cudaR16BF, k, unsafe.Pointer(&zero), y, cudaR32F, m,
		cublasCompute32F, cublasGemmDefault)); err != nil {
		return err
	}
	return cublasCheck("cublasGemmEx", b.gemmEx(dev.blas, cublasOpT, cublasOpN, m, int32(n), k,
		unsafe.Pointer(&one), w.Ptr, cudaR16BF, k, lo, cudaR16BF, k, unsafe.Pointer(&one), y, cudaR32F, m,
		cublasCompute32F, cublasGemmDefault))
}

// moeGemv computes y[s] = W_{idx[s]} · x[s / xdiv] for slots s < nslots
// (one token's experts), where W holds E matrices of rows×cols, estride
// elements apart.
func (dev *Device) moeGemv(y uint64, W uint64, dt DType, estride int64, idx, x uint64, xdiv, nslots, rows, cols int) error {
	return dev.launch("gemv_moe_"+dt.suffix(), [2]int{blocks(int64(rows), gemvWarps), nslots}, 32*gemvWarps,
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

// RMSNorm writes out[r] = rmsnorm(h[r] (+= delta[r] when delta ≠ 0)) · w for rows of n.
func (dev *Device) RMSNorm(out, h, delta, w uint64, rows, n int, eps float32) error {
	return dev.launch("rmsnorm", [2]int{rows}, 256, out, h, delta, w, ia(n), fa(eps))
}
