package kernels

import (
	"fmt"
	"math"
	"testing"
)

// attnShapes are (T, past, nH, nKV, hd): one head, groups of 1 to 4 heads,
// head sizes off the vector width, decode (T = 1) after long and empty
// pasts, prefill chunks after a past.
var attnShapes = [][5]int{
	{1, 0, 1, 1, 1}, {5, 0, 4, 2, 13}, {3, 17, 6, 3, 20}, {1, 100, 8, 2, 128}, {9, 7, 2, 1, 33}, {40, 0, 4, 1, 64},
}

// TestAttention compares Attention with the float64 reference on random
// inputs, and checks that writes stay inside out.
func TestAttention(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, sh := range attnShapes {
			T, past, nH, nKV, hd := sh[0], sh[1], sh[2], sh[3], sh[4]
			name := fmt.Sprintf("T=%d past=%d heads=%d/%d hd=%d", T, past, nH, nKV, hd)
			q, _ := guarded(r, T*nH*hd, 1)
			K, _ := guarded(r, (past+T)*nKV*hd, 2)
			V, _ := guarded(r, (past+T)*nKV*hd, 3)
			out, check := guarded(r, T*nH*hd, 5)
			want := make([]float32, len(out))
			// Scores of a few units (q, k in [-1, 1], scale 4/sqrt(hd)), so
			// that the softmax is far from uniform.
			scale := float32(4 / math.Sqrt(float64(hd)))
			Attention(out, q, K, V, T, past, nH, nKV, hd, scale, 0)
			AttentionGeneric(want, q, K, V, T, past, nH, nKV, hd, scale)
			check(t)
			// Outputs are convex combinations of values in [-1, 1]: float32
			// dot products of up to 128 terms, an exp within 2 ulp and
			// float32 sums of weights err by about 1e-6; 1e-5 leaves a
			// margin of ten.
			for i := range out {
				if d := math.Abs(float64(out[i] - want[i])); !(d <= 1e-5) {
					t.Fatalf("%s: out[%d] = %v, reference %v", name, i, out[i], want[i])
				}
			}
		}
	})
}

// TestAttentionInvariant: a query's output has the same bits computed with
// the other queries of its chunk, one at a time as decoding does, and on
// one thread or two.
func TestAttentionInvariant(t *testing.T) {
	r := newRand(t)
	// Large enough (about 1M multiply-adds) for the pool to use every thread.
	const T, past, nH, nKV, hd = 23, 30, 4, 2, 64
	q, _ := guarded(r, T*nH*hd, 0)
	K, _ := guarded(r, (past+T)*nKV*hd, 0)
	V, _ := guarded(r, (past+T)*nKV*hd, 0)
	qd := nH * hd
	all := make([]float32, T*qd)
	Attention(all, q, K, V, T, past, nH, nKV, hd, 0.3, 64)
	for tt := range T {
		one := make([]float32, qd)
		Attention(one, q[tt*qd:(tt+1)*qd], K, V, 1, past+tt, nH, nKV, hd, 0.3, 64)
		for i, v := range one {
			if math.Float32bits(v) != math.Float32bits(all[tt*qd+i]) {
				t.Fatalf("query %d alone: out[%d] = %v, in a chunk %v", tt, i, v, all[tt*qd+i])
			}
		}
	}
	defer SetThreads(Threads())
	SetThreads(1)
	single := make([]float32, T*qd)
	Attention(single, q, K, V, T, past, nH, nKV, hd, 0.3, 64)
	for i, v := range single {
		if math.Float32bits(v) != math.Float32bits(all[i]) {
			t.Fatalf("one thread: out[%d] = %v, two threads %v", i, v, all[i])
		}
	}
}

