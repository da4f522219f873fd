package kernels

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// dotRef8 is dotRef for 8-bit activations: the float64 product of ggml's
// dequantized weights with d·q, and the bound of the kernels' float32
// evaluation (the same count of roundings per term and per addition).
func dotRef8(f *BlockFormat, row []byte, cols int, a *xAct8, t int) (ref, bound float64) {
	w := make([]float32, cols)
	f.Dequantize(w, row)
	nb := cols / 32
	var mag float64
	for c := range cols {
		x := float64(a.d[(t*cols+c)/a.elems]) * float64(a.q[t*cols+c])
		ref += float64(w[c]) * x
		mag += math.Abs(float64(w[c]) * x)
		if f.Dot == DotQ4K || f.Dot == DotQ5K {
			blk := row[c/256*f.Bytes:]
			_, m := q4kScaleMins(blk[4:16])
			mag += 2 * math.Abs(float64(half(blk[2:]))*float64(m[c%256/32])*x)
		}
	}
	const u = 1.0 / (1 << 24)
	return ref, float64(nb+12) * u * mag
}

func act8X(x []float32, T, C, elems int) *xAct8 {
	var a xAct8
	a.quantize(x, T, C, elems)
	return &a
}

// act8Input returns T rows of C activations with the awkward cases: a
// zero block, a tiny value beside ordinary ones, a huge one, a block whose
// 127/max overflows (zeros), and a row of extremes (±3e38).
func act8Input(r *rand.Rand, T, C int) []float32 {
	x := make([]float32, T*C)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	clear(x[:min(32, C)])
	if C >= 128 {
		x[40] = 1e-38
		x[70] = 3e4
		for i := 96; i < 128; i++ {
			x[i] = 1e-39
		}
	}
	if T > 1 {
		for i := C; i < 2*C; i++ {
			x[i] = float32(3e38 * (2*r.Float64() - 1))
		}
	}
	return x
}

// Every 8-bit kernel (AVX-512 VNNI, AVX2; 1 to 4 tokens) gives the bits of
// the plain Go, inside guard bands, on rows of 1 to 9 blocks, 1 to 17
// rows, random bytes with edge scales and awkward activations, and the
// plain Go is within the float32 bound of the float64 product of the
// dequantized weights and the rounded activations.
func TestAct8Kernels(t *testing.T) {
	asmPaths(t, func(t *testing.T) {
		for _, f := range dotFormats {
			t.Run(f.Name, func(t *testing.T) {
				r := newRand(t)
				for _, nblk := range []int{1, 2, 3, 7, 9} {
					// 17 and 27 rows: one 16-row pass of the one-row-per-lane
					// kernels, then 8 rows (AVX2) and the rest in Go.
					for _, rows := range []int{1, 2, 3, 5, 17, 27} {
						C := nblk * f.Elems
						w := randDotBlocks(r, f, rows, C)
						rb := f.rowBytes(C)
						for _, T := range []int{1, 2, 3, 4, 5, 8, 13} {
							x := act8Input(r, T, C)
							a := act8X(x, T, C, f.Elems)
							nb, nd := C/32, C/f.Elems
							want := make([]float32, T*rows)
							for tk := range T {
								blockDot8RowsGeneric(want[tk*rows:(tk+1)*rows], f.Dot, w.Q, rb, a.q[tk*C:], a.d[tk*nd:], a.s[tk*nb:])
							}
							// One token at a time, then the groups.
							for tk := range T {
								got, check := guarded(r, rows, 3)
								blockDot8Rows(got, f.Dot, w.Q, rb, 1, a.q[tk*C:(tk+1)*C], a.d[tk*nd:(tk+1)*nd], a.s[tk*nb:(tk+1)*nb], a.tokenAux(f.Dot, tk, C))
								check(t)
								for i := range rows {
									if math.Float32bits(got[i]) != math.Float32bits(want[tk*rows+i]) {
										t.Fatalf("%d blocks, token %d, row %d of %d: %v from the assembly, %v from Go", nblk, tk, i, rows, got[i], want[tk*rows+i])
									}
								}
							}
							// Groups of up to 4 tokens, and of up to 8 where
							// the kernels take them (act8MaxTokens).
							for _, maxNT := range []int{groupTokens, groupTokens8} {
								if !useAVX2 || maxNT > act8MaxTokens(f.Dot, rows) {
									continue
								}
								a.group(T, C, maxNT)
								for _, g := range a.groups {
									if g.nt == 1 {
										continue // run as one token (fusedRows8), above
									}
									got, check := guarded(r, rows*g.nt, 1)
									at := func(i, j int) float32 { return got[i*g.nt+j] }
									if f.Dot == DotQ4_0 {
										// One row per lane: the outputs token after token.
										blockDot8Lanes(got, rows, w.Q, rb, rows, g.nt, g.nt, g.q, g.d, g.k8)
										at = func(i, j int) float32 { return got[j*rows+i] }
									} else {
										blockDot8Rows(got, f.Dot, w.Q, rb, g.nt, g.q, g.d, g.s, g.nc(f.Dot))
									}
									check(t)
									for i := range rows {
										for j, tk := range g.tokens[:g.nt] {
											if v := at(i, j); math.Float32bits(v) != math.Float32bits(want[tk*rows+i]) {
												t.Fatalf("%d blocks, %d tokens, token %d, row %d of %d: %v, %v alone", nblk, g.nt, tk, i, rows, v, want[tk*rows+i])
											}
										}
									}
								}
							}
							for i := range rows {
								ref, bound := dotRef8(f, w.Q[i*rb:(i+1)*rb], C, a, 0)
								if math.Abs(ref) > 1e30 || math.IsNaN(ref) {
									continue // the largest halves overflow float32 weights
								}
								if d := math.Abs(float64(want[i]) - ref); !(d <= bound) {
									t.Fatalf("%d blocks, row %d: %v, float64 reference %v (|diff| %g > bound %g)", nblk, i, want[i], ref, d, bound)
								}
							}
						}
					}
				}
			})
		}
	})
}

