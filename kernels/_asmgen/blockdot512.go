package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The AVX-512 fused block kernels (AVX-512 F, BW, VL, DQ and VNNI) give the
// bits of the AVX2 ones (and so of the plain-Go kernels): the order of
// every output is kept, and the 512-bit registers hold two rows instead of
// more columns. Lanes 0-7 of a zmm belong to row r, lanes 8-15 to row r+1:
// the weights of a block of both rows are widened into one register of 32
// words (the first half of each row's block, then the second in another
// register), the token's 32 activations are broadcast to both halves of a
// register (a load, no shuffle), VPMADDWD and VPDPWSSD give each row's 8
// exact lane sums L_l in one register, and the conversion to float32, the
// product with the scale and the sum into the lane accumulators are one
// instruction for the two rows each, with the same roundings. The two
// rows' lanes are reduced by hsum1's tree (the same additions, done with
// in-lane shuffles). An odd last row is left to the AVX2 kernel.
//
// Only instructions with an EVEX encoding are used, so that the register
// allocator may hand out the registers 16-31.

// kernelName512 is the name of the AVX-512 fused kernel of base for nt
// tokens.
func kernelName512(base string, nt int) string {
	if nt == 1 {
		return base + "AVX512"
	}
	return base + "x" + itoa(nt) + "AVX512"
}

// blockRowsDoc512 is the doc comment of an AVX-512 fused kernel.
func blockRowsDoc512(name, avx2 string) []string {
	return []string{
		name + " is " + avx2 + " for an even number of rows",
		"(two rows per pass), with the same bits; it needs AVX-512 F, BW, VL,",
		"DQ and VNNI.",
	}
}

// vconst64 is a 64-byte constant of 16 copies of bits.
func vconst64(name string, bits uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(bits))
	}
	return m
}

var z0F, z08, z10, zBits, zB0F, zB03, zB30, zB20, zLow16, zZero Mem

// pairBytes returns a ymm with the 16 bytes at m0 in its low half and the
// 16 at m1 in its high half.
func pairBytes(m0, m1 Mem) VecVirtual {
	// (A broadcast, not a 16-byte load into the low half: the register
	// allocator takes a write of the low half for a partial definition,
	// and the high half for a value live from the start of the function.)
	y := YMM()
	VBROADCASTI32X4(m0, y)
	VINSERTI32X4(U8(1), m1, y, y)
	return y
}

// halfPair returns the halves at m0 and m1 widened to float32, each in 8
// lanes: [h0 ×8, h1 ×8].
func halfPair(m0, m1 Mem) VecVirtual {
	a, b := YMM(), XMM()
	VPBROADCASTW(m0, a) // all of a defined (see pairBytes)
	VPBROADCASTW(m1, b)
	y := YMM()
	VINSERTI32X4(U8(1), b, a, y)
	z := ZMM()
	VCVTPH2PS(y, z)
	return z
}

// lanesPair adds to acc the two rows' lanes of one block: wa holds the
// first 16 weights of each row's block (row r, then row r+1), wb the last
// 16, q the token's 32 activations; acc += float32(sc·float32(L)).
func lanesPair(wa, wb VecVirtual, q Mem, sc Op, acc VecVirtual) {
	qa, qb, p := ZMM(), ZMM(), ZMM()
	VBROADCASTI64X4(q, qa)
	VBROADCASTI64X4(q.Offset(32), qb)
	VPMADDWD(qa, wa, p)
	VPDPWSSD(qb, wb, p)
	VCVTDQ2PS(p, p)
	VMULPS(sc, p, p)
	VADDPS(p, acc, acc)
}

// treePair reduces the 8 lanes of each half of a by hsum1's tree:
// ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)), row r's in lane 0 and row r+1's
// in lane 8.
func treePair(a Op) {
	s := ZMM()
	VPERMILPS(U8(0xb1), a, s) // l1 l0 l3 l2 …
	VADDPS(s, a, a)
	VPERMILPS(U8(0x4e), a, s) // l2 l3 l0 l1 …
	VADDPS(s, a, a)
	VSHUFF32X4(U8(0xb1), a, a, s) // the 128-bit halves of each row swapped
	VADDPS(s, a, a)
}

// storePair stores the two rows' results of each token (acc less the
// minimum sums at mLoc, if any; token t's at mLoc+64t) to y[t] and
// y[nt+t], and advances y past them.
func storePair(y Register, acc []VecVirtual, mLoc *Mem) {
	nt := len(acc)
	for t, a := range acc {
		treePair(a)
		if mLoc != nil {
			m := ZMM()
			VMOVUPS(mLoc.Offset(64*t), m)
			treePair(m)
			VSUBPS(m, a, a)
		}
		VMOVSS(a.AsX(), Mem{Base: y, Disp: 4 * t})
		hi := XMM()
		VEXTRACTF32X4(U8(2), a, hi)
		VMOVSS(hi, Mem{Base: y, Disp: 4 * (nt + t)})
	}
	ADDQ(U8(8*nt), y)
}

// zeroZ clears the registers.
func zeroZ(v ...VecVirtual) {
	for _, r := range v {
		VPXORD(r, r, r)
	}
}

