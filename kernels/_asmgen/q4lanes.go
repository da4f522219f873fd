package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Q4_0 with 8-bit activations, one row per lane. Package kernels'
// dot8Q4_0Generic sums each block of 32 in integers, I = Σ (w_i−8)·q_i,
// and adds it by one fused multiply-add with the scale half·d_b to one
// float32 accumulator per row and token. These kernels hold 16 (AVX-512
// VNNI) or 8 (AVX2) rows in the lanes of one register: lane p is row p's.
// The rows' 16 bytes of nibbles are loaded four rows to a register, the
// four registers transposed by dwords (VPUNPCK{L,H}DQ, VPUNPCK{L,H}QDQ:
// register k then holds nibble bytes 4k..4k+3 of every row), and the low
// and high nibbles (columns 4k..4k+3 and 16+4k..16+4k+3) split into 8
// registers of unsigned 4-bit values. A token then costs, per block, 8
// byte products with its activations broadcast 4 at a time from memory
// (VPDPBUSD; AVX2: VPMADDUBSW into int16, at most 2·15·127 per pair and 8
// of them summed, 30480, then VPMADDWD with ones), started from −8·Σq
// (the activations' k8), one conversion, one product of the rows' scales
// with d_b and one fused multiply-add: for all 16 (8) rows at once. The
// weights' preparation is shared by the tokens of a pass. For one token
// (decoding, bound by memory) each block step prefetches the same block
// of the next 16 (8) rows, as the other one-token kernels prefetch rows
// ahead.
//
// Arguments: y (token t's 16 or 8 outputs at y + t·ys floats), w and rb
// (rows of rb bytes), rows (a multiple of 16 or 8), q, d and k8 the
// activations of block b and token t at (b·lt + t)·32, b·lt + t and
// b·lt + t (lt tokens per block in the layout; the kernel takes its own
// nt of them, from the first).
const sigLanes = "func(y *float32, ys int, w *byte, rows, rb int, q *int8, d *float32, k8 *int32, lt int)"

// q4LanesTokens is the most tokens of the AVX2 kernel (its 16 registers
// hold 8 of weights and a register per token); the AVX-512 one takes
// groupTokens8.
const q4LanesTokens = 4

var cB0F Mem

func genQ4Lanes() {
	cB0F = vconst("q4lByte0F", 0x0F0F0F0F)
	for nt := 1; nt <= groupTokens8; nt++ {
		genQ4Lanes512(nt)
	}
	for nt := 1; nt <= q4LanesTokens; nt++ {
		genQ4LanesAVX2(nt)
	}
}

// laneRows addresses rows 0..7 from a base with the row strides rb, 3rb,
// 5rb and 7rb in registers.
type laneRows struct{ rb, rb3, rb5, rb7 Register }

func (l laneRows) row(base Register, p, disp int) Mem {
	switch p {
	case 0:
		return Mem{Base: base, Disp: disp}
	case 1:
		return Mem{Base: base, Index: l.rb, Scale: 1, Disp: disp}
	case 2:
		return Mem{Base: base, Index: l.rb, Scale: 2, Disp: disp}
	case 3:
		return Mem{Base: base, Index: l.rb3, Scale: 1, Disp: disp}
	case 4:
		return Mem{Base: base, Index: l.rb, Scale: 4, Disp: disp}
	case 5:
		return Mem{Base: base, Index: l.rb5, Scale: 1, Disp: disp}
	case 6:
		return Mem{Base: base, Index: l.rb3, Scale: 2, Disp: disp}
	}
	return Mem{Base: base, Index: l.rb7, Scale: 1, Disp: disp}
}

func newLaneRows(rb Register) laneRows {
	l := laneRows{rb: rb, rb3: GP64(), rb5: GP64(), rb7: GP64()}
	LEAQ(Mem{Base: rb, Index: rb, Scale: 2}, l.rb3)
	LEAQ(Mem{Base: rb, Index: rb, Scale: 4}, l.rb5)
	LEAQ(Mem{Base: l.rb3, Index: rb, Scale: 4}, l.rb7)
	return l
}

// transposeDwords4 transposes 4×4 dwords within each 128-bit lane: lane j
// of out[k] holds dword k of lane j of x[0], x[1], x[2] and x[3], in that
// order.
func transposeDwords4(x [4]VecVirtual, mk func() VecVirtual) [4]VecVirtual {
	t0, t1, t2, t3 := mk(), mk(), mk(), mk()
	VPUNPCKLDQ(x[1], x[0], t0) // x0[0] x1[0] x0[1] x1[1]
	VPUNPCKHDQ(x[1], x[0], t1) // x0[2] x1[2] x0[3] x1[3]
	VPUNPCKLDQ(x[3], x[2], t2)
	VPUNPCKHDQ(x[3], x[2], t3)
	var o [4]VecVirtual
	for i := range o {
		o[i] = mk()
	}
	VPUNPCKLQDQ(t2, t0, o[0])
	VPUNPCKHQDQ(t2, t0, o[1])
	VPUNPCKLQDQ(t3, t1, o[2])
	VPUNPCKHQDQ(t3, t1, o[3])
	return o
}

