package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// toyBlocks is a block format for the tests: 8 weights per block, a float32
// scale then 8 int8 values (w = d·q). The kernels know formats only through
// BlockFormat, so any deterministic format exercises them.
var toyBlocks = &BlockFormat{Name: "toy", Elems: 8, Bytes: 12, Dequantize: func(dst []float32, src []byte) {
	for b := 0; b < len(dst)/8; b++ {
		blk := src[12*b : 12*b+12]
		d := math.Float32frombits(binary.LittleEndian.Uint32(blk))
		for i := range 8 {
			dst[8*b+i] = d * float32(int8(blk[4+i]))
		}
	}
}}

func randBlocks(r *rand.Rand, rows, cols int) *Matrix {
	m := &Matrix{Rows: rows, Cols: cols, DType: Blocks, Format: toyBlocks}
	m.Q = make([]byte, rows*cols/8*12)
	for b := 0; b < len(m.Q); b += 12 {
		binary.LittleEndian.PutUint32(m.Q[b:], math.Float32bits(r.Float32()/64))
		for i := 4; i < 12; i++ {
			m.Q[b+i] = byte(r.IntN(256))
		}
	}
	return m
}

// dequantized is the float32 matrix of m's weights.
func dequantized(m *Matrix) *Matrix {
	f := &Matrix{Rows: m.Rows, Cols: m.Cols, DType: F32, F32: make([]float32, m.Rows*m.Cols)}
	for r := range m.Rows {
		m.Row(f.F32[r*m.Cols:(r+1)*m.Cols], r)
	}
	return f
}

// MatMul with block weights equals MatMul on the dequantized float32
// matrix bit for bit, on every path and shape (chunks of one to many rows,
// T = 1, the few-token and the prefill sizes), and is within the float32
// summation bound of the plain-Go reference.
func TestMatMulBlocks(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, T := range []int{1, 2, 3, 4, 10, 37} {
			for _, R := range []int{1, 3, 5, 24, 67} {
				for _, C := range []int{8, 24, 136, 2056, 4104} {
					w := randBlocks(r, R, C)
					f := dequantized(w)
					x, _ := guarded(r, T*C, 1)
					got, check := guarded(r, T*R, 2)
					want := make([]float32, T*R)
					MatMul(got, x, T, w)
					check(t)
					MatMul(want, x, T, f)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("T=%d R=%d C=%d: out[%d] = %v, float32 weights give %v", T, R, C, i, got[i], want[i])
						}
					}
					compareMatMul(t, w, x, T, 1)
					var s Serial
					s.MatMul(got, x, T, w)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("Serial T=%d R=%d C=%d: out[%d] = %v, want %v", T, R, C, i, got[i], want[i])
						}
					}
				}
			}
		}
	})
}

// A token's outputs do not depend on the other tokens or the thread count.
func TestMatMulBlocksInvariant(t *testing.T) {
	defer SetThreads(0)
	r := newRand(t)
	const R, C = 45, 1032
	w := randBlocks(r, R, C)
	x, _ := guarded(r, 17*C, 0)
	one := make([]float32, R)
	MatMul(one, x[5*C:6*C], 1, w)
	for _, n := range []int{1, 2, 3} {
		SetThreads(n)
		all := make([]float32, 17*R)
		MatMul(all, x, 17, w)
		for i := range one {
			if math.Float32bits(all[5*R+i]) != math.Float32bits(one[i]) {
				t.Fatalf("threads %d: row 5 output %d = %v in a batch of 17, %v alone", n, i, all[5*R+i], one[i])
			}
		}
	}
}

func TestBlocksMatrix(t *testing.T) {
	r := newRand(t)
	w := randBlocks(r, 6, 16)
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := w.Bytes(), int64(6*2*12); got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}
	if w.TypeName() != "toy" || toyBlocks.BitsPerWeight() != 12 {
		t.Errorf("TypeName %q, bits per weight %v", w.TypeName(), toyBlocks.BitsPerWeight())
	}
	f := dequantized(w)
	s := w.Slice(2, 5)
	row := make([]float32, 16)
	for i := range 3 {
		s.Row(row, i)
		for c, v := range row {
			if v != f.F32[(2+i)*16+c] {
				t.Fatalf("Slice(2,5).Row(%d)[%d] = %v, want %v", i, c, v, f.F32[(2+i)*16+c])
			}
		}
	}
	for _, bad := range []*Matrix{
		{Rows: 2, Cols: 12, DType: Blocks, Format: toyBlocks, Q: make([]byte, 36)},
		{Rows: 2, Cols: 16, DType: Blocks, Format: toyBlocks, Q: make([]byte, 47)},
		{Rows: 2, Cols: 16, DType: Blocks, Q: make([]byte, 48)},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate accepted %dx%d with %d bytes", bad.Rows, bad.Cols, len(bad.Q))
		}
	}
}

func TestMatMulBlocksAllocs(t *testing.T) {
	r := newRand(t)
	w := randBlocks(r, 64, 512)
	for _, T := range []int{1, 5, 40} {
		x := make([]float32, T*512)
		dst := make([]float32, T*64)
		MatMul(dst, x, T, w)
		if n := testing.AllocsPerRun(10, func() { MatMul(dst, x, T, w) }); n != 0 {
			t.Errorf("T=%d: %v allocations per MatMul", T, n)
		}
	}
}
