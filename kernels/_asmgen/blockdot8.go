package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The 8-bit activation kernels (package kernels' act8.go) multiply rows of
// ggml's quantized blocks with activations rounded to int8: q, with one
// float32 scale d per block of 32 (Q8_0, Q4_0, Q5_0) or 256 (Q4_K, Q5_K,
// Q6_K), s the Σ q of each block of 32 (the K-formats' minimum terms) and
// nc what some kernels need (xAct8's aux: −128·Σ of 4 q for the blocks of
// 32, q+128 as bytes for the K-formats). Each block's 32 weights are made
// 32 bytes in element order (signed weights for Q8_0, Q4_0, Q5_0 and Q6_K,
// unsigned 4- and 5-bit values for Q4_K and Q5_K). This file writes the
// AVX2 kernels, one row at a time; blockdot8x512.go the AVX-512 VNNI ones,
// two rows at a time. Both compute, operation for operation, what the Go
// code does:
//
//   - Q8_0, Q4_0, Q5_0: the lanes L_l = Σ_{i=4l..4l+3} w_i·q_i of a block
//     (signedLanes), converted to float32 and added by one fused
//     multiply-add with the scale half·d_b to 8 lane accumulators;
//   - Q4_K, Q5_K: VPMADDUBSW of the unsigned weights with q, VPMADDWD with
//     the sub-block's 6-bit scale broadcast as words, VPADDD: a super-block's
//     exact integer lanes, then one conversion, product with d·d_sb and sum;
//   - Q6_K: VPMADDUBSW of q+128 with w = q6−32 (pairs at most 2·255·32),
//     VPMADDWD with the 16-weight scales, VPADDD, less the block's
//     128·Σ w pairs times the scales (summed once for all tokens).
//
// The lanes are reduced by hsum1's tree at the end of a row.

type fmt8 struct {
	base, gen string
	bytes     int
	signed    bool
}

var formats8 = []fmt8{
	{"dot8Q8_0", "dot8Q8_0Generic", 34, true},
	{"dot8Q4_0", "dot8Q4_0Generic", 18, true},
	{"dot8Q5_0", "dot8Q5_0Generic", 22, true},
	{"dot8Q4K", "dot8Q4KGeneric", 144, false},
	{"dot8Q5K", "dot8Q5KGeneric", 176, false},
	{"dot8Q6K", "dot8Q6KGeneric", 210, true},
}

var c8Ones16, c8B80, c8B08, c8B10, c8B01, c8BitMask, c8ShufQh Mem

// c8FirstLanes[n] has its first n dwords all ones, the others zero (a
// VMASKMOVPS mask).
var c8FirstLanes [8]Mem

// signedLanes returns the int32 lane sums L_l = Σ_{i=4l}^{4l+3} w_i·q_i of
// the 32 signed weight bytes in w (wabs: their magnitudes) with the 32
// activations at qm: VPSIGNB moves the weights' signs onto the
// activations, VPMADDUBSW multiplies |w| with them into int16 pairs (at
// most 2·128·127: no saturation), VPMADDWD with ones adds the pairs.
func signedLanes(w, wabs VecVirtual, qm Mem) VecVirtual {
	out, t := YMM(), YMM()
	VMOVDQU(qm, t)
	VPSIGNB(w, t, t)
	VPMADDUBSW(t, wabs, out)
	VPMADDWD(c8Ones16, out, out)
	return out
}

// addScaled adds float32(sc·float32(L)) to acc.
func addScaled(L VecVirtual, sc Op, acc VecVirtual) {
	VCVTDQ2PS(L, L)
	VMULPS(sc, L, L)
	VADDPS(L, acc, acc)
}

// fmaScaled sets acc to sc·float32(L) + acc, rounded once.
func fmaScaled(L VecVirtual, sc Op, acc VecVirtual) {
	VCVTDQ2PS(L, L)
	VFMADD231PS(sc, L, acc)
}

// kernelName8 names the 8-bit kernel of base for nt tokens: the AVX2 one,
// or the AVX-512 VNNI one (blockdot8x512.go).
func kernelName8(base string, nt int, vnni bool) string {
	s := base
	if nt > 1 {
		s += "x" + itoa(nt)
	}
	if vnni {
		return s + "VNNI"
	}
	return s + "AVX2"
}

func genBlockDot8() {
	defer genBlockDot8x512()
	c8Ones16 = vconst("b8Ones16", 0x00010001)
	c8B80 = vconst("b8Byte80", 0x80808080)
	c8B08 = vconst("b8Byte08", 0x08080808)
	c8B10 = vconst("b8Byte10", 0x10101010)
	c8B01 = vconst("b8Byte01", 0x01010101)
	c8BitMask = GLOBL("b8BitMask", RODATA|NOPTR) // byte i: 1<<(i%8)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32([2]uint32{0x08040201, 0x80402010}[i%2]))
	}
	c8ShufQh = GLOBL("b8ShufQh", RODATA|NOPTR) // byte i: i/8 (in-lane)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(uint32(i/2)*0x01010101))
	}
	for n := 2; n < 8; n++ {
		c8FirstLanes[n] = GLOBL("b8FirstLanes"+itoa(n), RODATA|NOPTR)
		for i := 0; i < 8; i++ {
			v := uint32(0)
			if i < n {
				v = 0xffffffff
			}
			DATA(4*i, U32(v))
		}
	}
	for nt := 1; nt <= groupTokens8; nt++ {
		for _, f := range formats8 {
			switch {
			case f.bytes == 18:
				// Q4_0: one row per lane (q4lanes.go).
			case nt > 4:
				// Up to 8 tokens for the blocks of 32 only: the
				// K-formats' kernels keep two registers per token.
				if f.bytes < 144 {
					genDot8Blocks32(f, nt)
				}
			case f.bytes == 144, f.bytes == 176:
				genDot8K45(f, nt)
			case f.bytes == 210:
				genDot8Q6K(f, nt)
			default:
				genDot8Blocks32(f, nt)
			}
		}
	}
}