// TestWeightedSumAndStridedMatVec: the two building blocks of Attention give
// the bits of their definitions (axpy per key; the matrix-vector product of
// the rows packed together) for rows ld floats apart, on lengths around the vector widths, and
// write nothing outside their outputs.
func TestWeightedSumAndStridedMatVec(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, C := range lengths {
			for _, keys := range []int{0, 1, 3, 17} {
				ld := C + 5
				w, _ := guarded(r, max(0, (keys-1)*ld+C), 1)
				p, _ := guarded(r, keys, 2)
				o, check := guarded(r, C, 3)
				want := clone(o)
				for j := range keys {
					axpy(p[j], w[j*ld:j*ld+C], want)
				}
				weightedSum(o, w, ld, p)
				check(t)
				for i := range o {
					if math.Float32bits(o[i]) != math.Float32bits(want[i]) {
						t.Fatalf("weightedSum C=%d keys=%d: o[%d] = %v, axpy per key %v", C, keys, i, o[i], want[i])
					}
				}
				if C == 0 || keys == 0 {
					continue
				}
				x, _ := guarded(r, C, 4)
				y, checkY := guarded(r, keys, 5)
				matVecStrided(y, w, ld, x)
				checkY(t)
				// The same rows packed: the matrix-vector product's bits.
				packed := &Matrix{Rows: keys, Cols: C, DType: F32, F32: make([]float32, keys*C)}
				for j := range keys {
					copy(packed.F32[j*C:(j+1)*C], w[j*ld:j*ld+C])
				}
				rows := make([]float32, keys)
				matVecRows(rows, packed, x, 0, keys)
				for j := range keys {
					if math.Float32bits(y[j]) != math.Float32bits(rows[j]) {
						t.Fatalf("matVecStrided C=%d keys=%d: y[%d] = %v, packed rows %v", C, keys, j, y[j], rows[j])
					}
				}
			}
		}
	})
}

// toBF16 rounds v to bfloat16, and returns the rounded values widened too.
func toBF16(v []float32) ([]uint16, []float32) {
	b, w := make([]uint16, len(v)), make([]float32, len(v))
	for i, x := range v {
		b[i] = F32ToBF16(x)
		w[i] = BF16ToF32(b[i])
	}
	return b, w
}

// TestAttentionBF16: with keys and values in bfloat16, AttentionBF16 gives
// the bits of Attention over the same values widened to float32 (the
// widening is exact and the operations are the same), so it inherits its
// accuracy and its invariance.
func TestAttentionBF16(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, sh := range attnShapes {
			T, past, nH, nKV, hd := sh[0], sh[1], sh[2], sh[3], sh[4]
			q, _ := guarded(r, T*nH*hd, 1)
			K32, _ := guarded(r, (past+T)*nKV*hd, 2)
			V32, _ := guarded(r, (past+T)*nKV*hd, 3)
			K16, Kw := toBF16(K32)
			V16, Vw := toBF16(V32)
			out, check := guarded(r, T*nH*hd, 5)
			want := make([]float32, len(out))
			scale := float32(4 / math.Sqrt(float64(hd)))
			AttentionBF16(out, q, K16, V16, T, past, nH, nKV, hd, scale, 0)
			Attention(want, q, Kw, Vw, T, past, nH, nKV, hd, scale, 0)
			check(t)
			for i := range out {
				if math.Float32bits(out[i]) != math.Float32bits(want[i]) {
					t.Fatalf("T=%d past=%d heads=%d/%d hd=%d: out[%d] = %v, float32 storage %v", T, past, nH, nKV, hd, i, out[i], want[i])
				}
			}
		}
	})
}

// TestScanBackStep compares ScanBackStep with the plain loop on random
// inputs, for the assembly's state size (16) and others, and checks that
// writes stay inside the outputs.
func TestScanBackStep(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, N := range []int{16, 8, 5} {
			for _, nc := range []int{1, 3, 7} {
				n := nc * N
				in := func(k, off int) []float32 { v, _ := guarded(r, k, off); return v }
				cur, prev, av, A := in(n, 1), in(n, 2), in(n, 3), in(n, 4)
				B, C, s := in(N, 5), in(N, 6), in(3*nc, 7)
				dh, c1 := guarded(r, n, 1)
				gA, c2 := guarded(r, n, 2)
				dB, c3 := guarded(r, N, 3)
				dC, c4 := guarded(r, N, 4)
				out, c5 := guarded(r, 2*nc, 5)
				w := [][]float32{clone(dh), clone(gA), clone(dB), clone(dC), clone(out)}
				ScanBackStep(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out, nc, N)
				ScanBackStepGeneric(w[0], cur, prev, av, A, w[1], B, C, w[2], w[3], s, w[4], nc, N)
				for _, c := range []func(*testing.T){c1, c2, c3, c4, c5} {
					c(t)
				}
				// Inputs in [-1, 1]: every result is a sum of at most 16
				// products of 4 factors, each below 1 in magnitude; fused
				// multiply-adds and 8-lane sums move it by a few float32
				// roundings of such terms, below 1e-5.
				for k, got := range [][]float32{dh, gA, dB, dC, out} {
					for i := range got {
						if d := math.Abs(float64(got[i] - w[k][i])); !(d <= 1e-5) {
							t.Fatalf("N=%d nc=%d: output %d[%d] = %v, plain loop %v", N, nc, k, i, got[i], w[k][i])
						}
					}
				}
			}
		}
	})
}

