package kernels

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// The formats of the fused kernels, as the GGUF loader declares them.
var dotFormats = []*BlockFormat{
	{Name: "Q8_0", Elems: 32, Bytes: 34, Dequantize: DequantizeQ8_0, Dot: DotQ8_0},
	{Name: "Q4_0", Elems: 32, Bytes: 18, Dequantize: DequantizeQ4_0, Dot: DotQ4_0},
	{Name: "Q4_K", Elems: 256, Bytes: 144, Dequantize: DequantizeQ4K, Dot: DotQ4K},
	{Name: "Q5_K", Elems: 256, Bytes: 176, Dequantize: dequantQ5KTest, Dot: DotQ5K},
	{Name: "Q6_K", Elems: 256, Bytes: 210, Dequantize: DequantizeQ6K, Dot: DotQ6K},
	{Name: "Q5_0", Elems: 32, Bytes: 22, Dequantize: dequantQ5_0Test, Dot: DotQ5_0},
}

// dequantQ5_0Test is ggml's dequantize_row_q5_0.
func dequantQ5_0Test(dst []float32, src []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := src[22*b : 22*b+22]
		d := half(blk)
		qh := binary.LittleEndian.Uint32(blk[2:])
		for j := range 16 {
			x0 := int32(blk[6+j]&15|byte((qh>>j)<<4)&0x10) - 16
			x1 := int32(blk[6+j]>>4|byte(qh>>(j+12))&0x10) - 16
			dst[32*b+j] = float32(x0) * d
			dst[32*b+j+16] = float32(x1) * d
		}
	}
}

// dequantQ5KTest is ggml's dequantize_row_q5_K (float32, each product and
// difference rounded), for the tests' float32 reference.
func dequantQ5KTest(dst []float32, src []byte) {
	for b := 0; b < len(dst)/256; b++ {
		blk := src[176*b : 176*b+176]
		d, dmin := half(blk), half(blk[2:])
		sc, m := q4kScaleMins(blk[4:16])
		for j := range 8 {
			for i := range 32 {
				v := int(blk[48+32*(j/2)+i]>>(4*(j%2))) & 15
				if blk[16+i]>>j&1 != 0 {
					v += 16
				}
				dst[256*b+32*j+i] = float32(float32(d*float32(sc[j]))*float32(v)) - float32(dmin*float32(m[j]))
			}
		}
	}
}

// halves are the block scales of the tests: zero, negative zero,
// subnormal, tiny, ordinary and the largest finite halves.
var halves = []uint16{0x0000, 0x8000, 0x0001, 0x0400, 0x1c00, 0x2a3d, 0xa3d7, 0x3c00, 0x7bff, 0xfbff}

// randDotBlocks returns rows×cols weights in format f: random bytes with
// finite half scales, most of them ordinary (about 1/64), some of them
// from halves.
func randDotBlocks(r *rand.Rand, f *BlockFormat, rows, cols int) *Matrix {
	m := &Matrix{Rows: rows, Cols: cols, DType: Blocks, Format: f, Q: make([]byte, rows*cols/f.Elems*f.Bytes)}
	for i := range m.Q {
		m.Q[i] = byte(r.IntN(256))
	}
	scale := func() uint16 {
		if r.IntN(8) == 0 {
			return halves[r.IntN(len(halves))]
		}
		return uint16(0x2000+r.IntN(0x400)) | uint16(r.IntN(2))<<15 // ~±2^-7
	}
	for b := 0; b < len(m.Q); b += f.Bytes {
		blk := m.Q[b : b+f.Bytes]
		switch f.Dot {
		case DotQ8_0, DotQ4_0, DotQ4K, DotQ5K, DotQ5_0:
			binary.LittleEndian.PutUint16(blk, scale())
			if f.Dot == DotQ4K || f.Dot == DotQ5K {
				binary.LittleEndian.PutUint16(blk[2:], scale())
			}
		case DotQ6K:
			binary.LittleEndian.PutUint16(blk[208:], scale())
		}
	}
	return m
}

