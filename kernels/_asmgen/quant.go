package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

// genDequantQ4K writes the kernel that widens the 4-bit weights of Q4_K
// super-blocks to float32 with scales the Go wrapper has computed.
func genDequantQ4K() {
	TEXT("dequantQ4KAVX2", NOSPLIT, "func(y *float32, q *byte, dm *float32, n int)")
	Pragma("noescape")
	Doc(
		"dequantQ4KAVX2 widens n Q4_K super-blocks: the 128 bytes of 4-bit",
		"weights of block i start at q[144*i], its 8 sub-block scales and mins",
		"are dm[16*i : 16*i+8] and dm[16*i+8 : 16*i+16], and",
		"",
		"\tfor j := 0; j < 4; j++ {",
		"\t\tfor l := 0; l < 32; l++ {",
		"\t\t\ty[64*j+l] = float32(dm[2*j]*float32(q[32*j+l]&15)) - dm[8+2*j]",
		"\t\t\ty[64*j+32+l] = float32(dm[2*j+1]*float32(q[32*j+l]>>4)) - dm[9+2*j]",
		"\t\t}",
		"\t}",
		"",
		"with y, q and dm advancing by 256, 144 and 16 per block (the product",
		"and the difference each rounded, as ggml's dequantize_row_q4_K).",
	)
	mask := vconst("q4Mask", 0x0F)
	y := Mem{Base: Load(Param("y"), GP64())}
	q := Mem{Base: Load(Param("q"), GP64())}
	dm := Mem{Base: Load(Param("dm"), GP64())}
	n := Load(Param("n"), GP64())
	m := YMM()
	VMOVDQU(mask, m)
	Label("block")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	for j := 0; j < 4; j++ {
		da, ma, db, mb := YMM(), YMM(), YMM(), YMM()
		VBROADCASTSS(dm.Offset(4*(2*j)), da)
		VBROADCASTSS(dm.Offset(4*(8+2*j)), ma)
		VBROADCASTSS(dm.Offset(4*(2*j+1)), db)
		VBROADCASTSS(dm.Offset(4*(9+2*j)), mb)
		for k := 0; k < 4; k++ {
			v, lo, hi := YMM(), YMM(), YMM()
			VPMOVZXBD(q.Offset(32*j+8*k), v)
			VPAND(m, v, lo)
			VPSRLD(U8(4), v, hi)
			VCVTDQ2PS(lo, lo)
			VCVTDQ2PS(hi, hi)
			VMULPS(da, lo, lo)
			VMULPS(db, hi, hi)
			VSUBPS(ma, lo, lo)
			VSUBPS(mb, hi, hi)
			VMOVUPS(lo, y.Offset(4*(64*j+8*k)))
			VMOVUPS(hi, y.Offset(4*(64*j+32+8*k)))
		}
	}
	ADDQ(U32(4*256), y.Base)
	ADDQ(U32(144), q.Base)
	ADDQ(U8(64), dm.Base)
	DECQ(n)
	JMP(LabelRef("block"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genDequantQ8_0 writes the kernel that widens Q8_0 blocks with scales the
// Go wrapper has widened.
func genDequantQ8_0() {
	TEXT("dequantQ8_0AVX2", NOSPLIT, "func(y *float32, q *byte, d *float32, n int)")
	Pragma("noescape")
	Doc(
		"dequantQ8_0AVX2 widens n Q8_0 blocks: the 32 int8 weights of block i",
		"start at q[34*i] and its scale is d[i]:",
		"",
		"\tfor l := 0; l < 32; l++ {",
		"\t\ty[32*i+l] = float32(int8(q[34*i+l])) * d[i]",
		"\t}",
	)
	y := Mem{Base: Load(Param("y"), GP64())}
	q := Mem{Base: Load(Param("q"), GP64())}
	d := Mem{Base: Load(Param("d"), GP64())}
	n := Load(Param("n"), GP64())
	Label("block")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	s := YMM()
	VBROADCASTSS(d, s)
	for k := 0; k < 4; k++ {
		v := YMM()
		VPMOVSXBD(q.Offset(8*k), v)
		VCVTDQ2PS(v, v)
		VMULPS(s, v, v)
		VMOVUPS(v, y.Offset(32*k))
	}
	ADDQ(U8(128), y.Base)
	ADDQ(U8(34), q.Base)
	ADDQ(U8(4), d.Base)
	DECQ(n)
	JMP(LabelRef("block"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genDequantQ6K writes the kernel that widens Q6_K super-blocks with
// scales the Go wrapper has computed.
func genDequantQ6K() {
	TEXT("dequantQ6KAVX2", NOSPLIT, "func(y *float32, b *byte, ds *float32, n int)")
	Pragma("noescape")
	Doc(
		"dequantQ6KAVX2 widens n Q6_K super-blocks (210 bytes each, at b: 128",
		"bytes of low 4 bits, 64 of high 2 bits) with the 16 scales",
		"ds[16*i : 16*i+16] = d·sc of block i: for each half h of 128 weights",
		"(ql = b[64h:], qh = b[128+32h:], s = ds[8h:], y advanced by 128h),",
		"",
		"\tfor l := 0; l < 32; l++ {",
		"\t\tis := l / 16",
		"\t\ty[l] = s[is] * float32(int8(ql[l]&15|(qh[l]&3)<<4)-32)",
		"\t\ty[l+32] = s[is+2] * float32(int8(ql[l+32]&15|(qh[l]>>2&3)<<4)-32)",
		"\t\ty[l+64] = s[is+4] * float32(int8(ql[l]>>4|(qh[l]>>4&3)<<4)-32)",
		"\t\ty[l+96] = s[is+6] * float32(int8(ql[l+32]>>4|(qh[l]>>6&3)<<4)-32)",
		"\t}",
	)
	y := Mem{Base: Load(Param("y"), GP64())}
	b := Mem{Base: Load(Param("b"), GP64())}
	ds := Mem{Base: Load(Param("ds"), GP64())}
	n := Load(Param("n"), GP64())
	m15, m3, c32 := YMM(), YMM(), YMM()
	VMOVDQU(vconst("q6Mask15", 15), m15)
	VMOVDQU(vconst("q6Mask3", 3), m3)
	VMOVDQU(vconst("q6Bias32", 32), c32)
	Label("block")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	for h := 0; h < 2; h++ {
		for k := 0; k < 4; k++ {
			is := k / 2
			l := 8 * k
			qa, qb, qh := YMM(), YMM(), YMM()
			VPMOVZXBD(b.Offset(64*h+l), qa)     // ql[l]
			VPMOVZXBD(b.Offset(64*h+l+32), qb)  // ql[l+32]
			VPMOVZXBD(b.Offset(128+32*h+l), qh) // qh[l]
			for part := 0; part < 4; part++ {
				lowSrc := qa
				if part == 1 || part == 3 {
					lowSrc = qb
				}
				lo, hi, s := YMM(), YMM(), YMM()
				if part < 2 {
					VPAND(m15, lowSrc, lo)
				} else {
					VPSRLD(U8(4), lowSrc, lo)
				}
				if part == 0 {
					VPAND(m3, qh, hi)
				} else {
					VPSRLD(U8(2*part), qh, hi)
					VPAND(m3, hi, hi)
				}
				VPSLLD(U8(4), hi, hi)
				VPOR(hi, lo, lo)
				VPSUBD(c32, lo, lo)
				VCVTDQ2PS(lo, lo)
				VBROADCASTSS(ds.Offset(4*(8*h+is+2*part)), s)
				VMULPS(s, lo, lo)
				VMOVUPS(lo, y.Offset(4*(128*h+32*part+l)))
			}
		}
	}
	ADDQ(U32(4*256), y.Base)
	ADDQ(U32(210), b.Base)
	ADDQ(U8(64), ds.Base)
	DECQ(n)
	JMP(LabelRef("block"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genDequantQ4_0 writes the kernel that widens Q4_0 blocks with scales the
// Go wrapper has widened.
func genDequantQ4_0() {
	TEXT("dequantQ4_0AVX2", NOSPLIT, "func(y *float32, q *byte, d *float32, n int)")
	Pragma("noescape")
	Doc(
		"dequantQ4_0AVX2 widens n Q4_0 blocks: the 16 bytes of 4-bit weights of",
		"block i start at q[18*i] and its scale is d[i]:",
		"",
		"\tfor j := 0; j < 16; j++ {",
		"\t\ty[32*i+j] = float32(int(q[18*i+j]&15)-8) * d[i]",
		"\t\ty[32*i+j+16] = float32(int(q[18*i+j]>>4)-8) * d[i]",
		"\t}",
	)
	y := Mem{Base: Load(Param("y"), GP64())}
	q := Mem{Base: Load(Param("q"), GP64())}
	d := Mem{Base: Load(Param("d"), GP64())}
	n := Load(Param("n"), GP64())
	m15, c8 := YMM(), YMM()
	VMOVDQU(vconst("q4Mask15", 15), m15)
	VMOVDQU(vconst("q4Bias8", 8), c8)
	Label("block")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	s := YMM()
	VBROADCASTSS(d, s)
	for k := 0; k < 2; k++ {
		v, lo, hi := YMM(), YMM(), YMM()
		VPMOVZXBD(q.Offset(8*k), v)
		VPAND(m15, v, lo)
		VPSRLD(U8(4), v, hi)
		VPSUBD(c8, lo, lo)
		VPSUBD(c8, hi, hi)
		VCVTDQ2PS(lo, lo)
		VCVTDQ2PS(hi, hi)
		VMULPS(s, lo, lo)
		VMULPS(s, hi, hi)
		VMOVUPS(lo, y.Offset(4*8*k))
		VMOVUPS(hi, y.Offset(4*(16+8*k)))
	}
	ADDQ(U8(128), y.Base)
	ADDQ(U8(18), q.Base)
	ADDQ(U8(4), d.Base)
	DECQ(n)
	JMP(LabelRef("block"))
	Label("done")
	VZEROUPPER()
	RET()
}