// nextBlock moves the activation pointers to the next block: q by 32·lt
// bytes, d and k8 by 4·lt.
func nextBlock(qp, dp, kp Register) {
	st := Load(Param("lt"), GP64())
	SHLQ(U8(2), st)
	ADDQ(st, dp)
	ADDQ(st, kp)
	SHLQ(U8(3), st)
	ADDQ(st, qp)
}

func storeTokens(y Register, acc []VecVirtual) {
	ys := Load(Param("ys"), GP64())
	SHLQ(U8(2), ys)
	p := GP64()
	MOVQ(y, p)
	for t, a := range acc {
		if t > 0 {
			ADDQ(ys, p)
		}
		VMOVUPS(a, Mem{Base: p})
	}
}

// laneWidth is what the two kernels' weight loads differ in: rows per pass
// (16 or 8), a new register of their width, the 128-bit insert and the
// byte AND.
type laneWidth struct {
	rows int
	vec  func() VecVirtual
	ins  func(j int, m Mem, v VecVirtual)
	and  func(mask Mem, a, dst VecVirtual)
}

var (
	lanes512 = laneWidth{16, func() VecVirtual { return ZMM() },
		func(j int, m Mem, v VecVirtual) { VINSERTI32X4(U8(j), m, v, v) },
		func(mask Mem, a, dst VecVirtual) { VPANDD(mask, a, dst) }}
	lanesAVX2 = laneWidth{8, func() VecVirtual { return YMM() },
		func(j int, m Mem, v VecVirtual) { VINSERTI128(U8(j), m, v, v) },
		func(mask Mem, a, dst VecVirtual) { VPAND(mask, a, dst) }}
)

// prefetchLaneRows prefetches the line at each of rows 0..7 from base.
func prefetchLaneRows(l laneRows, base Register) {
	for p := range 8 {
		PREFETCHT0(l.row(base, p, 0))
	}
}

// laneBlock loads one block of the pass's lw.rows rows (row p at
// rowAt(p, disp)): their scales as float32 in H (gathered as halves
// through hLoc) and their 32 weights as unsigned 4-bit values, one row per
// 32-bit lane: register k holds columns 4k..4k+3 (k < 4) or 16+4(k−4)..
// (k ≥ 4) of every row.
// mask is the constant of bytes 0x0F at the width; with spill, H is also
// stored there (for a kernel whose registers are full).
func laneBlock(lw laneWidth, mask Mem, rowAt func(p, disp int) Mem, hLoc Mem, spill *Mem) (H VecVirtual, wv [8]VecVirtual) {
	h := GP32()
	for p := range lw.rows {
		MOVWLZX(rowAt(p, 0), h)
		MOVW(h.As16(), hLoc.Offset(2*p))
	}
	H = lw.vec()
	VCVTPH2PS(hLoc, H)
	if spill != nil {
		VMOVUPS(H, *spill)
	}
	// x[m]'s 128-bit lane j: row 4j+m's nibbles; after the transpose
	// lane p of o[k] holds row p's nibble bytes 4k..4k+3.
	var x [4]VecVirtual
	for m := range x {
		x[m] = lw.vec()
		VMOVDQU(rowAt(m, 2), x[m].AsX())
		for j := 1; j < lw.rows/4; j++ {
			lw.ins(j, rowAt(4*j+m, 2), x[m])
		}
	}
	o := transposeDwords4(x, lw.vec)
	for k := range o {
		wv[k], wv[k+4] = lw.vec(), lw.vec()
		lw.and(mask, o[k], wv[k])
		VPSRLW(U8(4), o[k], wv[k+4])
		lw.and(mask, wv[k+4], wv[k+4])
	}
	return H, wv
}