// prefetch8 is the prefetch of the one-row kernels' block loop: for one
// token (decoding, bound by memory) the block at the same offset 4 rows on,
// as the AVX-512 kernels prefetch two pairs of rows ahead (a prefetch
// within the row, 1 KiB ahead, left the reads latency-bound); for several
// tokens prefetchAhead in the row.
func prefetch8(nt, bytes int, w Register) {
	if nt > 1 {
		prefetchAhead(bytes, w)
		return
	}
	rb := Load(Param("rb"), GP64())
	pf := GP64()
	LEAQ(Mem{Base: w, Index: rb, Scale: 4}, pf)
	for off := 0; off < bytes; off += 64 {
		PREFETCHT0(Mem{Base: pf, Disp: off})
	}
}

const sig8 = "func(y *float32, w *byte, rows, rb int, q *int8, d, s *float32, nc *int32)"

func doc8(name string, f fmt8, nt int) {
	var lines []string
	if nt == 1 {
		lines = []string{
			name + " computes, for each of rows rows of rb bytes at w,",
			"",
			"\ty[r] = " + f.gen + "(w[r*rb:(r+1)*rb], q, d, s)",
			"",
			"bit for bit (see act8.go; nc is unused by the plain Go). The rows",
			"follow each other in memory.",
		}
	} else {
		lines = []string{
			name + " is the kernel for one token, computing y[r*" + itoa(nt) + "+t] for " + itoa(nt) + " tokens t",
			"at once (each weight block prepared once for all of them), with the",
			"tokens' activations interleaved (see xAct8.group): bit for bit",
			f.gen + " of each token.",
		}
	}
	Doc(lines...)
}