func genBlockDot512() {
	z0F = vconst64("bdzMask0F", 0x000F000F)
	z08 = vconst64("bdzEight", 0x00080008)
	z10 = vconst64("bdzMask10", 0x00100010)
	zB0F = vconst64("bdzByte0F", 0x0F0F0F0F)
	zB03 = vconst64("bdzByte03", 0x03030303)
	zB30 = vconst64("bdzByte30", 0x30303030)
	zB20 = vconst64("bdzByte20", 0x20202020)
	zLow16 = vconst64("bdzLow16", 0x0000FFFF)
	zZero = vconst64("bdzZero", 0)
	zBits = GLOBL("bdzBits", RODATA|NOPTR) // word i: 1<<(i%16)
	for i := 0; i < 16; i++ {
		j := i % 8
		DATA(4*i, U32(uint32(1)<<(2*j)|uint32(2)<<(2*j)<<16))
	}
	for nt := 1; nt <= 4; nt++ {
		genMatVecF16x512(nt)
	}
	for nt := 1; nt <= 4; nt++ {
		genBlockDot32x512(nt)
		genBlockDotK45x512(nt)
		genBlockDotQ6Kx512(nt)
	}
	for nt := 5; nt <= 8; nt++ {
		genBlockDot32x512(nt)
	}
}

