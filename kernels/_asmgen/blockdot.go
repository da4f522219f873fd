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
func blockRowsDoc(name, gen string, args string) []string {
	return []string{
		name + " computes, for each of rows rows of rb bytes at w,",
		"",
		"\ty[r] = " + gen + "(w[r*rb:(r+1)*rb], " + args + ")",
		"",
		"bit for bit (see blockdot.go). The rows follow each other in memory.",
	}
}

// scaleHalf loads the float16 at m, converts it and multiplies it by the
// float32 at f, and returns it broadcast to 8 lanes.
func scaleHalf(m, f Mem) VecVirtual {
	t := GP32()
	MOVWLZX(m, t)
	x := XMM()
	VMOVD(t, x)
	VCVTPH2PS(x, x)
	VMULSS(f, x, x)
	y := YMM()
	VBROADCASTSS(x, y)
	return y
}

// halvesLanes multiplies the int16 weights of a block's two halves (w0:
// elements 0-15, w1: 16-31) with the 32 activations at q, adds the two
// halves' lanes and adds them, scaled by sc, to acc:
// acc += float32(sc·float32(L)). w0 and w1 are overwritten.
func halvesLanes(w0, w1 VecVirtual, q Mem, sc Op, acc VecVirtual) {
	VPMADDWD(q, w0, w0)
	VPMADDWD(q.Offset(32), w1, w1)
	VPADDD(w1, w0, w0)
	VCVTDQ2PS(w0, w0)
	VMULPS(sc, w0, w0)
	VADDPS(w0, acc, acc)
}