// TestTransposeCols: every element lands where the definition puts it, for
// shapes around the 8×8 tiles and column ranges that start off a tile, and
// nothing outside the destination's columns is written.
func TestTransposeCols(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, rows := range []int{1, 7, 8, 9, 16, 33} {
			for _, cols := range []int{1, 8, 13, 32, 40} {
				for _, cr := range [][2]int{{0, cols}, {cols / 3, cols}, {0, cols / 2}} {
					c0, c1 := cr[0], cr[1]
					src, _ := guarded(r, rows*cols, 1)
					dst, check := guarded(r, cols*rows, 2)
					before := clone(dst)
					TransposeCols(dst, src, rows, cols, c0, c1)
					check(t)
					for c := range cols {
						for rr := range rows {
							want := before[c*rows+rr]
							if c >= c0 && c < c1 {
								want = src[rr*cols+c]
							}
							if math.Float32bits(dst[c*rows+rr]) != math.Float32bits(want) {
								t.Fatalf("%d×%d, columns %d..%d: dst[%d][%d] = %v, want %v", rows, cols, c0, c1, c, rr, dst[c*rows+rr], want)
							}
						}
					}
				}
			}
		}
	})
}

// tiledShapes are (T, past, nH, nKV, hd) for the tiled path: more queries
// than a tile, key counts across key blocks (256) and off multiples of 4,
// head sizes below, at and off the vector width, groups of 1 to 4 heads
// (one and two gemm row triples and their remainders), and the 4-row
// values passes of 64-column strips (AVX-512) with rows of unequal keys.
var tiledShapes = [][5]int{
	{1, 0, 1, 1, 8}, {3, 0, 2, 2, 5}, {17, 0, 4, 1, 16}, {37, 261, 4, 2, 20},
	{1, 511, 8, 2, 64}, {2, 255, 3, 1, 33}, {20, 3, 6, 2, 128}, {5, 300, 2, 1, 7},
	{9, 300, 4, 1, 64}, {3, 2100, 8, 2, 128},
}

// TestAttentionTiled: the tiled path gives every output the bits of the
// one-(query, head)-at-a-time path, for float32 and bfloat16 keys and
// values, on the assembly and plain-Go paths, and writes nothing outside
// out; and every chunking of the queries (a prompt continued from a
// cached prefix, chunked prefill, decoding) gives the bits of one pass.
func TestAttentionTiled(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, sh := range tiledShapes {
			T, past, nH, nKV, hd := sh[0], sh[1], sh[2], sh[3], sh[4]
			n, qd := past+T, nH*hd
			q, _ := guarded(r, T*qd, 1)
			K32, _ := guarded(r, n*nKV*hd, 2)
			V32, _ := guarded(r, n*nKV*hd, 3)
			K16, Kw := toBF16(K32)
			V16, Vw := toBF16(V32)
			scale := float32(4 / math.Sqrt(float64(hd)))
			for _, bf := range []bool{false, true} {
				name := fmt.Sprintf("T=%d past=%d heads=%d/%d hd=%d bf16=%v", T, past, nH, nKV, hd, bf)
				run := func(out, q []float32, T, past int) {
					if bf {
						AttentionBF16(out, q, K16, V16, T, past, nH, nKV, hd, scale, n)
					} else {
						Attention(out, q, K32, V32, T, past, nH, nKV, hd, scale, n)
					}
				}
				want := make([]float32, T*qd)
				attnTiled = false
				run(want, q, T, past)
				attnTiled = true
				if bf {
					// bf16 storage is float32 storage of the widened values.
					w32 := make([]float32, T*qd)
					Attention(w32, q, Kw, Vw, T, past, nH, nKV, hd, scale, n)
					same(t, name+" float32 storage", w32, want)
				}
				out, check := guarded(r, T*qd, 5)
				run(out, q, T, past)
				check(t)
				same(t, name+" tiled", out, want)
				// Chunks of 1, 2, 5 and 16 queries after the past.
				for _, c := range []int{1, 2, 5, 16} {
					got := make([]float32, T*qd)
					for t0 := 0; t0 < T; t0 += c {
						t1 := min(t0+c, T)
						run(got[t0*qd:t1*qd], q[t0*qd:t1*qd], t1-t0, past+t0)
					}
					same(t, fmt.Sprintf("%s chunks of %d", name, c), got, want)
				}
			}
		}
	})
}

