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
// at once (package kernels' groupTokens8; the AVX2 ones take up to 4).
const groupTokens8 = 8

var z8B80, z8B08, z8B10, z8B01, z8BitMask, z8ShufQh Mem
var z8PermK, z8PermQ6 [8]Mem

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
	z8B01 = vconst64("b8zByte01", 0x01010101)
	z8BitMask = vconst64Words("b8zBitMask", 0x08040201, 0x80402010)
	z8ShufQh = vconst64Words("b8zShufQh", 0, 0, 0x01010101, 0x01010101, 0x02020202, 0x02020202, 0x03030303, 0x03030303)
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
	for nt := 1; nt <= groupTokens8; nt++ {
		for _, f := range formats8 {
			switch f.bytes {
			case 144, 176:
				genDot8K45x512(f, nt)
			case 210:
				genDot8Q6Kx512(f, nt)
			default:
				genDot8Blocks32x512(f, nt)
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

// Q8_0, Q4_0, Q5_0.
func genDot8Blocks32x512(f fmt8, nt int) {
	name := kernelName8(f.base, nt, true)
	TEXT(name, NOSPLIT, sig8)
	Pragma("noescape")
	doc8x512(name, f, nt)
	acc := make([]VecVirtual, nt)
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
		for t := range acc {
			acc[t] = ZMM()
		}
		zeroZ(acc...)
		Label(name + "_block")
		CMPQ(n, Imm(0))
		JLE(LabelRef(name + "_end"))
		prefetchAhead(f.bytes, w, w1)
		h := halfPair(Mem{Base: w}, Mem{Base: w1})
		var wv VecVirtual
		switch f.bytes {
		case 34:
			wv = rowsZ(Mem{Base: w, Disp: 2}, Mem{Base: w1, Disp: 2})
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
				VPSUBB(z8B08, wv, wv)
			} else {
				h0, h1, hz := YMM(), YMM(), ZMM()
				VPBROADCASTD(Mem{Base: w, Disp: 2}, h0)
				VPBROADCASTD(Mem{Base: w1, Disp: 2}, h1)
				VINSERTI64X4(U8(1), h1, h0.AsZ(), hz)
				VPSHUFB(z8ShufQh, hz, hz)
				VPANDD(z8BitMask, hz, hz)
				VPMINUB(z8B01, hz, hz)
				VPSLLW(U8(4), hz, hz)
				VPORD(hz, wv, wv)
				VPSUBB(z8B10, wv, wv)
			}
		}
		VPXORD(z8B80, wv, wv) // w+128, unsigned
		for t := 0; t < nt; t++ {
			sc := ZMM()
			VBROADCASTSS(Mem{Base: dp, Disp: 4 * t}, sc)
			VMULPS(h, sc, sc) // float32(half·d_b)
			L, qz := ZMM(), ZMM()
			VBROADCASTI64X4(Mem{Base: ncp, Disp: 32 * t}, L)
			VBROADCASTI64X4(Mem{Base: qp, Disp: 32 * t}, qz)
			VPDPBUSD(qz, wv, L)
			fmaScaled(L, sc, acc[t])
		}
		ADDQ(U8(f.bytes), w)
		ADDQ(U8(f.bytes), w1)
		ADDQ(U32(32*nt), qp)
		ADDQ(U8(4*nt), dp)
		ADDQ(U32(32*nt), ncp)
		SUBQ(U8(f.bytes), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_end")
	}, func(y Register) { storePair(y, acc, nil) })
}

// Q4_K and Q5_K, as genDot8K45.
func genDot8K45x512(f fmt8, nt int) {
	five := f.bytes == 176
	name := kernelName8(f.base, nt, true)
	TEXT(name, splitFor(2*64*nt), sig8)
	Pragma("noescape")
	doc8x512(name, f, nt)
	dLoc := AllocLocal(64 * nt)
	mLoc := AllocLocal(64 * nt)
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
		prefetchAhead(f.bytes, w, w1)
		scz, mnz, ddz := ZMM(), ZMM(), ZMM()
		{
			scx0, mn0, dd0 := k45ScalesInt(w)
			scx1, mn1, dd1 := k45ScalesInt(w1)
			s0, s1 := XMM(), XMM()
			VPMOVZXBW(scx0, s0)
			VPMOVZXBW(scx1, s1)
			VINSERTI64X4(U8(1), s1.AsY(), s0.AsZ(), scz)
			VINSERTF64X4(U8(1), mn1, mn0.AsZ(), mnz)
			VINSERTF64X4(U8(1), dd1, dd0.AsZ(), ddz)
		}
		for t := 0; t < nt; t++ {
			ds, m, s8 := ZMM(), ZMM(), ZMM()
			VBROADCASTSS(Mem{Base: dp, Disp: 4 * t}, ds)
			VMULPS(ds, mnz, m) // dmin·m_j·d_sb
			VBROADCASTF32X8(Mem{Base: sp, Disp: 32 * t}, s8)
			VMULPS(s8, m, m) // ·Σq
			VADDPS(mLoc.Offset(64*t), m, m)
			VMOVUPS(m, mLoc.Offset(64*t))
			VMULPS(ds, ddz, ds) // D = d·d_sb
			VMOVUPS(ds, dLoc.Offset(64*t))
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
			addScaled(I[t], dLoc.Offset(64*t), acc[t])
		}
		ADDQ(U32(f.bytes), w)
		ADDQ(U32(f.bytes), w1)
		ADDQ(U32(256*nt), qp)
		ADDQ(U8(4*nt), dp)
		ADDQ(U32(32*nt), sp)
		SUBQ(U32(f.bytes), n)
		JMP(LabelRef(name + "_block"))
		Label(name + "_end")
	}, func(y Register) { storePair(y, acc, &mLoc) })
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
		prefetchAhead(210, w, w1)
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