// Every weight value of each format reaches the 8-bit kernels: one block
// per starting byte (all bytes, nibbles and high bits), activations
// −127…127, against the float64 sum; two rows (bytes from v and v+128), so
// that the row-pair kernels see every value in both rows.
func TestAct8EveryValue(t *testing.T) {
	asmPaths(t, func(t *testing.T) {
		for _, f := range dotFormats {
			t.Run(f.Name, func(t *testing.T) {
				x := make([]float32, f.Elems)
				for i := range x {
					x[i] = float32(i*37%255) - 127 // all of −127…127 within 255 values
				}
				a := act8X(x, 1, f.Elems, f.Elems)
				for v := range 256 {
					blk := make([]byte, 2*f.Bytes)
					for r := range 2 {
						b := blk[r*f.Bytes : (r+1)*f.Bytes]
						for i := range b {
							b[i] = byte(v + 128*r + i)
						}
						switch f.Dot {
						case DotQ8_0, DotQ4_0, DotQ5_0:
							binary.LittleEndian.PutUint16(b, 0x3c00)
						case DotQ4K, DotQ5K:
							binary.LittleEndian.PutUint32(b, 0x3c003c00)
						case DotQ6K:
							binary.LittleEndian.PutUint16(b[208:], 0x3c00)
						}
					}
					var got, want [2]float32
					blockDot8RowsGeneric(want[:], f.Dot, blk, f.Bytes, a.q, a.d, a.s)
					blockDot8Rows(got[:], f.Dot, blk, f.Bytes, 1, a.q, a.d, a.s, a.tokenAux(f.Dot, 0, f.Elems))
					for r := range 2 {
						ref, bound := dotRef8(f, blk[r*f.Bytes:(r+1)*f.Bytes], f.Elems, a, 0)
						if got[r] != want[r] || math.Abs(float64(want[r])-ref) > bound {
							t.Fatalf("row %d, bytes from %d: assembly %v, Go %v, float64 %v", r, v+128*r, got[r], want[r], ref)
						}
					}
				}
			})
		}
	})
}