// same fails t unless got and want have the same bits.
func same(t *testing.T, name string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: out[%d] = %v, want %v", name, i, got[i], want[i])
		}
	}
}

// TestAttentionTiledThreads: the tiled path's bits do not depend on the
// thread count.
func TestAttentionTiledThreads(t *testing.T) {
	r := newRand(t)
	const T, past, nH, nKV, hd = 40, 290, 8, 2, 64
	n, qd := past+T, nH*hd
	q, _ := guarded(r, T*qd, 0)
	K, _ := guarded(r, n*nKV*hd, 0)
	V, _ := guarded(r, n*nKV*hd, 0)
	defer SetThreads(Threads())
	var first []float32
	for th := 1; th <= 4; th++ {
		SetThreads(th)
		out := make([]float32, T*qd)
		Attention(out, q, K, V, T, past, nH, nKV, hd, 0.2, n)
		if first == nil {
			first = out
			continue
		}
		same(t, fmt.Sprintf("%d threads", th), out, first)
	}
}

// TestAttentionTiledAllocs: after the first call has sized the buffers for
// the cache's capacity, prefill chunks and decode steps allocate nothing.
func TestAttentionTiledAllocs(t *testing.T) {
	r := newRand(t)
	const nH, nKV, hd, capKeys = 4, 2, 32, 600
	qd := nH * hd
	q, _ := guarded(r, 16*qd, 0)
	K, _ := guarded(r, capKeys*nKV*hd, 0)
	V, _ := guarded(r, capKeys*nKV*hd, 0)
	out := make([]float32, 16*qd)
	Attention(out, q, K, V, 16, 0, nH, nKV, hd, 0.2, capKeys)
	past := 16
	if a := testing.AllocsPerRun(20, func() {
		Attention(out[:qd], q[:qd], K, V, 1, past, nH, nKV, hd, 0.2, capKeys)
		past++
	}); a != 0 {
		t.Fatalf("decode step: %v allocations", a)
	}
}

// TestWeightedSum3: the three-row weighted sum gives each row the bits of
// one weightedSum call (its definition), on lengths around the vector
// widths and the 32-column passes, and writes nothing outside its rows.
func TestWeightedSum3(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, C := range lengths {
			for _, keys := range []int{0, 1, 3, 17} {
				ld, ldo, ldp := C+5, C+3, keys+2
				w, _ := guarded(r, max(0, (keys-1)*ld+C), 1)
				w16, _ := toBF16(w)
				p, _ := guarded(r, 2*ldp+keys, 2)
				for _, bf := range []bool{false, true} {
					o, check := guarded(r, 2*ldo+C, 3)
					want := clone(o)
					for i := range 3 {
						if bf {
							weightedSumBF16(want[i*ldo:i*ldo+C], w16, ld, p[i*ldp:i*ldp+keys])
						} else {
							weightedSum(want[i*ldo:i*ldo+C], w, ld, p[i*ldp:i*ldp+keys])
						}
					}
					if bf {
						weightedSum3BF16(o, ldo, C, w16, ld, p, ldp, keys)
					} else {
						weightedSum3(o, ldo, C, w, ld, p, ldp, keys)
					}
					check(t)
					same(t, fmt.Sprintf("C=%d keys=%d bf16=%v", C, keys, bf), o, want)
				}
			}
		}
	})
}

