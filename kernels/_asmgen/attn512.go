package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// valuePrefetchRows is how many rows of the values ahead the weighted-sum
// kernels of attention prefetch: a decode step's values are read once,
// from memory, one strip of a long cache row after another.
const valuePrefetchRows = 8

// genWeightedSum4x512 writes weightedSum4x64{F32,BF16}AVX512, the weighted
// sum of weightedSum3 for 4 rows of weights and 64 columns on 512-bit
// registers: 16 accumulators of 16 columns hold the 4 × 64 outputs while
// the kernel runs over the keys, so each value vector is widened once for
// 4 fused multiply-adds. An output element's operations are those of
// weightedSum (a chain over the keys in order), whichever lanes hold it.
func genWeightedSum4x512(d dtype) {
	name := "weightedSum4x64" + d.title + "AVX512"
	TEXT(name, NOSPLIT, "func(o *float32, ldo int, v *"+d.gotyp+", p *float32, ldp, keys, ld int)")
	Pragma("noescape")
	Doc(
		name+" adds to each of 4 rows of o (row stride ldo, 64 columns)",
		"the rows of v weighted by its row of p (row stride ldp), key by key in",
		"order for each element (for each row of o, the same fused multiply-adds",
		"as one call of weightedSum"+d.title+"AVX2 over 64 columns); row j of v starts ld",
		"elements after row j-1. It needs AVX-512 F, BW, VL and DQ.",
	)
	o := Load(Param("o"), GP64())
	ldo := Load(Param("ldo"), GP64())
	SHLQ(U8(2), ldo)
	ldo3 := GP64()
	LEAQ(Mem{Base: ldo, Index: ldo, Scale: 2}, ldo3)
	vp := Load(Param("v"), GP64())
	pp := Load(Param("p"), GP64())
	ldp := Load(Param("ldp"), GP64())
	SHLQ(U8(2), ldp)
	ldp3 := GP64()
	LEAQ(Mem{Base: ldp, Index: ldp, Scale: 2}, ldp3)
	j := Load(Param("keys"), GP64())
	ld := Load(Param("ld"), GP64())
	SHLQ(U8(d.shift()), ld)
	pf := GP64()
	MOVQ(ld, pf)
	SHLQ(U8(3), pf) // valuePrefetchRows rows ahead
	if valuePrefetchRows != 8 {
		panic("valuePrefetchRows is a shift of 3")
	}
	rowO := func(r int) Mem { return row4(o, ldo, ldo3, r) }
	rowP := func(r int) Mem { return row4(pp, ldp, ldp3, r) }
	acc := make([][]VecVirtual, 4)
	for r := range acc {
		acc[r] = make([]VecVirtual, 4)
		for i := range acc[r] {
			acc[r][i] = ZMM()
			VMOVUPS(rowO(r).Offset(64*i), acc[r][i])
		}
	}
	Label(name + "_keys")
	TESTQ(j, j)
	JZ(LabelRef(name + "_store"))
	for l := 0; l < d.size; l++ { // the row's 64 columns: d.size lines
		PREFETCHT0(Mem{Base: vp, Index: pf, Scale: 1, Disp: 64 * l})
	}
	b := make([]VecVirtual, 4)
	for r := range b {
		b[r] = ZMM()
		VBROADCASTSS(rowP(r), b[r])
	}
	for i := 0; i < 4; i++ {
		w := ZMM()
		if d.name == "f32" {
			VMOVUPS(Mem{Base: vp, Disp: 64 * i}, w)
		} else {
			VPMOVZXWD(Mem{Base: vp, Disp: 32 * i}, w)
			VPSLLD(U8(16), w, w)
		}
		for r := 0; r < 4; r++ {
			VFMADD231PS(w, b[r], acc[r][i])
		}
	}
	ADDQ(ld, vp)
	ADDQ(U8(4), pp)
	DECQ(j)
	JMP(LabelRef(name + "_keys"))
	Label(name + "_store")
	for r := range acc {
		for i := range acc[r] {
			VMOVUPS(acc[r][i], rowO(r).Offset(64*i))
		}
	}
	VZEROUPPER()
	RET()
}

// row4 is row r (0-3) of a matrix at base with row stride ld bytes, ld3
// holding 3·ld.
func row4(base, ld, ld3 Register, r int) Mem {
	switch r {
	case 0:
		return Mem{Base: base}
	case 1:
		return Mem{Base: base, Index: ld, Scale: 1}
	case 2:
		return Mem{Base: base, Index: ld, Scale: 2}
	}
	return Mem{Base: base, Index: ld3, Scale: 1}
}
