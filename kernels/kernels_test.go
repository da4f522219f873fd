package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// u is the unit roundoff of float32: every float32 operation is exact to a
// relative u, and a sum of n terms in any order to n·u·Σ|terms|.
const u = 1.0 / (1 << 24)

// lengths hits every code path of the vector kernels: empty, tails only, one
// vector, a vector plus tail, the 32-element unrolled loops with and without
// tails, and a long odd length.
var lengths = []int{0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1023, 1031}

// paths runs f on the best assembly path (when the CPU has it, capped by
// JAMBA_CPU), on every lower assembly path and on the plain-Go path. In
// the purego build they are all the plain-Go path.
func paths(t *testing.T, f func(t *testing.T)) {
	t.Run("fast", f)
	t.Run("streams", func(t *testing.T) {
		// The matrix-vector kernel for large matrices, on every size.
		defer func(v int64) { streamsMinBytes = v }(streamsMinBytes)
		streamsMinBytes = 0
		f(t)
	})
	if useAVX512 {
		t.Run("avx2", func(t *testing.T) {
			defer forcePath(pathAVX2)()
			f(t)
		})
	}
	t.Run("generic", func(t *testing.T) {
		defer forceGeneric()()
		f(t)
	})
}

// asmPaths runs f on each assembly path the CPU supports (capped by
// JAMBA_CPU), best first, for tests that compare a path with the plain Go;
// without assembly it runs f once on the plain Go.
func asmPaths(t *testing.T, f func(t *testing.T)) {
	top := currentPath()
	for p := top; p >= min(top, pathAVX2); p-- {
		t.Run(pathNames[p], func(t *testing.T) {
			defer forcePath(p)()
			f(t)
		})
	}
}

// guard is the value stored around test slices to detect writes out of
// range: a NaN with a payload no kernel produces.
var guard = math.Float32frombits(0x7fc0dead)

const nguard = 19

// guarded returns a slice of n random floats starting off elements after a
// guard band (so that its address is misaligned by off·4 bytes relative to the
// allocation), and a function that fails t if anything around it changed.
func guarded(r *rand.Rand, n, off int) ([]float32, func(t *testing.T)) {
	buf := make([]float32, nguard+off+n+nguard)
	for i := range buf {
		buf[i] = guard
	}
	s := buf[nguard+off : nguard+off+n]
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s, func(t *testing.T) {
		t.Helper()
		for i, v := range buf {
			if (i < nguard+off || i >= nguard+off+n) && math.Float32bits(v) != math.Float32bits(guard) {
				t.Fatalf("write out of range at %d (slice is [%d:%d])", i, nguard+off, nguard+off+n)
			}
		}
	}
}

func newRand(t *testing.T) *rand.Rand {
	return rand.New(rand.NewPCG(1, uint64(len(t.Name()))))
}

func clone(x []float32) []float32 { return append([]float32(nil), x...) }

func absf(x float32) float32 { return float32(math.Abs(float64(x))) }

func TestDot(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, n := range lengths {
			for off := 0; off < 4; off++ {
				a, _ := guarded(r, n, off)
				b, _ := guarded(r, n, 3-off)
				got, want := Dot(a, b), DotGeneric(a, b)
				var mag float32
				for i := range a {
					mag += absf(a[i] * b[i])
				}
				// Both sums are within n·u·Σ|a·b| of the exact one.
				if tol := 2 * float32(n) * u * mag; absf(got-want) > tol {
					t.Errorf("n=%d off=%d: Dot = %v, want %v ± %v", n, off, got, want, tol)
				}
			}
		}
	})
}

func TestAxpy(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, n := range lengths {
			for off := 0; off < 4; off++ {
				x, _ := guarded(r, n, off)
				y, check := guarded(r, n, 3-off)
				want := clone(y)
				AxpyGeneric(0.75, x, want)
				y0 := clone(y)
				Axpy(0.75, x, y)
				check(t)
				for i := range y {
					// A fused multiply-add rounds once instead of twice.
					if tol := 2 * u * (absf(y0[i]) + absf(0.75*x[i])); absf(y[i]-want[i]) > tol {
						t.Fatalf("n=%d off=%d: y[%d] = %v, want %v", n, off, i, y[i], want[i])
					}
				}
			}
		}
	})
}