// TestWeightedSum4x64: the AVX-512 weighted sum of 4 rows and 64 columns
// gives, for each row, the bits of weightedSum (the plain Go on the generic
// path's reference run); the values far apart (ld) as in a cache row.
func TestWeightedSum4x64(t *testing.T) {
	if !useAVX512 {
		t.Skip("no AVX-512 here")
	}
	r := newRand(t)
	const C = 64
	for _, keys := range []int{0, 1, 3, 17, 300} {
		for _, ld := range []int{C, C + 5, 512} {
			ldo, ldp := C+3, keys+2
			w, _ := guarded(r, max(0, (keys-1)*ld+C), 1)
			w16, _ := toBF16(w)
			p, _ := guarded(r, 3*ldp+keys, 2)
			for _, bf := range []bool{false, true} {
				o, check := guarded(r, 3*ldo+C, 3)
				want := clone(o)
				for i := range 4 {
					if bf {
						axpyRows(want[i*ldo:i*ldo+C], nil, w16, ld, p[i*ldp:i*ldp+keys])
					} else {
						axpyRows(want[i*ldo:i*ldo+C], w, nil, ld, p[i*ldp:i*ldp+keys])
					}
				}
				if bf {
					weightedSum4x64BF16(o, ldo, w16, ld, p, ldp, keys)
				} else {
					weightedSum4x64(o, ldo, w, ld, p, ldp, keys)
				}
				check(t)
				same(t, fmt.Sprintf("keys=%d ld=%d bf16=%v", keys, ld, bf), o, want)
			}
		}
	}
}

// axpyRows is weightedSum's reference: o += p[j]·row j, key by key in
// order, each element one fused multiply-add per key.
func axpyRows(o, w []float32, w16 []uint16, ld int, p []float32) {
	for j, pj := range p {
		for i := range o {
			v := float32(0)
			if w16 != nil {
				v = math.Float32frombits(uint32(w16[j*ld+i]) << 16)
			} else {
				v = w[j*ld+i]
			}
			o[i] = fma32(pj, v, o[i])
		}
	}
}

// TestAttentionSplitDecode: a decode step over a long cache with fewer
// key-value heads than threads (scores by key block, values by column strip
// across the threads) gives the bits of the one-query path, for 1 to 4
// threads, float32 and bfloat16 storage, on every path.
func TestAttentionSplitDecode(t *testing.T) {
	defer SetThreads(Threads())
	paths(t, func(t *testing.T) {
		r := newRand(t)
		// (past, nH, nKV, hd): at the threshold, several key blocks with a
		// partial last one, heads off the vector width and the strips,
		// groups of 4, 3, 5, 6 and 20 (passes of 3 or 4 heads and their
		// remainders), key counts off the 4 keys of a pass, strips of 64
		// columns (the 4-head values kernel).
		for _, sh := range [][4]int{{attnSplitKeys - 1, 4, 1, 20}, {3000, 3, 1, 33}, {2100, 10, 2, 72}, {2500, 5, 1, 7}, {2050, 8, 2, 24}, {2201, 6, 1, 40}, {2300, 8, 2, 128}, {2049, 20, 1, 64}} {
			past, nH, nKV, hd := sh[0], sh[1], sh[2], sh[3]
			n, qd := past+1, nH*hd
			q, _ := guarded(r, qd, 1)
			K32, _ := guarded(r, n*nKV*hd, 2)
			V32, _ := guarded(r, n*nKV*hd, 3)
			K16, _ := toBF16(K32)
			V16, _ := toBF16(V32)
			for _, bf := range []bool{false, true} {
				run := func(out []float32) {
					if bf {
						AttentionBF16(out, q, K16, V16, 1, past, nH, nKV, hd, 0.3, n)
					} else {
						Attention(out, q, K32, V32, 1, past, nH, nKV, hd, 0.3, n)
					}
				}
				want := make([]float32, qd)
				attnTiled = false
				run(want)
				attnTiled = true
				for th := 1; th <= 4; th++ {
					SetThreads(th)
					out, check := guarded(r, qd, 4)
					run(out)
					check(t)
					same(t, fmt.Sprintf("past=%d heads=%d/%d hd=%d bf16=%v threads=%d", past, nH, nKV, hd, bf, th), out, want)
				}
			}
		}
	})
}