// rowPairLoop writes the loop over pairs of rows common to the kernels:
// it loads y, w and rb, and for each pair calls body with the two rows'
// pointers (w, w1), then store; body must leave w at row r+1.
func rowPairLoop(name string, body func(w, w1, rb Register), store func(y Register)) {
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	rb := Load(Param("rb"), GP64())
	Label(name + "_row")
	CMPQ(rows, Imm(2))
	JL(LabelRef(name + "_done"))
	w1 := GP64()
	LEAQ(Mem{Base: w, Index: rb, Scale: 1}, w1)
	body(w, w1, rb)
	store(y)
	MOVQ(w1, w)
	SUBQ(Imm(2), rows)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// Q8_0, Q4_0 and Q5_0, as genBlockDot32, for 1 to 8 tokens (more than 4
// only here: MatMul packs groups of 8 for an even number of rows, as for
// the 8-bit kernels). From 2 tokens on two pairs of rows run per pass
// (up to 16 accumulators), so that each token's activation loads and
// scale serve 4 rows; a last pair runs alone.
func genBlockDot32x512(nt int) {
	for _, k := range []struct {
		base  string
		bytes int
	}{{"dotQ8_0", 34}, {"dotQ4_0", 18}, {"dotQ5_0", 22}} {
		name := kernelName512(k.base, nt)
		TEXT(name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d *float32)")
		Pragma("noescape")
		if nt <= 4 {
			Doc(blockRowsDoc512(name, kernelName(k.base, nt))...)
		} else {
			Doc(name+" is "+kernelName(k.base, 1)+" for "+itoa(nt)+" tokens at once, as "+kernelName(k.base, 4),
				"computes 4, for an even number of rows (two rows per pass), with the",
				"same bits; it needs AVX-512 F, BW, VL, DQ and VNNI.")
		}
		y := Load(Param("y"), GP64())
		w := Load(Param("w"), GP64())
		rows := Load(Param("rows"), GP64())
		rb := Load(Param("rb"), GP64())
		rowAt := func(base, index Register, scale uint8) Mem { return Mem{Base: base, Index: index, Scale: scale} }
		if nt > 1 {
			rb3 := GP64()
			LEAQ(Mem{Base: rb, Index: rb, Scale: 2}, rb3)
			Label(name + "_quad")
			CMPQ(rows, Imm(4))
			JL(LabelRef(name + "_pair"))
			acc := blockDot32Pass(name+"_q", k.bytes, nt, rb, w, [][2]Mem{{{Base: w}, rowAt(w, rb, 1)}, {rowAt(w, rb, 2), rowAt(w, rb3, 1)}})
			storePair(y, acc[0], nil)
			storePair(y, acc[1], nil)
			LEAQ(Mem{Base: w, Index: rb, Scale: 4}, w)
			SUBQ(Imm(4), rows)
			JMP(LabelRef(name + "_quad"))
		}
		Label(name + "_pair")
		CMPQ(rows, Imm(2))
		JL(LabelRef(name + "_done"))
		acc := blockDot32Pass(name+"_p", k.bytes, nt, rb, w, [][2]Mem{{{Base: w}, rowAt(w, rb, 1)}})
		storePair(y, acc[0], nil)
		LEAQ(Mem{Base: w, Index: rb, Scale: 2}, w)
		SUBQ(Imm(2), rows)
		JMP(LabelRef(name + "_pair"))
		Label(name + "_done")
		VZEROUPPER()
		RET()
	}
}

// prefetchPairsAhead prefetches (PREFETCHT0) the line of rows r+4 and
// r+5 at the offset w has reached in row r (rows of rb bytes): the
// one-token kernels (decoding, the weights from memory) so ask for the
// rows two pairs ahead while they work on a pair. Prefetching 1 KiB ahead
// in the pair's own rows, as the other kernels do, starts each pair's
// second row cold (the first is the previous pair's prefetch target):
// with it the one-token kernels read 0.4-0.65 of the read bandwidth on
// BenchmarkMatVecMemory, with this 0.62-0.85. A second request, into L2
// alone (PREFETCHT2), asks for rows r+8 and r+9, four pairs ahead: Q4_K_M
// decode 3-8% faster on a Sapphire Rapids core (jamba-3b, jamba-small;
// Q8_0 and Q4_0 alike).
func prefetchPairsAhead(w, rb Register, bytes int) {
	pf := GP64()
	LEAQ(Mem{Base: w, Index: rb, Scale: 4}, pf)
	for off := 0; off < bytes || off == 0; off += 64 {
		PREFETCHT0(Mem{Base: pf, Disp: off})
		PREFETCHT0(Mem{Base: pf, Index: rb, Scale: 1, Disp: off})
	}
	LEAQ(Mem{Base: w, Index: rb, Scale: 8}, pf)
	for off := 0; off < bytes || off == 0; off += 64 {
		PREFETCHT2(Mem{Base: pf, Disp: off})
		PREFETCHT2(Mem{Base: pf, Index: rb, Scale: 1, Disp: off})
	}
}

// prefetchRows is the prefetch of the row-pair kernels for nt tokens:
// prefetchPairsAhead for one token, else prefetchAhead.
func prefetchRows(nt, bytes int, w, w1, rb Register) {
	if nt == 1 {
		prefetchPairsAhead(w, rb, bytes)
		return
	}
	prefetchAhead(bytes, w, w1)
}

// zeroPairAccs returns nt zeroed accumulators for each of np pairs of
// rows. The zeros are loaded, not made by VPXORD of a register with itself:
// that reads it, which the register allocator takes for a value live from
// the start of the function, and two passes' accumulators would not fit
// the registers together.
func zeroPairAccs(np, nt int) [][]VecVirtual {
	acc := make([][]VecVirtual, np)
	for p := range acc {
		acc[p] = make([]VecVirtual, nt)
		for t := range acc[p] {
			acc[p][t] = ZMM()
			VMOVDQU64(zZero, acc[p][t])
		}
	}
	return acc
}

// blockDot32Pass writes one pass of genBlockDot32x512 over the blocks of
// the pairs of rows at pairs[i] (addresses from w; rb bytes each) and
// returns the accumulators of each pair's nt tokens, leaving w as it
// found it.
func blockDot32Pass(name string, bytes, nt int, rb, w Register, pairs [][2]Mem) [][]VecVirtual {
	n := GP64()
	MOVQ(rb, n)
	qp := Load(Param("q"), GP64())
	dp := Load(Param("d"), GP64())
	acc := zeroPairAccs(len(pairs), nt)
	Label(name + "_block")
	CMPQ(n, Imm(0))
	JLE(LabelRef(name + "_end"))
	h := make([]VecVirtual, len(pairs))
	wa := make([]VecVirtual, len(pairs))
	wb := make([]VecVirtual, len(pairs))
	for p, pr := range pairs {
		r0, r1 := pr[0], pr[1]
		if nt == 1 {
			prefetchPairsAhead(w, rb, bytes)
		} else {
			for _, r := range pr {
				for off := 0; off < bytes; off += 64 {
					PREFETCHT0(r.Offset(streamPrefetch + off))
				}
			}
		}
		h[p] = halfPair(r0, r1)
		a, b := ZMM(), ZMM()
		switch bytes {
		case 34:
			VPMOVSXBW(pairBytes(r0.Offset(2), r1.Offset(2)), a)
			VPMOVSXBW(pairBytes(r0.Offset(18), r1.Offset(18)), b)
		case 18:
			VPMOVZXBW(pairBytes(r0.Offset(2), r1.Offset(2)), a)
			VPSRLW(U8(4), a, b)
			VPANDD(z0F, a, a)
			VPSUBW(z08, a, a)
			VPSUBW(z08, b, b)
		case 22:
			// Nibbles, then 16 subtracted where the high bit is
			// clear: each half of qh broadcast to 16 words, word i
			// tested against 1<<i.
			VPMOVZXBW(pairBytes(r0.Offset(6), r1.Offset(6)), a)
			VPSRLW(U8(4), a, b)
			VPANDD(z0F, a, a)
			for hi, v := range []VecVirtual{a, b} {
				h0, h1, hz := YMM(), YMM(), ZMM()
				VPBROADCASTW(r0.Offset(2+2*hi), h0)
				VPBROADCASTW(r1.Offset(2+2*hi), h1)
				VINSERTI64X4(U8(1), h1, h0.AsZ(), hz)
				unset := K()
				VPTESTNMW(zBits, hz, unset)
				VPSUBW(z10, v, unset, v)
			}
		}
		wa[p], wb[p] = a, b
	}
	for t := 0; t < nt; t++ {
		qa, qb := ZMM(), ZMM()
		VBROADCASTI64X4(Mem{Base: qp, Disp: 64 * t}, qa)
		VBROADCASTI64X4(Mem{Base: qp, Disp: 64*t + 32}, qb)
		for p := range pairs {
			sc, L := ZMM(), ZMM()
			VMULPS_BCST(Mem{Base: dp, Disp: 4 * t}, h[p], sc) // float32(half·d_b)
			VPMADDWD(qa, wa[p], L)
			VPDPWSSD(qb, wb[p], L)
			VCVTDQ2PS(L, L)
			VMULPS(sc, L, L)
			VADDPS(L, acc[p][t], acc[p][t])
		}
	}
	ADDQ(U8(bytes), w)
	ADDQ(U32(64*nt), qp)
	ADDQ(U8(4*nt), dp)
	SUBQ(U8(bytes), n)
	JMP(LabelRef(name + "_block"))
	Label(name + "_end")
	SUBQ(rb, w) // back to the rows' first blocks
	return acc
}

// k45Scales returns d·sc_j and dmin·m_j (j = 0..7) of the Q4_K or Q5_K
// super-block at w, as genBlockDotK45 computes them.
func k45Scales(w Register) (sc, mn VecVirtual) {
	scx, mnx := k45PackedScales(w)
	sc, mn = YMM(), YMM()
	VPMOVZXBD(scx, sc)
	VPMOVZXBD(mnx, mn)
	VCVTDQ2PS(sc, sc)
	VCVTDQ2PS(mn, mn)
	dd, dmin := k45D(w)
	VMULPS(dd, sc, sc)
	VMULPS(dmin, mn, mn)
	return sc, mn
}

// Q4_K and Q5_K, as genBlockDotK45.
func genBlockDotK45x512(nt int) {
	for _, k := range []struct {
		base  string
		bytes int
	}{{"dotQ4K", 144}, {"dotQ5K", 176}} {
		five := k.bytes == 176
		name := kernelName512(k.base, nt)
		TEXT(name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d, s *float32)")
		Pragma("noescape")
		Doc(blockRowsDoc512(name, kernelName(k.base, nt))...)
		aLoc := AllocLocal(64 * nt) // A_j of both rows per token
		mLoc := AllocLocal(64 * nt) // the minimum sums of both rows per token
		hiRow := K()                // lanes 8-15
		{
			m := GP32()
			MOVL(U32(0xff00), m)
			KMOVW(m, hiRow)
		}
		acc := make([]VecVirtual, nt)
		rowPairLoop(name, func(w, w1, rb Register) {
			n := GP64()
			MOVQ(rb, n)
			qp := Load(Param("q"), GP64())
			dp := Load(Param("d"), GP64())
			sp := Load(Param("s"), GP64())
			for t := range acc {
				acc[t] = ZMM()
			}
			zeroZ(acc...)
			for t := range acc {
				VMOVUPS(acc[t], mLoc.Offset(64*t))
			}
			Label(name + "_block")
			CMPQ(n, Imm(0))
			JLE(LabelRef(name + "_end"))
			prefetchRows(nt, k.bytes, w, w1, rb)
			{
				sc0, mn0 := k45Scales(w)
				sc1, mn1 := k45Scales(w1)
				sc, mn := ZMM(), ZMM()
				VINSERTF64X4(U8(1), sc1, sc0.AsZ(), sc)
				VINSERTF64X4(U8(1), mn1, mn0.AsZ(), mn)
				for t := 0; t < nt; t++ {
					d, a, m, s := ZMM(), ZMM(), ZMM(), ZMM()
					VBROADCASTF64X4(Mem{Base: dp, Disp: 32 * t}, d)
					VMULPS(d, sc, a) // ·d_b
					VMOVUPS(a, aLoc.Offset(64*t))
					VMULPS(d, mn, m) // ·d_b
					VBROADCASTF64X4(Mem{Base: sp, Disp: 32 * t}, s)
					VMULPS(s, m, m) // ·Σq
					VADDPS(mLoc.Offset(64*t), m, m)
					VMOVUPS(m, mLoc.Offset(64*t))
				}
			}
			off := 16
			var qh0, qh1 VecVirtual
			if five {
				off = 48
				qh0, qh1 = ZMM(), ZMM()
				VPMOVZXBW(pairBytes(Mem{Base: w, Disp: 16}, Mem{Base: w1, Disp: 16}), qh0)
				VPMOVZXBW(pairBytes(Mem{Base: w, Disp: 32}, Mem{Base: w1, Disp: 32}), qh1)
			}
			for j := 0; j < 4; j++ {
				za, zb := ZMM(), ZMM()
				VPMOVZXBW(pairBytes(Mem{Base: w, Disp: off + 32*j}, Mem{Base: w1, Disp: off + 32*j}), za)
				VPMOVZXBW(pairBytes(Mem{Base: w, Disp: off + 32*j + 16}, Mem{Base: w1, Disp: off + 32*j + 16}), zb)
				for part := 0; part < 2; part++ {
					a, b := ZMM(), ZMM()
					if part == 0 {
						VPANDD(z0F, za, a)
						VPANDD(z0F, zb, b)
					} else {
						VPSRLW(U8(4), za, a)
						VPSRLW(U8(4), zb, b)
					}
					if five {
						bit := 2*j + part
						for i, v := range []VecVirtual{a, b} {
							src := []VecVirtual{qh0, qh1}[i]
							t := ZMM()
							switch {
							case bit < 4:
								VPSLLW(U8(4-bit), src, t)
							case bit > 4:
								VPSRLW(U8(bit-4), src, t)
							default:
								VMOVDQA32(src, t)
							}
							VPANDD(z10, t, t)
							VPORD(t, v, v)
						}
					}
					sb := 2*j + part
					for t := 0; t < nt; t++ {
						s := ZMM()
						VBROADCASTSS(aLoc.Offset(64*t+4*sb), s)
						VBROADCASTSS(aLoc.Offset(64*t+32+4*sb), hiRow, s)
						lanesPair(a, b, Mem{Base: qp, Disp: 64 * (sb*nt + t)}, s, acc[t])
					}
				}
			}
			ADDQ(U32(k.bytes), w)
			ADDQ(U32(k.bytes), w1)
			ADDQ(U32(512*nt), qp)
			ADDQ(U32(32*nt), dp)
			ADDQ(U32(32*nt), sp)
			SUBQ(U32(k.bytes), n)
			JMP(LabelRef(name + "_block"))
			Label(name + "_end")
		}, func(y Register) { storePair(y, acc, &mLoc) })
	}
}

// Q6_K, as genBlockDotQ6K.
func genBlockDotQ6Kx512(nt int) {
	name := kernelName512("dotQ6K", nt)
	TEXT(name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d *float32)")
	Pragma("noescape")
	Doc(blockRowsDoc512(name, kernelName("dotQ6K", nt))...)
	dLoc := AllocLocal(64 * nt) // D_b of both rows per token
	// The 16-weight scales of row r, then row r+1, each as a dword that
	// holds it in both words (so that a dword broadcast, a load, spreads
	// it over 16 words).
	sLoc := AllocLocal(128)
	hiRow := K() // lanes 8-15
	{
		m := GP32()
		MOVL(U32(0xff00), m)
		KMOVW(m, hiRow)
	}
	acc := make([]VecVirtual, nt)
	rowPairLoop(name, func(w, w1, rb Register) {
		n := GP64()
		MOVQ(rb, n)
		qp := Load(Param("q"), GP64())
		dp := Load(Param("d"), GP64())
		for t := range acc {
			acc[t] = ZMM()
		}
		zeroZ(acc...)
		Label(name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		prefetchRows(nt, 210, w, w1, rb)
		{
			dd := halfPair(Mem{Base: w, Disp: 208}, Mem{Base: w1, Disp: 208})
			for t := 0; t < nt; t++ {
				v := ZMM()
				VBROADCASTF64X4(Mem{Base: dp, Disp: 32 * t}, v)
				VMULPS(dd, v, v) // D_b = d·d_b
				VMOVUPS(v, dLoc.Offset(64*t))
			}
			for i, base := range []Register{w, w1} {
				sc, t := ZMM(), ZMM()
				VPMOVSXBD(Mem{Base: base, Disp: 192}, sc)
				VPSLLD(U8(16), sc, t)
				VPANDD(zLow16, sc, sc)
				VPORD(t, sc, sc)
				VMOVDQU32(sc, sLoc.Offset(64*i))
			}
		}
		for hh := 0; hh < 2; hh++ {
			for g := 0; g < 4; g++ {
				// The 32 bytes of each row: row r's in the low half.
				v, b := ZMM(), ZMM()
				src := 64 * hh
				if g&1 == 1 {
					src += 32
				}
				VMOVDQU8(Mem{Base: w, Disp: src}, v.AsY())
				VINSERTI64X4(U8(1), Mem{Base: w1, Disp: src}, v, v)
				if g >= 2 {
					VPSRLW(U8(4), v, v)
				}
				VPANDD(zB0F, v, v)
				VMOVDQU8(Mem{Base: w, Disp: 128 + 32*hh}, b.AsY())
				VINSERTI64X4(U8(1), Mem{Base: w1, Disp: 128 + 32*hh}, b, b)
				switch g {
				case 0:
					VPANDD(zB03, b, b)
					VPSLLW(U8(4), b, b)
				case 1:
					VPSLLW(U8(2), b, b)
					VPANDD(zB30, b, b)
				case 2:
					VPANDD(zB30, b, b)
				case 3:
					VPSRLW(U8(2), b, b)
					VPANDD(zB30, b, b)
				}
				VPORD(b, v, v)
				VPSUBB(zB20, v, v) // q6 − 32
				// 128-bit quarters 0, 2 (weights 0-15 of each row), then 1, 3.
				VSHUFI64X2(U8(0xd8), v, v, v)
				w0, w1v, hi := ZMM(), ZMM(), YMM()
				VPMOVSXBW(v.AsY(), w0)
				VEXTRACTI64X4(U8(1), v, hi)
				VPMOVSXBW(hi, w1v)
				j := 8*hh + 2*g
				s := ZMM()
				VPBROADCASTD(sLoc.Offset(4*j), s)
				VPBROADCASTD(sLoc.Offset(64+4*j), hiRow, s)
				VPMULLW(s, w0, w0) // sc·(q6−32), at most 4096
				VPBROADCASTD(sLoc.Offset(4*j+4), s)
				VPBROADCASTD(sLoc.Offset(64+4*j+4), hiRow, s)
				VPMULLW(s, w1v, w1v)
				for t := 0; t < nt; t++ {
					dd := ZMM()
					VBROADCASTSS(dLoc.Offset(64*t+4*(4*hh+g)), dd)
					VBROADCASTSS(dLoc.Offset(64*t+32+4*(4*hh+g)), hiRow, dd)
					lanesPair(w0, w1v, Mem{Base: qp, Disp: 64 * ((4*hh+g)*nt + t)}, dd, acc[t])
				}
			}
		}
		ADDQ(U32(210), w)
		ADDQ(U32(210), w1)
		ADDQ(U32(512*nt), qp)
		ADDQ(U32(32*nt), dp)
		SUBQ(U32(210), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_end")
	}, func(y Register) { storePair(y, acc, nil) })
}

// gemmIdx gathers lane 0 and lane 8 of two registers (the four rows' sums
// after treePair) into lanes 0-3, for VPERMT2PS.
var gemmIdx Mem

// gemmIdxConst writes gemmIdx, once.
func gemmIdxConst() {
	if gemmIdx.Symbol.Name != "" {
		return
	}
	gemmIdx = GLOBL("gemmIdx512", RODATA|NOPTR)
	for i, v := range []uint32{0, 8, 16, 24} {
		DATA(4*i, U32(v))
	}
	for i := 4; i < 16; i++ {
		DATA(4*i, U32(0))
	}
}

// store4 stores the sums of four rows, rows 0 and 1 in a0 and rows 2 and
// 3 in a1 (8 lanes each, reduced by hsum1's tree), to the 4 floats at m;
// it overwrites a0 and a1.
func store4(a0, a1 Op, m Mem) {
	idx := ZMM()
	VMOVDQU32(gemmIdx, idx)
	treePair(a0)
	treePair(a1)
	VPERMT2PS(a1, idx, a0)
	VEXTRACTF32X4(U8(0), a0, m) // EVEX: a0 may be any of the 32 registers
}

// bf16Shuf512 is the VPSHUFB control that widens bfloat16 weights: with
// the 8 weights of a row in each 128-bit lane, lanes 0 and 2 take weights
// 0-3, lanes 1 and 3 weights 4-7, each in the top half of a float32.
var bf16Shuf512 Mem

// genMatVecN512 writes matVec{F32,BF16}T{2,3}AVX512, the few-token
// kernels on 512-bit registers: 4 rows at a time as two pairs of rows per
// zmm, each token's x broadcast to both halves, so each fused
// multiply-add serves two outputs in the dot order (the bits of the AVX2
// kernel). bfloat16 weights of two rows are widened by two 16-byte
// broadcast loads (the second one merged into the high half) and one
// byte shuffle.
func genMatVecN512(d dtype, nt int) {
	genMatVecN512Named(fmt.Sprintf("matVec%sT%dAVX512", d.title, nt), d, nt, 1)
}

// genKeyScores512 writes keyScores{F32,BF16}T{nt}AVX512, the kernel of
// genMatVecN512 for the keys of a decode step's attention (1 to 4 query
// heads of a key-value head): the rows are short (one head's columns of
// a cache row) and far apart, so each group of 4 rows prefetches the
// rows keyPrefetchGroups groups ahead, not the next group.
func genKeyScores512(d dtype, nt int) {
	genMatVecN512Named(fmt.Sprintf("keyScores%sT%dAVX512", d.title, nt), d, nt, keyPrefetchGroups)
}

// keyPrefetchGroups is how many groups of 4 keys ahead the key kernels
// prefetch (1, 2, 4 or 8: an address scale): 16 rows of the cache.
const keyPrefetchGroups = 4

// genMatVecN512Named writes genMatVecN512's kernel under name, prefetching
// while it reads a line of 4 rows the same line of the rows ahead groups
// of 4 on.
func genMatVecN512Named(name string, d dtype, nt, ahead int) {
	gemmIdxConst()
	if bf16Shuf512.Symbol.Name == "" {
		bf16Shuf512 = GLOBL("bf16Shuf512", RODATA|NOPTR)
		for k := 0; k < 4; k++ {
			for i := 0; i < 4; i++ {
				c := (k%2)*4 + i
				DATA(16*k+4*i, U32(0x8080|uint32(2*c)<<16|uint32(2*c+1)<<24))
			}
		}
	}
	TEXT(name, NOSPLIT, "func(y *float32, ldy int, w *"+d.gotyp+", x *float32, ldx, rows, cols, ld int)")
	Pragma("noescape")
	if nt < 4 {
		Doc(fmt.Sprintf("%s is matVec%sT%dAVX2 for a multiple of 4 rows, with the", name, d.title, nt),
			"same bits; it needs AVX-512 F, BW, VL and DQ.")
	} else {
		Doc(fmt.Sprintf("%s is matVec%sT3AVX2 for 4 rows of x and a multiple", name, d.title),
			"of 4 rows of w, with the same bits for each row of x; it needs AVX-512 F,",
			"BW, VL and DQ.")
	}
	yM, ldyM, rowsM, colsM, ldM := frameArg("y"), frameArg("ldy"), frameArg("rows"), frameArg("cols"), frameArg("ld")
	w := Load(Param("w"), GP64()).(GPVirtual)
	x := Load(Param("x"), GP64()).(GPVirtual)
	ldx := Load(Param("ldx"), GP64()).(GPVirtual)
	SHLQ(U8(2), ldyM)
	SHLQ(U8(2), ldx)
	if d.size > 1 {
		SHLQ(U8(d.shift()), ldM)
	}
	L := 64 / d.size
	nL := GP64()
	MOVQ(colsM, nL)
	ANDQ(I32(-L), nL)
	g := newRowGroup(ldM)
	c := GP64()
	xs := []GPVirtual{x, GP64(), GP64(), GP64()}
	LEAQ(Mem{Base: x, Index: ldx, Scale: 1}, xs[1])
	if nt > 2 {
		LEAQ(Mem{Base: x, Index: ldx, Scale: 2}, xs[2])
	}
	if nt > 3 {
		LEAQ(Mem{Base: xs[1], Index: ldx, Scale: 2}, xs[3])
	}
	xmem := func(t, off int) Mem { return Mem{Base: xs[t], Index: c, Scale: 4, Disp: 4 * off} }
	var shuf VecVirtual
	hiRow := K()
	if d.name == "bf16" {
		shuf = ZMM()
		VMOVDQU32(bf16Shuf512, shuf)
		m := GP32()
		MOVL(U32(0xff00), m)
		KMOVW(m, hiRow)
	}
	pair := func(m0, m1 Mem, dst VecVirtual) {
		if d.name == "f32" {
			VMOVUPS(m0, dst.AsY())
			VINSERTF64X4(U8(1), m1, dst, dst)
			return
		}
		VBROADCASTI32X4(m0, dst)
		VBROADCASTI32X4(m1, hiRow, dst)
		VPSHUFB(shuf, dst, dst)
	}

	Label("rows4")
	CMPQ(rowsM, U8(4))
	JL(LabelRef("done"))
	ld := GP64()
	MOVQ(ldM, ld)
	g.start(w, ld)
	acc := make([][]VecVirtual, 2)
	for pp := range acc {
		acc[pp] = make([]VecVirtual, nt)
		for t := range acc[pp] {
			acc[pp][t] = ZMM()
		}
		zeroZ(acc[pp]...)
	}
	XORQ(c, c)
	step := func(v int) {
		xr := make([]VecVirtual, nt)
		for t := range xr {
			xr[t] = ZMM()
			VBROADCASTF64X4(xmem(t, 8*v), xr[t])
		}
		for pp := 0; pp < 2; pp++ {
			wz := ZMM()
			pair(Mem{Base: g.p[2*pp], Disp: 8 * v * d.size}, Mem{Base: g.p[2*pp+1], Disp: 8 * v * d.size}, wz)
			for t := range xr {
				VFMADD231PS(xr[t], wz, acc[pp][t])
			}
		}
	}
	Label("lines")
	CMPQ(c, nL)
	JGE(LabelRef("cols8"))
	for _, p := range g.p {
		PREFETCHT0(Mem{Base: p, Index: g.ld4, Scale: uint8(ahead)})
	}
	for v := 0; v < L/8; v++ {
		step(v)
	}
	g.advance(64)
	ADDQ(U8(L), c)
	JMP(LabelRef("lines"))
	Label("cols8")
	CMPQ(c, colsM)
	JGE(LabelRef("sum"))
	step(0)
	g.advance(8 * d.size)
	ADDQ(U8(8), c)
	JMP(LabelRef("cols8"))
	Label("sum")
	yt := GP64()
	MOVQ(yM, yt)
	for t := 0; t < nt; t++ {
		store4(acc[0][t], acc[1][t], Mem{Base: yt})
		if t+1 < nt {
			ADDQ(ldyM, yt)
		}
	}
	ADDQ(U8(16), yM)
	ADDQ(g.ld4, w)
	SUBQ(U8(4), rowsM)
	JMP(LabelRef("rows4"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genGemm512 writes gemm{nt}x4AVX512, gemm{nt}x4AVX2 on 512-bit registers:
// each zmm holds the 8 lanes of two rows of a group (the packed panel
// already has them side by side), the x vector of a token is broadcast to
// both halves, so each fused multiply-add serves two outputs with the
// operations of the dot order; two groups of 4 rows per pass when there
// are two (up to 12 accumulators, enough independent chains to keep both
// FMA units busy). The bits are those of the AVX2 kernel.
// zmmAt is the physical register Z<i>.
func zmmAt(i int) Op {
	return []Op{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
		Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}[i]
}

// gemmTokens512 is the most tokens of an AVX-512 gemm tile: 6 tokens × 2
// groups × 2 registers of accumulators, 6 of activations and one of
// weights fill the 32 registers (10 loads per 24 multiply-adds, against 7
// per 12 for 3 tokens).
const gemmTokens512 = 6

func genGemm512(nt int) {
	gemmIdxConst()
	name := fmt.Sprintf("gemm%dx4AVX512", nt)
	TEXT(name, NOSPLIT, "func(y *float32, ldy int, acc *float32, x *float32, ldx int, p *float32, quads, kc, mode int)")
	Pragma("noescape")
	Doc(name+fmt.Sprintf(" is gemm%dx4AVX2 on 512-bit registers, with the same bits;", nt),
		"it needs AVX-512 F, BW, VL and DQ.")
	// The k loop counts one index register up from -4·kc to zero: the
	// tokens' rows and the groups are addressed from their ends, so a step
	// of 8 columns costs one scalar add (the loop's only one) next to its
	// 2·nt·nq multiply-adds, two steps per pass.
	y := Load(Param("y"), GP64())
	acc := Load(Param("acc"), GP64())
	p := Load(Param("p"), GP64())
	quads := Load(Param("quads"), GP64())
	i := GP64()
	xr := make([]GPVirtual, nt) // the ends of the tokens' rows: x + t·ldx + 4·kc
	for t := range xr {
		xr[t] = GP64()
	}
	{
		ldx := Load(Param("ldx"), GP64())
		SHLQ(U8(2), ldx)
		kb := Load(Param("kc"), GP64())
		SHLQ(U8(2), kb)
		Load(Param("x"), xr[0])
		ADDQ(kb, xr[0])
		for t := 1; t < nt; t++ {
			LEAQ(Mem{Base: xr[t-1], Index: ldx, Scale: 1}, xr[t])
		}
	}
	p1 := GP64()
	for _, nq := range []int{2, 1} {
		l := func(s string) string { return fmt.Sprintf("%s_%d", s, nq) }
		Label(l("quad"))
		CMPQ(quads, U8(nq))
		if nq == 2 {
			JL(LabelRef("quad_1"))
		} else {
			JL(LabelRef("done"))
		}
		// a[(qq*nt+t)*2+h]: group qq, token t, rows 2h and 2h+1. From 4
		// tokens on, the registers are named here: avo's allocator (one
		// pass, most restricted first) finds no assignment for them.
		// vec is the i-th vector register of the pass.
		vec := func(i int) Op {
			if nt > 3 {
				return zmmAt(i)
			}
			return ZMM()
		}
		a := make([]Op, 2*nt*nq)
		for i := range a {
			a[i] = vec(i)
		}
		TESTQ(U32(1), Load(Param("mode"), GP64()))
		JZ(LabelRef(l("zero")))
		for i, r := range a {
			VMOVUPS(Mem{Base: acc, Disp: 64 * i}, r)
		}
		JMP(LabelRef(l("start")))
		Label(l("zero"))
		for _, r := range a {
			VPXORD(r, r, r)
		}
		Label(l("start"))
		for off := 0; off < 128*nt*nq; off += 64 {
			PREFETCHT0(Mem{Base: acc, Disp: 128*nt*nq + off})
		}
		// p and p1 move to the ends of their groups (16·kc bytes each);
		// i = -4·kc.
		Load(Param("kc"), i)
		SHLQ(U8(4), i)
		ADDQ(i, p)
		if nq == 2 {
			LEAQ(Mem{Base: p, Index: i, Scale: 1}, p1)
		}
		SARQ(U8(2), i)
		NEGQ(i)
		xv := make([]Op, nt)
		for t := range xv {
			xv[t] = vec(2*nt*nq + t)
		}
		wv := vec(2*nt*nq + nt)
		step := func(d int) {
			for t := range xv {
				VBROADCASTF64X4(Mem{Base: xr[t], Index: i, Scale: 1, Disp: 32 * d}, xv[t])
			}
			for qq := 0; qq < nq; qq++ {
				base := []Register{p, p1}[qq]
				for h := 0; h < 2; h++ {
					VMOVUPS(Mem{Base: base, Index: i, Scale: 4, Disp: 128*d + 64*h}, wv)
					for t := range xv {
						VFMADD231PS(xv[t], wv, a[(qq*nt+t)*2+h])
					}
				}
			}
		}
		// kc is a multiple of 8: an odd number of steps takes one first.
		TESTQ(U32(32), i)
		JZ(LabelRef(l("k")))
		step(0)
		ADDQ(U8(32), i)
		JZ(LabelRef(l("kdone")))
		Label(l("k"))
		step(0)
		step(1)
		ADDQ(U8(64), i)
		JNZ(LabelRef(l("k")))
		Label(l("kdone"))
		if nq == 2 {
			MOVQ(p1, p)
		}
		TESTQ(U32(2), Load(Param("mode"), GP64()))
		JNZ(LabelRef(l("final")))
		for i, r := range a {
			VMOVUPS(r, Mem{Base: acc, Disp: 64 * i})
		}
		JMP(LabelRef(l("next")))
		Label(l("final"))
		ldy := Load(Param("ldy"), GP64())
		SHLQ(U8(2), ldy)
		yt := GP64()
		for t := 0; t < nt; t++ {
			if t == 0 {
				MOVQ(y, yt)
			} else {
				ADDQ(ldy, yt)
			}
			for qq := 0; qq < nq; qq++ {
				store4(a[(qq*nt+t)*2], a[(qq*nt+t)*2+1], Mem{Base: yt, Disp: 16 * qq})
			}
		}
		Label(l("next"))
		ADDQ(U8(16*nq), y)
		ADDQ(U32(128*nt*nq), acc)
		SUBQ(U8(nq), quads)
		JMP(LabelRef(l("quad")))
	}
	Label("done")
	VZEROUPPER()
	RET()
}

// genMatVecF16x512 writes matVecF16…AVX512, the float16 kernels on 512-bit
// registers: a zmm holds the 8 lanes of two rows (8 halves of each
// widened by one VCVTPH2PS), each token's 8 x values are broadcast to both
// halves, so each fused multiply-add serves two outputs in the dot order.
// Several pairs of rows per pass (8 rows for one token, 4 for more) keep
// enough independent chains of multiply-adds in flight.
func genMatVecF16x512(nt int) {
	name := kernelName512("matVecF16", nt)
	TEXT(name, NOSPLIT, "func(y *float32, w *uint16, rows, cols int, x *float32, ldx int)")
	Pragma("noescape")
	Doc(name+" is "+kernelName("matVecF16", nt)+" for an even number of rows,",
		"with the same bits; it needs AVX-512 F, BW, VL and DQ.")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	ld := Load(Param("ldx"), GP64())
	SHLQ(U8(2), ld)
	st := Load(Param("cols"), GP64())
	SHLQ(U8(1), st) // bytes per row
	st3 := GP64()
	LEAQ(Mem{Base: st, Index: st, Scale: 2}, st3)
	w4 := GP64()
	passes := []int{4, 1}
	if nt > 1 {
		passes = []int{2, 1}
	}
	for i, np := range passes {
		l := func(s string) string { return fmt.Sprintf("%s_%d", s, np) }
		Label(l("rows"))
		CMPQ(rows, U8(2*np))
		if i+1 < len(passes) {
			JL(LabelRef(fmt.Sprintf("rows_%d", passes[i+1])))
		} else {
			JL(LabelRef("done"))
		}
		LEAQ(Mem{Base: w, Index: st, Scale: 4}, w4)
		row := []Mem{{Base: w}, {Base: w, Index: st, Scale: 1}, {Base: w, Index: st, Scale: 2}, {Base: w, Index: st3, Scale: 1},
			{Base: w4}, {Base: w4, Index: st, Scale: 1}, {Base: w4, Index: st, Scale: 2}, {Base: w4, Index: st3, Scale: 1}}
		n := Load(Param("cols"), GP64())
		xp := Load(Param("x"), GP64())
		var x3 GPVirtual
		if nt == 4 {
			x3 = GP64()
			LEAQ(Mem{Base: xp, Index: ld, Scale: 2}, x3)
			ADDQ(ld, x3)
		}
		acc := make([][]VecVirtual, np)
		for pp := range acc {
			acc[pp] = make([]VecVirtual, nt)
			for t := range acc[pp] {
				acc[pp][t] = ZMM()
			}
			zeroZ(acc[pp]...)
		}
		Label(l("col"))
		CMPQ(n, Imm(0))
		JLE(LabelRef(l("end")))
		xr := make([]VecVirtual, nt)
		for t := range xr {
			m := Mem{Base: xp}
			switch t {
			case 1:
				m = Mem{Base: xp, Index: ld, Scale: 1}
			case 2:
				m = Mem{Base: xp, Index: ld, Scale: 2}
			case 3:
				m = Mem{Base: x3}
			}
			xr[t] = ZMM()
			VBROADCASTF64X4(m, xr[t])
		}
		for pp := range acc {
			h, wz := YMM(), ZMM()
			VMOVDQU32(row[2*pp], h.AsX())
			VINSERTI32X4(U8(1), row[2*pp+1], h, h)
			VCVTPH2PS(h, wz)
			for t := range xr {
				VFMADD231PS(xr[t], wz, acc[pp][t])
			}
		}
		ADDQ(U8(16), w)
		if np == 4 {
			ADDQ(U8(16), w4)
		}
		ADDQ(U8(32), xp)
		if nt == 4 {
			ADDQ(U8(32), x3)
		}
		SUBQ(U8(8), n)
		JMP(LabelRef(l("col")))
		Label(l("end"))
		for pp := range acc {
			storePair(y, acc[pp], nil)
		}
		// w is at the start of the second row: past the others.
		switch np {
		case 4:
			LEAQ(Mem{Base: w, Index: st3, Scale: 2}, w)
			ADDQ(st, w)
		case 2:
			ADDQ(st3, w)
		default:
			ADDQ(st, w)
		}
		SUBQ(U8(2*np), rows)
		JMP(LabelRef(l("rows")))
	}
	Label("done")
	VZEROUPPER()
	RET()
}