func TestExp(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, n := range lengths {
			for off := 0; off < 4; off++ {
				x, _ := guarded(r, n, off)
				for i := range x {
					x[i] *= 87 // normal results; TestExpSpecial checks beyond
				}
				dst, check := guarded(r, n, 3-off)
				Exp(dst, x)
				check(t)
				for i, v := range x {
					want := math.Exp(float64(v))
					if e := relErr(dst[i], want); e > expTol {
						t.Fatalf("n=%d: Exp(%v) = %v, want %v (relative error %.3g)", n, v, dst[i], want, e)
					}
				}
			}
		}
	})
}

// expTol bounds the relative error of Exp against the exact exponential for
// normal results: the polynomial and range reduction add at most about 1 ulp
// (≤ 2^-23 relative) to the final rounding; TestExpAccuracy measures it.
const expTol = 2e-7

func relErr(got float32, want float64) float64 {
	if want == 0 {
		return math.Abs(float64(got))
	}
	return math.Abs(float64(got)-want) / math.Abs(want)
}

// TestExpAccuracy sweeps the whole range of normal results.
func TestExpAccuracy(t *testing.T) {
	const lo, hi = -87.3, 88.72
	n := 1 << 20
	if testing.Short() {
		n = 1 << 16
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = lo + (hi-lo)*float32(i)/float32(n)
	}
	// Around 0 the reduction is exact and the polynomial matters most.
	for i := 0; i < 4096; i++ {
		x[i] = float32(i-2048) / 4096
	}
	y := make([]float32, n)
	Exp(y, x)
	var worst float64
	var at float32
	for i, v := range x {
		if e := relErr(y[i], math.Exp(float64(v))); e > worst {
			worst, at = e, v
		}
	}
	t.Logf("max relative error %.3g at x=%v (useAVX2=%v)", worst, at, useAVX2)
	if worst > expTol {
		t.Errorf("max relative error %.3g at x=%v, want ≤ %g", worst, at, expTol)
	}
}

func TestExpSpecial(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	cases := []struct{ x, want float32 }{
		{0, 1},
		{-inf, 0},
		{inf, inf},
		{-200, 0},
		{-104.5, 0},
		{89, inf},
		{88.8, inf},
		{88.72, float32(math.Exp(float64(float32(88.72))))},
		{-87.3, float32(math.Exp(float64(float32(-87.3))))},
	}
	paths(t, func(t *testing.T) {
		x := make([]float32, 8*len(cases))
		for i := range x {
			x[i] = cases[i%len(cases)].x
		}
		y := make([]float32, len(x))
		Exp(y, x)
		for i, v := range y {
			c := cases[i%len(cases)]
			if relErr(v, float64(c.want)) > expTol && !(math.IsInf(float64(v), 1) && math.IsInf(float64(c.want), 1)) {
				t.Errorf("Exp(%v) = %v, want %v", c.x, v, c.want)
			}
		}
		x[3] = nan
		Exp(y, x)
		if !math.IsNaN(float64(y[3])) {
			t.Errorf("Exp(NaN) = %v", y[3])
		}
		// Results below the normal range keep their absolute accuracy.
		for _, v := range []float32{-87.5, -90, -100, -103} {
			for i := range x {
				x[i] = v
			}
			Exp(y, x)
			if want := math.Exp(float64(v)); math.Abs(float64(y[0])-want) > 0x1p-149 {
				t.Errorf("Exp(%v) = %v, want %v", v, y[0], want)
			}
		}
	})
}

