package kernels

import "math"

// This file holds the plain-Go references of the kernels. They are built in
// every configuration: the fast paths finish their tails with them, the
// purego build runs them, and the tests compare against them.

// DotGeneric is the plain-Go reference of Dot.
func DotGeneric(a, b []float32) float32 {
	var s float32
	b = b[:len(a)]
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// AxpyGeneric is the plain-Go reference of Axpy.
func AxpyGeneric(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

// ExpGeneric is the plain-Go reference of Exp: the correctly rounded
// float32 of the float64 exponential.
func ExpGeneric(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = float32(math.Exp(float64(v)))
	}
}

// RMSNormGeneric is the plain-Go reference of RMSNorm.
func RMSNormGeneric(dst, x, w []float32, eps float32) {
	if len(x) == 0 {
		return
	}
	r := rmsScale(sumSqGeneric(x), len(x), eps)
	scaleMulGeneric(dst, x, w, r)
}

// rmsScale returns 1/sqrt(ss/n + eps), the mean taken in float32.
func rmsScale(ss float32, n int, eps float32) float32 {
	return float32(1 / math.Sqrt(float64(ss/float32(n)+eps)))
}

// SoftmaxGeneric is the plain-Go reference of Softmax.
func SoftmaxGeneric(x []float32) {
	if len(x) == 0 {
		return
	}
	s := expSubSumGeneric(x, maxGeneric(x))
	inv := 1 / s
	for i := range x {
		x[i] *= inv
	}
}

// SiLUGeneric is the plain-Go reference of SiLU.
func SiLUGeneric(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = v / (1 + float32(math.Exp(float64(-v))))
	}
}

// SoftplusGeneric is the plain-Go reference of Softplus.
func SoftplusGeneric(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		if v > 20 || v != v {
			dst[i] = v
			continue
		}
		dst[i] = float32(math.Log1p(math.Exp(float64(v))))
	}
}

// ConvStepGeneric is the plain-Go reference of ConvStep.
func ConvStepGeneric(y, state, x, w, bias []float32, Di, K int) {
	_ = y[Di-1]
	for c := 0; c < Di; c++ {
		var s float32
		if bias != nil {
			s = bias[c]
		}
		for k := 0; k < K-1; k++ {
			s += w[k*Di+c] * state[k*Di+c]
		}
		y[c] = s + w[(K-1)*Di+c]*x[c]
	}
	shiftConvState(state, x, Di, K)
}

// shiftConvState drops the oldest input from state and appends x.
func shiftConvState(state, x []float32, Di, K int) {
	if K < 2 {
		return
	}
	copy(state[:(K-2)*Di], state[Di:(K-1)*Di])
	copy(state[(K-2)*Di:(K-1)*Di], x[:Di])
}

// ScanStepGeneric is the plain-Go reference of ScanStep.
func ScanStepGeneric(h, A, delta, x, B, C, D, y []float32, Di, N int) {
	B, C = B[:N], C[:N]
	for c := 0; c < Di; c++ {
		d, xc := delta[c], x[c]
		dx := d * xc
		hc := h[c*N : (c+1)*N]
		ac := A[c*N : (c+1)*N]
		var s float32
		for n := range hc {
			v := float32(math.Exp(float64(d*ac[n])))*hc[n] + dx*B[n]
			hc[n] = v
			s += v * C[n]
		}
		y[c] = s + D[c]*xc
	}
}

func sumGeneric(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += v
	}
	return s
}

func sumSqGeneric(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += v * v
	}
	return s
}

func scaleMulGeneric(dst, x, w []float32, s float32) {
	dst, w = dst[:len(x)], w[:len(x)]
	for i, v := range x {
		dst[i] = w[i] * (v * s)
	}
}

// maxGeneric returns the largest element of a non-empty x.
func maxGeneric(x []float32) float32 {
	m := x[0]
	for _, v := range x[1:] {
		if v > m {
			m = v
		}
	}
	return m
}

func mulAddGeneric(y, a, b []float32) {
	a, b = a[:len(y)], b[:len(y)]
	for i := range y {
		y[i] += a[i] * b[i]
	}
}

