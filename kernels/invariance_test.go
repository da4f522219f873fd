package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// invarianceTokens are the batch sizes of TestMatMulBatchInvariant: the
// matrix-vector path, the few-token path with its groups of 2 and 3 and
// their remainders, and the packed path with every remainder of its token
// groups, up to more tokens than one token block holds.
var invarianceTokens = []int{1, 2, 3, 4, 5, 7, 9, 10, 11, 17, 33, 64, 257}

// invarianceShapes are odd row and column counts, tails of 8 and 16
// columns, fewer than 8 columns, several k blocks of the packed path and
// several 4096-column blocks of the int8 path.
var invarianceShapes = []struct{ rows, cols int }{
	{1, 1}, {3, 5}, {7, 8}, {13, 17}, {29, 31}, {50, 64}, {75, 300}, {9, 605}, {5, 8200},
}

// invariancePool returns n rows of C activations for the invariance test.
// Besides random rows it holds rows of special values, each of which must
// give the same bits at any position in any batch: zeros, one huge and
// one subnormal value (an int8 scale that overflows), an Inf and a NaN.
func invariancePool(r *rand.Rand, n, C int) [][]float32 {
	pool := make([][]float32, n)
	for i := range pool {
		row := make([]float32, C)
		for c := range row {
			row[c] = (r.Float32()*2 - 1) * float32(math.Ldexp(1, r.IntN(9)-4))
		}
		pool[i] = row
	}
	pool[1] = make([]float32, C)
	pool[2][C/2] = 1e30
	for c := range pool[3] {
		pool[3][c] = 0
	}
	pool[3][C-1] = math.Float32frombits(3) // subnormal: 32767/max overflows
	pool[4][C/3] = float32(math.Inf(-1))
	pool[5][C-1] = float32(math.NaN())
	return pool
}

// TestMatMulBatchInvariant checks that row t of MatMul(x, T) has the bits
// of MatMul of that row alone, for every dtype, batch size, position in the
// batch (the rows are also shuffled, with repeats) and thread count (with
// one thread through Serial.MatMul), on the
// assembly and the plain-Go paths, and with a small panel depth that
// exercises the partial sums kept across k blocks.
func TestMatMulBatchInvariant(t *testing.T) {
	defer SetThreads(0)
	defer func(k, g, c int) { kcBlock, panelGroup, chunksPerThread = k, g, c }(kcBlock, panelGroup, chunksPerThread)
	// kc = 24: blocks of 3 steps of 8 columns (the gemm kernels' odd step),
	// and up to 3 panels a chunk.
	for _, kc := range []int{256, 16, 24} {
		kcBlock = kc
		panelGroup, chunksPerThread = 1, 0
		if kc == 24 {
			panelGroup = 3
		}
		paths(t, func(t *testing.T) {
			r := newRand(t)
			maxT := invarianceTokens[len(invarianceTokens)-1]
			for _, s := range invarianceShapes {
				if kc != 256 && s.cols > 1000 {
					continue
				}
				pool := invariancePool(r, maxT, s.cols)
				for _, dt := range []DType{F32, BF16, I8} {
					checkInvariance(t, r, randMatrix(r, dt, s.rows, s.cols, s.rows%3), pool)
				}
			}
			if kc != 256 {
				return // the block paths have no panels
			}
			// Block weights, on rows of whole blocks: the fused kernels
			// (one token and groups of 2-4) and F16.
			for _, f := range append([]*BlockFormat{f16Format}, dotFormats...) {
				for _, s := range []struct{ rows, cols int }{{13, 512}} {
					w := randDotBlocks(r, f, s.rows, s.cols)
					if f.Dot == DotF16 {
						for i := 0; i < len(w.Q); i += 2 {
							w.Q[i+1] &= 0x7b // finite halves
						}
					}
					checkInvariance(t, r, w, invariancePool(r, maxT, s.cols))
				}
			}
		})
	}
}