func genQ4Lanes512(nt int) {
	name := fmt.Sprintf("dot8Q4_0LanesT%dVNNI", nt)
	TEXT(name, NOSPLIT, sigLanes)
	Pragma("noescape")
	Doc(name+" multiplies 16 rows of Q4_0 blocks at a time, one per lane,",
		fmt.Sprintf("with %d token(s) of 8-bit activations (sigLanes); it needs", nt),
		"AVX-512 F, BW, VL and VNNI.")
	hLoc := AllocLocal(32)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	rb := Load(Param("rb"), GP64())
	l := newLaneRows(rb)
	Label(name + "_pass")
	CMPQ(rows, Imm(16))
	JL(LabelRef(name + "_done"))
	w8 := GP64()
	LEAQ(Mem{Base: w, Index: rb, Scale: 8}, w8)
	acc := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = ZMM()
		zeroZ(acc[t])
	}
	n := GP64()
	MOVQ(rb, n)
	qp := Load(Param("q"), GP64())
	dp := Load(Param("d"), GP64())
	kp := Load(Param("k8"), GP64())
	rowAt := func(p, disp int) Mem {
		if p < 8 {
			return l.row(w, p, disp)
		}
		return l.row(w8, p-8, disp)
	}
	Label(name + "_block")
	CMPQ(n, Imm(0))
	JLE(LabelRef(name + "_end"))
	if nt == 1 {
		// Decoding, bound by memory: the same block of the next 16 rows.
		pf := GP64()
		LEAQ(Mem{Base: w8, Index: rb, Scale: 8}, pf)
		prefetchLaneRows(l, pf)
		LEAQ(Mem{Base: pf, Index: rb, Scale: 8}, pf)
		prefetchLaneRows(l, pf)
	}
	H, wv := laneBlock(lanes512, zB0F, rowAt, hLoc, nil)
	for t := range acc {
		I := ZMM()
		VPBROADCASTD(Mem{Base: kp, Disp: 4 * t}, I)
		for k := range wv {
			VPDPBUSD_BCST(Mem{Base: qp, Disp: 32*t + 4*k}, wv[k], I)
		}
		VCVTDQ2PS(I, I)
		sc := ZMM()
		VMULPS_BCST(Mem{Base: dp, Disp: 4 * t}, H, sc)
		VFMADD231PS(sc, I, acc[t])
	}
	ADDQ(U8(18), w)
	ADDQ(U8(18), w8)
	nextBlock(qp, dp, kp)
	SUBQ(U8(18), n)
	JMP(LabelRef(name + "_block"))
	Label(name + "_end")
	storeTokens(y, acc)
	// w is rb on from the pass's first row: 15 rows more.
	LEAQ(Mem{Base: w, Index: l.rb7, Scale: 2}, w)
	ADDQ(rb, w)
	ADDQ(U8(64), y)
	SUBQ(U8(16), rows)
	JMP(LabelRef(name + "_pass"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

func genQ4LanesAVX2(nt int) {
	name := fmt.Sprintf("dot8Q4_0LanesT%dAVX2", nt)
	TEXT(name, NOSPLIT, sigLanes)
	Pragma("noescape")
	Doc(name+" multiplies 8 rows of Q4_0 blocks at a time, one per lane,",
		fmt.Sprintf("with %d token(s) of 8-bit activations (sigLanes); it needs", nt),
		"AVX2 and FMA.")
	hLoc := AllocLocal(16)
	fLoc := AllocLocal(32)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	rb := Load(Param("rb"), GP64())
	l := newLaneRows(rb)
	Label(name + "_pass")
	CMPQ(rows, Imm(8))
	JL(LabelRef(name + "_done"))
	acc := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = YMM()
		VXORPS(acc[t], acc[t], acc[t])
	}
	n := GP64()
	MOVQ(rb, n)
	qp := Load(Param("q"), GP64())
	dp := Load(Param("d"), GP64())
	kp := Load(Param("k8"), GP64())
	Label(name + "_block")
	CMPQ(n, Imm(0))
	JLE(LabelRef(name + "_end"))
	if nt == 1 {
		// Decoding, bound by memory: the same block of the next 8 rows.
		pf := GP64()
		LEAQ(Mem{Base: w, Index: rb, Scale: 8}, pf)
		prefetchLaneRows(l, pf)
	}
	// The scales are read back from fLoc by the products: the registers
	// are full.
	_, wv := laneBlock(lanesAVX2, cB0F, func(p, disp int) Mem { return l.row(w, p, disp) }, hLoc, &fLoc)
	for t := range acc {
		var sum VecVirtual
		for k := range wv {
			b := YMM()
			VPBROADCASTD(Mem{Base: qp, Disp: 32*t + 4*k}, b)
			VPMADDUBSW(b, wv[k], b)
			if sum == nil {
				sum = b
			} else {
				VPADDW(b, sum, sum)
			}
		}
		VPMADDWD(c8Ones16, sum, sum)
		kb := YMM()
		VPBROADCASTD(Mem{Base: kp, Disp: 4 * t}, kb)
		VPADDD(kb, sum, sum)
		VCVTDQ2PS(sum, sum)
		sc := YMM()
		VBROADCASTSS(Mem{Base: dp, Disp: 4 * t}, sc)
		VMULPS(fLoc, sc, sc)
		VFMADD231PS(sc, sum, acc[t])
	}
	ADDQ(U8(18), w)
	nextBlock(qp, dp, kp)
	SUBQ(U8(18), n)
	JMP(LabelRef(name + "_block"))
	Label(name + "_end")
	storeTokens(y, acc)
	// w is rb on from the pass's first row: 7 rows more.
	ADDQ(l.rb7, w)
	ADDQ(U8(32), y)
	SUBQ(U8(8), rows)
	JMP(LabelRef(name + "_pass"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}