// dotRef is the fused product in float64 from the weights as ggml
// dequantizes them (float32) and the activations as rounded (d·q), with
// the bound of its float32 evaluation: the block scales are rounded twice
// and each lane product once (3u on each term), each of the nb+3
// additions of a lane or a tree costs u on the sums.
func dotRef(f *BlockFormat, row []byte, cols int, a *xQ8, t int) (ref, bound float64) {
	w := make([]float32, cols)
	f.Dequantize(w, row)
	nb := cols / 32
	var mag float64
	for c := range cols {
		x := float64(a.d[t*nb+c/32]) * float64(a.q[t*cols+c])
		ref += float64(w[c]) * x
		mag += math.Abs(float64(w[c]) * x)
		if f.Dot == DotQ4K || f.Dot == DotQ5K {
			// The kernel sums d·sc·q·x and dmin·m·x apart: both count.
			blk := row[c/256*f.Bytes:]
			_, m := q4kScaleMins(blk[4:16])
			mag += 2 * math.Abs(float64(half(blk[2:]))*float64(m[c%256/32])*x)
		}
	}
	const u = 1.0 / (1 << 24)
	// The dequantized weights round d·sc·q − dmin·m (ggml) where the
	// kernel keeps the integers: another 3u per weight.
	return ref, float64(nb+12) * u * mag
}

// quantizedX rounds T rows of x for the fused kernels.
func quantizedX(x []float32, T, C int) *xQ8 {
	var a xQ8
	a.quantize(x, T, C)
	return &a
}

// The assembly of each fused kernel gives the bits of its plain-Go
// kernel, and both are within the float32 bound of a float64 product of
// the dequantized weights and the rounded activations, on rows of 1 to 9
// blocks (one to several super-blocks), odd row counts, random bytes with
// edge scales, and activations with zero, tiny and huge blocks.
func TestBlockDotKernels(t *testing.T) {
	asmPaths(t, testBlockDotKernels)
}

func testBlockDotKernels(t *testing.T) {
	for _, f := range dotFormats {
		t.Run(f.Name, func(t *testing.T) {
			r := newRand(t)
			for _, nblk := range []int{1, 2, 3, 7, 9} {
				for _, rows := range []int{1, 2, 3, 5, 17} {
					C := nblk * f.Elems
					w := randDotBlocks(r, f, rows, C)
					x := make([]float32, C)
					for i := range x {
						x[i] = float32(r.NormFloat64())
					}
					clear(x[:min(32, C)]) // a zero block
					if C >= 128 {
						x[40] = 1e-38 // a tiny value beside ordinary ones
						x[70] = 3e4
						for i := 96; i < 128; i++ {
							x[i] = 1e-39 // a block whose 127/max overflows: zeros
						}
					}
					a := quantizedX(x, 1, C)
					if !a.ok[0] {
						t.Fatal("finite row not quantized")
					}
					rb := f.rowBytes(C)
					want, check := guarded(r, rows, 1)
					blockDotRowsGeneric(want, f.Dot, w.Q, rb, a.q, a.d, a.s)
					check(t)
					got, check := guarded(r, rows, 3)
					blockDotRows(got, f.Dot, w.Q, rb, a.q, a.d, a.s)
					check(t)
					for i := range rows {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(isNaN(got[i]) && isNaN(want[i])) {
							t.Fatalf("%d blocks, row %d of %d: %v from the assembly path, %v from Go", nblk, i, rows, got[i], want[i])
						}
						ref, bound := dotRef(f, w.Q[i*rb:(i+1)*rb], C, a, 0)
						if math.Abs(ref) > 1e30 || math.IsNaN(ref) {
							continue // the largest halves overflow float32 weights
						}
						if d := math.Abs(float64(want[i]) - ref); !(d <= bound) {
							t.Fatalf("%d blocks, row %d: %v, float64 reference %v (|diff| %g > bound %g)", nblk, i, want[i], ref, d, bound)
						}
					}
				}
			}
		})
	}
}

func isNaN(v float32) bool { return v != v }

// Every weight value of each format reaches the kernels: one block whose
// weights take all their values (every byte, nibble and high bit), with
// ones as activations, against the float64 sum.
// Two rows (the bytes from v and from v+128), so that the kernels of row
// pairs see every value in both rows.
func TestBlockDotEveryValue(t *testing.T) {
	asmPaths(t, testBlockDotEveryValue)
}