// quantizeAct8Row: each value within half a step (d/2) of its block, the
// sums exact, the VNNI terms (q+128, each int32 twice, and −128·Σq), ±127 for a block's maximum, zeros for a
// zero block and one whose 127/max overflows, false for Inf and NaN.
func TestQuantizeAct8Row(t *testing.T) {
	r := newRand(t)
	x := make([]float32, 192)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(40)-20))
	}
	clear(x[32:64])
	x[65] = -1e9
	for i := 160; i < 192; i++ {
		x[i] = 1e-38 * float32(i%3)
	}
	q := make([]int8, 192)
	d, s, nc := make([]float32, 6), make([]float32, 6), make([]int32, 144)
	if !quantizeAct8Row(q, d, s, nc, x) {
		t.Fatal("finite row refused")
	}
	for b := range 6 {
		var sum int
		for i := 32 * b; i < 32*b+32; i++ {
			sum += int(q[i])
			if e := math.Abs(float64(x[i]) - float64(d[b])*float64(q[i])); e > float64(d[b])*(0.5+1e-5) && b != 5 {
				t.Fatalf("x[%d] = %v, d·q = %v·%d: error %g above d/2", i, x[i], d[b], q[i], e)
			}
		}
		if float32(sum) != s[b] {
			t.Fatalf("block %d: s = %v, Σq = %d", b, s[b], sum)
		}
		for i := 32 * b; i < 32*b+32; i++ {
			// Each int32 of q+128 twice (the several-token VNNI kernels'
			// two rows), then each lane's −128·Σq (the one-token ones).
			l := i % 32 / 4
			for k := range 2 {
				if u := byte(uint32(nc[24*b+2*l+k]) >> (8 * (i % 4))); u != byte(q[i])^0x80 {
					t.Fatalf("block %d, value %d, copy %d: aux byte %#x, q = %d", b, i, k, u, q[i])
				}
			}
			j := i &^ 3
			if want := -128 * (int32(q[j]) + int32(q[j+1]) + int32(q[j+2]) + int32(q[j+3])); nc[24*b+16+l] != want {
				t.Fatalf("block %d lane %d: nc %d, want %d", b, l, nc[24*b+16+l], want)
			}
		}
	}
	if d[1] != 0 || s[1] != 0 || q[63] != 0 || q[65] != -127 {
		t.Fatalf("zero block: d %v s %v; the block maximum gives %d, want -127", d[1], s[1], q[65])
	}
	if d[5] != 0 || q[170] != 0 {
		t.Fatalf("block of 1e-38 (127/max overflows): d %v, q %d, want zeros", d[5], q[170])
	}
	for _, bad := range []float32{float32(math.Inf(-1)), float32(math.NaN())} {
		y := clone(x)
		y[100] = bad
		if quantizeAct8Row(q, d, s, nc, y) {
			t.Errorf("row with %v accepted", bad)
		}
	}
}

