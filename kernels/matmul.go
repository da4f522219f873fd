package kernels

// MatMul computes dst = x · Wᵀ for T rows of activations:
//
//	for t < T, r < w.Rows: dst[t*w.Rows+r] = Σ_c x[t*w.Cols+c] · W[r,c]
//
// dst must hold T·w.Rows floats and x T·w.Cols floats; dst and x must not overlap.
// The sum is accumulated in float32.
func MatMul(dst, x []float32, T int, w *Matrix) {
	MatMulGeneric(dst, x, T, w)
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

// Dot returns Σ a[i]·b[i] over len(a) elements.
func Dot(a, b []float32) float32 {
	var s float32
	b = b[:len(a)]
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// Axpy computes y[i] += alpha·x[i] over len(x) elements.
func Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}
