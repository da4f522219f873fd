package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The fused block kernels multiply rows of ggml's quantized blocks with
// activations rounded to int16 in blocks of 32 (q, with one float32 scale
// d per block and, for Q4_K and Q5_K, the block's Σ q as a float32 s).
// They follow package kernels' plain-Go kernels (dotQ8_0Generic and its
// siblings in blockdot.go) operation for operation: the weights of a block
// are widened to int16, VPMADDWD multiplies each half of 16 with the
// activations into 8 int32 lanes of pairs, and the two halves' lanes are
// added (exact); each block's lanes are converted to float32, multiplied
// by the block's scale and added to 8 lane accumulators (VMULPS then
// VADDPS: two roundings, as the Go code), and the lanes are reduced by
// hsum1's tree. So the assembly and the Go code give the same bits.

// blockRowsDoc is the Go loop of a fused kernel over rows.
func blockRowsDoc(name, gen string, args string, nt int) []string {
	if nt == 1 {
		return []string{
			name + " computes, for each of rows rows of rb bytes at w,",
			"",
			"\ty[r] = " + gen + "(w[r*rb:(r+1)*rb], " + args + ")",
			"",
			"bit for bit (see blockdot.go). The rows follow each other in memory.",
		}
	}
	return []string{
		name + " is the kernel for one token, computing y[r*" + itoa(nt) + "+t] for " + itoa(nt) + " tokens t",
		"at once (each weight block widened once for all of them), with the",
		"tokens' activations interleaved (see packGroup): bit for bit",
		gen + " of each token.",
	}
}

// scaleVec returns the float32 at f times the converted half in the low
// lane of hx, broadcast.
func scaleVec(hx VecVirtual, f Mem) VecVirtual {
	x := XMM()
	VMULSS(f, hx, x)
	y := YMM()
	VBROADCASTSS(x, y)
	return y
}

// halvesLanes multiplies the int16 weights of a block's two halves (w0:
// elements 0-15, w1: 16-31) with the 32 activations at q, adds the two
// halves' lanes and adds them, scaled by sc, to acc:
// acc += float32(sc·float32(L)).
func halvesLanes(w0, w1 VecVirtual, q Mem, sc Op, acc VecVirtual) {
	p0, p1 := YMM(), YMM()
	VPMADDWD(q, w0, p0)
	VPMADDWD(q.Offset(32), w1, p1)
	VPADDD(p1, p0, p0)
	VCVTDQ2PS(p0, p0)
	VMULPS(sc, p0, p0)
	VADDPS(p0, acc, acc)
}

// kernelName is the name of the fused kernel of base for nt tokens.
func kernelName(base string, nt int) string {
	if nt == 1 {
		return base + "AVX2"
	}
	return base + "x" + itoa(nt) + "AVX2"
}

// storeAcc stores the nt results of a row (acc less the minimum sums at
// mLoc, if any) to y and advances y.
func storeAcc(y Register, acc []VecVirtual, mLoc *Mem) {
	for t, a := range acc {
		r := hsum1(a)
		if mLoc != nil {
			m := YMM()
			VMOVUPS(mLoc.Offset(32*t), m)
			VSUBSS(hsum1(m), r, r)
		}
		VMOVSS(r, Mem{Base: y, Disp: 4 * t})
	}
	ADDQ(U8(4*len(acc)), y)
}

// The constants of the fused kernels: word masks and bytes.
var w0F, w08, w10, b0F, b03, b30, b20, w16, wBits Mem

func genBlockDot() {
	w0F = vconst("bdMask0F", 0x000F000F)
	w08 = vconst("bdEight", 0x00080008)
	w10 = vconst("bdMask10", 0x00100010)
	b0F = vconst("bdByte0F", 0x0F0F0F0F)
	b03 = vconst("bdByte03", 0x03030303)
	b30 = vconst("bdByte30", 0x30303030)
	b20 = vconst("bdByte20", 0x20202020)
	w16 = vconst("bdSixteen", 0x00100010)
	wBits = GLOBL("bdBits", RODATA|NOPTR) // word i: 1<<i
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(uint32(1)<<(2*i)|uint32(2)<<(2*i)<<16))
	}
	genMatVecF16()
	for nt := 1; nt <= 4; nt++ {
		genBlockDot32(nt)
		genBlockDotK45(nt)
		genBlockDotQ6K(nt)
	}
}