func testBlockDotEveryValue(t *testing.T) {
	for _, f := range dotFormats {
		t.Run(f.Name, func(t *testing.T) {
			for v := range 256 {
				blk := make([]byte, 2*f.Bytes)
				for i := range f.Bytes {
					blk[i] = byte(v + i)
					blk[f.Bytes+i] = byte(v + 128 + i)
				}
				for r := range 2 {
					b := blk[r*f.Bytes:]
					switch f.Dot {
					case DotQ8_0, DotQ4_0, DotQ5_0:
						binary.LittleEndian.PutUint16(b, 0x3c00) // 1
					case DotQ4K, DotQ5K:
						binary.LittleEndian.PutUint32(b, 0x3c003c00)
					case DotQ6K:
						binary.LittleEndian.PutUint16(b[208:], 0x3c00)
					}
				}
				x := make([]float32, f.Elems)
				for i := range x {
					x[i] = float32(i%5) - 2
				}
				a := quantizedX(x, 1, f.Elems)
				var got, want [2]float32
				blockDotRowsGeneric(want[:], f.Dot, blk, f.Bytes, a.q, a.d, a.s)
				blockDotRows(got[:], f.Dot, blk, f.Bytes, a.q, a.d, a.s)
				for r := range 2 {
					ref, bound := dotRef(f, blk[r*f.Bytes:(r+1)*f.Bytes], f.Elems, a, 0)
					if got[r] != want[r] || math.Abs(float64(want[r])-ref) > bound {
						t.Fatalf("row %d, bytes from %d: assembly %v, Go %v, float64 %v", r, v+128*r, got[r], want[r], ref)
					}
				}
			}
		})
	}
}

// quantizeQ8Row: each value within half a step of its block (d/2, with
// the rounding of d and of x·127/m), the block sums exact, zeros for a
// zero block, false for Inf and NaN.
func TestQuantizeQ8Row(t *testing.T) {
	r := newRand(t)
	x := make([]float32, 160)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(40)-20))
	}
	clear(x[32:64])
	x[65] = -1e9
	q := make([]int16, 160)
	d, s := make([]float32, 5), make([]float32, 5)
	if !quantizeQ8Row(q, d, s, x) {
		t.Fatal("finite row refused")
	}
	for b := range 5 {
		var sum int
		for i := 32 * b; i < 32*b+32; i++ {
			sum += int(q[i])
			if e := math.Abs(float64(x[i]) - float64(d[b])*float64(q[i])); e > float64(d[b])*(0.5+1e-5) {
				t.Fatalf("x[%d] = %v, d·q = %v·%d: error %g above d/2", i, x[i], d[b], q[i], e)
			}
		}
		if float32(sum) != s[b] {
			t.Fatalf("block %d: s = %v, Σq = %d", b, s[b], sum)
		}
	}
	if d[1] != 0 || s[1] != 0 || q[2*32-1] != 0 || q[65] != -32767 {
		t.Fatalf("zero block: d %v s %v; the block maximum gives %d, want -32767", d[1], s[1], q[65])
	}
	for _, bad := range []float32{float32(math.Inf(1)), float32(math.NaN())} {
		y := clone(x)
		y[100] = bad
		if quantizeQ8Row(q, d, s, y) {
			t.Errorf("row with %v accepted", bad)
		}
	}
}

// quantizeQ8RowRef is quantizeQ8Row written out in plain Go, value by
// value: the reference the vectorised one must equal bit for bit.
func quantizeQ8RowRef(q []int16, d, s, x []float32) bool {
	for b := range d {
		xb := x[q8Block*b : q8Block*(b+1)]
		qb := q[q8Block*b : q8Block*(b+1)]
		var m float32
		for _, v := range xb {
			v = float32(math.Abs(float64(v)))
			if !(v <= math.MaxFloat32) {
				return false
			}
			m = max(m, v)
		}
		id := qMax / m
		if m == 0 || id > math.MaxFloat32 {
			clear(qb)
			d[b], s[b] = 0, 0
			continue
		}
		var sum int32
		for i, v := range xb {
			r := math.RoundToEven(float64(v * id))
			r = max(-qMax, min(qMax, r))
			qb[i] = int16(r)
			sum += int32(r)
		}
		d[b], s[b] = m/qMax, float32(sum)
	}
	return true
}

