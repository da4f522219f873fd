package main

import (
	"github.com/mmcloughlin/avo/attr"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The AVX-512 VNNI 8-bit activation kernels hold two rows per 512-bit
// register, as the 16-bit AVX-512 kernels do (blockdot512.go): lanes 0-7
// belong to row r, 8-15 to row r+1; a block's 32 weight bytes of each row
// fill one half of a zmm, the token's 32 activation bytes are broadcast to
// both halves by a load, and every multiply-add, conversion, product and
// sum serves both rows. The integer lanes and the float32 operations of
// each row are those of the one-row kernels (blockdot8.go), so the bits
// are the plain Go's; an odd last row runs the AVX2 kernel.

// groupTokens8 is the most tokens an AVX-512 VNNI 8-bit kernel multiplies
// at once (package kernels' groupTokens8; the AVX2 ones take up to 8 for
// the blocks of 32, up to 4 for the K-formats).
const groupTokens8 = 8

var z8B80, z8B08, z8B10 Mem
var z8PermRows8, z8PermRows4, z8K128, z8K8, z8K16, z8ShufQh, z8BitMask Mem
var z8B78, z8B70, z8ShufQhHalves, z8BitMaskHalves Mem
var z8PermK, z8PermQ6 [8]Mem
var z8PermMins [4]Mem

// vconst64Words is a 64-byte constant whose 32-bit word i is words[i%len(words)].
func vconst64Words(name string, words ...uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(words[i%len(words)]))
	}
	return m
}

func genBlockDot8x512() {
	z8B80 = vconst64("b8zByte80", 0x80808080)
	z8B08 = vconst64("b8zByte08", 0x08080808)
	z8B10 = vconst64("b8zByte10", 0x10101010)
	// Dword-interleaving of two rows (genDot8Blocks32x512): dword 2l from
	// the first table's dword l, 2l+1 from the second's; Q4_0 and Q5_0
	// take 4 dwords of each row, twice.
	{
		var p8, p4 [16]uint32
		for i := range p8 {
			p8[i] = uint32(i/2 + 16*(i%2))
			p4[i] = uint32(i%8/2 + 16*(i%2))
		}
		z8PermRows8 = vconst64Words("b8zPermRows8", p8[:]...)
		z8PermRows4 = vconst64Words("b8zPermRows4", p4[:]...)
	}
	z8B78 = vconst64("b8zByte78", 0x78787878)
	z8B70 = vconst64("b8zByte70", 0x70707070)
	// Q5_0's high bits with the rows in the halves: byte i of each row's
	// 32 takes byte i/8 of its qh and tests bit i%8.
	z8ShufQhHalves = vconst64Words("b8zShufQhHalves", 0, 0, 0x01010101, 0x01010101, 0x02020202, 0x02020202, 0x03030303, 0x03030303)
	z8BitMaskHalves = vconst64Words("b8zBitMaskHalves", 0x08040201, 0x80402010)
	z8K128 = vconst64("b8zK128", 4*128*128)
	z8K8 = vconst64("b8zK8", 4*128*8)
	z8K16 = vconst64("b8zK16", 4*128*16)
	{
		// Q5_0's high bits in the interleaved layout: byte p (weight
		// e = 4·(p/8) + p%4 of row (p/4)%2) takes byte 4·row + e/8 of
		// [qh_r, qh_r+1] and tests bit e%8.
		var sh, bm [16]uint32
		for i := range sh {
			for j := range 4 {
				p := 4*i + j
				row, e := (p/4)%2, 4*(p/8)+p%4
				sh[i] |= uint32(4*row+e/8) << (8 * j)
				bm[i] |= uint32(1) << (e % 8) << (8 * j)
			}
		}
		z8ShufQh = vconst64Words("b8zShufQh", sh[:]...)
		z8BitMask = vconst64Words("b8zBitMask", bm[:]...)
	}
	for j := range z8PermK {
		// Q4_K/Q5_K sub-block j: words 0-15 the first row's sc_j (word
		// j), 16-31 the second row's (word 16+j).
		var w [16]uint32
		for i := range w {
			v := uint32(j + 16*(i/8))
			w[i] = v | v<<16
		}
		z8PermK[j] = vconst64Words("b8zPermK"+itoa(j), w[:]...)
		// Q6_K block j (scales 2j, 2j+1 of each row).
		for i := range w {
			v := uint32(2*j + (i/4)%2 + 16*(i/8))
			w[i] = v | v<<16
		}
		z8PermQ6[j] = vconst64Words("b8zPermQ6"+itoa(j), w[:]...)
	}
	for k := range z8PermMins {
		// Q4_K/Q5_K minima pair k: lanes 0-7 the first row's (dword k of
		// [m_r, m_r+1]), 8-15 the second row's (dword 4+k).
		var w [16]uint32
		for i := range w {
			w[i] = uint32(k + 4*(i/8))
		}
		z8PermMins[k] = vconst64Words("b8zPermMins"+itoa(k), w[:]...)
	}
	for nt := 1; nt <= groupTokens8; nt++ {
		for _, f := range formats8 {
			switch f.bytes {
			case 18:
				// Q4_0: one row per lane (q4lanes.go).
			case 144, 176:
				genDot8K45x512(f, nt)
			case 210:
				genDot8Q6Kx512(f, nt)
			default:
				if nt == 1 {
					genDot8Blocks32x512One(f)
				} else {
					genDot8Blocks32x512(f, nt)
				}
			}
		}
	}
}

