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