// quantizeQ8Row equals its plain-Go reference bit for bit on every path:
// random magnitudes over 80 binades, blocks of ties (x·id = k + 1/2), zero,
// subnormal and huge blocks, and rows with an Inf or a NaN.
func TestQuantizeQ8RowRef(t *testing.T) {
	asmPaths(t, func(t *testing.T) {
		r := newRand(t)
		const nb = 12
		for iter := range 300 {
			x := make([]float32, nb*q8Block)
			for i := range x {
				x[i] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(80)-40))
			}
			switch iter % 6 {
			case 1: // ties: m = 32767 so id = 1, values k + 1/2
				for i := range q8Block {
					x[i] = float32(r.IntN(65534)-32767) + 0.5
				}
				x[0] = 32767
			case 2:
				clear(x[q8Block : 2*q8Block])
			case 3:
				for i := range q8Block {
					x[2*q8Block+i] = float32(r.IntN(5)-2) * math.SmallestNonzeroFloat32
				}
			case 4:
				x[3*q8Block+r.IntN(q8Block)] = math.MaxFloat32
			case 5:
				x[r.IntN(len(x))] = [...]float32{float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}[r.IntN(3)]
			}
			q, d, s := make([]int16, len(x)), make([]float32, nb), make([]float32, nb)
			q2, d2, s2 := make([]int16, len(x)), make([]float32, nb), make([]float32, nb)
			ok, ok2 := quantizeQ8Row(q, d, s, x), quantizeQ8RowRef(q2, d2, s2, x)
			if ok != ok2 {
				t.Fatalf("iteration %d: accepted %v, reference %v", iter, ok, ok2)
			}
			if !ok {
				continue
			}
			for i := range q {
				if q[i] != q2[i] {
					t.Fatalf("iteration %d: q[%d] = %d, reference %d (x %v)", iter, i, q[i], q2[i], x[i])
				}
			}
			for b := range nb {
				if math.Float32bits(d[b]) != math.Float32bits(d2[b]) || s[b] != s2[b] {
					t.Fatalf("iteration %d, block %d: d %v s %v, reference d %v s %v", iter, b, d[b], s[b], d2[b], s2[b])
				}
			}
		}
	})
}

// MatMul with fused block weights: every output is the kernel's product of
// its row and token (so MatMul is batch-invariant and equal on every path
// and thread count, and Serial gives the same), a row of x with a NaN is
// multiplied through the dequantized weights in float32, and the result
// is within the activations' rounding of the float32 product with the
// dequantized matrix.
func TestMatMulFusedBlocks(t *testing.T) {
	defer SetThreads(0)
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, f := range dotFormats {
			// T = 4, 7, 8 and 14 (one NaN token) give, with the even rows
			// (130), groups of 3, 6, 7 and 8+5 tokens for the AVX-512
			// kernels of up to 8.
			for _, T := range []int{1, 2, 3, 4, 5, 7, 8, 10, 14, 33} {
				for _, sh := range []struct{ R, nb int }{{1, 1}, {7, 2}, {37, 3}, {130, 1}} {
					R, C := sh.R, sh.nb*f.Elems
					w := randDotBlocks(r, f, R, C)
					for b := 0; b < len(w.Q); b += f.Bytes { // ordinary scales only
						switch f.Dot {
						case DotQ6K:
							binary.LittleEndian.PutUint16(w.Q[b+208:], 0x2000+uint16(r.IntN(0x400)))
						default:
							binary.LittleEndian.PutUint16(w.Q[b:], 0x2000+uint16(r.IntN(0x400)))
						}
					}
					deq := dequantized(w)
					x, _ := guarded(r, T*C, 1)
					if T > 2 {
						x[2*C+C/2] = float32(math.NaN())
					}
					got, check := guarded(r, T*R, 2)
					SetThreads(1 + T%3)
					MatMul(got, x, T, w)
					check(t)
					var s Serial
					ser := make([]float32, T*R)
					s.MatMul(ser, x, T, w)
					a := quantizedX(x, T, C)
					one := make([]float32, R)
					flt := make([]float32, R)
					for tk := range T {
						MatMul(one, x[tk*C:(tk+1)*C], 1, w)
						MatMul(flt, x[tk*C:(tk+1)*C], 1, deq)
						for i := range R {
							g := got[tk*R+i]
							if math.Float32bits(g) != math.Float32bits(one[i]) || math.Float32bits(g) != math.Float32bits(ser[tk*R+i]) {
								t.Fatalf("%s T=%d R=%d C=%d: token %d row %d: %v in the batch, %v alone, %v serial", f.Name, T, R, C, tk, i, g, one[i], ser[tk*R+i])
							}
							if !a.ok[tk] {
								if math.Float32bits(g) != math.Float32bits(flt[i]) && !(isNaN(g) && isNaN(flt[i])) {
									t.Fatalf("%s: NaN row %d: %v, float32 path %v", f.Name, i, g, flt[i])
								}
								continue
							}
							var want [1]float32
							blockDotRowsGeneric(want[:], f.Dot, w.Q[i*f.rowBytes(C):], f.rowBytes(C), a.q[tk*C:], a.d[tk*C/32:], a.s[tk*C/32:])
							if math.Float32bits(g) != math.Float32bits(want[0]) {
								t.Fatalf("%s: token %d row %d: MatMul %v, kernel %v", f.Name, tk, i, g, want[0])
							}
							// The rounding of x moves each value by at most half a
							// step of its block (d_b/2, about 1/254 of the block's
							// largest magnitude); the float32 sums add their own bound.
							var bound float64
							for c := range C {
								wv := math.Abs(float64(deq.F32[i*C+c]))
								bound += wv * (float64(a.d[tk*C/32+c/32])*0.5001 + float64(C+20)/(1<<24)*math.Abs(float64(x[tk*C+c])))
							}
							if d := math.Abs(float64(g - flt[i])); d > bound {
								t.Fatalf("%s T=%d R=%d C=%d: token %d row %d: %v, float32 weights give %v (|diff| %g > %g)", f.Name, T, R, C, tk, i, g, flt[i], d, bound)
							}
						}
					}
				}
			}
		}
	})
}

