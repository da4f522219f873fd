package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randMatrix returns a Rows×Cols matrix of dtype whose storage starts off
// elements into its backing array, as weights inside a mapped file do.
func randMatrix(r *rand.Rand, dt DType, rows, cols, off int) *Matrix {
	n := rows * cols
	m := &Matrix{Rows: rows, Cols: cols, DType: dt}
	switch dt {
	case F32:
		m.F32 = make([]float32, n+off)[off:]
		for i := range m.F32 {
			m.F32[i] = r.Float32()*2 - 1
		}
	case BF16:
		m.BF16 = make([]uint16, n+off)[off:]
		for i := range m.BF16 {
			m.BF16[i] = F32ToBF16(r.Float32()*2 - 1)
		}
	case I8:
		m.I8 = make([]int8, n+off)[off:]
		for i := range m.I8 {
			m.I8[i] = int8(r.IntN(255) - 127)
		}
		m.Scales = make([]float32, rows+off)[off:]
		for i := range m.Scales {
			m.Scales[i] = r.Float32() / 64
		}
	}
	return m
}

// checkMatMul compares MatMul with MatMulGeneric. Both sum C products in
// float32 in different orders (and int8 applies the row scale before or after
// the sum), so each output is within 2(C+2)·u·Σ_c|x·w| of the other. With
// int8 weights each row of x is rounded to int16 with its own scale (see
// MatMul), which adds up to Σ_c|w[r,c]|·max|x[t,:]|/65534, times 1+4u for
// the roundings of the scale and of its inverse.
func checkMatMul(t *testing.T, r *rand.Rand, dt DType, T, R, C, off int) {
	t.Helper()
	w := randMatrix(r, dt, R, C, off)
	x, _ := guarded(r, T*C, off)
	compareMatMul(t, w, x, T, off)
}

func compareMatMul(t *testing.T, w *Matrix, x []float32, T, off int) {
	t.Helper()
	r := rand.New(rand.NewPCG(2, 3))
	dt, R, C := w.DType, w.Rows, w.Cols
	dst, check := guarded(r, T*R, 3-off)
	want := make([]float32, T*R)
	MatMulGeneric(want, x, T, w)
	MatMul(dst, x, T, w)
	check(t)
	row := make([]float32, C)
	for i := 0; i < R; i++ {
		w.Row(row, i)
		for tok := 0; tok < T; tok++ {
			var mag, wsum, xmax float32
			for c, v := range row {
				mag += absf(v * x[tok*C+c])
				wsum += absf(v)
				xmax = max(xmax, absf(x[tok*C+c]))
			}
			got, exp := dst[tok*R+i], want[tok*R+i]
			tol := 2 * float32(C+2) * u * mag
			if dt == I8 {
				tol += wsum * xmax / 65534 * (1 + 4*u)
			}
			if absf(got-exp) > tol {
				t.Fatalf("%v T=%d R=%d C=%d off=%d: dst[%d,%d] = %v, want %v ± %v", dt, T, R, C, off, tok, i, got, exp, tol)
			}
		}
	}
}

// The shapes hit each path: T = 1 (matrix-vector), T < fewTokens (2 or 3
// tokens per pass) and the packed path, with each of its tile cases: T%4 = 0..3 (full
// and partial 4-row tiles), R below, at and beyond multiples of 24 (full and
// partial panels, one or several a chunk) and of 8 (the packing kernel), and C
// with and without tails of 8 and across several k blocks (with an odd and
// an even number of 8-column steps in a block).
func TestMatMul(t *testing.T) {
	defer func(k, f, g, c int) { kcBlock, fewTokens, panelGroup, chunksPerThread = k, f, g, c }(kcBlock, fewTokens, panelGroup, chunksPerThread)
	// The second setting sends every T > 1 to the packed path, with several
	// k blocks even for short rows; the third also puts up to 3 panels in a
	// chunk (R = 25 and 49: a partial last panel of 1 row).
	for _, cfg := range []struct{ kc, few, group int }{{256, 8, 1}, {16, 2, 1}, {16, 2, 3}} {
		kcBlock, fewTokens, panelGroup, chunksPerThread = cfg.kc, cfg.few, cfg.group, 0
		paths(t, func(t *testing.T) {
			r := newRand(t)
			for _, dt := range []DType{F32, BF16, I8} {
				for _, T := range []int{1, 2, 3, 4, 5, 8, 9} {
					for _, R := range []int{1, 7, 8, 23, 24, 25, 49} {
						for _, C := range []int{1, 7, 8, 15, 17, 33, 64, 300} {
							checkMatMul(t, r, dt, T, R, C, (T+R+C)%4)
						}
					}
				}
			}
		})
	}
}

func TestMatMulLarge(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, dt := range []DType{F32, BF16, I8} {
			for _, T := range []int{1, 33} {
				checkMatMul(t, r, dt, T, 1031, 1023, 1)
			}
			checkMatMul(t, r, dt, 1, 13, 8200, 3)
		}
	})
}