func genBlockDot() {
	w0F := vconst("bdMask0F", 0x000F000F)
	w08 := vconst("bdEight", 0x00080008)
	w10 := vconst("bdMask10", 0x00100010)
	b0F := vconst("bdByte0F", 0x0F0F0F0F)
	b03 := vconst("bdByte03", 0x03030303)
	b30 := vconst("bdByte30", 0x30303030)
	b20 := vconst("bdByte20", 0x20202020)

	// Q8_0 and Q4_0: blocks of 32.
	for _, k := range []struct {
		name, gen string
		bytes     int
	}{{"dotQ8_0AVX2", "dotQ8_0Generic", 34}, {"dotQ4_0AVX2", "dotQ4_0Generic", 18}} {
		TEXT(k.name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d *float32)")
		Pragma("noescape")
		Doc(blockRowsDoc(k.name, k.gen, "q[:rb/"+itoa(k.bytes)+"*32], d[:rb/"+itoa(k.bytes)+"]")...)
		y := Load(Param("y"), GP64())
		w := Load(Param("w"), GP64())
		rows := Load(Param("rows"), GP64())
		var m0F, eight VecVirtual
		if k.bytes == 18 {
			m0F, eight = YMM(), YMM()
			VMOVDQU(w0F, m0F)
			VMOVDQU(w08, eight)
		}
		Label(k.name + "_row")
		TESTQ(rows, rows)
		JZ(LabelRef(k.name + "_done"))
		n := Load(Param("rb"), GP64())
		qp := Load(Param("q"), GP64())
		dp := Load(Param("d"), GP64())
		acc := YMM()
		VXORPS(acc, acc, acc)
		Label(k.name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(k.name + "_end"))
		sc := scaleHalf(Mem{Base: w}, Mem{Base: dp})
		a, b := YMM(), YMM()
		if k.bytes == 34 {
			VPMOVSXBW(Mem{Base: w, Disp: 2}, a)
			VPMOVSXBW(Mem{Base: w, Disp: 18}, b)
		} else {
			VPMOVZXBW(Mem{Base: w, Disp: 2}, a)
			VPSRLW(U8(4), a, b)
			VPAND(m0F, a, a)
			VPSUBW(eight, a, a)
			VPSUBW(eight, b, b)
		}
		halvesLanes(a, b, Mem{Base: qp}, sc, acc)
		ADDQ(U8(k.bytes), w)
		ADDQ(U8(64), qp)
		ADDQ(U8(4), dp)
		SUBQ(U8(k.bytes), n)
		JMP(LabelRef(k.name + "_block"))
		Label(k.name + "_end")
		VMOVSS(hsum1(acc), Mem{Base: y})
		ADDQ(U8(4), y)
		DECQ(rows)
		JMP(LabelRef(k.name + "_row"))
		Label(k.name + "_done")
		VZEROUPPER()
		RET()
	}

	// Q4_K and Q5_K: super-blocks of 256 with 6-bit scales and mins.
	for _, k := range []struct {
		name, gen string
		bytes     int
	}{{"dotQ4KAVX2", "dotQ4KGeneric", 144}, {"dotQ5KAVX2", "dotQ5KGeneric", 176}} {
		five := k.bytes == 176
		TEXT(k.name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d, s *float32)")
		Pragma("noescape")
		Doc(blockRowsDoc(k.name, k.gen, "q[:rb/"+itoa(k.bytes)+"*256], d[:rb/"+itoa(k.bytes)+"*8], s[:rb/"+itoa(k.bytes)+"*8]")...)
		aLoc := AllocLocal(32)
		y := Load(Param("y"), GP64())
		w := Load(Param("w"), GP64())
		rows := Load(Param("rows"), GP64())
		m0F := YMM()
		VMOVDQU(w0F, m0F)
		Label(k.name + "_row")
		TESTQ(rows, rows)
		JZ(LabelRef(k.name + "_done"))
		n := Load(Param("rb"), GP64())
		qp := Load(Param("q"), GP64())
		dp := Load(Param("d"), GP64())
		sp := Load(Param("s"), GP64())
		acc, macc := YMM(), YMM()
		VXORPS(acc, acc, acc)
		VXORPS(macc, macc, macc)
		Label(k.name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(k.name + "_end"))
		// The 8 scales and 8 mins (ggml's get_scale_min_k4, 4 at a time).
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
		scx, mnx := XMM(), XMM()
		VMOVD(u0, scx)
		VPINSRD(U8(1), u2, scx, scx)
		VMOVD(u1, mnx)
		VPINSRD(U8(1), m3, mnx, mnx)
		sc, mn := YMM(), YMM()
		VPMOVZXBD(scx, sc)
		VPMOVZXBD(mnx, mn)
		VCVTDQ2PS(sc, sc)
		VCVTDQ2PS(mn, mn)
		// d and dmin.
		h := GP32()
		MOVL(Mem{Base: w}, h)
		dx := XMM()
		VMOVD(h, dx)
		VCVTPH2PS(dx, dx)
		dd, dmin := YMM(), YMM()
		VBROADCASTSS(dx, dd)
		VMOVSHDUP(dx, dx)
		VBROADCASTSS(dx, dmin)
		VMULPS(dd, sc, sc)            // d·sc_j
		VMULPS(Mem{Base: dp}, sc, sc) // ·d_b
		VMOVUPS(sc, aLoc)             // A_j
		VMULPS(dmin, mn, mn)          // dmin·m_j
		VMULPS(Mem{Base: dp}, mn, mn) // ·d_b
		VMULPS(Mem{Base: sp}, mn, mn) // ·Σq
		VADDPS(mn, macc, macc)
		off := 16
		var qh0, qh1, m10 VecVirtual
		if five {
			off = 48
			qh0, qh1, m10 = YMM(), YMM(), YMM()
			VPMOVZXBW(Mem{Base: w, Disp: 16}, qh0)
			VPMOVZXBW(Mem{Base: w, Disp: 32}, qh1)
			VMOVDQU(w10, m10)
		}
		for j := 0; j < 4; j++ {
			r0, r1 := YMM(), YMM()
			VPMOVZXBW(Mem{Base: w, Disp: off + 32*j}, r0)
			VPMOVZXBW(Mem{Base: w, Disp: off + 32*j + 16}, r1)
			for part := 0; part < 2; part++ {
				a, b := YMM(), YMM()
				if part == 0 {
					VPAND(m0F, r0, a)
					VPAND(m0F, r1, b)
				} else {
					VPSRLW(U8(4), r0, a)
					VPSRLW(U8(4), r1, b)
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
						VPAND(m10, t, t)
						VPOR(t, v, v)
					}
				}
				s := YMM()
				VBROADCASTSS(aLoc.Offset(4*(2*j+part)), s)
				halvesLanes(a, b, Mem{Base: qp, Disp: 64 * (2*j + part)}, s, acc)
			}
		}
		ADDQ(U32(k.bytes), w)
		ADDQ(U32(512), qp)
		ADDQ(U8(32), dp)
		ADDQ(U8(32), sp)
		SUBQ(U32(k.bytes), n)
		JMP(LabelRef(k.name + "_block"))
		Label(k.name + "_end")
		r := hsum1(acc)
		VSUBSS(hsum1(macc), r, r)
		VMOVSS(r, Mem{Base: y})
		ADDQ(U8(4), y)
		DECQ(rows)
		JMP(LabelRef(k.name + "_row"))
		Label(k.name + "_done")
		VZEROUPPER()
		RET()
	}

	// Q6_K: super-blocks of 256, 6-bit weights, int8 scales per 16.
	{
		name := "dotQ6KAVX2"
		TEXT(name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int16, d *float32)")
		Pragma("noescape")
		Doc(blockRowsDoc(name, "dotQ6KGeneric", "q[:rb/210*256], d[:rb/210*8]")...)
		dLoc := AllocLocal(32)
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
		acc := YMM()
		VXORPS(acc, acc, acc)
		Label(name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		{
			h := GP32()
			MOVWLZX(Mem{Base: w, Disp: 208}, h)
			dx := XMM()
			VMOVD(h, dx)
			VCVTPH2PS(dx, dx)
			dd := YMM()
			VBROADCASTSS(dx, dd)
			VMULPS(Mem{Base: dp}, dd, dd) // D_b = d·d_b
			VMOVUPS(dd, dLoc)
			s16 := YMM()
			VPMOVSXBW(Mem{Base: w, Disp: 192}, s16)
			VMOVDQU(s16, sLoc)
		}
		m0F, m03, m30 := YMM(), YMM(), YMM()
		VMOVDQU(b0F, m0F)
		VMOVDQU(b03, m03)
		VMOVDQU(b30, m30)
		for hh := 0; hh < 2; hh++ {
			ql0, ql1, qhv := YMM(), YMM(), YMM()
			VMOVDQU(Mem{Base: w, Disp: 64 * hh}, ql0)
			VMOVDQU(Mem{Base: w, Disp: 64*hh + 32}, ql1)
			VMOVDQU(Mem{Base: w, Disp: 128 + 32*hh}, qhv)
			for g := 0; g < 4; g++ {
				v, b := YMM(), YMM()
				src := ql0
				if g&1 == 1 {
					src = ql1
				}
				if g < 2 {
					VPAND(m0F, src, v)
				} else {
					VPSRLW(U8(4), src, v)
					VPAND(m0F, v, v)
				}
				switch g {
				case 0:
					VPAND(m03, qhv, b)
					VPSLLW(U8(4), b, b)
				case 1:
					VPSLLW(U8(2), qhv, b)
					VPAND(m30, b, b)
				case 2:
					VPAND(m30, qhv, b)
				case 3:
					VPSRLW(U8(2), qhv, b)
					VPAND(m30, b, b)
				}
				VPOR(b, v, v)
				VPSUBB(b20, v, v) // q6 − 32
				w0, w1, hi := YMM(), YMM(), XMM()
				VPMOVSXBW(v.AsX(), w0)
				VEXTRACTI128(U8(1), v, hi)
				VPMOVSXBW(hi, w1)
				j := 8*hh + 2*g
				s0, s1 := YMM(), YMM()
				VPBROADCASTW(sLoc.Offset(2*j), s0)
				VPBROADCASTW(sLoc.Offset(2*j+2), s1)
				VPMULLW(s0, w0, w0) // sc·(q6−32), at most 4096
				VPMULLW(s1, w1, w1)
				dd := YMM()
				VBROADCASTSS(dLoc.Offset(4*(4*hh+g)), dd)
				halvesLanes(w0, w1, Mem{Base: qp, Disp: 256*hh + 64*g}, dd, acc)
			}
		}
		ADDQ(U32(210), w)
		ADDQ(U32(512), qp)
		ADDQ(U8(32), dp)
		SUBQ(U32(210), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_end")
		VMOVSS(hsum1(acc), Mem{Base: y})
		ADDQ(U8(4), y)
		DECQ(rows)
		JMP(LabelRef(name + "_row"))
		Label(name + "_done")
		VZEROUPPER()
		RET()
	}
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