// MatMul with SetActivationBits(8): every output is the 8-bit kernel's
// product of its row and token (batch-invariant, equal on every path,
// thread count and in Serial), a NaN row goes through the float32 path,
// and the result is within the activations' rounding (half a step,
// max|x_block|/254) plus the float32 bound of the product with the
// dequantized matrix.
func TestMatMulAct8(t *testing.T) {
	defer SetThreads(0)
	if err := SetActivationBits(8); err != nil {
		t.Fatal(err)
	}
	defer SetActivationBits(16)
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, f := range dotFormats {
			for _, T := range []int{1, 2, 3, 4, 5, 8, 10, 33} {
				for _, sh := range []struct{ R, nb int }{{1, 1}, {7, 2}, {37, 3}, {130, 1}, {66, 2}} {
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
					a := act8X(x, T, C, f.Elems)
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
							blockDot8RowsGeneric(want[:], f.Dot, w.Q[i*f.rowBytes(C):], f.rowBytes(C), a.q[tk*C:], a.d[tk*C/f.Elems:], a.s[tk*C/32:])
							if math.Float32bits(g) != math.Float32bits(want[0]) {
								t.Fatalf("%s: token %d row %d: MatMul %v, kernel %v", f.Name, tk, i, g, want[0])
							}
							var bound float64
							for c := range C {
								wv := math.Abs(float64(deq.F32[i*C+c]))
								bound += wv * (float64(a.d[(tk*C+c)/f.Elems])*0.5001 + float64(C+20)/(1<<24)*math.Abs(float64(x[tk*C+c])))
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

func TestMatMulAct8Allocs(t *testing.T) {
	if err := SetActivationBits(8); err != nil {
		t.Fatal(err)
	}
	defer SetActivationBits(16)
	r := newRand(t)
	for _, f := range dotFormats {
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

func TestSetActivationBits(t *testing.T) {
	defer SetActivationBits(16)
	for _, b := range []int{0, 4, 32} {
		if SetActivationBits(b) == nil {
			t.Errorf("%d bits accepted", b)
		}
	}
	if ActivationBits() != 16 {
		t.Fatalf("default %d bits", ActivationBits())
	}
	if SetActivationBits(8) != nil || ActivationBits() != 8 {
		t.Fatal("8 bits not set")
	}
}

// Blocks of 256 (the K-formats): one scale per 256 values (within half a
// step), Σ q per 32 and aux holding q+128 as bytes.
func TestQuantizeAct8Row256(t *testing.T) {
	r := newRand(t)
	x := make([]float32, 512)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	x[300] = -50
	q := make([]int8, 512)
	d, s, aux := make([]float32, 2), make([]float32, 16), make([]int32, 128)
	if !quantizeAct8Row(q, d, s, aux, x) {
		t.Fatal("finite row refused")
	}
	if q[300] != -127 || d[1] != 50.0/127 {
		t.Fatalf("maximum of the second block: q %d, d %v", q[300], d[1])
	}
	for i := range x {
		b := i / 256
		if e := math.Abs(float64(x[i]) - float64(d[b])*float64(q[i])); e > float64(d[b])*(0.5+1e-5) {
			t.Fatalf("x[%d] = %v, d·q = %v·%d: error %g above d/2", i, x[i], d[b], q[i], e)
		}
		if u := byte(uint32(aux[i/4]) >> (8 * (i % 4))); u != byte(q[i])^0x80 {
			t.Fatalf("aux byte %d = %#x, q = %d", i, u, q[i])
		}
	}
	for b := range s {
		var sum int
		for _, v := range q[32*b : 32*b+32] {
			sum += int(v)
		}
		if float32(sum) != s[b] {
			t.Fatalf("block %d: s = %v, Σq = %d", b, s[b], sum)
		}
	}
}

// fma32 rounds a·b + c once: against the exact sum (math/big) rounded to
// float32, on random operands, sums near a float32 midpoint (where
// rounding twice goes wrong), cancellations, subnormal and overflowing
// results; and against the hardware (the 8-bit kernels' VFMADD231PS) by
// TestAct8Kernels.
func TestFMA32(t *testing.T) {
	r := newRand(t)
	exact := func(a, b, c float32) float32 {
		x := new(big.Float).SetPrec(300).SetFloat64(float64(a))
		x.Mul(x, new(big.Float).SetPrec(300).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetPrec(300).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	sig := func() float32 { return 1 + float32(r.IntN(1<<23))/(1<<23) } // [1, 2)
	sign := func() float32 { return float32(1 - 2*r.IntN(2)) }
	check := func(a, b, c float32) {
		t.Helper()
		if got, want := fma32(a, b, c), exact(a, b, c); math.Float32bits(got) != math.Float32bits(want) && !(got == 0 && want == 0 && math.Signbit(float64(got)) == math.Signbit(float64(want))) {
			t.Fatalf("fma32(%g, %g, %g) = %g, exact %g", a, b, c, got, want)
		}
	}
	naive := 0
	for range 200000 {
		var a, b, c float32
		switch r.IntN(4) {
		case 0: // anything
			a = sign() * sig() * float32(math.Ldexp(1, r.IntN(60)-30))
			b = sign() * sig() * float32(math.Ldexp(1, r.IntN(60)-30))
			c = sign() * sig() * float32(math.Ldexp(1, r.IntN(60)-30))
		case 1: // a·b = half an ulp of c less k²·2^-70: the float64 sum is a midpoint
			k := float32(1 + r.IntN(300))
			c = sig()
			a = 1 + k/(1<<23)
			b = (1 - k/(1<<23)) / (1 << 24)
			if r.IntN(2) == 0 {
				a, c = -a, -c
			}
		case 2: // cancellation
			a, b = sign()*sig(), sig()
			c = -a * b * (1 + float32(r.IntN(5)-2)/(1<<23))
		default: // subnormal and overflowing results
			a = sign() * sig() * float32(math.Ldexp(1, -70-r.IntN(10)))
			b = sig() * float32(math.Ldexp(1, -60-r.IntN(10)))
			c = sign() * float32(math.Ldexp(1, -126-r.IntN(20)))
			if r.IntN(2) == 0 {
				a, b, c = sig()*float32(math.Ldexp(1, 100)), sig()*float32(math.Ldexp(1, 27)), sign()*math.MaxFloat32
			}
		}
		check(a, b, c)
		if float32(float64(a)*float64(b)+float64(c)) != exact(a, b, c) {
			naive++
		}
	}
	if naive == 0 {
		t.Error("no case where rounding twice goes wrong: the test cases are too easy")
	}
	t.Logf("%d cases where float32(float64 sum) would be wrong", naive)
	inf, negZero := float32(math.Inf(1)), float32(math.Copysign(0, -1))
	for _, c := range [][3]float32{{inf, 0, 1}, {inf, 2, -inf}, {inf, 1, 1}, {0, 0, negZero}, {negZero, 0, negZero}, {1, 0, negZero}} {
		got, want := fma32(c[0], c[1], c[2]), c[0]*c[1]+c[2]
		if math.Float32bits(got) != math.Float32bits(want) && !(isNaN(got) && isNaN(want)) {
			t.Errorf("fma32(%v, %v, %v) = %v, want %v", c[0], c[1], c[2], got, want)
		}
	}
}
