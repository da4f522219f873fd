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

// matVecRowsGeneric sets y[i] = W[r0+i,:]·x for r0+i < r1. For int8 the
// row scale multiplies the sum of q·x.
func matVecRowsGeneric(y []float32, w *Matrix, x []float32, r0, r1 int) {
	for r := r0; r < r1; r++ {
		y[r-r0] = 0
	}
	finishRows(y, w, x, r0, r1, 0)
}

// matVecNGeneric sets dst[t*ldd+r] = W[r,:]·x[t*ldx:] for t < nt and
// r0 ≤ r < r1.
func matVecNGeneric(dst []float32, ldd int, w *Matrix, x []float32, ldx, nt, r0, r1 int) {
	C := w.Cols
	for t := 0; t < nt; t++ {
		matVecRowsGeneric(dst[t*ldd+r0:t*ldd+r1], w, x[t*ldx:t*ldx+C], r0, r1)
	}
}

// finishRows adds the products of columns c0..Cols of rows r0..r1 to y and
// applies the int8 row scales.
func finishRows(y []float32, w *Matrix, x []float32, r0, r1, c0 int) {
	C := w.Cols
	x = x[:C]
	for r := r0; r < r1; r++ {
		var s float32
		switch w.DType {
		case F32:
			for c, v := range w.F32[r*C+c0 : (r+1)*C] {
				s += v * x[c0+c]
			}
		case BF16:
			for c, v := range w.BF16[r*C+c0 : (r+1)*C] {
				s += BF16ToF32(v) * x[c0+c]
			}
		case I8:
			for c, v := range w.I8[r*C+c0 : (r+1)*C] {
				s += float32(v) * x[c0+c]
			}
		}
		s += y[r-r0]
		if w.DType == I8 {
			s *= w.Scales[r]
		}
		y[r-r0] = s
	}
}

// gemm4x24Generic multiplies 4 rows of x (row stride ldx) by the packed
// panel p (kc×panelWidth) and stores, or with add adds, the 4×panelWidth
// result in c (row stride ldc).
func gemm4x24Generic(c []float32, ldc int, x []float32, ldx int, p []float32, kc int, add bool) {
	for t := 0; t < 4; t++ {
		xt := x[t*ldx : t*ldx+kc]
		ct := c[t*ldc : t*ldc+panelWidth]
		var acc [panelWidth]float32
		for k, v := range xt {
			pk := p[k*panelWidth : (k+1)*panelWidth]
			for j := range acc {
				acc[j] += v * pk[j]
			}
		}
		for j, v := range acc {
			if add {
				v += ct[j]
			}
			ct[j] = v
		}
	}
}

// forceGeneric makes the kernels take their plain-Go path until the returned
// function is called; tests use it as defer forceGeneric()().
func forceGeneric() (restore func()) {
	old := useAVX2
	useAVX2 = false
	return func() { useAVX2 = old }
}