func checkInvariance(t *testing.T, r *rand.Rand, w *Matrix, pool [][]float32) {
	t.Helper()
	R, C := w.Rows, w.Cols
	// want[i] is MatMul of pool row i alone, with one thread.
	SetThreads(1)
	want := make([][]float32, len(pool))
	for i, row := range pool {
		want[i] = make([]float32, R)
		MatMul(want[i], row, 1, w)
	}
	maxT := invarianceTokens[len(invarianceTokens)-1]
	x := make([]float32, maxT*C)
	dst := make([]float32, maxT*R)
	idx := make([]int, maxT)
	for threads := 1; threads <= 4; threads++ {
		SetThreads(threads)
		for _, T := range invarianceTokens {
			for _, shuffled := range []bool{false, true} {
				for i := range idx[:T] {
					idx[i] = i
					if shuffled {
						idx[i] = r.IntN(len(pool))
					}
					copy(x[i*C:(i+1)*C], pool[idx[i]])
				}
				if threads == 1 {
					// A Serial on its own goroutine: the bits of MatMul.
					var s Serial
					done := make(chan struct{})
					go func() { s.MatMul(dst[:T*R], x[:T*C], T, w); close(done) }()
					<-done
				} else {
					MatMul(dst[:T*R], x[:T*C], T, w)
				}
				for i := range T {
					got := dst[i*R : (i+1)*R]
					for j, v := range got {
						if math.Float32bits(v) != math.Float32bits(want[idx[i]][j]) {
							t.Fatalf("%v %dx%d, %d threads, T=%d (shuffled %v): row %d (pool row %d) output %d = %v (%#x), alone %v (%#x)",
								w.TypeName(), R, C, threads, T, shuffled, i, idx[i], j,
								v, math.Float32bits(v), want[idx[i]][j], math.Float32bits(want[idx[i]][j]))
						}
					}
				}
			}
		}
	}
}

// TestMatMulBlocksExact checks that the fused block kernels give the same
// bits with and without the assembly (exact integer sums, the same
// roundings in the same order), for 1 token and the groups of 2-4.
func TestMatMulBlocksExact(t *testing.T) {
	r := newRand(t)
	for _, f := range dotFormats {
		w := randDotBlocks(r, f, 37, 512)
		for _, T := range []int{1, 3, 4, 9} {
			x, _ := guarded(r, T*512, 0)
			fast := make([]float32, T*37)
			MatMul(fast, x, T, w)
			slow := make([]float32, T*37)
			func() {
				defer forceGeneric()()
				MatMul(slow, x, T, w)
			}()
			for i := range fast {
				if math.Float32bits(fast[i]) != math.Float32bits(slow[i]) && !(isNaN(fast[i]) && isNaN(slow[i])) {
					t.Fatalf("%s T=%d: output %d = %v with the assembly, %v without", f.Name, T, i, fast[i], slow[i])
				}
			}
		}
	}
}

// ExampleMatMul shows the batch invariance that the engine relies on: a
// sequence's outputs do not depend on the sequences batched with it.
func ExampleMatMul() {
	w := &Matrix{Rows: 3, Cols: 10, DType: F32, F32: make([]float32, 30)}
	for i := range w.F32 {
		w.F32[i] = float32(i%7) / 7
	}
	x := make([]float32, 4*10)
	for i := range x {
		x[i] = float32(i%5) / 3
	}
	batch := make([]float32, 4*3)
	MatMul(batch, x, 4, w)
	alone := make([]float32, 3)
	MatMul(alone, x[2*10:3*10], 1, w)
	fmt.Println(fmt.Sprint(batch[2*3:3*3]) == fmt.Sprint(alone))
	// Output: true
}

// TestMatMulI8Exact checks that the int8 path gives the same bits with and
// without the assembly: its sums are exact integers, and the rounding of x
// to int16 is the same in both.
func TestMatMulI8Exact(t *testing.T) {
	r := newRand(t)
	for _, s := range invarianceShapes {
		w := randMatrix(r, I8, s.rows, s.cols, 1)
		for _, T := range []int{1, 4, 11} {
			x, _ := guarded(r, T*s.cols, 0)
			fast := make([]float32, T*s.rows)
			MatMul(fast, x, T, w)
			slow := make([]float32, T*s.rows)
			func() {
				defer forceGeneric()()
				MatMul(slow, x, T, w)
			}()
			for i := range fast {
				if math.Float32bits(fast[i]) != math.Float32bits(slow[i]) {
					t.Fatalf("%dx%d T=%d: output %d = %v with the assembly, %v without", s.rows, s.cols, T, i, fast[i], slow[i])
				}
			}
		}
	}
}