// Q8_0, Q4_0, Q5_0: blocks of 32; block b of token t at q[(b*nt+t)*32],
// nc[(b*nt+t)*8], d[b*nt+t].
func genDot8Blocks32(f fmt8, nt int) {
	name := kernelName8(f.base, nt, false)
	TEXT(name, NOSPLIT, sig8)
	Pragma("noescape")
	doc8(name, f, nt)
	scLoc := AllocLocal(32)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	Label(name + "_row")
	TESTQ(rows, rows)
	JZ(LabelRef(name + "_done"))
	n := Load(Param("rb"), GP64())
	qp := Load(Param("q"), GP64())
	dp := Load(Param("d"), GP64())
	acc := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = YMM()
		VXORPS(acc[t], acc[t], acc[t])
	}
	var dMask VecVirtual
	if nt > 1 && nt < 8 {
		dMask = YMM()
		VMOVDQU(c8FirstLanes[nt], dMask)
	}
	Label(name + "_block")
	CMPQ(n, Imm(0))
	JLE(LabelRef(name + "_end"))
	prefetch8(nt, f.bytes, w)
	hx := XMM()
	VCVTPH2PS(Mem{Base: w}, hx) // d, then 3 halves of weights (not used)
	hb := YMM()
	VBROADCASTSS(hx, hb)
	wv := YMM()
	switch f.bytes {
	case 34:
		VMOVDQU(Mem{Base: w, Disp: 2}, wv)
	default:
		// Nibbles: the 16 bytes in both halves, the high half shifted.
		off := 2
		if f.bytes == 22 {
			off = 6
		}
		lo := XMM()
		VMOVDQU(Mem{Base: w, Disp: off}, lo)
		hi := XMM()
		VPSRLW(U8(4), lo, hi)
		VINSERTI128(U8(1), hi, lo.AsY(), wv)
		VPAND(b0F, wv, wv)
		if f.bytes == 18 {
			VPSUBB(c8B08, wv, wv)
		} else {
			// The high bits: byte i of the 4 at w+2 gets bit i.
			h := YMM()
			VPBROADCASTD(Mem{Base: w, Disp: 2}, h)
			VPSHUFB(c8ShufQh, h, h)
			VPAND(c8BitMask, h, h)
			VPMINUB(c8B01, h, h)
			VPSLLW(U8(4), h, h)
			VPOR(h, wv, wv)
			VPSUBB(c8B10, wv, wv)
		}
	}
	wabs := YMM()
	VPABSB(wv, wabs)
	if nt == 1 {
		L := signedLanes(wv, wabs, Mem{Base: qp})
		sc := YMM()
		VBROADCASTSS(Mem{Base: dp}, sc)
		VMULPS(hb, sc, sc) // float32(half·d_b)
		fmaScaled(L, sc, acc[0])
	} else {
		// The nt products float32(half·d_b) by one multiply, stored and
		// broadcast back by loads (which take no arithmetic port); fewer
		// than 8 tokens' scales are read by a masked load, which reads
		// nothing past them.
		p := YMM()
		if nt == 8 {
			VMOVUPS(Mem{Base: dp}, p)
		} else {
			VMASKMOVPS(Mem{Base: dp}, dMask, p)
		}
		VMULPS(hb, p, p)
		VMOVUPS(p, scLoc)
		for t := 0; t < nt; t++ {
			L := signedLanes(wv, wabs, Mem{Base: qp, Disp: 32 * t})
			sc := YMM()
			VBROADCASTSS(scLoc.Offset(4*t), sc)
			fmaScaled(L, sc, acc[t])
		}
	}
	ADDQ(U8(f.bytes), w)
	ADDQ(U32(32*nt), qp)
	ADDQ(U8(4*nt), dp)
	SUBQ(U8(f.bytes), n)
	JMP(LabelRef(name + "_block"))
	Label(name + "_end")
	storeAcc(y, acc, nil)
	DECQ(rows)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// minimaOneToken sets M to one token's minima term M = Σ_k m·S over the
// 4 pairs of int16 at pairs (the token's) and in each 128-bit lane of mw
// (a row's), in every float32 lane of that 128-bit lane: VPMADDWD, the
// lane's 4 dwords summed (exact), converted. t is scratch of M's size.
func minimaOneToken(pairs Op, mw, M, t VecVirtual) {
	VPMADDWD(pairs, mw, M)
	VPSHUFD(U8(0x4e), M, t)
	VPADDD(t, M, M)
	VPSHUFD(U8(0xb1), M, t)
	VPADDD(t, M, M)
	VCVTDQ2PS(M, M)
}

