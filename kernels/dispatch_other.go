//go:build !amd64 || purego

package kernels

// useAVX2 is always false without the assembly kernels; it exists so that
// tests can save and restore it in every build.
var useAVX2 = false

// useAVX512 is likewise always false.
var useAVX512 = pathFromEnv(bestPath) > pathAVX2

// bestPath is the plain Go's: this build has no assembly.
const bestPath = pathGeneric

// cpuFeatures is empty: this build has no assembly.
func cpuFeatures() string { return "no assembly in this build" }

func dot(a, b []float32) float32               { return DotGeneric(a, b) }
func axpy(alpha float32, x, y []float32)       { AxpyGeneric(alpha, x, y) }
func sumSq(x []float32) float32                { return sumSqGeneric(x) }
func scaleMul(dst, x, w []float32, s float32)  { scaleMulGeneric(dst, x, w, s) }
func maxOf(x []float32) float32                { return maxGeneric(x) }
func mulAdd(y, a, b []float32)                 { mulAddGeneric(y, a, b) }
func exp(dst, x []float32)                     { ExpGeneric(dst, x) }
func expSubSum(x []float32, m float32) float32 { return expSubSumGeneric(x, m) }
func silu(dst, x []float32)                    { SiLUGeneric(dst, x) }
func softplus(dst, x []float32)                { SoftplusGeneric(dst, x) }
func sumRead(x []float32) float32              { return sumGeneric(x) }

func scale(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

func scanStep(h, A, delta, x, B, C, D, y []float32, Di, N int) {
	ScanStepGeneric(h, A, delta, x, B, C, D, y, Di, N)
}

func matVecN(dst []float32, ldd int, w *Matrix, x []float32, ldx, nt, r0, r1 int) {
	matVecNGeneric(dst, ldd, w, x, ldx, nt, r0, r1)
}

func matVecRows(y []float32, w *Matrix, x []float32, r0, r1 int) {
	matVecRowsGeneric(y, w, x, r0, r1)
}

func dotI8(tot []float64, ldt int, w *Matrix, xq []int16, nt, r0, r1 int) int {
	dotI8Generic(tot, ldt, w, xq, nt, r0, r1)
	return w.Cols
}

func absMax(x []float32) float32                 { return absMaxGeneric(x) }
func quantI16(q []int16, x []float32, s float32) { quantI16Generic(q, x, s) }

// The packed path runs only with the assembly (gemmPanel checks useAVX2).

func pack4(dst []float32, w *Matrix, r, k0, kc int) { panic("kernels: no assembly") }

func gemmTile(y []float32, ldy int, acc, x []float32, ldx int, p []float32, nt, quads, kc, mode int) {
	panic("kernels: no assembly")
}

func matVecStrided(y, w []float32, ld int, x []float32) { matVecStridedGeneric(y, w, ld, x) }

func weightedSum(o, w []float32, ld int, p []float32) { weightedSumGeneric(o, w, ld, p) }

func matVecStridedBF16(y []float32, w []uint16, ld int, x []float32) {
	matVecStridedBF16Generic(y, w, ld, x)
}

func weightedSumBF16(o []float32, w []uint16, ld int, p []float32) {
	weightedSumBF16Generic(o, w, ld, p)
}

func scanBack(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out []float32, nc, N int) {
	ScanBackStepGeneric(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out, nc, N)
}

func transposeCols(dst, src []float32, rows, cols, c0, c1 int) {
	transposeColsGeneric(dst, src, rows, cols, c0, c1, 0)
}

func packKeys4(dst, K []float32, K16 []uint16, off, ld, kc int) { panic("kernels: no assembly") }

func weightedSum3(o []float32, ldo, C int, w []float32, ld int, p []float32, ldp, keys int) {
	for r := range 3 {
		weightedSumGeneric(o[r*ldo:r*ldo+C], w, ld, p[r*ldp:r*ldp+keys])
	}
}

func weightedSum3BF16(o []float32, ldo, C int, w []uint16, ld int, p []float32, ldp, keys int) {
	for r := range 3 {
		weightedSumBF16Generic(o[r*ldo:r*ldo+C], w, ld, p[r*ldp:r*ldp+keys])
	}
}

func keyScores(y []float32, ldy int, K []float32, K16 []uint16, off, ld, keys int, x []float32, ldx, nt, kc int) {
	panic("kernels: no assembly")
}

func keyHeads() int { return 3 }

func dequantQ4KAVX2(y *float32, q *byte, dm *float32, n int) { panic("kernels: no assembly") }
func dequantQ8_0AVX2(y *float32, q *byte, d *float32, n int) { panic("kernels: no assembly") }
func dequantQ6KAVX2(y *float32, b *byte, ds *float32, n int) { panic("kernels: no assembly") }
func dequantQ4_0AVX2(y *float32, q *byte, d *float32, n int) { panic("kernels: no assembly") }

func blockDotRows(y []float32, k BlockDot, w []byte, rb int, q []int16, d, s []float32) {
	blockDotRowsGeneric(y, k, w, rb, q, d, s)
}

func blockDotRowsN(y []float32, k BlockDot, w []byte, rb, nt int, q []int16, d, s []float32) {
	panic("kernels: no assembly")
}

func matVecF16Streams(y []float32, w []byte, rows, cols int, x []float32) {
	panic("kernels: no assembly")
}

func matVecF16(y []float32, w []byte, rows, cols int, x []float32, nt int) {
	panic("kernels: no assembly")
}

func blockDot8Rows(y []float32, k BlockDot, w []byte, rb, nt int, q []int8, d, s []float32, nc []int32) {
	blockDot8RowsGeneric(y, k, w, rb, q, d, s)
}

func weightedSum4x64(o []float32, ldo int, w []float32, ld int, p []float32, ldp, keys int) {
	panic("kernels: no assembly")
}

func weightedSum4x64BF16(o []float32, ldo int, w []uint16, ld int, p []float32, ldp, keys int) {
	panic("kernels: no assembly")
}

func blockDot8Lanes(y []float32, ys int, w []byte, rb, rows, nt, lt int, q []int8, d []float32, k8 []int32) {
	blockDot8LanesGeneric(y, ys, w, rb, 0, rows, nt, lt, q, d)
}