// expSubSumGeneric replaces x[i] by e^(x[i]-m) and returns the sum.
func expSubSumGeneric(x []float32, m float32) float32 {
	var s float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		x[i] = e
		s += e
	}
	return s
}

// reduce8 adds the 8 lanes of a dot-order accumulator by the tree of the
// assembly kernels.
func reduce8(a *[8]float32) float32 {
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

// rowDot returns W[r,:]·x for float weights in the dot order of MatMul,
// the plain-Go way: 8 lanes, lane l summing the products of columns
// c ≡ l (mod 8) below Cols&^7 in column order, added by reduce8; then the
// products of the last Cols%8 columns, summed on their own, added to that
// (dotTail). The assembly fuses each multiply-add of the lanes; here each
// product is rounded (float32(…) keeps the compiler from fusing it), so
// the plain-Go build is batch-invariant too but not bitwise equal to the
// assembly.
func rowDot(w *Matrix, r int, x []float32) float32 {
	C := w.Cols
	n := C &^ 7
	x = x[:C]
	var acc [8]float32
	switch w.DType {
	case F32:
		row := w.F32[r*C : r*C+n]
		for c := 0; c < n; c += 8 {
			ws, xs := row[c:c+8], x[c:c+8]
			for l := range acc {
				acc[l] += float32(ws[l] * xs[l])
			}
		}
	case BF16:
		row := w.BF16[r*C : r*C+n]
		for c := 0; c < n; c += 8 {
			ws, xs := row[c:c+8], x[c:c+8]
			for l := range acc {
				acc[l] += float32(BF16ToF32(ws[l]) * xs[l])
			}
		}
	}
	s := reduce8(&acc)
	if n < C {
		s = dotTail(w, r, x, n) + s
	}
	return s
}

// dotTail returns the sum, in column order, of the rounded products
// W[r,c]·x[c] for columns n ≤ c < Cols of float weights.
func dotTail(w *Matrix, r int, x []float32, n int) float32 {
	C := w.Cols
	x = x[n:C]
	var s float32
	switch w.DType {
	case F32:
		for c, v := range w.F32[r*C+n : (r+1)*C] {
			s += float32(v * x[c])
		}
	case BF16:
		for c, v := range w.BF16[r*C+n : (r+1)*C] {
			s += float32(BF16ToF32(v) * x[c])
		}
	}
	return s
}

// finishRows completes the outputs y[r-r0] of rows r0..r1 whose lane sums
// over the first n = Cols&^7 columns the assembly wrote: it adds the
// products of the last columns as rowDot does.
func finishRows(y []float32, w *Matrix, x []float32, r0, r1, n int) {
	if n == w.Cols {
		return
	}
	for r := r0; r < r1; r++ {
		y[r-r0] = dotTail(w, r, x, n) + y[r-r0]
	}
}

// matVecRowsGeneric sets y[i] = W[r0+i,:]·x for r0+i < r1 (float weights).
func matVecRowsGeneric(y []float32, w *Matrix, x []float32, r0, r1 int) {
	for r := r0; r < r1; r++ {
		y[r-r0] = rowDot(w, r, x)
	}
}

// matVecNGeneric sets dst[t*ldd+r] = W[r,:]·x[t*ldx:] for t < nt and
// r0 ≤ r < r1 (float weights).
func matVecNGeneric(dst []float32, ldd int, w *Matrix, x []float32, ldx, nt, r0, r1 int) {
	C := w.Cols
	for t := 0; t < nt; t++ {
		matVecRowsGeneric(dst[t*ldd+r0:t*ldd+r1], w, x[t*ldx:t*ldx+C], r0, r1)
	}
}

// dotI8Exact returns Σ w[i]·x[i], exact: each product is at most 2^22 in
// magnitude, so int64 holds any sum of fewer than 2^41 of them.
func dotI8Exact(w []int8, x []int16) int64 {
	x = x[:len(w)]
	var s int64
	for i, v := range w {
		s += int64(v) * int64(x[i])
	}
	return s
}

// dotI8Generic sets tot[t*ldt+r-r0] to Σ_c W[r,c]·xq[t*Cols+c], exact,
// for t < nt and r0 ≤ r < r1 (int8 weights, int16 activations).
func dotI8Generic(tot []float64, ldt int, w *Matrix, xq []int16, nt, r0, r1 int) {
	C := w.Cols
	for t := range nt {
		xt := xq[t*C : (t+1)*C]
		for r := r0; r < r1; r++ {
			tot[t*ldt+r-r0] = float64(dotI8Exact(w.I8[r*C:(r+1)*C], xt))
		}
	}
}

// rowDotI8Float returns W[r,:]·x for int8 weights in float32, in column
// order, times the row scale: MatMul's path for rows of x that cannot be
// rounded to int16 (Inf or NaN in them, or all values subnormal).
func rowDotI8Float(w *Matrix, r int, x []float32) float32 {
	C := w.Cols
	x = x[:C]
	var s float32
	for c, v := range w.I8[r*C : (r+1)*C] {
		s += float32(float32(v) * x[c])
	}
	return s * w.Scales[r]
}

// absMaxGeneric returns the largest |x[i]|, or NaN if any x[i] is Inf or
// NaN.
func absMaxGeneric(x []float32) float32 {
	var m float32
	for _, v := range x {
		if v-v != 0 {
			return float32(math.NaN())
		}
		m = max(m, float32(math.Abs(float64(v))))
	}
	return m
}

// quantI16Generic sets q[i] to x[i]·s rounded to the nearest int16, ties
// to even; |x[i]·s| must not exceed 32767.5.
func quantI16Generic(q []int16, x []float32, s float32) {
	q = q[:len(x)]
	for i, v := range x {
		p := v * s
		q[i] = int16(math.RoundToEven(float64(p)))
	}
}

// matVecStridedGeneric is matVecStrided in plain Go, in the dot order.
func matVecStridedGeneric(y, w []float32, ld int, x []float32) {
	C := len(x)
	for i := range y {
		row := Matrix{Rows: 1, Cols: C, DType: F32, F32: w[i*ld : i*ld+C]}
		y[i] = rowDot(&row, 0, x)
	}
}

// weightedSumGeneric is weightedSum in plain Go.
func weightedSumGeneric(o, w []float32, ld int, p []float32) {
	for j, pj := range p {
		AxpyGeneric(pj, w[j*ld:j*ld+len(o)], o)
	}
}

// matVecStridedBF16Generic is matVecStridedBF16 in plain Go, in the dot
// order.
func matVecStridedBF16Generic(y []float32, w []uint16, ld int, x []float32) {
	C := len(x)
	for i := range y {
		row := Matrix{Rows: 1, Cols: C, DType: BF16, BF16: w[i*ld : i*ld+C]}
		y[i] = rowDot(&row, 0, x)
	}
}

// axpyBF16Generic adds alpha·x to y, x in bfloat16.
func axpyBF16Generic(alpha float32, x []uint16, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * BF16ToF32(v)
	}
}

// weightedSumBF16Generic is weightedSumBF16 in plain Go.
func weightedSumBF16Generic(o []float32, w []uint16, ld int, p []float32) {
	for j, pj := range p {
		axpyBF16Generic(pj, w[j*ld:j*ld+len(o)], o)
	}
}

// ScanBackStepGeneric is ScanBackStep in plain Go.
func ScanBackStepGeneric(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out []float32, nc, N int) {
	for c := range nc {
		dy, dl, x := s[3*c], s[3*c+1], s[3*c+2]
		dlx := dl * x
		o := c * N
		var su, sb float32
		for q := range N {
			i := o + q
			dC[q] += dy * cur[i]
			dhq := dh[i] + dy*C[q]
			ab := av[i]
			u := dhq * ab * prev[i] * A[i]
			su += u
			gA[i] += u * dl
			sb += dhq * B[q]
			dB[q] += dhq * dlx
			dh[i] = dhq * ab
		}
		out[2*c], out[2*c+1] = su, sb
	}
}