// Q4_K and Q5_K: super-blocks of 256 with activations in blocks of 256
// (Q8_K-like): block of 32 b of token t at q[(b*nt+t)*32], the scale of
// super-block sb at d[sb*nt+t], and the pairs of sums Σq of its blocks
// (xAct8's ms) at nc[sb*4+k] for one token, nc[(sb*4+k)*8+t] for several.
// The integer lanes I_l = Σ_j sc_j·L_{j,l} of a super-block are summed
// exactly (VPMADDUBSW, then VPMADDWD with sc_j and VPADDD, or VPDPWSSD),
// converted, and added by one FMA with D = dd·d_sb; the minima's M =
// Σ_j m_j·Σq_j of every token at once (lane t: VPMADDWD of the pairs of
// minima with the pairs of sums) by one FMA with Dm = dmin·d_sb of each
// token (lane t) to the lanes of macc, which the end subtracts from the
// sums of the lanes (dot8K45); for one token, one VPMADDWD of the row's 4
// pairs with the token's, summed across the lanes.
func genDot8K45(f fmt8, nt int) {
	five := f.bytes == 176
	name := kernelName8(f.base, nt, false)
	TEXT(name, NOSPLIT, sig8)
	Pragma("noescape")
	doc8(name, f, nt)
	scLoc := AllocLocal(16)
	mwLoc := AllocLocal(16)
	maccLoc := AllocLocal(32)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	Label(name + "_row")
	TESTQ(rows, rows)
	JZ(LabelRef(name + "_done"))
	n := Load(Param("rb"), GP64())
	qp := Load(Param("q"), GP64())
	dp := Load(Param("d"), GP64())
	mp := Load(Param("nc"), GP64())
	acc := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = YMM()
		VXORPS(acc[t], acc[t], acc[t])
	}
	macc := YMM()
	VXORPS(macc, macc, macc)
	Label(name + "_block")
	CMPQ(n, Imm(0))
	JLE(LabelRef(name + "_end"))
	prefetch8(nt, f.bytes, w)
	dd := YMM()
	{
		scx, mnx := k45PackedScales(w)
		scw, mw := XMM(), XMM()
		VPMOVZXBW(scx, scw)
		VMOVDQU(scw, scLoc)
		VPMOVZXBW(mnx, mw)
		var dmin VecVirtual
		dd, dmin = k45D(w)
		if nt == 1 {
			// One token: one VPMADDWD of its 4 pairs with the row's 4,
			// summed across the lanes, into lane 0 (a VEX scalar FMA
			// clears macc's upper half: only lane 0 is read).
			M := XMM()
			minimaOneToken(Mem{Base: mp}, mw, M, XMM())
			dm := XMM()
			VMULSS(Mem{Base: dp}, dmin.AsX(), dm)
			VFMADD231SS(M, dm, macc.AsX())
		} else {
			VMOVDQU(mw, mwLoc)
			M := YMM()
			for k := 0; k < 4; k++ {
				a := YMM()
				VPBROADCASTD(mwLoc.Offset(4*k), a) // m_2k, m_2k+1
				VPMADDWD(Mem{Base: mp, Disp: 32 * k}, a, a)
				if k == 0 {
					M = a
				} else {
					VPADDD(a, M, M)
				}
			}
			VCVTDQ2PS(M, M)
			dm := YMM()
			VMULPS(Mem{Base: dp}, dmin, dm) // 8 tokens' d_sb (xGroup8)
			VFMADD231PS(M, dm, macc)
		}
	}
	I := make([]VecVirtual, nt)
	for t := range I {
		I[t] = YMM()
		VXORPS(I[t], I[t], I[t])
	}
	off := 16
	if five {
		off = 48
	}
	for j := 0; j < 4; j++ {
		raw := YMM()
		VMOVDQU(Mem{Base: w, Disp: off + 32*j}, raw)
		for part := 0; part < 2; part++ {
			v := YMM()
			if part == 0 {
				VPAND(b0F, raw, v)
			} else {
				VPSRLW(U8(4), raw, v)
				VPAND(b0F, v, v)
			}
			sb := 2*j + part
			if five {
				h := YMM()
				VMOVDQU(Mem{Base: w, Disp: 16}, h)
				switch {
				case sb < 4:
					VPSLLW(U8(4-sb), h, h)
				case sb > 4:
					VPSRLW(U8(sb-4), h, h)
				}
				VPAND(c8B10, h, h)
				VPOR(h, v, v)
			}
			sc := YMM()
			VPBROADCASTW(scLoc.Offset(2*sb), sc)
			for t := 0; t < nt; t++ {
				p := YMM()
				VPMADDUBSW(Mem{Base: qp, Disp: 32 * (sb*nt + t)}, v, p)
				VPMADDWD(sc, p, p)
				VPADDD(p, I[t], I[t])
			}
		}
	}
	for t := 0; t < nt; t++ {
		D := YMM()
		VBROADCASTSS(Mem{Base: dp, Disp: 4 * t}, D)
		VMULPS(D, dd, D) // D = dd·d_sb
		fmaScaled(I[t], D, acc[t])
	}
	ADDQ(U32(f.bytes), w)
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
	VMOVUPS(macc, maccLoc)
	for t, a := range acc {
		r := hsum1(a)
		VSUBSS(maccLoc.Offset(4*t), r, r)
		VMOVSS(r, Mem{Base: y, Disp: 4 * t})
	}
	ADDQ(U8(4*nt), y)
	DECQ(rows)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// Q6_K: super-blocks of 256, weights w = q6−32, int8 scales per 16