// Q8_0 and Q4_0: blocks of 32; the activations of block b and token t at
// q[(b*nt+t)*32], their scale at d[b*nt+t].
func genBlockDot32(nt int) {
	for _, k := range []struct {
		base, gen string
		bytes     int
	}{{"dotQ8_0", "dotQ8_0Generic", 34}, {"dotQ4_0", "dotQ4_0Generic", 18}, {"dotQ5_0", "dotQ5_0Generic", 22}} {
		name := kernelName(k.base, nt)
		TEXT(name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d *float32)")
		Pragma("noescape")
		Doc(blockRowsDoc(name, k.gen, "q[:rb/"+itoa(k.bytes)+"*32], d[:rb/"+itoa(k.bytes)+"]", nt)...)
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
		// Two blocks per pass (the same additions in the same order as
		// one at a time), then the last one.
		body := func(i int) {
			// The scale is the block's first half; the 3 after it
			// (weights) are converted too and not used.
			hx := XMM()
			VCVTPH2PS(Mem{Base: w, Disp: k.bytes * i}, hx)
			a, b := YMM(), YMM()
			switch k.bytes {
			case 34:
				VPMOVSXBW(Mem{Base: w, Disp: 34*i + 2}, a)
				VPMOVSXBW(Mem{Base: w, Disp: 34*i + 18}, b)
			case 22:
				// Nibbles, then the high bits: each half of qh broadcast
				// to 16 words, word i tested against 1<<i, 16 where set.
				VPMOVZXBW(Mem{Base: w, Disp: 22*i + 6}, a)
				VPSRLW(U8(4), a, b)
				VPAND(w0F, a, a)
				for hi, v := range []VecVirtual{a, b} {
					h := YMM()
					VPBROADCASTW(Mem{Base: w, Disp: 22*i + 2 + 2*hi}, h)
					VPAND(wBits, h, h)
					VPCMPEQW(wBits, h, h)
					VPAND(w10, h, h)
					VPOR(h, v, v)
					VPSUBW(w16, v, v)
				}
			default:
				VPMOVZXBW(Mem{Base: w, Disp: 18*i + 2}, a)
				VPSRLW(U8(4), a, b)
				VPAND(w0F, a, a)
				VPSUBW(w08, a, a)
				VPSUBW(w08, b, b)
			}
			for t := 0; t < nt; t++ {
				sc := scaleVec(hx, Mem{Base: dp, Disp: 4 * (nt*i + t)})
				halvesLanes(a, b, Mem{Base: qp, Disp: 64 * (nt*i + t)}, sc, acc[t])
			}
		}
		Label(name + "_block")
		CMPQ(n, U32(2*k.bytes))
		JL(LabelRef(name + "_tail"))
		prefetchAhead(2*k.bytes, w)
		body(0)
		body(1)
		ADDQ(U8(2*k.bytes), w)
		ADDQ(U32(128*nt), qp)
		ADDQ(U8(8*nt), dp)
		SUBQ(U8(2*k.bytes), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_tail")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		body(0)
		ADDQ(U8(k.bytes), w)
		Label(name + "_end")
		storeAcc(y, acc, nil)
		DECQ(rows)
		JMP(LabelRef(name + "_row"))
		Label(name + "_done")
		VZEROUPPER()
		RET()
	}
}

// Q4_K and Q5_K: super-blocks of 256 with 6-bit scales and mins; the
// activations of block b and token t at q[(b*nt+t)*32], the scales and
// sums of super-block sb and token t at d[(sb*nt+t)*8:] and s[(sb*nt+t)*8:].
func genBlockDotK45(nt int) {
	for _, k := range []struct {
		base, gen string
		bytes     int
	}{{"dotQ4K", "dotQ4KGeneric", 144}, {"dotQ5K", "dotQ5KGeneric", 176}} {
		five := k.bytes == 176
		name := kernelName(k.base, nt)
		TEXT(name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d, s *float32)")
		Pragma("noescape")
		Doc(blockRowsDoc(name, k.gen, "q[:rb/"+itoa(k.bytes)+"*256], d[:rb/"+itoa(k.bytes)+"*8], s[:rb/"+itoa(k.bytes)+"*8]", nt)...)
		aLoc := AllocLocal(32 * nt) // A_j per token
		mLoc := AllocLocal(32 * nt) // the minimum sums per token
		y := Load(Param("y"), GP64())
		w := Load(Param("w"), GP64())
		rows := Load(Param("rows"), GP64())
		Label(name + "_row")
		TESTQ(rows, rows)
		JZ(LabelRef(name + "_done"))
		n := Load(Param("rb"), GP64())
		qp := Load(Param("q"), GP64())
		dp := Load(Param("d"), GP64())
		sp := Load(Param("s"), GP64())
		acc := make([]VecVirtual, nt)
		for t := range acc {
			acc[t] = YMM()
			VXORPS(acc[t], acc[t], acc[t])
			VMOVUPS(acc[t], mLoc.Offset(32*t))
		}
		Label(name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		prefetchAhead(k.bytes, w)
		{
			scx, mnx := k45PackedScales(w)
			sc, mn := YMM(), YMM()
			VPMOVZXBD(scx, sc)
			VPMOVZXBD(mnx, mn)
			VCVTDQ2PS(sc, sc)
			VCVTDQ2PS(mn, mn)
			dd, dmin := k45D(w)
			VMULPS(dd, sc, sc)   // d·sc_j
			VMULPS(dmin, mn, mn) // dmin·m_j
			for t := 0; t < nt; t++ {
				a, m := YMM(), YMM()
				VMULPS(Mem{Base: dp, Disp: 32 * t}, sc, a) // ·d_b
				VMOVUPS(a, aLoc.Offset(32*t))              // A_j
				VMULPS(Mem{Base: dp, Disp: 32 * t}, mn, m) // ·d_b
				VMULPS(Mem{Base: sp, Disp: 32 * t}, m, m)  // ·Σq
				VADDPS(mLoc.Offset(32*t), m, m)
				VMOVUPS(m, mLoc.Offset(32*t))
			}
		}
		off := 16
		var qh0, qh1 VecVirtual
		if five {
			off = 48
			qh0, qh1 = YMM(), YMM()
			VPMOVZXBW(Mem{Base: w, Disp: 16}, qh0)
			VPMOVZXBW(Mem{Base: w, Disp: 32}, qh1)
		}
		for j := 0; j < 4; j++ {
			for part := 0; part < 2; part++ {
				a, b := YMM(), YMM()
				VPMOVZXBW(Mem{Base: w, Disp: off + 32*j}, a)
				VPMOVZXBW(Mem{Base: w, Disp: off + 32*j + 16}, b)
				if part == 0 {
					VPAND(w0F, a, a)
					VPAND(w0F, b, b)
				} else {
					VPSRLW(U8(4), a, a)
					VPSRLW(U8(4), b, b)
				}
				if five {
					bit := 2*j + part // to bit 4 of each word
					for i, v := range []VecVirtual{a, b} {
						src := []VecVirtual{qh0, qh1}[i]
						t := YMM()
						switch {
						case bit < 4:
							VPSLLW(U8(4-bit), src, t)
						case bit > 4:
							VPSRLW(U8(bit-4), src, t)
						default:
							VMOVDQA(src, t)
						}
						VPAND(w10, t, t)
						VPOR(t, v, v)
					}
				}
				sb := 2*j + part
				for t := 0; t < nt; t++ {
					s := YMM()
					VBROADCASTSS(aLoc.Offset(32*t+4*sb), s)
					halvesLanes(a, b, Mem{Base: qp, Disp: 64 * (sb*nt + t)}, s, acc[t])
				}
			}
		}
		ADDQ(U32(k.bytes), w)
		ADDQ(U32(512*nt), qp)
		ADDQ(U32(32*nt), dp)
		ADDQ(U32(32*nt), sp)
		SUBQ(U32(k.bytes), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_end")
		storeAcc(y, acc, &mLoc)
		DECQ(rows)
		JMP(LabelRef(name + "_row"))
		Label(name + "_done")
		VZEROUPPER()
		RET()
	}
}

// k45PackedScales unpacks the 8 six-bit scales and 8 six-bit mins of the
// Q4_K or Q5_K super-block at w (ggml's get_scale_min_k4, 4 at a time)
// into the low 8 bytes of two XMM registers, one byte each.
func k45PackedScales(w Register) (scx, mnx VecVirtual) {
	u0, u1, u2, t := GP32(), GP32(), GP32(), GP32()
	MOVL(Mem{Base: w, Disp: 4}, u0)
	MOVL(Mem{Base: w, Disp: 8}, u1)
	MOVL(Mem{Base: w, Disp: 12}, u2)
	m3 := GP32() // mins 4..7: (u2>>4)&0x0f… | ((u1>>6)&0x03…)<<4
	MOVL(u2, m3)
	SHRL(U8(4), m3)
	ANDL(U32(0x0f0f0f0f), m3)
	MOVL(u1, t)
	SHRL(U8(6), t)
	ANDL(U32(0x03030303), t)
	SHLL(U8(4), t)
	ORL(t, m3)
	ANDL(U32(0x3f3f3f3f), u1) // mins 0..3
	MOVL(u0, t)               // scales 4..7: u2&0x0f… | ((u0>>6)&0x03…)<<4
	SHRL(U8(6), t)
	ANDL(U32(0x03030303), t)
	SHLL(U8(4), t)
	ANDL(U32(0x0f0f0f0f), u2)
	ORL(t, u2)
	ANDL(U32(0x3f3f3f3f), u0) // scales 0..3
	scx, mnx = XMM(), XMM()
	VMOVD(u0, scx)
	VPINSRD(U8(1), u2, scx, scx)
	VMOVD(u1, mnx)
	VPINSRD(U8(1), m3, mnx, mnx)
	return scx, mnx
}

// k45D returns the super-block scales d and dmin of the Q4_K or Q5_K
// super-block at w, each broadcast to 8 float32 lanes.
func k45D(w Register) (dd, dmin VecVirtual) {
	dx := XMM() // d, dmin and 2 halves of scales, not used
	VCVTPH2PS(Mem{Base: w}, dx)
	dd, dmin = YMM(), YMM()
	VBROADCASTSS(dx, dd)
	VMOVSHDUP(dx, dx)
	VBROADCASTSS(dx, dmin)
	return dd, dmin
}

// Q6_K: super-blocks of 256, 6-bit weights, int8 scales per 16; the
// activations laid out as for Q4_K (d per super-block and token).
func genBlockDotQ6K(nt int) {
	name := kernelName("dotQ6K", nt)
	TEXT(name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d *float32)")
	Pragma("noescape")
	Doc(blockRowsDoc(name, "dotQ6KGeneric", "q[:rb/210*256], d[:rb/210*8]", nt)...)
	dLoc := AllocLocal(32 * nt)
	sLoc := AllocLocal(32)
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
	Label(name + "_block")
	CMPQ(n, Imm(0))
	JLE(LabelRef(name + "_end"))
	prefetchAhead(210, w)
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
			VMULPS(Mem{Base: dp, Disp: 32 * t}, dd, v) // D_b = d·d_b
			VMOVUPS(v, dLoc.Offset(32*t))
		}
		s16 := YMM()
		VPMOVSXBW(Mem{Base: w, Disp: 192}, s16)
		VMOVDQU(s16, sLoc)
	}
	for hh := 0; hh < 2; hh++ {
		for g := 0; g < 4; g++ {
			v, b := YMM(), YMM()
			src := Mem{Base: w, Disp: 64 * hh}
			if g&1 == 1 {
				src = src.Offset(32)
			}
			if g < 2 {
				VMOVDQU(src, v)
			} else {
				VMOVDQU(src, v)
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
			VPSUBB(b20, v, v) // q6 − 32
			w0, w1, hi := YMM(), YMM(), XMM()
			VPMOVSXBW(v.AsX(), w0)
			VEXTRACTI128(U8(1), v, hi)
			VPMOVSXBW(hi, w1)
			j := 8*hh + 2*g
			s0 := YMM()
			VPBROADCASTW(sLoc.Offset(2*j), s0)
			VPMULLW(s0, w0, w0) // sc·(q6−32), at most 4096
			VPBROADCASTW(sLoc.Offset(2*j+2), s0)
			VPMULLW(s0, w1, w1)
			for t := 0; t < nt; t++ {
				dd := YMM()
				VBROADCASTSS(dLoc.Offset(32*t+4*(4*hh+g)), dd)
				halvesLanes(w0, w1, Mem{Base: qp, Disp: 64 * ((4*hh+g)*nt + t)}, dd, acc[t])
			}
		}
	}
	ADDQ(U32(210), w)
	ADDQ(U32(512*nt), qp)
	ADDQ(U32(32*nt), dp)
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

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return s
		}
	}
}