func doc8x512(name string, f fmt8, nt int) {
	Doc(name+" is "+kernelName8(f.base, nt, false)+" for an even number of rows",
		"(two rows per 512-bit register), with the same bits; it needs AVX-512 F,",
		"BW, VL and VNNI.")
}

// splitFor is the TEXT flag of a kernel with frame bytes of locals:
// NOSPLIT while the frame fits the linker's limit for NOSPLIT chains, else
// none (the function then checks the stack and may grow it).
func splitFor(frame int) attr.Attribute {
	if frame <= 512 {
		return NOSPLIT
	}
	return 0
}

// rowsZ returns the 32 bytes at m0 (row r) and m1 (row r+1) in the low and
// high halves of a zmm.
func rowsZ(m0, m1 Mem) VecVirtual {
	y, z := YMM(), ZMM()
	VMOVDQU8(m0, y)
	VINSERTI64X4(U8(1), m1, y.AsZ(), z)
	return z
}

// genDot8Blocks32x512One is the one-token kernel of Q8_0, Q4_0 and Q5_0
// (decoding), with the rows in the halves of a register as the other
// formats': each row's 32 weight bytes plus 128 in one half, the token's
// 32 activation bytes broadcast to both halves by a load, the lanes
// started from −128·Σq (xAct8's aux, after the interleaved q+128), and the
// scales [h_r×8, h_r+1×8]·d_b. For one token it does fewer operations per
// block than the interleaved kernels, which share their preparation among
// the tokens.
func genDot8Blocks32x512One(f fmt8) {
	name := kernelName8(f.base, 1, true)
	TEXT(name, NOSPLIT, sig8)
	Pragma("noescape")
	doc8x512(name, f, 1)
	var acc VecVirtual
	rowPairLoop(name, func(w, w1, rb Register) {
		n := GP64()
		MOVQ(rb, n)
		qp := Load(Param("q"), GP64())
		dp := Load(Param("d"), GP64())
		ncp := Load(Param("nc"), GP64())
		var hi OpmaskVirtual
		if f.bytes != 34 {
			hi = K()
			m := GP32()
			MOVL(U32(0xFF00FF00), m) // the words of 128-bit lanes 1 and 3
			KMOVD(m, hi)
		}
		acc = ZMM()
		zeroZ(acc)
		Label(name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		prefetchPairsAhead(w, rb, f.bytes)
		h := halfPair(Mem{Base: w}, Mem{Base: w1})
		var wv VecVirtual
		switch f.bytes {
		case 34:
			wv = rowsZ(Mem{Base: w, Disp: 2}, Mem{Base: w1, Disp: 2})
			VPXORD(z8B80, wv, wv) // w+128, unsigned
		default:
			off := 2
			if f.bytes == 22 {
				off = 6
			}
			// Each row's 16 bytes of nibbles in both of its 128-bit
			// lanes, the second lane shifted: [lo | hi] per row.
			a, b := YMM(), YMM()
			VBROADCASTI32X4(Mem{Base: w, Disp: off}, a)
			VBROADCASTI32X4(Mem{Base: w1, Disp: off}, b)
			wv = ZMM()
			VINSERTI64X4(U8(1), b, a.AsZ(), wv)
			VPSRLW(U8(4), wv, hi, wv)
			VPANDD(zB0F, wv, wv)
			if f.bytes == 18 {
				VPADDB(z8B78, wv, wv) // nibble − 8 + 128
			} else {
				h0, h1, hz := YMM(), YMM(), ZMM()
				VPBROADCASTD(Mem{Base: w, Disp: 2}, h0)
				VPBROADCASTD(Mem{Base: w1, Disp: 2}, h1)
				VINSERTI64X4(U8(1), h1, h0.AsZ(), hz)
				VPSHUFB(z8ShufQhHalves, hz, hz)
				set := K()
				VPTESTMB(z8BitMaskHalves, hz, set)
				VPADDB(z8B70, wv, wv)      // nibble − 16 + 128
				VPADDB(z8B10, wv, set, wv) // + 16·high bit
			}
		}
		sc := ZMM()
		VBROADCASTSS(Mem{Base: dp}, sc)
		VMULPS(h, sc, sc) // float32(half·d_b)
		L, qz := ZMM(), ZMM()
		VBROADCASTI64X4(Mem{Base: ncp, Disp: 64}, L)
		VBROADCASTI64X4(Mem{Base: qp}, qz)
		VPDPBUSD(qz, wv, L)
		fmaScaled(L, sc, acc)
		ADDQ(U8(f.bytes), w)
		ADDQ(U8(f.bytes), w1)
		ADDQ(U8(32), qp)
		ADDQ(U8(4), dp)
		ADDQ(U8(96), ncp)
		SUBQ(U8(f.bytes), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_end")
	}, func(y Register) { storePair(y, []VecVirtual{acc}, nil) })
}

// Q8_0, Q4_0, Q5_0 for 2 to 8 tokens, with the two rows of a pair
// interleaved by dwords: dword 2l of a register is row r's lane l, dword
// 2l+1 row r+1's (the one-token kernel, the K-formats and the 16-bit
// kernels put the rows in the halves instead). A block's weights are
// interleaved so by one VPERMT2D of the two rows' bytes; the token's
// activations come interleaved likewise from xGroup8 (nc: each dword of
// q+128 twice), and the block's scales of the two rows and all nt tokens
// are one product of [h_r, h_r+1]×8 with the tokens' d_b, each twice (s),
// kept on the stack, from which one 8-byte broadcast (a load) gives the
// token's [h_r·d_b, h_r+1·d_b]×8. So no product of scales is left per
// token, and a token costs a register copy (eliminated at renaming),
// VPDPBUSD, VCVTDQ2PS and VFMADD231PS for both rows. Two pairs run per
// pass (16 accumulators for 8 tokens), so that each activation load
// serves 4 rows; a last pair runs alone.
//
// The lanes are VPDPBUSD of q+128 (unsigned) with the signed weights w,
// started from K = −128·Σ_{4 bytes} w: the exact L_l = Σ w·q. K depends on
// the weights only and is made once per block for all tokens by VPDPBUSD
// of the unsigned weights (w+128 for Q8_0, the 4- and 5-bit values for
// Q4_0 and Q5_0) with −128, from 4·128·128, 4·128·8 or 4·128·16. (Taking
// K from memory instead of a register copy, or the activations' −128·Σq
// with q and w+128, was slower: a reload of a stored register waits for
// the store, and the second 64 bytes per token and block overflow L1.)
func genDot8Blocks32x512(f fmt8, nt int) {
	name := kernelName8(f.base, nt, true)
	TEXT(name, NOSPLIT, sig8)
	Pragma("noescape")
	doc8x512(name, f, nt)
	pLoc := AllocLocal(128) // each pair's scales of the nt tokens, in pairs
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	rb := Load(Param("rb"), GP64())
	rowAt := func(base, index Register, scale uint8) Mem { return Mem{Base: base, Index: index, Scale: scale} }
	// Two pairs of rows per pass: each token's activations, loaded once,
	// serve 4 rows; then a last pair.
	rb3 := GP64()
	LEAQ(Mem{Base: rb, Index: rb, Scale: 2}, rb3)
	Label(name + "_quad")
	CMPQ(rows, Imm(4))
	JL(LabelRef(name + "_pair"))
	acc4 := dot8Blocks32Pass(name+"_q", f, nt, rb, w, [][2]Mem{{{Base: w}, rowAt(w, rb, 1)}, {rowAt(w, rb, 2), rowAt(w, rb3, 1)}}, pLoc)
	storeInterleaved(y, acc4[0])
	storeInterleaved(y, acc4[1])
	LEAQ(Mem{Base: w, Index: rb, Scale: 4}, w)
	SUBQ(Imm(4), rows)
	JMP(LabelRef(name + "_quad"))
	Label(name + "_pair")
	CMPQ(rows, Imm(2))
	JL(LabelRef(name + "_done"))
	acc := dot8Blocks32Pass(name+"_p", f, nt, rb, w, [][2]Mem{{{Base: w}, rowAt(w, rb, 1)}}, pLoc)
	storeInterleaved(y, acc[0])
	LEAQ(Mem{Base: w, Index: rb, Scale: 2}, w)
	SUBQ(Imm(2), rows)
	JMP(LabelRef(name + "_pair"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// dot8Blocks32Pass writes one pass of genDot8Blocks32x512 over the blocks
// of the pairs of rows at pairs[i] (addresses from w; rb bytes each) and
// returns the accumulators of each pair's nt tokens, leaving w as it
// found it; pLoc holds 64 bytes per pair.
func dot8Blocks32Pass(name string, f fmt8, nt int, rb, w Register, pairs [][2]Mem, pLoc Mem) [][]VecVirtual {
	n := GP64()
	MOVQ(rb, n)
	ap := Load(Param("nc"), GP64())
	dp := Load(Param("s"), GP64())
	idx := ZMM()
	var hi, dmask OpmaskVirtual
	kinit := z8K128
	if f.bytes == 34 {
		VMOVDQU64(z8PermRows8, idx)
	} else {
		VMOVDQU64(z8PermRows4, idx)
		hi = K()
		m := GP32()
		MOVL(U32(0xFFFF0000), m) // the words of the upper 256 bits
		KMOVD(m, hi)
		kinit = z8K8
		if f.bytes == 22 {
			kinit = z8K16
		}
	}
	if nt < groupTokens8 {
		dmask = K()
		m := GP32()
		MOVL(U32(1<<(2*nt)-1), m)
		KMOVW(m, dmask)
	}
	acc := zeroPairAccs(len(pairs), nt)
	Label(name + "_block")
	CMPQ(n, Imm(0))
	JLE(LabelRef(name + "_end"))
	wv := make([]VecVirtual, len(pairs))
	k := make([]VecVirtual, len(pairs))
	for p, pr := range pairs {
		r0, r1 := pr[0], pr[1]
		for _, r := range pr {
			for off := 0; off < f.bytes; off += 64 {
				PREFETCHT0(r.Offset(streamPrefetch + off))
			}
		}
		// [h_r, h_r+1]×8 as float32, then the scales.
		h0, h1 := GP32(), GP32()
		MOVWLZX(r0, h0)
		MOVWLZX(r1, h1)
		SHLL(U8(16), h1)
		ORL(h1, h0)
		hy, hz := YMM(), ZMM()
		VPBROADCASTD(h0, hy)
		VCVTPH2PS(hy, hz)
		if nt == groupTokens8 {
			VMULPS(Mem{Base: dp}, hz, hz)
		} else {
			VMULPS_Z(Mem{Base: dp}, hz, dmask, hz)
		}
		VMOVUPS(hz, pLoc.Offset(64*p))
		// The weights, interleaved: v unsigned (for K), wv signed.
		v, b := ZMM(), ZMM()
		wv[p] = ZMM()
		switch f.bytes {
		case 34:
			VMOVDQU32(r0.Offset(2), wv[p].AsY())
			VMOVDQU32(r1.Offset(2), b.AsY())
			VPERMT2D(b, idx, wv[p])
			VPXORD(z8B80, wv[p], v) // w+128
		default:
			off := 2
			if f.bytes == 22 {
				off = 6
			}
			// Both rows' 16 bytes of nibbles interleaved by dwords in
			// both 256-bit halves, the upper half shifted: the low
			// nibbles are weights 0-15 (lanes 0-3), the high ones 16-31.
			VBROADCASTI32X4(r0.Offset(off), v)
			VBROADCASTI32X4(r1.Offset(off), b)
			VPERMT2D(b, idx, v)
			VPSRLW(U8(4), v, hi, v)
			VPANDD(zB0F, v, v)
			if f.bytes == 22 {
				// The high bits: byte p of the register holds weight
				// e = 4·(p/8) + p%4 of row (p/4)%2, whose bit is bit e
				// of that row's qh.
				q0, q1, qb := ZMM(), ZMM(), ZMM()
				VPBROADCASTD(r0.Offset(2), q0)
				VPBROADCASTD(r1.Offset(2), q1)
				VPUNPCKLDQ(q1, q0, qb) // [qh_r, qh_r+1] in each 64 bits
				VPSHUFB(z8ShufQh, qb, qb)
				set := K()
				VPTESTMB(z8BitMask, qb, set)
				VPADDB(z8B10, v, set, v)
				VPSUBB(z8B10, v, wv[p])
			} else {
				VPSUBB(z8B08, v, wv[p])
			}
		}
		k[p] = ZMM()
		VMOVDQU64(kinit, k[p])
		VPDPBUSD(z8B80, v, k[p]) // K = 4·128·o − 128·Σ v
	}
	for t := 0; t < nt; t++ {
		u := ZMM()
		VMOVDQU64(Mem{Base: ap, Disp: 64 * t}, u)
		for p := range pairs {
			L := ZMM()
			VMOVDQA64(k[p], L)
			VPDPBUSD(wv[p], u, L)
			VCVTDQ2PS(L, L)
			s := ZMM()
			VBROADCASTSD(pLoc.Offset(64*p+8*t), s)
			VFMADD231PS(s, L, acc[p][t])
		}
	}
	ADDQ(U8(f.bytes), w)
	ADDQ(U32(64*nt), ap)
	ADDQ(U8(8*nt), dp)
	SUBQ(U8(f.bytes), n)
	JMP(LabelRef(name + "_block"))
	Label(name + "_end")
	SUBQ(rb, w) // back to the rows' first blocks
	return acc
}

// storeInterleaved stores the results of two rows interleaved by dwords
// (genDot8Blocks32x512): each row's 8 lanes reduced by hsum1's tree,
// ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)), row r's to y[t] and row r+1's to
// y[nt+t] for token t, and advances y past them.
func storeInterleaved(y Register, acc []VecVirtual) {
	nt := len(acc)
	for t, a := range acc {
		s := ZMM()
		VPERMILPS(U8(0x4e), a, s) // lanes l and l+1 of each row side by side
		VADDPS(s, a, a)
		VSHUFF32X4(U8(0xb1), a, a, s) // (l0+l1) against (l2+l3), …
		VADDPS(s, a, a)
		VSHUFF32X4(U8(0x4e), a, a, s) // the two halves
		VADDPS(s, a, a)
		VMOVSS(a.AsX(), Mem{Base: y, Disp: 4 * t})
		VEXTRACTPS(U8(1), a.AsX(), Mem{Base: y, Disp: 4 * (nt + t)})
	}
	ADDQ(U8(8*nt), y)
}

// Q4_K and Q5_K, as genDot8K45, with the rows in the halves of the
// registers: the minima's lanes are r·8+t (row r of the pair, token t),
// from the pairs of minima of row r (VPERMD, z8PermMins) and the token's
// pairs of sums (a load broadcast to both halves); for one token (lanes
// 0-3 and 4-7 the rows) VPMADDWD of its 4 pairs with each row's 4, summed
// within each half.
func genDot8K45x512(f fmt8, nt int) {
	five := f.bytes == 176
	name := kernelName8(f.base, nt, true)
	TEXT(name, NOSPLIT, sig8)
	Pragma("noescape")
	doc8x512(name, f, nt)
	maccLoc := AllocLocal(64)
	acc := make([]VecVirtual, nt)
	var macc VecVirtual
	rowPairLoop(name, func(w, w1, rb Register) {
		n := GP64()
		MOVQ(rb, n)
		qp := Load(Param("q"), GP64())
		dp := Load(Param("d"), GP64())
		mp := Load(Param("nc"), GP64())
		for t := range acc {
			acc[t] = ZMM()
		}
		if nt == 1 {
			macc = YMM() // lanes 0-3 the first row's, 4-7 the second's
		} else {
			macc = ZMM()
		}
		zeroZ(acc...)
		zeroZ(macc)
		Label(name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		prefetchRows(nt, f.bytes, w, w1, rb)
		scz, ddz := ZMM(), ZMM()
		{
			scx0, mnx0 := k45PackedScales(w)
			scx1, mnx1 := k45PackedScales(w1)
			s0, s1 := XMM(), XMM()
			VPMOVZXBW(scx0, s0)
			VPMOVZXBW(scx1, s1)
			VINSERTI64X4(U8(1), s1.AsY(), s0.AsZ(), scz)
			m0, m1, mw := XMM(), XMM(), YMM()
			VPMOVZXBW(mnx0, m0)
			VPMOVZXBW(mnx1, m1)
			VINSERTI128(U8(1), m1, m0.AsY(), mw)
			dd0, dmin0 := k45D(w)
			dd1, dmin1 := k45D(w1)
			VINSERTF64X4(U8(1), dd1, dd0.AsZ(), ddz)
			if nt == 1 {
				// One token: VPMADDWD of its 4 pairs (broadcast to both
				// halves) with each row's 4, summed within each half.
				M := YMM()
				VBROADCASTI128(Mem{Base: mp}, M)
				minimaOneToken(M, mw, M, YMM())
				dm := YMM()
				VINSERTF128(U8(1), dmin1.AsX(), dmin0, dm)
				VMULPS_BCST(Mem{Base: dp}, dm, dm)
				VFMADD231PS(M, dm, macc)
			} else {
				dminz := ZMM()
				VINSERTF64X4(U8(1), dmin1, dmin0.AsZ(), dminz)
				M := ZMM()
				zeroZ(M)
				for k := 0; k < 4; k++ {
					a := ZMM()
					VMOVDQU64(z8PermMins[k], a)
					VPERMD(mw.AsZ(), a, a) // lanes r·8+t: row r's m_2k, m_2k+1
					b := ZMM()
					VBROADCASTI64X4(Mem{Base: mp, Disp: 32 * k}, b)
					VPDPWSSD(b, a, M)
				}
				VCVTDQ2PS(M, M)
				dm := ZMM()
				VBROADCASTF32X8(Mem{Base: dp}, dm) // 8 tokens' d_sb (xGroup8)
				VMULPS(dm, dminz, dm)
				VFMADD231PS(M, dm, macc)
			}
		}
		I := make([]VecVirtual, nt)
		for t := range I {
			I[t] = ZMM()
		}
		zeroZ(I...)
		off := 16
		var qh VecVirtual
		if five {
			off = 48
			qh = rowsZ(Mem{Base: w, Disp: 16}, Mem{Base: w1, Disp: 16})
		}
		for j := 0; j < 4; j++ {
			raw := rowsZ(Mem{Base: w, Disp: off + 32*j}, Mem{Base: w1, Disp: off + 32*j})
			for part := 0; part < 2; part++ {
				v := ZMM()
				if part == 0 {
					VPANDD(zB0F, raw, v)
				} else {
					VPSRLW(U8(4), raw, v)
					VPANDD(zB0F, v, v)
				}
				sb := 2*j + part
				if five {
					h := ZMM()
					switch {
					case sb < 4:
						VPSLLW(U8(4-sb), qh, h)
					case sb > 4:
						VPSRLW(U8(sb-4), qh, h)
					default:
						VMOVDQA64(qh, h)
					}
					VPANDD(z8B10, h, h)
					VPORD(h, v, v)
				}
				sc := ZMM()
				VMOVDQU64(z8PermK[sb], sc)
				VPERMW(scz, sc, sc)
				for t := 0; t < nt; t++ {
					qz, p := ZMM(), ZMM()
					VBROADCASTI64X4(Mem{Base: qp, Disp: 32 * (sb*nt + t)}, qz)
					VPMADDUBSW(qz, v, p)
					VPDPWSSD(sc, p, I[t])
				}
			}
		}
		for t := 0; t < nt; t++ {
			D := ZMM()
			VMULPS_BCST(Mem{Base: dp, Disp: 4 * t}, ddz, D) // D = dd·d_sb
			VCVTDQ2PS(I[t], I[t])
			VFMADD231PS(I[t], D, acc[t])
		}
		ADDQ(U32(f.bytes), w)
		ADDQ(U32(f.bytes), w1)
		ADDQ(U32(256*nt), qp)
		ADDQ(U8(4*nt), dp)
		if nt == 1 {
			ADDQ(U8(16), mp)
		} else {
			ADDQ(U32(128), mp)
		}
		SUBQ(U32(f.bytes), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_end")
	}, func(y Register) {
		VMOVUPS(macc, maccLoc)
		second := 8 // macc's lane of the second row's first token
		if nt == 1 {
			second = 4
		}
		for t, a := range acc {
			treePair(a)
			lo, hi := XMM(), XMM()
			VSUBSS(maccLoc.Offset(4*t), a.AsX(), lo)
			VMOVSS(lo, Mem{Base: y, Disp: 4 * t})
			VEXTRACTF32X4(U8(2), a, hi)
			VSUBSS(maccLoc.Offset(4*(second+t)), hi, hi)
			VMOVSS(hi, Mem{Base: y, Disp: 4 * (nt + t)})
		}
		ADDQ(U8(8*nt), y)
	})
}

// Q6_K, as genDot8Q6K.
func genDot8Q6Kx512(f fmt8, nt int) {
	name := kernelName8(f.base, nt, true)
	TEXT(name, splitFor(64*nt), sig8)
	Pragma("noescape")
	doc8x512(name, f, nt)
	dLoc := AllocLocal(64 * nt)
	acc := make([]VecVirtual, nt)
	rowPairLoop(name, func(w, w1, rb Register) {
		n := GP64()
		MOVQ(rb, n)
		ap := Load(Param("nc"), GP64())
		dp := Load(Param("d"), GP64())
		for t := range acc {
			acc[t] = ZMM()
		}
		zeroZ(acc...)
		Label(name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		prefetchRows(nt, 210, w, w1, rb)
		ddz := halfPair(Mem{Base: w, Disp: 208}, Mem{Base: w1, Disp: 208})
		for t := 0; t < nt; t++ {
			ds := ZMM()
			VBROADCASTSS(Mem{Base: dp, Disp: 4 * t}, ds)
			VMULPS(ds, ddz, ds) // D = d·d_sb
			VMOVUPS(ds, dLoc.Offset(64*t))
		}
		s16 := ZMM()
		{
			a, b := YMM(), YMM()
			VPMOVSXBW(Mem{Base: w, Disp: 192}, a)
			VPMOVSXBW(Mem{Base: w1, Disp: 192}, b)
			VINSERTI64X4(U8(1), b, a.AsZ(), s16)
		}
		I := make([]VecVirtual, nt)
		for t := range I {
			I[t] = ZMM()
		}
		corr := ZMM()
		zeroZ(append(I, corr)...)
		for hh := 0; hh < 2; hh++ {
			for g := 0; g < 4; g++ {
				src := 64*hh + 32*(g&1)
				v := rowsZ(Mem{Base: w, Disp: src}, Mem{Base: w1, Disp: src})
				if g >= 2 {
					VPSRLW(U8(4), v, v)
				}
				VPANDD(zB0F, v, v)
				b := rowsZ(Mem{Base: w, Disp: 128 + 32*hh}, Mem{Base: w1, Disp: 128 + 32*hh})
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
				VPSUBB(zB20, v, v) // w = q6 − 32
				j := 4*hh + g
				sc := ZMM()
				VMOVDQU64(z8PermQ6[j], sc)
				VPERMW(s16, sc, sc)
				c := ZMM()
				VMOVDQU64(z8B80, c)
				VPMADDUBSW(v, c, c)
				VPDPWSSD(sc, c, corr)
				for t := 0; t < nt; t++ {
					x, p := ZMM(), ZMM()
					VBROADCASTI64X4(Mem{Base: ap, Disp: 32 * (j*nt + t)}, x)
					VPMADDUBSW(v, x, p)
					VPDPWSSD(sc, p, I[t])
				}
			}
		}
		for t := 0; t < nt; t++ {
			VPSUBD(corr, I[t], I[t])
			addScaled(I[t], dLoc.Offset(64*t), acc[t])
		}
		ADDQ(U32(210), w)
		ADDQ(U32(210), w1)
		ADDQ(U32(256*nt), ap)
		ADDQ(U8(4*nt), dp)
		SUBQ(U32(210), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_end")
	}, func(y Register) { storePair(y, acc, nil) })
}