func TestMatMulFusedAllocs(t *testing.T) {
	r := newRand(t)
	for _, f := range append([]*BlockFormat{f16Format}, dotFormats...) {
		w := randDotBlocks(r, f, 64, 512)
		for _, T := range []int{1, 5, 40} {
			x := make([]float32, T*512)
			dst := make([]float32, T*64)
			MatMul(dst, x, T, w)
			if n := testing.AllocsPerRun(10, func() { MatMul(dst, x, T, w) }); n != 0 {
				t.Errorf("%s T=%d: %v allocations per MatMul", f.Name, T, n)
			}
		}
	}
}

// A format whose geometry is not its Dot's is multiplied through the
// dequantized weights.
func TestFusedGeometry(t *testing.T) {
	for _, f := range dotFormats {
		bad := *f
		bad.Bytes++
		w := &Matrix{Rows: 1, Cols: f.Elems, DType: Blocks, Format: &bad}
		if fused(w) {
			t.Errorf("%s with %d bytes per block taken as fused", f.Name, bad.Bytes)
		}
		w.Format = f
		if !fused(w) {
			t.Errorf("%s not fused", f.Name)
		}
	}
}

var f16Format = &BlockFormat{Name: "F16", Elems: 8, Bytes: 16, Dequantize: DequantizeF16, Dot: DotF16}

// Float16 weights multiply bit for bit as the float32 matrix of their
// values, on every path, token count (the 1-4 token kernels and their
// remainders) and thread count, and Serial the same.
func TestMatMulF16(t *testing.T) {
	defer SetThreads(0)
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, T := range []int{1, 2, 3, 4, 5, 7, 10, 33} {
			for _, sh := range []struct{ R, C int }{{1, 8}, {3, 16}, {7, 24}, {37, 200}, {130, 1032}} {
				w := &Matrix{Rows: sh.R, Cols: sh.C, DType: Blocks, Format: f16Format, Q: make([]byte, 2*sh.R*sh.C)}
				for i := 0; i < len(w.Q); i += 2 {
					h := uint16(r.IntN(0x7c00)) | uint16(r.IntN(2))<<15 // finite
					binary.LittleEndian.PutUint16(w.Q[i:], h)
				}
				f := dequantized(w)
				x, _ := guarded(r, T*sh.C, 1)
				got, check := guarded(r, T*sh.R, 2)
				SetThreads(1 + T%3)
				MatMul(got, x, T, w)
				check(t)
				want := make([]float32, T*sh.R)
				MatMul(want, x, T, f)
				var s Serial
				ser := make([]float32, T*sh.R)
				s.MatMul(ser, x, T, w)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(ser[i]) != math.Float32bits(want[i]) {
						t.Fatalf("T=%d %dx%d: out[%d] = %v (serial %v), float32 weights give %v", T, sh.R, sh.C, i, got[i], ser[i], want[i])
					}
				}
			}
		}
	})
}
