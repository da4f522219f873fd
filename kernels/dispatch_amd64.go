//go:build amd64 && !purego

package kernels

import (
	"strings"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// useAVX2 selects the AVX2/FMA kernels and useAVX512 (which implies
// useAVX2) the AVX-512 ones. They are set once at init from the CPU
// features, capped by JAMBA_CPU (see CPUPath); tests lower them to run the
// other paths on the same inputs (forcePath).
var useAVX2, useAVX512 = func() (bool, bool) {
	p := pathFromEnv(bestPath)
	return p >= pathAVX2, p >= pathAVX512
}()

// bestPath is the best path the CPU supports.
var bestPath = func() int {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA {
		return pathGeneric
	}
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VNNI {
		return pathAVX512
	}
	return pathAVX2
}()

// cpuFeatures lists the CPU's features that the paths need, for
// choosePath's warning.
func cpuFeatures() string {
	var f []string
	for _, c := range []struct {
		name string
		has  bool
	}{{"avx2", cpu.X86.HasAVX2}, {"fma", cpu.X86.HasFMA}, {"avx512f", cpu.X86.HasAVX512F}, {"avx512bw", cpu.X86.HasAVX512BW},
		{"avx512vl", cpu.X86.HasAVX512VL}, {"avx512dq", cpu.X86.HasAVX512DQ}, {"avx512vnni", cpu.X86.HasAVX512VNNI}} {
		if c.has {
			f = append(f, c.name)
		}
	}
	if len(f) == 0 {
		return "the CPU has none of avx2, fma, avx512f/bw/vl/dq, avx512vnni"
	}
	return "the CPU has " + strings.Join(f, " ")
}

// The wrappers below send the largest multiple of 8 elements to the assembly
// kernel and finish the tail in Go.

// vecLen returns how many of n elements the assembly kernels take.
func vecLen(n int) int {
	if !useAVX2 {
		return 0
	}
	return n &^ 7
}

func dot(a, b []float32) float32 {
	n := vecLen(len(a))
	if n == 0 {
		return DotGeneric(a, b)
	}
	s := dotAVX2(&a[0], &b[0], n)
	return s + DotGeneric(a[n:], b[n:])
}

func axpy(alpha float32, x, y []float32) {
	n := vecLen(len(x))
	if n > 0 {
		axpyAVX2(alpha, &x[0], &y[0], n)
	}
	AxpyGeneric(alpha, x[n:], y[n:])
}

func sumSq(x []float32) float32 {
	n := vecLen(len(x))
	if n == 0 {
		return sumSqGeneric(x)
	}
	return sumSqAVX2(&x[0], n) + sumSqGeneric(x[n:])
}

func scaleMul(dst, x, w []float32, s float32) {
	n := vecLen(len(x))
	if n > 0 {
		scaleMulAVX2(&dst[0], &x[0], &w[0], s, n)
	}
	scaleMulGeneric(dst[n:], x[n:], w[n:], s)
}

func scale(x []float32, s float32) {
	n := vecLen(len(x))
	if n > 0 {
		scaleAVX2(&x[0], s, n)
	}
	for i := n; i < len(x); i++ {
		x[i] *= s
	}
}

func maxOf(x []float32) float32 {
	n := vecLen(len(x))
	if n == 0 {
		return maxGeneric(x)
	}
	m := maxAVX2(&x[0], n)
	if t := x[n:]; len(t) > 0 {
		if v := maxGeneric(t); v > m {
			m = v
		}
	}
	return m
}

func mulAdd(y, a, b []float32) {
	n := vecLen(len(y))
	if n > 0 {
		mulAddAVX2(&y[0], &a[0], &b[0], n)
	}
	mulAddGeneric(y[n:], a[n:], b[n:])
}

func exp(dst, x []float32) {
	n := vecLen(len(x))
	if n > 0 {
		expAVX2(&dst[0], &x[0], n)
	}
	ExpGeneric(dst[n:], x[n:])
}

func expSubSum(x []float32, m float32) float32 {
	n := vecLen(len(x))
	var s float32
	if n > 0 {
		s = expSubSumAVX2(&x[0], m, n)
	}
	return s + expSubSumGeneric(x[n:], m)
}

func silu(dst, x []float32) {
	n := vecLen(len(x))
	if n > 0 {
		siluAVX2(&dst[0], &x[0], n)
	}
	SiLUGeneric(dst[n:], x[n:])
}

func softplus(dst, x []float32) {
	n := vecLen(len(x))
	if n > 0 {
		softplusAVX2(&dst[0], &x[0], n)
	}
	SoftplusGeneric(dst[n:], x[n:])
}

func scanStep(h, A, delta, x, B, C, D, y []float32, Di, N int) {
	if !useAVX2 || N%8 != 0 || Di == 0 || N == 0 {
		ScanStepGeneric(h, A, delta, x, B, C, D, y, Di, N)
		return
	}
	// The kernel reads and writes these whole ranges; check them once.
	_, _ = h[Di*N-1], A[Di*N-1]
	_, _, _, _ = delta[Di-1], x[Di-1], D[Di-1], y[Di-1]
	_, _ = B[N-1], C[N-1]
	scanStepAVX2(&h[0], &A[0], &delta[0], &x[0], &B[0], &C[0], &D[0], &y[0], Di, N)
}

func sumRead(x []float32) float32 {
	n := len(x) &^ 31
	if !useAVX2 || n == 0 {
		return sumGeneric(x)
	}
	return sumAVX2(&x[0], n) + sumGeneric(x[n:])
}

// matVecRows sets y[i] = W[r0+i,:]·x for r0+i < r1 (float weights) in
// the dot order.
func matVecRows(y []float32, w *Matrix, x []float32, r0, r1 int) {
	C := w.Cols
	n := C &^ 7
	if !useAVX2 || n == 0 || r1 <= r0 {
		matVecRowsGeneric(y, w, x, r0, r1)
		return
	}
	rows := r1 - r0
	_ = y[rows-1]
	_ = x[C-1]
	// For a matrix that comes from memory rather than the caches, whole
	// blocks of 4 rows go to the streams kernel (4 long sequential streams:
	// 0.97 of the read bandwidth on jamba-small's decode against 0.86 for
	// 4 rows at a time), the rest to the 4-rows-at-a-time kernel; both
	// follow the dot order.
	q := 0
	if w.Bytes() >= streamsMinBytes {
		q = rows / 4
	}
	switch w.DType {
	case F32:
		_ = w.F32[r1*C-1]
		if q > 0 {
			matVecF32StreamsAVX2(&y[0], &w.F32[r0*C], &x[0], q, n, C)
		}
		if rows > 4*q {
			matVecF32AVX2(&y[4*q], &w.F32[(r0+4*q)*C], &x[0], rows-4*q, n, C)
		}
	case BF16:
		_ = w.BF16[r1*C-1]
		if q > 0 {
			matVecBF16StreamsAVX2(&y[0], &w.BF16[r0*C], &x[0], q, n, C)
		}
		if rows > 4*q {
			matVecBF16AVX2(&y[4*q], &w.BF16[(r0+4*q)*C], &x[0], rows-4*q, n, C)
		}
	}
	finishRows(y, w, x, r0, r1, n)
}

// matVecN sets dst[t*ldd+r] = W[r,:]·x[t*ldx:] for t < nt (2 or 3) and
// r0 ≤ r < r1 (float weights) in the dot order, reading each row of W once
// for the nt tokens.
func matVecN(dst []float32, ldd int, w *Matrix, x []float32, ldx, nt, r0, r1 int) {
	C := w.Cols
	n := C &^ 7
	if !useAVX2 || n == 0 || r1 <= r0 || nt < 2 || nt > 3 {
		matVecNGeneric(dst, ldd, w, x, ldx, nt, r0, r1)
		return
	}
	_ = dst[(nt-1)*ldd+r1-1]
	_ = x[(nt-1)*ldx+C-1]
	y, xp, rows, k0 := &dst[r0], &x[0], r1-r0, r0
	if m := rows &^ 3; useAVX512 && m > 0 {
		// Groups of 4 rows, then the last rows%4 on their own (the same
		// bits).
		switch w.DType {
		case F32:
			_ = w.F32[r1*C-1]
			[...]func(*float32, int, *float32, *float32, int, int, int, int){matVecF32T2AVX512, matVecF32T3AVX512}[nt-2](y, ldd, &w.F32[r0*C], xp, ldx, m, n, C)
		case BF16:
			_ = w.BF16[r1*C-1]
			[...]func(*float32, int, *uint16, *float32, int, int, int, int){matVecBF16T2AVX512, matVecBF16T3AVX512}[nt-2](y, ldd, &w.BF16[r0*C], xp, ldx, m, n, C)
		}
		rows -= m
		k0 += m
		if rows > 0 {
			y = &dst[k0]
		}
	}
	switch {
	case rows == 0:
	case w.DType == F32:
		_ = w.F32[r1*C-1]
		if nt == 2 {
			matVecF32T2AVX2(y, ldd, &w.F32[k0*C], xp, ldx, rows, n, C)
		} else {
			matVecF32T3AVX2(y, ldd, &w.F32[k0*C], xp, ldx, rows, n, C)
		}
	case w.DType == BF16:
		_ = w.BF16[r1*C-1]
		if nt == 2 {
			matVecBF16T2AVX2(y, ldd, &w.BF16[k0*C], xp, ldx, rows, n, C)
		} else {
			matVecBF16T3AVX2(y, ldd, &w.BF16[k0*C], xp, ldx, rows, n, C)
		}
	}
	for t := 0; t < nt; t++ {
		finishRows(dst[t*ldd+r0:t*ldd+r1], w, x[t*ldx:t*ldx+C], r0, r1, n)
	}
}

// pack4 packs rows r..r+4 and columns k0..k0+kc (kc a positive multiple
// of 8) of float weights into dst; see packPanel.
func pack4(dst []float32, w *Matrix, r, k0, kc int) {
	C := w.Cols
	_ = dst[4*kc-1]
	a := r*C + k0
	switch w.DType {
	case F32:
		_ = w.F32[a+3*C+kc-1]
		packF32AVX2(&dst[0], &w.F32[a], C, kc)
	case BF16:
		_ = w.BF16[a+3*C+kc-1]
		packBF16AVX2(&dst[0], &w.BF16[a], C, kc)
	case Blocks: // F16
		_ = w.Q[2*(a+3*C+kc)-1]
		packF16AVX2(&dst[0], (*uint16)(unsafe.Pointer(&w.Q[2*a])), C, kc)
	}
}

// gemmTile runs the gemm kernel of nt tokens (1 to gemmTokens: 3, or 6
// with AVX-512) over quads packed
// groups of 4 rows of depth kc; see gemm3x4AVX2.
func gemmTile(y []float32, ldy int, acc, x []float32, ldx int, p []float32, nt, quads, kc, mode int) {
	if mode&gemmFinal != 0 {
		_ = y[(nt-1)*ldy+4*quads-1]
	}
	_ = acc[quads*nt*32-1]
	_ = x[(nt-1)*ldx+kc-1]
	_ = p[quads*4*kc-1]
	if useAVX512 {
		[...]func(*float32, int, *float32, *float32, int, *float32, int, int, int){gemm1x4AVX512, gemm2x4AVX512, gemm3x4AVX512, gemm4x4AVX512, gemm5x4AVX512, gemm6x4AVX512}[nt-1](&y[0], ldy, &acc[0], &x[0], ldx, &p[0], quads, kc, mode)
		return
	}
	switch nt {
	case 1:
		gemm1x4AVX2(&y[0], ldy, &acc[0], &x[0], ldx, &p[0], quads, kc, mode)
	case 2:
		gemm2x4AVX2(&y[0], ldy, &acc[0], &x[0], ldx, &p[0], quads, kc, mode)
	case 3:
		gemm3x4AVX2(&y[0], ldy, &acc[0], &x[0], ldx, &p[0], quads, kc, mode)
	}
}

// dotI8 sets tot[t*ldt+r-r0] to the exact sum Σ_c W[r,c]·xq[t*Cols+c] for
// t < nt (1 to 3) and r0 ≤ r < r1 over the first n columns, and returns n:
// the leading multiple of 16 that the assembly takes, or all of them.
func dotI8(tot []float64, ldt int, w *Matrix, xq []int16, nt, r0, r1 int) int {
	C := w.Cols
	n := C &^ 15
	if !useAVX2 || n == 0 || r1 <= r0 {
		dotI8Generic(tot, ldt, w, xq, nt, r0, r1)
		return C
	}
	rows := r1 - r0
	_ = tot[(nt-1)*ldt+rows-1]
	_ = xq[(nt-1)*C+n-1]
	_ = w.I8[r1*C-1]
	t, wp, xp := &tot[0], &w.I8[r0*C], &xq[0]
	streams, t1, t2, t3 := dotI8StreamsAVX2, dotI8T1AVX2, dotI8T2AVX2, dotI8T3AVX2
	if useAVX512 {
		streams, t1, t2, t3 = dotI8StreamsAVX512, dotI8T1AVX512, dotI8T2AVX512, dotI8T3AVX512
	}
	if q := rows / 4; nt == 1 && q > 0 && w.Bytes() >= streamsMinBytes && len(tot) >= rows+4*q {
		// Whole blocks of 4 rows as 4 streams (see matVecRows); the
		// kernel interleaves the sums, which land after the rows' own
		// slots and are put in order here. The sums are exact integers,
		// so the order of the columns does not matter anyway.
		tmp := tot[rows : rows+4*q]
		streams(&tmp[0], 0, wp, C, xp, C, q, n)
		for i := range q {
			for j := range 4 {
				tot[j*q+i] = tmp[4*i+j]
			}
		}
		if rows > 4*q {
			t1(&tot[4*q], ldt, &w.I8[(r0+4*q)*C], C, xp, C, rows-4*q, n)
		}
		return n
	}
	switch nt {
	case 1:
		t1(t, ldt, wp, C, xp, C, rows, n)
	case 2:
		t2(t, ldt, wp, C, xp, C, rows, n)
	case 3:
		t3(t, ldt, wp, C, xp, C, rows, n)
	}
	return n
}

// absMax returns the largest |x[i]|, or NaN if any x[i] is Inf or NaN.
func absMax(x []float32) float32 {
	n := vecLen(len(x))
	m := absMaxGeneric(x[n:])
	if n > 0 {
		m = max(m, absMaxAVX2(&x[0], n))
	}
	return m
}

// quantI16 sets q[i] to x[i]·s rounded to the nearest int16, ties to even,
// like quantI16Generic.
func quantI16(q []int16, x []float32, s float32) {
	n := 0
	if useAVX2 {
		n = len(x) &^ 15
	}
	if n > 0 {
		_ = q[n-1]
		quantI16AVX2(&q[0], &x[0], s, n)
	}
	quantI16Generic(q[n:], x[n:], s)
}

// matVecStrided sets y[i] = W[i,:]·x for the len(y) rows of W that start
// ld floats apart in w, len(x) columns each, in the dot order (the bits
// MatMul gives for those rows).
func matVecStrided(y, w []float32, ld int, x []float32) {
	rows, C := len(y), len(x)
	n := C &^ 7
	if !useAVX2 || n == 0 || rows == 0 {
		matVecStridedGeneric(y, w, ld, x)
		return
	}
	_ = w[(rows-1)*ld+C-1]
	matVecF32AVX2(&y[0], &w[0], &x[0], rows, n, ld)
	if n < C {
		// The dot order's tail: the last C%8 products summed on their own.
		for i := range y {
			row := Matrix{Rows: 1, Cols: C, DType: F32, F32: w[i*ld : i*ld+C]}
			y[i] = dotTail(&row, 0, x, n) + y[i]
		}
	}
}

// weightedSum adds Σ_j p[j]·W[j,:] to o, for the len(p) rows of W that start
// ld floats apart in w, len(o) columns each: for every element, key by key
// in order, the same operations as len(p) calls of axpy.
func weightedSum(o, w []float32, ld int, p []float32) {
	C := len(o)
	if len(p) == 0 || C == 0 {
		return
	}
	_ = w[(len(p)-1)*ld+C-1]
	n := vecLen(C)
	if n > 0 {
		weightedSumF32AVX2(&o[0], &w[0], &p[0], len(p), n, ld)
	}
	if n < C {
		for j, pj := range p {
			AxpyGeneric(pj, w[j*ld+n:j*ld+C], o[n:])
		}
	}
}

// matVecStridedBF16 is matVecStrided for bfloat16 rows.
func matVecStridedBF16(y []float32, w []uint16, ld int, x []float32) {
	rows, C := len(y), len(x)
	n := C &^ 7
	if !useAVX2 || n == 0 || rows == 0 {
		matVecStridedBF16Generic(y, w, ld, x)
		return
	}
	_ = w[(rows-1)*ld+C-1]
	matVecBF16AVX2(&y[0], &w[0], &x[0], rows, n, ld)
	if n < C {
		for i := range y {
			row := Matrix{Rows: 1, Cols: C, DType: BF16, BF16: w[i*ld : i*ld+C]}
			y[i] = dotTail(&row, 0, x, n) + y[i]
		}
	}
}

// weightedSumBF16 is weightedSum for bfloat16 rows (widened exactly).
func weightedSumBF16(o []float32, w []uint16, ld int, p []float32) {
	C := len(o)
	if len(p) == 0 || C == 0 {
		return
	}
	_ = w[(len(p)-1)*ld+C-1]
	n := vecLen(C)
	if n > 0 {
		weightedSumBF16AVX2(&o[0], &w[0], &p[0], len(p), n, ld)
	}
	if n < C {
		for j, pj := range p {
			axpyBF16Generic(pj, w[j*ld+n:j*ld+C], o[n:])
		}
	}
}

func scanBack(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out []float32, nc, N int) {
	if !useAVX2 || N != 16 {
		ScanBackStepGeneric(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out, nc, N)
		return
	}
	scanBack16AVX2(&dh[0], &cur[0], &prev[0], &av[0], &A[0], &gA[0], &B[0], &C[0], &dB[0], &dC[0], &s[0], &out[0], nc)
}

func transposeCols(dst, src []float32, rows, cols, c0, c1 int) {
	r8, w8 := 0, 0
	if useAVX2 {
		r8, w8 = rows&^7, (c1-c0)&^7
	}
	if r8 > 0 && w8 > 0 {
		transposeAVX2(&dst[c0*rows], &src[c0], r8, w8, rows, cols)
		transposeColsGeneric(dst, src, rows, cols, c0, c0+w8, r8)
	} else {
		w8 = 0
	}
	transposeColsGeneric(dst, src, rows, cols, c0+w8, c1, 0)
}

// packKeys4 packs 4 rows (row stride ld, from off) of the keys, K or K16,
// and their first kc columns (a positive multiple of 8) for gemmTile; see
// packF32AVX2.
func packKeys4(dst, K []float32, K16 []uint16, off, ld, kc int) {
	_ = dst[4*kc-1]
	if K16 != nil {
		_ = K16[off+3*ld+kc-1]
		packBF16AVX2(&dst[0], &K16[off], ld, kc)
		return
	}
	_ = K[off+3*ld+kc-1]
	packF32AVX2(&dst[0], &K[off], ld, kc)
}

// weightedSum3 is weightedSum for 3 rows of o (row stride ldo, C columns
// each) and their 3 rows of weights (row stride ldp, keys each) over the
// same rows of w: for each row, the bits of one call of weightedSum.
func weightedSum3(o []float32, ldo, C int, w []float32, ld int, p []float32, ldp, keys int) {
	if keys == 0 || C == 0 {
		return
	}
	_ = o[2*ldo+C-1]
	_ = p[2*ldp+keys-1]
	_ = w[(keys-1)*ld+C-1]
	n := vecLen(C)
	if n > 0 {
		weightedSum3F32AVX2(&o[0], ldo, &w[0], &p[0], ldp, keys, n, ld)
	}
	if n < C {
		for r := range 3 {
			for j, pj := range p[r*ldp : r*ldp+keys] {
				AxpyGeneric(pj, w[j*ld+n:j*ld+C], o[r*ldo+n:r*ldo+C])
			}
		}
	}
}

// weightedSum3BF16 is weightedSum3 for bfloat16 rows (widened exactly).
func weightedSum3BF16(o []float32, ldo, C int, w []uint16, ld int, p []float32, ldp, keys int) {
	if keys == 0 || C == 0 {
		return
	}
	_ = o[2*ldo+C-1]
	_ = p[2*ldp+keys-1]
	_ = w[(keys-1)*ld+C-1]
	n := vecLen(C)
	if n > 0 {
		weightedSum3BF16AVX2(&o[0], ldo, &w[0], &p[0], ldp, keys, n, ld)
	}
	if n < C {
		for r := range 3 {
			for j, pj := range p[r*ldp : r*ldp+keys] {
				axpyBF16Generic(pj, w[j*ld+n:j*ld+C], o[r*ldo+n:r*ldo+C])
			}
		}
	}
}

// weightedSum4x64 is weightedSum3 for 4 rows of o and exactly 64 columns,
// on the AVX-512 kernel (the caller checks useAVX512): for each row, the
// bits of one call of weightedSum.
func weightedSum4x64(o []float32, ldo int, w []float32, ld int, p []float32, ldp, keys int) {
	if keys == 0 {
		return
	}
	_ = o[3*ldo+63]
	_ = p[3*ldp+keys-1]
	_ = w[(keys-1)*ld+63]
	weightedSum4x64F32AVX512(&o[0], ldo, &w[0], &p[0], ldp, keys, ld)
}

// weightedSum4x64BF16 is weightedSum4x64 for bfloat16 rows.
func weightedSum4x64BF16(o []float32, ldo int, w []uint16, ld int, p []float32, ldp, keys int) {
	if keys == 0 {
		return
	}
	_ = o[3*ldo+63]
	_ = p[3*ldp+keys-1]
	_ = w[(keys-1)*ld+63]
	weightedSum4x64BF16AVX512(&o[0], ldo, &w[0], &p[0], ldp, keys, ld)
}

// keyScores sets y[t*ldy+j] = K[off+j*ld:][:kc]·x[t*ldx:][:kc] for t < nt
// (1 to keyHeads()) and j < keys, reading the keys (K or K16) in place,
// each once for the nt rows of x; the dot order over the first kc columns
// (a positive multiple of 8), the caller adds the tail.
func keyScores(y []float32, ldy int, K []float32, K16 []uint16, off, ld, keys int, x []float32, ldx, nt, kc int) {
	if keys == 0 {
		return
	}
	_ = y[(nt-1)*ldy+keys-1]
	_ = x[(nt-1)*ldx+kc-1]
	if K16 != nil {
		_ = K16[off+(keys-1)*ld+kc-1]
	} else {
		_ = K[off+(keys-1)*ld+kc-1]
	}
	if m := keys &^ 3; useAVX512 && nt >= 2 && m > 0 {
		// Two keys per register, 4 a pass, prefetching 16 keys ahead;
		// the last 1-3 keys below.
		if K16 != nil {
			[...]func(*float32, int, *uint16, *float32, int, int, int, int){keyScoresBF16T2AVX512, keyScoresBF16T3AVX512, keyScoresBF16T4AVX512}[nt-2](&y[0], ldy, &K16[off], &x[0], ldx, m, kc, ld)
		} else {
			[...]func(*float32, int, *float32, *float32, int, int, int, int){keyScoresF32T2AVX512, keyScoresF32T3AVX512, keyScoresF32T4AVX512}[nt-2](&y[0], ldy, &K[off], &x[0], ldx, m, kc, ld)
		}
		if m == keys {
			return
		}
		y, off, keys = y[m:], off+m*ld, keys-m
	}
	if nt == 4 {
		keyScoresAVX2(y, ldy, K, K16, off, ld, keys, x, ldx, 3, kc)
		keyScoresAVX2(y[3*ldy:], ldy, K, K16, off, ld, keys, x[3*ldx:], ldx, 1, kc)
		return
	}
	keyScoresAVX2(y, ldy, K, K16, off, ld, keys, x, ldx, nt, kc)
}

// keyHeads is the most rows of x keyScores takes at once.
func keyHeads() int {
	if useAVX512 {
		return 4
	}
	return 3
}

// keyScoresAVX2 is keyScores with the AVX2 kernels (nt ≤ 3), bounds
// checked by the caller.
func keyScoresAVX2(y []float32, ldy int, K []float32, K16 []uint16, off, ld, keys int, x []float32, ldx, nt, kc int) {
	if K16 != nil {
		w := &K16[off]
		switch nt {
		case 1:
			matVecBF16AVX2(&y[0], w, &x[0], keys, kc, ld)
		case 2:
			matVecBF16T2AVX2(&y[0], ldy, w, &x[0], ldx, keys, kc, ld)
		case 3:
			matVecBF16T3AVX2(&y[0], ldy, w, &x[0], ldx, keys, kc, ld)
		}
		return
	}
	w := &K[off]
	switch nt {
	case 1:
		matVecF32AVX2(&y[0], w, &x[0], keys, kc, ld)
	case 2:
		matVecF32T2AVX2(&y[0], ldy, w, &x[0], ldx, keys, kc, ld)
	case 3:
		matVecF32T3AVX2(&y[0], ldy, w, &x[0], ldx, keys, kc, ld)
	}
}

// blockDotRows sets y[i] to the fused product of row i of the blocks in w
// (rb bytes each) with the quantized activations q, d, s: the assembly
// when the CPU has AVX2, which gives the bits of blockDotRowsGeneric.
func blockDotRows(y []float32, k BlockDot, w []byte, rb int, q []int16, d, s []float32) {
	n := len(y)
	if !useAVX2 || n == 0 {
		blockDotRowsGeneric(y, k, w, rb, q, d, s)
		return
	}
	// The kernels read n·rb bytes of w, rb/bytes·elems of q and the
	// matching scales; check them once.
	g := dotGeometry[k]
	nb := rb / g.bytes * g.elems / q8Block
	_, _, _ = w[n*rb-1], q[nb*q8Block-1], d[nb-1]
	if useAVX512 && n >= 2 {
		// Pairs of rows, then the odd last row on its own (the same bits).
		m := n &^ 1
		var sp *float32
		if k == DotQ4K || k == DotQ5K {
			_ = s[nb-1]
			sp = &s[0]
		}
		blockDot512(k, 1, &y[0], &w[0], m, rb, &q[0], &d[0], sp)
		if m == n {
			return
		}
		y, w, n = y[m:], w[m*rb:], 1
	}
	switch k {
	case DotQ8_0:
		dotQ8_0AVX2(&y[0], &w[0], n, rb, &q[0], &d[0])
	case DotQ4_0:
		dotQ4_0AVX2(&y[0], &w[0], n, rb, &q[0], &d[0])
	case DotQ4K:
		_ = s[nb-1]
		dotQ4KAVX2(&y[0], &w[0], n, rb, &q[0], &d[0], &s[0])
	case DotQ5K:
		_ = s[nb-1]
		dotQ5KAVX2(&y[0], &w[0], n, rb, &q[0], &d[0], &s[0])
	case DotQ6K:
		dotQ6KAVX2(&y[0], &w[0], n, rb, &q[0], &d[0])
	case DotQ5_0:
		dotQ5_0AVX2(&y[0], &w[0], n, rb, &q[0], &d[0])
	}
}

// blockDotRowsN computes y[i*nt+t] for the nt tokens of a group packed by
// xQ8.group, bit for bit blockDotRows of each token.
func blockDotRowsN(y []float32, k BlockDot, w []byte, rb, nt int, q []int16, d, s []float32) {
	n := len(y) / nt
	if n == 0 {
		return
	}
	g := dotGeometry[k]
	nb := rb / g.bytes * g.elems / q8Block
	_, _, _, _ = w[n*rb-1], q[nt*nb*q8Block-1], d[nt*nb-1], s[nt*nb-1]
	_ = y[n*nt-1]
	if useAVX512 && n >= 2 {
		// Pairs of rows, then the odd last row on its own (the same bits).
		m := n &^ 1
		blockDot512(k, nt, &y[0], &w[0], m, rb, &q[0], &d[0], &s[0])
		if m == n {
			return
		}
		y, w, n = y[m*nt:], w[m*rb:], 1
	}
	if nt > groupTokens {
		panic("kernels: an odd row for more than 4 tokens of fused blocks")
	}
	var f func(y *float32, w *byte, rows, rb int, q *int16, d *float32)
	var fk func(y *float32, w *byte, rows, rb int, q *int16, d, s *float32)
	switch k {
	case DotQ8_0:
		f = [...]func(*float32, *byte, int, int, *int16, *float32){dotQ8_0AVX2, dotQ8_0x2AVX2, dotQ8_0x3AVX2, dotQ8_0x4AVX2}[nt-1]
	case DotQ4_0:
		f = [...]func(*float32, *byte, int, int, *int16, *float32){dotQ4_0AVX2, dotQ4_0x2AVX2, dotQ4_0x3AVX2, dotQ4_0x4AVX2}[nt-1]
	case DotQ5_0:
		f = [...]func(*float32, *byte, int, int, *int16, *float32){dotQ5_0AVX2, dotQ5_0x2AVX2, dotQ5_0x3AVX2, dotQ5_0x4AVX2}[nt-1]
	case DotQ6K:
		f = [...]func(*float32, *byte, int, int, *int16, *float32){dotQ6KAVX2, dotQ6Kx2AVX2, dotQ6Kx3AVX2, dotQ6Kx4AVX2}[nt-1]
	case DotQ4K:
		fk = [...]func(*float32, *byte, int, int, *int16, *float32, *float32){dotQ4KAVX2, dotQ4Kx2AVX2, dotQ4Kx3AVX2, dotQ4Kx4AVX2}[nt-1]
	case DotQ5K:
		fk = [...]func(*float32, *byte, int, int, *int16, *float32, *float32){dotQ5KAVX2, dotQ5Kx2AVX2, dotQ5Kx3AVX2, dotQ5Kx4AVX2}[nt-1]
	}
	if f != nil {
		f(&y[0], &w[0], n, rb, &q[0], &d[0])
	} else {
		fk(&y[0], &w[0], n, rb, &q[0], &d[0], &s[0])
	}
}

// blockDot512 runs the AVX-512 fused kernel of k for nt tokens (up to 8
// for Q8_0, Q4_0 and Q5_0, 4 for the others) over rows (even) rows; s is
// used by Q4_K and Q5_K only.
func blockDot512(k BlockDot, nt int, y *float32, w *byte, rows, rb int, q *int16, d, s *float32) {
	switch k {
	case DotQ8_0:
		[...]func(*float32, *byte, int, int, *int16, *float32){dotQ8_0AVX512, dotQ8_0x2AVX512, dotQ8_0x3AVX512, dotQ8_0x4AVX512,
			dotQ8_0x5AVX512, dotQ8_0x6AVX512, dotQ8_0x7AVX512, dotQ8_0x8AVX512}[nt-1](y, w, rows, rb, q, d)
	case DotQ4_0:
		[...]func(*float32, *byte, int, int, *int16, *float32){dotQ4_0AVX512, dotQ4_0x2AVX512, dotQ4_0x3AVX512, dotQ4_0x4AVX512,
			dotQ4_0x5AVX512, dotQ4_0x6AVX512, dotQ4_0x7AVX512, dotQ4_0x8AVX512}[nt-1](y, w, rows, rb, q, d)
	case DotQ5_0:
		[...]func(*float32, *byte, int, int, *int16, *float32){dotQ5_0AVX512, dotQ5_0x2AVX512, dotQ5_0x3AVX512, dotQ5_0x4AVX512,
			dotQ5_0x5AVX512, dotQ5_0x6AVX512, dotQ5_0x7AVX512, dotQ5_0x8AVX512}[nt-1](y, w, rows, rb, q, d)
	case DotQ6K:
		[...]func(*float32, *byte, int, int, *int16, *float32){dotQ6KAVX512, dotQ6Kx2AVX512, dotQ6Kx3AVX512, dotQ6Kx4AVX512}[nt-1](y, w, rows, rb, q, d)
	case DotQ4K:
		[...]func(*float32, *byte, int, int, *int16, *float32, *float32){dotQ4KAVX512, dotQ4Kx2AVX512, dotQ4Kx3AVX512, dotQ4Kx4AVX512}[nt-1](y, w, rows, rb, q, d, s)
	case DotQ5K:
		[...]func(*float32, *byte, int, int, *int16, *float32, *float32){dotQ5KAVX512, dotQ5Kx2AVX512, dotQ5Kx3AVX512, dotQ5Kx4AVX512}[nt-1](y, w, rows, rb, q, d, s)
	}
}

// matVecF16Streams computes y[r] = row r of the rows×cols halves in w
// times x, in the dot order, reading whole blocks of 4 rows as 4 streams
// (matVecF16StreamsAVX2) and the rest as matVecF16 does.
func matVecF16Streams(y []float32, w []byte, rows, cols int, x []float32) {
	q := rows / 4
	if q == 0 {
		matVecF16(y, w, rows, cols, x, 1)
		return
	}
	_, _, _ = y[rows-1], w[rows*cols*2-1], x[cols-1]
	matVecF16StreamsAVX2(&y[0], (*uint16)(unsafe.Pointer(&w[0])), &x[0], q, cols, cols)
	if rows > 4*q {
		matVecF16(y[4*q:], w[4*q*cols*2:], rows-4*q, cols, x, 1)
	}
}

// matVecF16 computes y[r*nt+t] = row r of the rows×cols halves in w times
// token t of x (cols floats each), nt ≤ 4, in the dot order.
func matVecF16(y []float32, w []byte, rows, cols int, x []float32, nt int) {
	if rows == 0 {
		return
	}
	_, _, _ = y[rows*nt-1], w[rows*cols*2-1], x[nt*cols-1]
	p := (*uint16)(unsafe.Pointer(&w[0]))
	if useAVX512 && rows >= 2 {
		// Pairs of rows, then the odd last row on its own (the same bits).
		m := rows &^ 1
		[...]func(*float32, *uint16, int, int, *float32, int){matVecF16AVX512, matVecF16x2AVX512, matVecF16x3AVX512, matVecF16x4AVX512}[nt-1](&y[0], p, m, cols, &x[0], cols)
		if m == rows {
			return
		}
		y, p, rows = y[m*nt:], (*uint16)(unsafe.Pointer(&w[m*cols*2])), 1
	}
	switch nt {
	case 1:
		matVecF16AVX2(&y[0], p, rows, cols, &x[0], cols)
	case 2:
		matVecF16x2AVX2(&y[0], p, rows, cols, &x[0], cols)
	case 3:
		matVecF16x3AVX2(&y[0], p, rows, cols, &x[0], cols)
	default:
		matVecF16x4AVX2(&y[0], p, rows, cols, &x[0], cols)
	}
}

// kernel8 is the signature of the 8-bit activation kernels.
type kernel8 = func(y *float32, w *byte, rows, rb int, q *int8, d, s *float32, nc *int32)

// kernels8 and kernels8VNNI hold the 8-bit activation kernels by format
// and token count: AVX2 (one row at a time, up to 8 tokens for the blocks
// of 32, up to 4 for the K-formats) and AVX-512 VNNI (an even number of
// rows, up to 8 tokens). Q4_0 has one row per lane instead
// (blockDot8Lanes).
var kernels8 = [...][groupTokens8]kernel8{
	DotQ8_0: {dot8Q8_0AVX2, dot8Q8_0x2AVX2, dot8Q8_0x3AVX2, dot8Q8_0x4AVX2, dot8Q8_0x5AVX2, dot8Q8_0x6AVX2, dot8Q8_0x7AVX2, dot8Q8_0x8AVX2},
	DotQ5_0: {dot8Q5_0AVX2, dot8Q5_0x2AVX2, dot8Q5_0x3AVX2, dot8Q5_0x4AVX2, dot8Q5_0x5AVX2, dot8Q5_0x6AVX2, dot8Q5_0x7AVX2, dot8Q5_0x8AVX2},
	DotQ4K:  {dot8Q4KAVX2, dot8Q4Kx2AVX2, dot8Q4Kx3AVX2, dot8Q4Kx4AVX2},
	DotQ5K:  {dot8Q5KAVX2, dot8Q5Kx2AVX2, dot8Q5Kx3AVX2, dot8Q5Kx4AVX2},
	DotQ6K:  {dot8Q6KAVX2, dot8Q6Kx2AVX2, dot8Q6Kx3AVX2, dot8Q6Kx4AVX2},
}

var kernels8VNNI = [...][groupTokens8]kernel8{
	DotQ8_0: {dot8Q8_0VNNI, dot8Q8_0x2VNNI, dot8Q8_0x3VNNI, dot8Q8_0x4VNNI, dot8Q8_0x5VNNI, dot8Q8_0x6VNNI, dot8Q8_0x7VNNI, dot8Q8_0x8VNNI},
	DotQ5_0: {dot8Q5_0VNNI, dot8Q5_0x2VNNI, dot8Q5_0x3VNNI, dot8Q5_0x4VNNI, dot8Q5_0x5VNNI, dot8Q5_0x6VNNI, dot8Q5_0x7VNNI, dot8Q5_0x8VNNI},
	DotQ4K:  {dot8Q4KVNNI, dot8Q4Kx2VNNI, dot8Q4Kx3VNNI, dot8Q4Kx4VNNI, dot8Q4Kx5VNNI, dot8Q4Kx6VNNI, dot8Q4Kx7VNNI, dot8Q4Kx8VNNI},
	DotQ5K:  {dot8Q5KVNNI, dot8Q5Kx2VNNI, dot8Q5Kx3VNNI, dot8Q5Kx4VNNI, dot8Q5Kx5VNNI, dot8Q5Kx6VNNI, dot8Q5Kx7VNNI, dot8Q5Kx8VNNI},
	DotQ6K:  {dot8Q6KVNNI, dot8Q6Kx2VNNI, dot8Q6Kx3VNNI, dot8Q6Kx4VNNI, dot8Q6Kx5VNNI, dot8Q6Kx6VNNI, dot8Q6Kx7VNNI, dot8Q6Kx8VNNI},
}

// blockDot8Rows sets y[i*nt+t] to the 8-bit product of row i of the blocks
// in w (rb bytes each) with token t of the nt tokens' activations q, d, s
// (nt ≤ act8MaxTokens(k, rows)),
// nc (xAct8's aux, for Q4_0 its k8: xAct8.tokenAux; q, d, s and nc
// interleaved as xGroup8 when nt > 1, and one token in xAct8's layout, a
// group of one too): the AVX-512 VNNI kernels, the AVX2 ones or the plain
// Go, all with the bits of blockDot8RowsGeneric. Q4_0 takes one token
// here; its groups go to blockDot8Lanes.
func blockDot8Rows(y []float32, k BlockDot, w []byte, rb, nt int, q []int8, d, s []float32, nc []int32) {
	n := len(y) / nt
	if n == 0 {
		return
	}
	if k == DotQ4_0 {
		if nt != 1 {
			panic("kernels: Q4_0 groups go to blockDot8Lanes")
		}
		blockDot8Lanes(y, n, w, rb, n, 1, 1, q, d, nc)
		return
	}
	if !useAVX2 {
		if nt != 1 {
			panic("kernels: grouped 8-bit activations without assembly")
		}
		blockDot8RowsGeneric(y, k, w, rb, q, d, s)
		return
	}
	g := dotGeometry[k]
	nb, nd := rb/g.bytes*g.elems/q8Block, rb/g.bytes
	ns, nnc := nt*nb, auxLanes(g.elems)*nt*nb
	if nt > 1 {
		nnc = groupAuxLanes(g.elems) * nt * nb
		if g.elems == q8Block {
			ns *= 2 // each scale twice (xGroup8)
		}
	}
	if k == DotQ4K || k == DotQ5K {
		nnc = msLanes * nd // xAct8's ms
		if nt > 1 {
			nnc = groupMSLanes * nd // xGroup8's; and 8 scales from d[sb*nt:]
			_ = d[:nt*nd+groupTokens8-nt][nt*nd+groupTokens8-nt-1]
		}
	}
	_, _, _, _ = w[n*rb-1], q[nt*nb*q8Block-1], d[nt*nd-1], nc[nnc-1]
	_ = y[n*nt-1]
	var sp *float32 // the blocks of 32 read s; the super-blocks' kernels none
	if g.elems == q8Block {
		_ = s[ns-1]
		sp = &s[0]
	}
	if useAVX512 && n >= 2 {
		// Pairs of rows, then the odd last row on its own (the same bits).
		m := n &^ 1
		kernels8VNNI[k][nt-1](&y[0], &w[0], m, rb, &q[0], &d[0], sp, &nc[0])
		if m == n {
			return
		}
		y, w, n = y[m*nt:], w[m*rb:], 1
	}
	if kernels8[k][nt-1] == nil {
		panic("kernels: an odd row for more than 4 tokens of 8-bit activations in blocks of 256")
	}
	kernels8[k][nt-1](&y[0], &w[0], n, rb, &q[0], &d[0], sp, &nc[0])
}

// kernelLanes is the signature of the kernels with one row per lane
// (sigLanes in _asmgen/q4lanes.go).
type kernelLanes = func(y *float32, ys int, w *byte, rows, rb int, q *int8, d *float32, k8 *int32, lt int)

// q4LanesVNNI (16 rows a pass) and q4LanesAVX2 (8 rows) hold the Q4_0
// kernels of 8-bit activations by token count.
var q4LanesVNNI = [groupTokens8]kernelLanes{dot8Q4_0LanesT1VNNI, dot8Q4_0LanesT2VNNI, dot8Q4_0LanesT3VNNI, dot8Q4_0LanesT4VNNI, dot8Q4_0LanesT5VNNI, dot8Q4_0LanesT6VNNI, dot8Q4_0LanesT7VNNI, dot8Q4_0LanesT8VNNI}

var q4LanesAVX2 = [q4LanesTokens]kernelLanes{dot8Q4_0LanesT1AVX2, dot8Q4_0LanesT2AVX2, dot8Q4_0LanesT3AVX2, dot8Q4_0LanesT4AVX2}

// q4LanesTokens is the most tokens of an AVX2 kernel of q4LanesAVX2.
const q4LanesTokens = 4

// blockDot8Lanes sets y[t*ys+r] to the 8-bit product of row r of the
// rows Q4_0 rows in w (rb bytes each) with token t of nt (at most
// groupTokens8), whose activations are laid out lt tokens per block (see
// dot8Q4_0Strided; k8 the blocks' −8·Σq): 16 rows at a time with AVX-512
// VNNI, then 8 with AVX2 (4 tokens a call), the last rows%8 in Go, all
// with the bits of dot8Q4_0Strided.
func blockDot8Lanes(y []float32, ys int, w []byte, rb, rows, nt, lt int, q []int8, d []float32, k8 []int32) {
	if rows == 0 {
		return
	}
	nb := rb / 18
	_, _, _, _ = w[rows*rb-1], q[lt*nb*q8Block-1], d[lt*nb-1], k8[lt*nb-1]
	_ = y[(nt-1)*ys+rows-1]
	if nt > lt || nt > groupTokens8 || ys < rows {
		panic("kernels: bad token layout")
	}
	r := 0
	if useAVX512 {
		if n := rows &^ 15; n > 0 {
			q4LanesVNNI[nt-1](&y[0], ys, &w[0], n, rb, &q[0], &d[0], &k8[0], lt)
			r = n
		}
	}
	if useAVX2 {
		if n := (rows - r) &^ 7; n > 0 {
			for t0 := 0; t0 < nt; t0 += q4LanesTokens {
				c := min(q4LanesTokens, nt-t0)
				q4LanesAVX2[c-1](&y[t0*ys+r], ys, &w[r*rb], n, rb, &q[t0*q8Block], &d[t0], &k8[t0], lt)
			}
			r += n
		}
	}
	blockDot8LanesGeneric(y, ys, w, rb, r, rows, nt, lt, q, d)
}
