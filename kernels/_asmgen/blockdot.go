package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The fused block kernels multiply rows of ggml's quantized blocks with
// activations rounded to 8-bit blocks of 32 (q, with one float32 scale d
// per block and, for Q4_K and Q5_K, the block's Σ q as a float32 s). They
// follow package kernels' plain-Go kernels (dotQ8_0Generic and its
// siblings in blockdot.go) operation for operation: the integer lane sums
// L_l = Σ_{i=4l}^{4l+3} w_i·q_i come from VPMADDUBSW (unsigned × signed
// bytes into int16 pairs, which cannot saturate for these weights) and
// VPMADDWD (pairs into int32 lanes), each block's lanes are converted to
// float32 (exact), multiplied by the block's scale and added to 8 lane
// accumulators (VMULPS then VADDPS: two roundings, as the Go code), and
// the lanes are reduced by hsum1's tree. So the assembly and the Go code
// give the same bits.

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

// signedLanes adds a block of 32 signed weights wv (int8, at most 128 in
// magnitude) times the signed activations at q to acc, scaled by sc:
// acc += float32(sc·float32(L)).
func signedLanes(wv VecVirtual, q Mem, ones Op, sc VecVirtual, acc VecVirtual) {
	aw, sx := YMM(), YMM()
	VPSIGNB(wv, wv, aw)    // |w|
	VMOVDQU(q, sx)         // q
	VPSIGNB(wv, sx, sx)    // q·sign(w)
	VPMADDUBSW(sx, aw, aw) // int16 pairs
	VPMADDWD(ones, aw, aw) // int32 lanes of 4
	VCVTDQ2PS(aw, aw)      // exact
	VMULPS(sc, aw, aw)     // rounded
	VADDPS(aw, acc, acc)   // rounded
}

// unsignedLanes is signedLanes for weights 0..63 in wv: no sign trick.
func unsignedLanes(wv VecVirtual, q Mem, ones Op, sc Op, acc VecVirtual) {
	p := YMM()
	VPMADDUBSW(q, wv, p)
	VPMADDWD(ones, p, p)
	VCVTDQ2PS(p, p)
	VMULPS(sc, p, p)
	VADDPS(p, acc, acc)
}

func genBlockDot() {
	b0F := vconst("bdMask0F", 0x0F0F0F0F)
	b08 := vconst("bdEight", 0x08080808)
	ones := vconst("bdOnes16", 0x00010001)
	b10 := vconst("bdMask10", 0x10101010)
	b03 := vconst("bdMask03", 0x03030303)
	b30 := vconst("bdMask30", 0x30303030)
	b20 := vconst("bdBias32", 0x20202020)

	// Q8_0 and Q4_0: blocks of 32.
	for _, k := range []struct {
		name, gen string
		bytes     int
	}{{"dotQ8_0AVX2", "dotQ8_0Generic", 34}, {"dotQ4_0AVX2", "dotQ4_0Generic", 18}} {
		TEXT(k.name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int8, d *float32)")
		Pragma("noescape")
		Doc(blockRowsDoc(k.name, k.gen, "q[:rb/"+itoa(k.bytes)+"*32], d[:rb/"+itoa(k.bytes)+"]")...)
		y := Load(Param("y"), GP64())
		w := Load(Param("w"), GP64())
		rows := Load(Param("rows"), GP64())
		var m0F, eight VecVirtual
		if k.bytes == 18 {
			m0F, eight = YMM(), YMM()
			VMOVDQU(b0F, m0F)
			VMOVDQU(b08, eight)
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
		wv := YMM()
		if k.bytes == 34 {
			VMOVDQU(Mem{Base: w, Disp: 2}, wv)
		} else {
			lo, hi := XMM(), XMM()
			VMOVDQU(Mem{Base: w, Disp: 2}, lo)
			VPSRLW(U8(4), lo, hi)
			VINSERTI128(U8(1), hi, lo.AsY(), wv)
			VPAND(m0F, wv, wv)
			VPSUBB(eight, wv, wv)
		}
		signedLanes(wv, Mem{Base: qp}, ones, sc, acc)
		ADDQ(U8(k.bytes), w)
		ADDQ(U8(32), qp)
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
		TEXT(k.name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int8, d, s *float32)")
		Pragma("noescape")
		Doc(blockRowsDoc(k.name, k.gen, "q[:rb/"+itoa(k.bytes)+"*256], d[:rb/"+itoa(k.bytes)+"*8], s[:rb/"+itoa(k.bytes)+"*8]")...)
		aLoc := AllocLocal(32)
		y := Load(Param("y"), GP64())
		w := Load(Param("w"), GP64())
		rows := Load(Param("rows"), GP64())
		m0F := YMM()
		VMOVDQU(b0F, m0F)
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
		var qh, m10 VecVirtual
		if five {
			off = 48
			qh, m10 = YMM(), YMM()
			VMOVDQU(Mem{Base: w, Disp: 16}, qh)
			VMOVDQU(b10, m10)
		}
		for j := 0; j < 4; j++ {
			raw, lo, hi := YMM(), YMM(), YMM()
			VMOVDQU(Mem{Base: w, Disp: off + 32*j}, raw)
			VPAND(m0F, raw, lo)
			VPSRLW(U8(4), raw, hi)
			VPAND(m0F, hi, hi)
			if five {
				for part, v := range []VecVirtual{lo, hi} {
					bit := 2*j + part // to bit 4 of each byte
					b := YMM()
					switch {
					case bit < 4:
						VPSLLW(U8(4-bit), qh, b)
					case bit > 4:
						VPSRLW(U8(bit-4), qh, b)
					default:
						VMOVDQA(qh, b)
					}
					VPAND(m10, b, b)
					VPOR(b, v, v)
				}
			}
			for part, v := range []VecVirtual{lo, hi} {
				a := YMM()
				VBROADCASTSS(aLoc.Offset(4*(2*j+part)), a)
				unsignedLanes(v, Mem{Base: qp, Disp: 64*j + 32*part}, ones, a, acc)
			}
		}
		ADDQ(U32(k.bytes), w)
		ADDQ(U32(256), qp)
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
		TEXT(name, NOSPLIT, "func(y *float32, w *byte, rows, rb int, q *int8, d *float32)")
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
				aw, sx := YMM(), YMM()
				VPSIGNB(v, v, aw)
				VMOVDQU(Mem{Base: qp, Disp: 128*hh + 32*g}, sx)
				VPSIGNB(v, sx, sx)
				VPMADDUBSW(sx, aw, aw)
				s0, s1 := YMM(), YMM()
				j := 8*hh + 2*g
				VPBROADCASTW(sLoc.Offset(2*j), s0)
				VPBROADCASTW(sLoc.Offset(2*j+2), s1)
				VPBLENDD(U8(0xF0), s1, s0, s0)
				VPMADDWD(s0, aw, aw) // Σ sc·(q6−32)·q per lane
				VCVTDQ2PS(aw, aw)
				dd := YMM()
				VBROADCASTSS(dLoc.Offset(4*(4*hh+g)), dd)
				VMULPS(dd, aw, aw)
				VADDPS(aw, acc, acc)
			}
		}
		ADDQ(U32(210), w)
		ADDQ(U32(256), qp)
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