// weights; activations as for Q4_K, and aux[(b*nt+t)*8:] the 32 bytes
// q+128 of block b (unsigned). Per block (half h, group g) the scale word
// vector holds sc[8h+2g] in words 0-7 and sc[8h+2g+1] in words 8-15, so
// that VPMADDWD (VPDPWSSD) gives lane l its scale times its pair sums.
// VPMADDUBSW multiplies q+128 with w (pairs at most 2·255·32: no
// saturation); the block's 128·w pairs, times the scales, are summed once
// for all tokens (corr) and subtracted from each token's lanes at the end
// of the super-block, so the lanes hold Σ sc·w·q exactly.
func genDot8Q6K(f fmt8, nt int) {
	name := kernelName8(f.base, nt, false)
	TEXT(name, NOSPLIT, sig8)
	Pragma("noescape")
	doc8(name, f, nt)
	dLoc := AllocLocal(32 * nt)
	scLoc := AllocLocal(32)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	Label(name + "_row")
	TESTQ(rows, rows)
	JZ(LabelRef(name + "_done"))
	n := Load(Param("rb"), GP64())
	ap := Load(Param("nc"), GP64())
	dp := Load(Param("d"), GP64())
	acc := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = YMM()
		VXORPS(acc[t], acc[t], acc[t])
	}
	Label(name + "_block")
	CMPQ(n, Imm(0))
	JLE(LabelRef(name + "_end"))
	prefetch8(nt, 210, w)
	var s16 VecVirtual
	{
		h := GP32()
		MOVWLZX(Mem{Base: w, Disp: 208}, h)
		dx := XMM()
		VMOVD(h, dx)
		VCVTPH2PS(dx, dx)
		dd := YMM()
		VBROADCASTSS(dx, dd)
		for t := 0; t < nt; t++ {
			v := YMM()
			VBROADCASTSS(Mem{Base: dp, Disp: 4 * t}, v)
			VMULPS(v, dd, v) // D = d·d_sb
			VMOVUPS(v, dLoc.Offset(32*t))
		}
		s16 = YMM()
		VPMOVSXBW(Mem{Base: w, Disp: 192}, s16)
		VMOVDQU(s16, scLoc)
	}
	I := make([]VecVirtual, nt)
	for t := range I {
		I[t] = YMM()
		VXORPS(I[t], I[t], I[t])
	}
	corr := YMM()
	VXORPS(corr, corr, corr)
	for hh := 0; hh < 2; hh++ {
		for g := 0; g < 4; g++ {
			v, b := YMM(), YMM()
			src := Mem{Base: w, Disp: 64 * hh}
			if g&1 == 1 {
				src = src.Offset(32)
			}
			VMOVDQU(src, v)
			if g >= 2 {
				VPSRLW(U8(4), v, v)
			}
			VPAND(b0F, v, v)
			VMOVDQU(Mem{Base: w, Disp: 128 + 32*hh}, b)
			switch g {
			case 0:
				VPAND(b03, b, b)
				VPSLLW(U8(4), b, b)
			case 1:
				VPSLLW(U8(2), b, b)
				VPAND(b30, b, b)
			case 2:
				VPAND(b30, b, b)
			case 3:
				VPSRLW(U8(2), b, b)
				VPAND(b30, b, b)
			}
			VPOR(b, v, v)
			VPSUBB(b20, v, v) // w = q6 − 32
			j := 8*hh + 2*g
			sc := YMM()
			s1 := XMM()
			VPBROADCASTW(scLoc.Offset(2*j), sc)
			VPBROADCASTW(scLoc.Offset(2*j+2), s1)
			VINSERTI128(U8(1), s1, sc, sc)
			// corr += sc·(128·w pairs)
			c := YMM()
			VMOVDQU(c8B80, c)
			VPMADDUBSW(v, c, c)
			VPMADDWD(sc, c, c)
			VPADDD(c, corr, corr)
			blk := 4*hh + g
			for t := 0; t < nt; t++ {
				x, p := YMM(), YMM()
				VMOVDQU(Mem{Base: ap, Disp: 32 * (blk*nt + t)}, x)
				VPMADDUBSW(v, x, p)
				VPMADDWD(sc, p, p)
				VPADDD(p, I[t], I[t])
			}
		}
	}
	for t := 0; t < nt; t++ {
		VPSUBD(corr, I[t], I[t])
		addScaled(I[t], dLoc.Offset(32*t), acc[t])
	}
	ADDQ(U32(210), w)
	ADDQ(U32(256*nt), ap)
	ADDQ(U8(4*nt), dp)
	SUBQ(U32(210), n)
	JMP(LabelRef(name + "_block"))
	Label(name + "_end")
	storeAcc(y, acc, nil)
	DECQ(rows)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}