func TestRMSNorm(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, n := range lengths[1:] {
			for off := 0; off < 4; off++ {
				x, _ := guarded(r, n, off)
				w, _ := guarded(r, n, (off+1)%4)
				dst, check := guarded(r, n, 3-off)
				want := make([]float32, n)
				RMSNormGeneric(want, x, w, 1e-6)
				RMSNorm(dst, x, w, 1e-6)
				check(t)
				for i := range dst {
					// The sums of squares differ by up to 2n·u relative, the
					// scale by half that, and the products round twice.
					if tol := float32(n+4) * u * absf(want[i]); absf(dst[i]-want[i]) > tol {
						t.Fatalf("n=%d: dst[%d] = %v, want %v", n, i, dst[i], want[i])
					}
				}
			}
		}
		// In place.
		x := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
		w := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}
		want := make([]float32, len(x))
		RMSNormGeneric(want, x, w, 0)
		RMSNorm(x, x, w, 0)
		for i := range x {
			if absf(x[i]-want[i]) > 16*u*absf(want[i]) {
				t.Fatalf("in place: %v, want %v", x, want)
			}
		}
	})
}

func TestSoftmax(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, n := range lengths[1:] {
			for off := 0; off < 4; off++ {
				x, check := guarded(r, n, off)
				for i := range x {
					x[i] *= 20
				}
				want := clone(x)
				SoftmaxGeneric(want)
				Softmax(x)
				check(t)
				var sum float32
				for i := range x {
					sum += x[i]
					// Each exponential is within 2 ulp and the sums within
					// n·u of each other.
					if tol := (float32(n) + 8) * u * want[i]; absf(x[i]-want[i]) > tol {
						t.Fatalf("n=%d: x[%d] = %v, want %v", n, i, x[i], want[i])
					}
				}
				if absf(sum-1) > float32(2*n+8)*u {
					t.Fatalf("n=%d: sum %v", n, sum)
				}
			}
		}
		x := []float32{float32(math.Inf(-1)), 0, float32(math.Inf(-1)), 0, 1, 2, 3, 4, 5, 6}
		Softmax(x)
		if x[0] != 0 || x[2] != 0 || x[1] == 0 {
			t.Errorf("masked softmax = %v", x)
		}
	})
}

func TestSiLU(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, n := range lengths {
			for off := 0; off < 4; off++ {
				x, _ := guarded(r, n, off)
				for i := range x {
					x[i] *= 30
				}
				dst, check := guarded(r, n, 3-off)
				want := make([]float32, n)
				SiLUGeneric(want, x)
				SiLU(dst, x)
				check(t)
				for i := range dst {
					// e^-x is within 2 ulp; 1+e and the division add 1 ulp each.
					if tol := 4 * 2 * u * absf(want[i]); absf(dst[i]-want[i]) > tol {
						t.Fatalf("n=%d: SiLU(%v) = %v, want %v", n, x[i], dst[i], want[i])
					}
				}
			}
		}
	})
}

// TestSoftplus compares Softplus with the float64 formula on random inputs
// of every length and alignment, on a dense sweep of [-110, 30] and on the
// special values.
func TestSoftplus(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		check := func(x, got []float32) {
			t.Helper()
			for i, v := range x {
				want := float64(v)
				if !(v > 20) && v == v {
					want = math.Log1p(math.Exp(float64(v)))
				}
				if v != v {
					if got[i] == got[i] {
						t.Fatalf("Softplus(NaN) = %v", got[i])
					}
					continue
				}
				// e^-|x| is within 2 ulp and the series, the division and
				// the final addition add about 1 ulp each: 4 ulp (2^-23
				// relative each), or an absolute 4·2^-149 in the subnormal
				// range.
				if e := math.Abs(float64(got[i]) - want); e > 4*math.Abs(want)/(1<<23) && e > 0x1p-147 {
					t.Fatalf("Softplus(%v) = %v, want %v (error %.3g ulp)", v, got[i], want, e/math.Abs(want)*(1<<23))
				}
			}
		}
		for _, n := range lengths {
			for off := 0; off < 4; off++ {
				x, _ := guarded(r, n, off)
				for i := range x {
					x[i] = x[i]*60 - 20
				}
				dst, guard := guarded(r, n, 3-off)
				Softplus(dst, x)
				guard(t)
				check(x, dst)
			}
		}
		n := 1 << 18
		if testing.Short() {
			n = 1 << 14
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = -110 + 140*float32(i)/float32(n)
		}
		inf, nan := float32(math.Inf(1)), float32(math.NaN())
		x = append(x, 0, 20, 20.000002, 19.999998, -20, -87.3, -88.8, -103.9, -104.1, -200, inf, -inf, nan, 1e-30, -1e-30)
		got := make([]float32, len(x))
		Softplus(got, x)
		check(x, got)
		if got[len(x)-4] != 0 {
			t.Errorf("Softplus(-Inf) = %v, want 0", got[len(x)-4])
		}
		// In place.
		y := append([]float32(nil), x...)
		Softplus(y, y)
		for i := range y {
			if math.Float32bits(y[i]) != math.Float32bits(got[i]) {
				t.Fatalf("in place: Softplus(%v) = %v, not %v", x[i], y[i], got[i])
			}
		}
	})
}