// TestMatMulI8Extremes drives the int32 sums of the int8 kernel to their
// largest values, over several 4096-column blocks.
func TestMatMulI8Extremes(t *testing.T) {
	paths(t, func(t *testing.T) {
		const R, C = 9, 3*4096 + 48
		w := &Matrix{Rows: R, Cols: C, DType: I8, I8: make([]int8, R*C), Scales: make([]float32, R)}
		for i := range w.I8 {
			w.I8[i] = int8(-128 + 255*(i/C%2))
		}
		for i := range w.Scales {
			w.Scales[i] = 1
		}
		x := make([]float32, C)
		for i := range x {
			x[i] = 1
		}
		compareMatMul(t, w, x, 1, 0)
		x[5] = float32(math.NaN())
		dst := make([]float32, R)
		MatMul(dst, x, 1, w)
		for i, v := range dst {
			if !math.IsNaN(float64(v)) {
				t.Fatalf("dst[%d] = %v with a NaN in x", i, v)
			}
		}
	})
}

func TestMatMulThreads(t *testing.T) {
	defer SetThreads(0)
	r := newRand(t)
	for _, n := range []int{1, 2, 3, 5} {
		SetThreads(n)
		if got := Threads(); got != n {
			t.Fatalf("Threads() = %d after SetThreads(%d)", got, n)
		}
		for _, T := range []int{1, 7} {
			checkMatMul(t, r, BF16, T, 517, 260, 2)
		}
	}
}

func TestMatMulAllocs(t *testing.T) {
	r := newRand(t)
	for _, dt := range []DType{F32, BF16, I8} {
		for _, T := range []int{1, 2, 64} {
			w := randMatrix(r, dt, 512, 256, 0)
			x := make([]float32, T*256)
			dst := make([]float32, T*512)
			MatMul(dst, x, T, w)
			if n := testing.AllocsPerRun(20, func() { MatMul(dst, x, T, w) }); n != 0 {
				t.Errorf("%v T=%d: %v allocations per MatMul", dt, T, n)
			}
		}
	}
}

func TestMatMulConcurrent(t *testing.T) {
	r := newRand(t)
	w := randMatrix(r, BF16, 300, 200, 0)
	x, _ := guarded(r, 5*200, 0)
	want := make([]float32, 5*300)
	MatMulGeneric(want, x, 5, w)
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			dst := make([]float32, 5*300)
			for i := 0; i < 20; i++ {
				MatMul(dst, x, 5, w)
				for j := range dst {
					if absf(dst[j]-want[j]) > 1e-4 {
						errs <- fmt.Errorf("dst[%d] = %v, want %v", j, dst[j], want[j])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestMeasureReadBandwidth(t *testing.T) {
	if bw := MeasureReadBandwidth(1<<20, 2); bw <= 0 {
		t.Fatalf("bandwidth %v", bw)
	}
}

func TestQuantizeI8(t *testing.T) {
	r := newRand(t)
	w := randMatrix(r, BF16, 7, 33, 1)
	q := QuantizeI8(w)
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	a, b := make([]float32, 33), make([]float32, 33)
	for i := 0; i < 7; i++ {
		w.Row(a, i)
		q.Row(b, i)
		for c := range a {
			// Rounding to the nearest step moves a weight by at most half
			// a step, plus the float32 rounding of the division and product.
			if d := absf(a[c] - b[c]); d > q.Scales[i]*(0.5+1e-5) {
				t.Fatalf("row %d col %d: %v quantized to %v (scale %v)", i, c, a[c], b[c], q.Scales[i])
			}
		}
	}
	s := q.Slice(2, 5)
	if err := s.Validate(); err != nil || s.Rows != 3 || s.Scales[0] != q.Scales[2] || s.I8[0] != q.I8[2*33] {
		t.Fatalf("Slice(2, 5) = %+v, %v", s, err)
	}
	if err := (&Matrix{Rows: 2, Cols: 3, DType: F32, F32: make([]float32, 5)}).Validate(); err == nil {
		t.Fatal("Validate accepted 5 elements for 2×3")
	}
}

// TestPanelsFor checks the panels per chunk chosen from the L2 cache's
// size, and the reading of sysfs's sizes.
func TestPanelsFor(t *testing.T) {
	for _, c := range []struct {
		size string
		want int
	}{{"2048K", 4}, {"2M", 4}, {"1280K", 3}, {"1024K", 2}, {"512K", 1}, {"256K", 1}, {"", 2}, {"x", 2}, {"-1K", 2}} {
		if got := panelsFor(parseCacheSize(c.size, 1<<20)); got != c.want {
			t.Errorf("L2 %q: %d panels a chunk, want %d", c.size, got, c.want)
		}
	}
	if g := panelGroup; g < 1 || g > 4 {
		t.Errorf("panelGroup = %d on this machine, want 1 to 4", g)
	}
}