// genMatVecF16 writes the kernels of float16 weights (ggml's F16 tensors),
// for nt = 1 to 4 tokens: each 8 weights widened by one VCVTPH2PS (exact)
// and multiplied into the tokens' 8-lane accumulators in the dot order of
// the float32 kernels, so that the outputs are bit for bit those of the
// float32 matrix of the same values.
func genMatVecF16() {
	for nt := 1; nt <= 4; nt++ {
		name := kernelName("matVecF16", nt)
		TEXT(name, NOSPLIT, "func(y *float32, w *uint16, rows, cols int, x *float32, ldx int)")
		Pragma("noescape")
		Doc(append([]string{name + " computes, for each of rows rows of cols (a multiple of 8)",
			"float16 weights at w and each of " + itoa(nt) + " tokens t (x advancing by ldx",
			"floats per token), y[r*" + itoa(nt) + "+t] = Σ_c W[r,c]·x[t*ldx+c] in the dot",
			"order (the widening of the weights is exact):",
			""}, dotDoc("\t", "float32(W[r,c+l])", "x[t*ldx+c+l]", "y[r*"+itoa(nt)+"+t]")...)...)
		y := Load(Param("y"), GP64())
		w := Load(Param("w"), GP64())
		rows := Load(Param("rows"), GP64())
		ld := Load(Param("ldx"), GP64())
		SHLQ(U8(2), ld)
		if nt == 1 {
			// Four rows at a time, each with its own accumulator (four
			// independent chains of multiply-adds; the order of each
			// output is unchanged), then the rows left one by one.
			st := Load(Param("cols"), GP64())
			SHLQ(U8(1), st) // bytes per row
			Label(name + "_rows4")
			CMPQ(rows, Imm(4))
			JL(LabelRef(name + "_row"))
			n := Load(Param("cols"), GP64())
			xp := Load(Param("x"), GP64())
			w3 := GP64()
			LEAQ(Mem{Base: w, Index: st, Scale: 2}, w3)
			ADDQ(st, w3)
			acc := make([]VecVirtual, 4)
			for k := range acc {
				acc[k] = YMM()
				VXORPS(acc[k], acc[k], acc[k])
			}
			Label(name + "_col4")
			CMPQ(n, Imm(0))
			JLE(LabelRef(name + "_end4"))
			xv := YMM()
			VMOVUPS(Mem{Base: xp}, xv)
			for k := range acc {
				m := []Mem{{Base: w}, {Base: w, Index: st, Scale: 1}, {Base: w, Index: st, Scale: 2}, {Base: w3}}[k]
				wv := YMM()
				VCVTPH2PS(m, wv)
				VFMADD231PS(xv, wv, acc[k])
			}
			ADDQ(U8(16), w)
			ADDQ(U8(16), w3)
			ADDQ(U8(32), xp)
			SUBQ(U8(8), n)
			JMP(LabelRef(name + "_col4"))
			Label(name + "_end4")
			for k, a := range acc {
				VMOVSS(hsum1(a), Mem{Base: y, Disp: 4 * k})
			}
			ADDQ(U8(16), y)
			LEAQ(Mem{Base: w, Index: st, Scale: 2}, w) // past the 3 other rows
			ADDQ(st, w)
			SUBQ(Imm(4), rows)
			JMP(LabelRef(name + "_rows4"))
		}
		Label(name + "_row")
		TESTQ(rows, rows)
		JZ(LabelRef(name + "_done"))
		n := Load(Param("cols"), GP64())
		xp := Load(Param("x"), GP64())
		var x3 GPVirtual
		if nt == 4 {
			x3 = GP64()
			LEAQ(Mem{Base: xp, Index: ld, Scale: 2}, x3)
			ADDQ(ld, x3)
		}
		acc := make([]VecVirtual, nt)
		for t := range acc {
			acc[t] = YMM()
			VXORPS(acc[t], acc[t], acc[t])
		}
		Label(name + "_col")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		wv := YMM()
		VCVTPH2PS(Mem{Base: w}, wv)
		for t := 0; t < nt; t++ {
			m := Mem{Base: xp}
			switch t {
			case 1:
				m = Mem{Base: xp, Index: ld, Scale: 1}
			case 2:
				m = Mem{Base: xp, Index: ld, Scale: 2}
			case 3:
				m = Mem{Base: x3}
			}
			VFMADD231PS(m, wv, acc[t])
		}
		ADDQ(U8(16), w)
		ADDQ(U8(32), xp)
		if nt == 4 {
			ADDQ(U8(32), x3)
		}
		SUBQ(U8(8), n)
		JMP(LabelRef(name + "_col"))
		Label(name + "_end")
		storeAcc(y, acc, nil)
		DECQ(rows)
		JMP(LabelRef(name + "_row"))
		Label(name + "_done")
		VZEROUPPER()
		RET()
	}
}
