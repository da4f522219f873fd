package kernels

import (
	"fmt"
	"math"
	"testing"
)

// TestMatMulShared checks that MatMulShared gives each product the bits of
// MatMul alone, over a run of products of every weight type on one x:
// formats that round the activations alike next to each other (the
// rounding is then reused) and apart (it is redone), float and int8
// weights between them, a NaN row and a batch of NaN rows only, both
// activation widths, 1 to 3 threads, on every path.
func TestMatMulShared(t *testing.T) {
	defer SetThreads(0)
	defer SetActivationBits(16)
	paths(t, func(t *testing.T) {
		r := newRand(t)
		const C = 512
		var ws []*Matrix
		rows := []int{66, 37, 130, 12, 2}
		for i, f := range dotFormats {
			ws = append(ws, randDotBlocks(r, f, rows[i%len(rows)], C))
		}
		ws = append(ws, randMatrix(r, I8, 7, C, 0), randMatrix(r, F32, 5, C, 0), ws[0], ws[len(dotFormats)-1], randMatrix(r, I8, 9, C, 0))
		for _, bits := range []int{16, 8} {
			if err := SetActivationBits(bits); err != nil {
				t.Fatal(err)
			}
			for _, T := range []int{1, 3, 9, 33} {
				SetThreads(1 + T%3)
				x, _ := guarded(r, T*C, 1)
				if T > 2 {
					x[2*C+C/3] = float32(math.NaN())
				}
				if T == 3 {
					// Every row with a NaN: no token group at all.
					x[C/5], x[C+C/7] = float32(math.NaN()), float32(math.Inf(1))
				}
				ps := make([]Product, len(ws))
				checks := make([]func(*testing.T), len(ws))
				for i, w := range ws {
					ps[i] = Product{W: w}
					ps[i].Dst, checks[i] = guarded(r, T*w.Rows, 2)
				}
				MatMulShared(x, T, ps)
				for i, p := range ps {
					checks[i](t)
					want := make([]float32, T*p.W.Rows)
					MatMul(want, x, T, p.W)
					for j, g := range p.Dst {
						if math.Float32bits(g) != math.Float32bits(want[j]) && !(isNaN(g) && isNaN(want[j])) {
							t.Fatalf("%d-bit T=%d product %d (%s): output %d: %v shared, %v alone", bits, T, i, matrixName(p.W), j, g, want[j])
						}
					}
				}
				if n := testing.AllocsPerRun(5, func() { MatMulShared(x, T, ps) }); n != 0 {
					t.Errorf("%d-bit T=%d: %v allocations per MatMulShared", bits, T, n)
				}
			}
		}
	})
}

func matrixName(w *Matrix) string {
	if w.DType == Blocks {
		return w.Format.Name
	}
	return fmt.Sprint(w.DType)
}