func TestConvStep(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, Di := range []int{1, 7, 8, 17, 33, 100} {
			for _, K := range []int{1, 2, 4} {
				for _, withBias := range []bool{true, false} {
					w, _ := guarded(r, K*Di, 1)
					var bias []float32
					if withBias {
						bias, _ = guarded(r, Di, 2)
					}
					state, checkState := guarded(r, (K-1)*Di, 3)
					state2 := clone(state)
					for step := 0; step < 3; step++ {
						x, _ := guarded(r, Di, step%4)
						y, checkY := guarded(r, Di, 0)
						want := make([]float32, Di)
						ConvStepGeneric(want, state2, x, w, bias, Di, K)
						ConvStep(y, state, x, w, bias, Di, K)
						checkY(t)
						checkState(t)
						for c := range y {
							var mag float32
							if bias != nil {
								mag = absf(bias[c])
							}
							mag += absf(w[(K-1)*Di+c] * x[c])
							// K+1 terms, each rounded once or twice.
							if tol := 2 * float32(K+1) * u * (mag + float32(K)); absf(y[c]-want[c]) > tol {
								t.Fatalf("Di=%d K=%d: y[%d] = %v, want %v", Di, K, c, y[c], want[c])
							}
						}
						for i := range state {
							if state[i] != state2[i] {
								t.Fatalf("Di=%d K=%d: state differs at %d", Di, K, i)
							}
						}
					}
				}
			}
		}
	})
}

// scanInputs returns random scan inputs with Mamba's signs: A < 0, delta > 0.
func scanInputs(r *rand.Rand, Di, N, off int) (h, A, delta, x, B, C, D []float32) {
	h, _ = guarded(r, Di*N, off)
	A, _ = guarded(r, Di*N, 3-off)
	for i := range A {
		A[i] = -float32(math.Exp(float64(4 * A[i])))
	}
	delta, _ = guarded(r, Di, off)
	for i := range delta {
		delta[i] = float32(math.Log1p(math.Exp(float64(3 * delta[i]))))
	}
	x, _ = guarded(r, Di, 1)
	B, _ = guarded(r, N, 2)
	C, _ = guarded(r, N, off)
	D, _ = guarded(r, Di, 0)
	return
}

// checkScan compares one step's results: h with the per-element bound of two
// products (the exponential within 2 ulp) and y with that propagated through
// the N-term sum plus the sum's own n·u bound.
func checkScan(t *testing.T, label string, hOld, A, delta, x, B, C, D, h, want, y, wantY []float32, Di, N int) {
	t.Helper()
	for c := 0; c < Di; c++ {
		var ySum, yTol float32
		dx := delta[c] * x[c]
		for n := 0; n < N; n++ {
			i := c*N + n
			e := float32(math.Exp(float64(delta[c] * A[i])))
			mag := absf(e*hOld[i]) + absf(dx*B[n])
			tol := 6 * u * mag
			if absf(h[i]-want[i]) > tol {
				t.Fatalf("%s: h[%d,%d] = %v, want %v ± %v", label, c, n, h[i], want[i], tol)
			}
			ySum += absf(want[i] * C[n])
			yTol += tol * absf(C[n])
		}
		yTol += float32(N+2) * u * (ySum + absf(D[c]*x[c]))
		if absf(y[c]-wantY[c]) > yTol {
			t.Fatalf("%s: y[%d] = %v, want %v ± %v", label, c, y[c], wantY[c], yTol)
		}
	}
}

func TestScanStep(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, Di := range []int{1, 3, 8, 17, 64} {
			for _, N := range []int{1, 5, 8, 16, 24} {
				for off := 0; off < 4; off++ {
					h, A, delta, x, B, C, D := scanInputs(r, Di, N, off)
					hOld := clone(h)
					want := clone(h)
					y, check := guarded(r, Di, off)
					wantY := make([]float32, Di)
					ScanStepGeneric(want, A, delta, x, B, C, D, wantY, Di, N)
					ScanStep(h, A, delta, x, B, C, D, y, Di, N)
					check(t)
					checkScan(t, fmt.Sprintf("Di=%d N=%d", Di, N), hOld, A, delta, x, B, C, D, h, want, y, wantY, Di, N)
				}
			}
		}
	})
}

func TestScanSeq(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		const T = 5
		for _, Di := range []int{7, 64, 200} {
			for _, N := range []int{5, 16} {
				h, A, _, _, _, _, D := scanInputs(r, Di, N, 1)
				delta, _ := guarded(r, T*Di, 2)
				for i := range delta {
					delta[i] = float32(math.Log1p(math.Exp(float64(3 * delta[i]))))
				}
				x, _ := guarded(r, T*Di, 0)
				B, _ := guarded(r, T*N, 1)
				C, _ := guarded(r, T*N, 3)
				y, check := guarded(r, T*Di, 1)
				// Each channel goes through the same arithmetic whichever
				// thread runs it, so ScanSeq equals T calls of ScanStep exactly.
				hs := clone(h)
				ys := make([]float32, T*Di)
				for tok := 0; tok < T; tok++ {
					ScanStep(hs, A, delta[tok*Di:], x[tok*Di:], B[tok*N:], C[tok*N:], D, ys[tok*Di:], Di, N)
				}
				ScanSeq(h, A, delta, x, B, C, D, y, T, Di, N)
				check(t)
				for i := range h {
					if h[i] != hs[i] {
						t.Fatalf("Di=%d N=%d: h[%d] = %v, want %v", Di, N, i, h[i], hs[i])
					}
				}
				for i := range y {
					if y[i] != ys[i] {
						t.Fatalf("Di=%d N=%d: y[%d] = %v, want %v", Di, N, i, y[i], ys[i])
					}
				}
			}
		}
	})
}

func TestConvSeq(t *testing.T) {
	r := newRand(t)
	const T, Di, K = 5, 19, 4
	src, _ := guarded(r, Di*K, 0)
	w := make([]float32, K*Di)
	TransposeConvWeight(w, src, Di, K)
	for c := 0; c < Di; c++ {
		for k := 0; k < K; k++ {
			if w[k*Di+c] != src[c*K+k] {
				t.Fatalf("TransposeConvWeight: w[%d,%d] = %v, want %v", k, c, w[k*Di+c], src[c*K+k])
			}
		}
	}
	bias, _ := guarded(r, Di, 1)
	state, _ := guarded(r, (K-1)*Di, 2)
	x, _ := guarded(r, T*Di, 3)
	// ConvSeq is T calls of ConvStep: the same arithmetic, bit for bit.
	state2 := clone(state)
	want := make([]float32, T*Di)
	for tok := 0; tok < T; tok++ {
		ConvStep(want[tok*Di:], state2, x[tok*Di:], w, bias, Di, K)
	}
	y, check := guarded(r, T*Di, 1)
	ConvSeq(y, state, x, w, bias, T, Di, K)
	check(t)
	for i := range y {
		if y[i] != want[i] {
			t.Fatalf("y[%d] = %v, want %v", i, y[i], want[i])
		}
	}
	for i := range state {
		if state[i] != state2[i] {
			t.Fatalf("state[%d] = %v, want %v", i, state[i], state2[i])
		}
	}
}
