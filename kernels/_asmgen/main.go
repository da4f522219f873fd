// Command _asmgen writes the AVX2/FMA kernels of package kernels
// (kernels_amd64.s) and their Go declarations (kernels_amd64.go).
//
// Run it through go generate in the kernels directory:
//
//	go generate ./kernels
//
// Every kernel processes whole vectors of 8 float32 only; the Go wrappers in
// package kernels finish the tails. Each declaration's doc comment gives the
// Go loop that the kernel implements.
package main

import (
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("amd64,!purego")
	makeConsts()

	genDot()
	genAxpy()
	genWeightedSum()
	genScanBack16()
	genTranspose()
	genSum()
	genSumSq()
	genScaleMul()
	genScale()
	genMax()
	genMulAdd()
	genExp()
	genExpSubSum()
	genSiLU()
	genSoftplus()
	genScanStep()
	for _, d := range floatTypes {
		genMatVec(d)
		genMatVecStreams(d)
		genMatVecN(d, 2)
		genMatVecN(d, 3)
		genPack(d)
	}
	genMatVecStreams(f16Type)
	genPack(f16Type)
	for nt := 1; nt <= 3; nt++ {
		genGemm(nt)
	}
	for nt := 1; nt <= gemmTokens512; nt++ {
		genGemm512(nt)
	}
	for _, d := range floatTypes {
		genMatVecN512(d, 2)
		genMatVecN512(d, 3)
	}
	for _, d := range floatTypes {
		for nt := 2; nt <= 4; nt++ {
			genKeyScores512(d, nt)
		}
		genWeightedSum4x512(d)
	}
	for nt := 1; nt <= 3; nt++ {
		genDotI8(nt)
	}
	genDotI8Streams()
	genDotI8VNNI()
	genAbsMax()
	genQuantI16()
	genDequantQ4K()
	genDequantQ8_0()
	genDequantQ4_0()
	genDequantQ6K()
	genBlockDot()
	genBlockDot512()
	genBlockDot8()
	genQ4Lanes()

	Generate()
}

// dtype describes how a float weight type is loaded and widened to 8
// float32. Int8 weights take the integer kernels (genDotI8) instead.
type dtype struct {
	name  string // f32, bf16
	title string // F32, BF16
	gotyp string // Go element type
	size  int    // bytes per element
}

var floatTypes = []dtype{
	{"f32", "F32", "float32", 4},
	{"bf16", "BF16", "uint16", 2},
}

// f16Type is IEEE half precision (GGUF's F16), widened exactly by
// VCVTPH2PS; only the streams kernel uses it here (the other float16
// kernels are in blockdot.go).
var f16Type = dtype{"f16", "F16", "uint16", 2}

// load8 loads 8 consecutive weights at m into dst as float32 (exactly:
// bfloat16 is the top half of a float32). A bfloat16 load is one load
// that copies the 16 bytes to both halves of dst and one byte shuffle
// (bf16Shuf) that puts weight j in the top half of lane j and zeros below:
// one vector-unit operation, where a zero extension and a shift take two.
func (d dtype) load8(m Mem, dst VecVirtual) {
	switch d.name {
	case "f32":
		VMOVUPS(m, dst)
	case "bf16":
		VBROADCASTI128(m, dst)
		VPSHUFB(bf16ShufOp(), dst, dst)
	case "f16":
		VCVTPH2PS(m, dst)
	}
}

// widen is the Go expression that converts one weight v to float32.
func (d dtype) widen(v string) string {
	if d.name == "bf16" {
		return "math.Float32frombits(uint32(" + v + ")<<16)"
	}
	if d.name == "f16" {
		return "float16to32(" + v + ")"
	}
	return v
}

// shift is log2 of the element size, to turn an element stride into bytes.
func (d dtype) shift() uint8 { return map[int]uint8{1: 0, 2: 1, 4: 2}[d.size] }

func zero(vs ...VecVirtual) {
	for _, v := range vs {
		VXORPS(v, v, v)
	}
}

// hsum returns the sum of the 8 lanes of v in the low lane of an XMM register.
func hsum(v VecVirtual) VecVirtual {
	hi := XMM()
	VEXTRACTF128(U8(1), v, hi)
	lo := XMM()
	VADDPS(hi, v.AsX(), lo)
	VHADDPS(lo, lo, lo)
	VHADDPS(lo, lo, lo)
	return lo
}

func genDot() {
	TEXT("dotAVX2", NOSPLIT, "func(a, b *float32, n int) float32")
	Pragma("noescape")
	Doc(
		"dotAVX2 returns the dot product of a[:n] and b[:n]; n is a multiple of 8.",
		"It sums in 4×8 interleaved partial sums:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\ts += a[i] * b[i]",
		"\t}",
	)
	a := Mem{Base: Load(Param("a"), GP64())}
	b := Mem{Base: Load(Param("b"), GP64())}
	n := Load(Param("n"), GP64())
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	zero(acc...)
	Label("loop32")
	CMPQ(n, U8(32))
	JL(LabelRef("loop8"))
	for i := range acc {
		t := YMM()
		VMOVUPS(a.Offset(32*i), t)
		VFMADD231PS(b.Offset(32*i), t, acc[i])
	}
	ADDQ(U8(128), a.Base)
	ADDQ(U8(128), b.Base)
	SUBQ(U8(32), n)
	JMP(LabelRef("loop32"))
	Label("loop8")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	t := YMM()
	VMOVUPS(a, t)
	VFMADD231PS(b, t, acc[0])
	ADDQ(U8(32), a.Base)
	ADDQ(U8(32), b.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop8"))
	Label("done")
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	Store(hsum(acc[0]), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func genAxpy() {
	TEXT("axpyAVX2", NOSPLIT, "func(alpha float32, x, y *float32, n int)")
	Pragma("noescape")
	Doc(
		"axpyAVX2 adds alpha·x to y over n elements; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\ty[i] += alpha * x[i]",
		"\t}",
	)
	al := YMM()
	VBROADCASTSS(Load(Param("alpha"), XMM()), al)
	x := Mem{Base: Load(Param("x"), GP64())}
	y := Mem{Base: Load(Param("y"), GP64())}
	n := Load(Param("n"), GP64())
	Label("loop32")
	CMPQ(n, U8(32))
	JL(LabelRef("loop8"))
	for i := 0; i < 4; i++ {
		t := YMM()
		VMOVUPS(y.Offset(32*i), t)
		VFMADD231PS(x.Offset(32*i), al, t)
		VMOVUPS(t, y.Offset(32*i))
	}
	ADDQ(U8(128), x.Base)
	ADDQ(U8(128), y.Base)
	SUBQ(U8(32), n)
	JMP(LabelRef("loop32"))
	Label("loop8")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	t := YMM()
	VMOVUPS(y, t)
	VFMADD231PS(x, al, t)
	VMOVUPS(t, y)
	ADDQ(U8(32), x.Base)
	ADDQ(U8(32), y.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop8"))
	Label("done")
	VZEROUPPER()
	RET()
}

func genWeightedSum() {
	for _, d := range floatTypes {
		genWeightedSumType(d)
	}
	for _, d := range floatTypes {
		genWeightedSum3Type(d)
	}
}

// genWeightedSum3Type writes the weighted sum of 3 rows of weights over the
// same values (3 queries or heads of a tile): each value vector is loaded
// once for 3 fused multiply-adds, whose operations per output element are
// those of weightedSum.
func genWeightedSum3Type(d dtype) {
	name := "weightedSum3" + d.title + "AVX2"
	TEXT(name, NOSPLIT, "func(o *float32, ldo int, v *"+d.gotyp+", p *float32, ldp, keys, n, ld int)")
	Pragma("noescape")
	Doc(
		name+" adds to each of 3 rows of o (row stride ldo) the rows of",
		"v weighted by its row of p (row stride ldp), key by key in order for each",
		"element (for each row of o, the same fused multiply-adds as one call of",
		"weightedSum"+d.title+"AVX2); row j of v starts ld elements after row j-1; n is a",
		"multiple of 8:",
		"",
		"\tfor r := 0; r < 3; r++ {",
		"\t\tfor j := 0; j < keys; j++ {",
		"\t\t\tfor i := 0; i < n; i++ {",
		"\t\t\t\to[r*ldo+i] += p[r*ldp+j] * "+d.widen("v[j*ld+i]"),
		"\t\t\t}",
		"\t\t}",
		"\t}",
		"",
		"It keeps 3 rows × 32 columns of o in registers while it runs over the keys,",
		"prefetching the columns' lines valuePrefetchRows rows ahead.",
	)
	o := Load(Param("o"), GP64())
	ldo := Load(Param("ldo"), GP64())
	SHLQ(U8(2), ldo)
	v := Load(Param("v"), GP64())
	p := Load(Param("p"), GP64())
	ldp := Load(Param("ldp"), GP64())
	SHLQ(U8(2), ldp)
	keys := Load(Param("keys"), GP64())
	n := Load(Param("n"), GP64())
	ld := Load(Param("ld"), GP64())
	SHLQ(U8(d.shift()), ld)
	pf := GP64()
	MOVQ(ld, pf)
	SHLQ(U8(3), pf) // valuePrefetchRows rows ahead
	acc := make([][]VecVirtual, 3)
	for r := range acc {
		acc[r] = make([]VecVirtual, 4)
		for i := range acc[r] {
			acc[r][i] = YMM()
		}
	}
	b := []VecVirtual{YMM(), YMM(), YMM()}
	tmp := YMM()
	vp, pp, j, o2 := GP64(), GP64(), GP64(), GP64()
	// row r of o (or p) is at base + r·ld: rows 0 and 1 by offset from
	// one register, row 2 from base + 2·ld.
	pass := func(label string, w int) {
		MOVQ(o, o2)
		ADDQ(ldo, o2)
		for r := 0; r < 3; r++ {
			for i := 0; i < w; i++ {
				VMOVUPS(rowMem(o, o2, ldo, r).Offset(32*i), acc[r][i])
			}
		}
		MOVQ(v, vp)
		MOVQ(p, pp)
		MOVQ(keys, j)
		Label(label + "keys")
		TESTQ(j, j)
		JZ(LabelRef(label + "store"))
		for l := 0; l < 8*d.size*w/64; l++ {
			PREFETCHT0(Mem{Base: vp, Index: pf, Scale: 1, Disp: 64 * l})
		}
		VBROADCASTSS(Mem{Base: pp}, b[0])
		VBROADCASTSS(Mem{Base: pp, Index: ldp, Scale: 1}, b[1])
		VBROADCASTSS(Mem{Base: pp, Index: ldp, Scale: 2}, b[2])
		for i := 0; i < w; i++ {
			d.load8(Mem{Base: vp}.Offset(8*d.size*i), tmp)
			for r := 0; r < 3; r++ {
				VFMADD231PS(tmp, b[r], acc[r][i])
			}
		}
		ADDQ(ld, vp)
		ADDQ(U8(4), pp)
		DECQ(j)
		JMP(LabelRef(label + "keys"))
		Label(label + "store")
		for r := 0; r < 3; r++ {
			for i := 0; i < w; i++ {
				VMOVUPS(acc[r][i], rowMem(o, o2, ldo, r).Offset(32*i))
			}
		}
		ADDQ(U32(32*w), o)
		ADDQ(U32(8*d.size*w), v)
		SUBQ(U32(8*w), n)
	}
	Label(d.name + "w3wide")
	CMPQ(n, U8(32))
	JL(LabelRef(d.name + "w3narrow"))
	pass(d.name+"w3wide", 4)
	JMP(LabelRef(d.name + "w3wide"))
	Label(d.name + "w3narrow")
	CMPQ(n, U8(8))
	JL(LabelRef(d.name + "w3done"))
	pass(d.name+"w3narrow", 1)
	JMP(LabelRef(d.name + "w3narrow"))
	Label(d.name + "w3done")
	VZEROUPPER()
	RET()
}

// rowMem is row r (0, 1 or 2) of a matrix at base with row stride ld
// bytes, where base1 = base + ld.
func rowMem(base, base1, ld Register, r int) Mem {
	switch r {
	case 0:
		return Mem{Base: base}
	case 1:
		return Mem{Base: base1}
	}
	return Mem{Base: base1, Index: ld, Scale: 1}
}

func genWeightedSumType(d dtype) {
	name := "weightedSum" + d.title + "AVX2"
	TEXT(name, NOSPLIT, "func(o *float32, v *"+d.gotyp+", p *float32, keys, n, ld int)")
	Pragma("noescape")
	Doc(
		name+" adds to o[:n] the rows of v weighted by p, key by key in",
		"order for each element (for float32 rows, the same fused multiply-adds as",
		"keys calls of axpyAVX2); row j starts ld elements after row j-1; n is a",
		"multiple of 8:",
		"",
		"\tfor j := 0; j < keys; j++ {",
		"\t\tfor i := 0; i < n; i++ {",
		"\t\t\to[i] += p[j] * "+d.widen("v[j*ld+i]"),
		"\t\t}",
		"\t}",
		"",
		"It keeps 64 columns of o in registers while it runs over the keys.",
	)
	o := Load(Param("o"), GP64())
	v := Load(Param("v"), GP64())
	p := Load(Param("p"), GP64())
	keys := Load(Param("keys"), GP64())
	n := Load(Param("n"), GP64())
	ld := Load(Param("ld"), GP64())
	SHLQ(U8(d.shift()), ld)
	defer keepBF16Shuf(d)()
	acc := make([]VecVirtual, 8)
	for i := range acc {
		acc[i] = YMM()
	}
	b := YMM()
	tmp := YMM()
	vp, pp, j := GP64(), GP64(), GP64()
	// pass runs over the keys for w accumulators of 8 columns.
	pass := func(label string, w int) {
		for i := 0; i < w; i++ {
			VMOVUPS(Mem{Base: o}.Offset(32*i), acc[i])
		}
		MOVQ(v, vp)
		MOVQ(p, pp)
		MOVQ(keys, j)
		Label(label + "keys")
		TESTQ(j, j)
		JZ(LabelRef(label + "store"))
		VBROADCASTSS(Mem{Base: pp}, b)
		for i := 0; i < w; i++ {
			m := Mem{Base: vp}.Offset(8 * d.size * i)
			if d.name == "f32" {
				VFMADD231PS(m, b, acc[i])
			} else {
				d.load8(m, tmp)
				VFMADD231PS(tmp, b, acc[i])
			}
		}
		ADDQ(ld, vp)
		ADDQ(U8(4), pp)
		DECQ(j)
		JMP(LabelRef(label + "keys"))
		Label(label + "store")
		for i := 0; i < w; i++ {
			VMOVUPS(acc[i], Mem{Base: o}.Offset(32*i))
		}
		ADDQ(U32(32*w), o)
		ADDQ(U32(8*d.size*w), v)
		SUBQ(U32(8*w), n)
	}
	Label(d.name + "wide")
	CMPQ(n, U8(64))
	JL(LabelRef(d.name + "narrow"))
	pass(d.name+"wide", 8)
	JMP(LabelRef(d.name + "wide"))
	Label(d.name + "narrow")
	CMPQ(n, U8(8))
	JL(LabelRef(d.name + "done"))
	pass(d.name+"narrow", 1)
	JMP(LabelRef(d.name + "narrow"))
	Label(d.name + "done")
	VZEROUPPER()
	RET()
}

func genSum() {
	TEXT("sumAVX2", NOSPLIT, "func(x *float32, n int) float32")
	Pragma("noescape")
	Doc(
		"sumAVX2 returns the sum of x[:n]; n is a multiple of 32. It reads x in",
		"4 interleaved vector partial sums, to measure read bandwidth:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\ts += x[i]",
		"\t}",
	)
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	zero(acc...)
	Label("loop64")
	CMPQ(n, U8(64))
	JL(LabelRef("loop32"))
	for i := 0; i < 8; i++ {
		VADDPS(x.Offset(32*i), acc[i%4], acc[i%4])
	}
	ADDQ(U32(256), x.Base)
	SUBQ(U8(64), n)
	JMP(LabelRef("loop64"))
	Label("loop32")
	CMPQ(n, U8(32))
	JL(LabelRef("done"))
	for i := 0; i < 4; i++ {
		VADDPS(x.Offset(32*i), acc[i], acc[i])
	}
	ADDQ(U8(128), x.Base)
	SUBQ(U8(32), n)
	JMP(LabelRef("loop32"))
	Label("done")
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	Store(hsum(acc[0]), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func genSumSq() {
	TEXT("sumSqAVX2", NOSPLIT, "func(x *float32, n int) float32")
	Pragma("noescape")
	Doc(
		"sumSqAVX2 returns the sum of squares of x[:n]; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\ts += x[i] * x[i]",
		"\t}",
	)
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	acc := []VecVirtual{YMM(), YMM()}
	zero(acc...)
	Label("loop16")
	CMPQ(n, U8(16))
	JL(LabelRef("loop8"))
	for i := range acc {
		t := YMM()
		VMOVUPS(x.Offset(32*i), t)
		VFMADD231PS(t, t, acc[i])
	}
	ADDQ(U8(64), x.Base)
	SUBQ(U8(16), n)
	JMP(LabelRef("loop16"))
	Label("loop8")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	t := YMM()
	VMOVUPS(x, t)
	VFMADD231PS(t, t, acc[0])
	ADDQ(U8(32), x.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop8"))
	Label("done")
	VADDPS(acc[1], acc[0], acc[0])
	Store(hsum(acc[0]), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func genScaleMul() {
	TEXT("scaleMulAVX2", NOSPLIT, "func(dst, x, w *float32, s float32, n int)")
	Pragma("noescape")
	Doc(
		"scaleMulAVX2 writes w⊙x·s to dst over n elements; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tdst[i] = w[i] * (x[i] * s)",
		"\t}",
	)
	sv := YMM()
	VBROADCASTSS(Load(Param("s"), XMM()), sv)
	dst := Mem{Base: Load(Param("dst"), GP64())}
	x := Mem{Base: Load(Param("x"), GP64())}
	w := Mem{Base: Load(Param("w"), GP64())}
	n := Load(Param("n"), GP64())
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	t := YMM()
	VMULPS(x, sv, t)
	VMULPS(w, t, t)
	VMOVUPS(t, dst)
	ADDQ(U8(32), x.Base)
	ADDQ(U8(32), w.Base)
	ADDQ(U8(32), dst.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

func genScale() {
	TEXT("scaleAVX2", NOSPLIT, "func(x *float32, s float32, n int)")
	Pragma("noescape")
	Doc(
		"scaleAVX2 multiplies x[:n] by s in place; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tx[i] *= s",
		"\t}",
	)
	sv := YMM()
	VBROADCASTSS(Load(Param("s"), XMM()), sv)
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	t := YMM()
	VMULPS(x, sv, t)
	VMOVUPS(t, x)
	ADDQ(U8(32), x.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

func genMax() {
	TEXT("maxAVX2", NOSPLIT, "func(x *float32, n int) float32")
	Pragma("noescape")
	Doc(
		"maxAVX2 returns the largest of x[:n]; n is a positive multiple of 8.",
		"NaNs are not ordered: the result is that of",
		"",
		"\tm := x[0]",
		"\tfor i := 1; i < n; i++ {",
		"\t\tif x[i] > m {",
		"\t\t\tm = x[i]",
		"\t\t}",
		"\t}",
	)
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	m := YMM()
	VMOVUPS(x, m)
	Label("loop")
	ADDQ(U8(32), x.Base)
	SUBQ(U8(8), n)
	JZ(LabelRef("done"))
	VMAXPS(x, m, m)
	JMP(LabelRef("loop"))
	Label("done")
	hi := XMM()
	VEXTRACTF128(U8(1), m, hi)
	lo := m.AsX()
	VMAXPS(hi, lo, lo)
	t := XMM()
	VPERMILPS(U8(0x4e), lo, t)
	VMAXPS(t, lo, lo)
	VPERMILPS(U8(0xb1), lo, t)
	VMAXPS(t, lo, lo)
	Store(lo, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func genMulAdd() {
	TEXT("mulAddAVX2", NOSPLIT, "func(y, a, b *float32, n int)")
	Pragma("noescape")
	Doc(
		"mulAddAVX2 adds a⊙b to y over n elements; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\ty[i] += a[i] * b[i]",
		"\t}",
	)
	y := Mem{Base: Load(Param("y"), GP64())}
	a := Mem{Base: Load(Param("a"), GP64())}
	b := Mem{Base: Load(Param("b"), GP64())}
	n := Load(Param("n"), GP64())
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	t, u := YMM(), YMM()
	VMOVUPS(y, t)
	VMOVUPS(a, u)
	VFMADD231PS(b, u, t)
	VMOVUPS(t, y)
	ADDQ(U8(32), y.Base)
	ADDQ(U8(32), a.Base)
	ADDQ(U8(32), b.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

// expConsts are the constants of exp8, 8 lanes each in read-only data.
type expConsts struct {
	lo, hi, log2e, ln2hi, ln2lo, one, bias, sign Mem
	c                                            [6]Mem // c[i] multiplies r^(i+2)
}

// The polynomial is e^r ≈ 1 + r + r²/2! + … + r⁷/7! on |r| ≤ ln2/2; the first
// omitted term, r⁸/8!, is below 5.3e-9 relative (0.05 ulp).
var expCoef = [6]float32{1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040}

var k *expConsts

func vconst(name string, bits uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(bits))
	}
	return m
}

// bf16Shuf is the VPSHUFB control of load8 (bytes with the top bit set
// give zero), and bf16ShufReg the register that holds it in the kernel
// being written, if any.
var (
	bf16Shuf    Mem
	bf16ShufReg VecVirtual
)

func bf16ShufOp() Op {
	if bf16ShufReg != nil {
		return bf16ShufReg
	}
	return bf16Shuf
}

// keepBF16Shuf loads bf16Shuf into a register for the rest of the kernel
// being written (for kernels with a register to spare); the returned
// function ends that.
func keepBF16Shuf(d dtype) func() {
	if d.name != "bf16" {
		return func() {}
	}
	bf16ShufReg = YMM()
	VMOVDQU(bf16Shuf, bf16ShufReg)
	return func() { bf16ShufReg = nil }
}

func fconst(name string, v float32) Mem { return vconst(name, math.Float32bits(v)) }

func makeConsts() {
	bf16Shuf = GLOBL("bf16_shuf", RODATA|NOPTR)
	for lane := 0; lane < 8; lane++ {
		// Lane j of each 128-bit half takes bytes 2j and 2j+1 of the
		// weights broadcast to that half (j counts on in the upper half).
		b := 2 * lane
		DATA(4*lane, U32(0x8080|uint32(b)<<16|uint32(b+1)<<24))
	}
	k = &expConsts{
		lo:    fconst("exp_lo", -104),
		hi:    fconst("exp_hi", 88.8),
		log2e: fconst("exp_log2e", 1.44269504088896341),
		ln2hi: fconst("exp_ln2hi", 0.693359375),
		ln2lo: fconst("exp_ln2lo", -2.12194440e-4),
		one:   fconst("exp_one", 1),
		bias:  vconst("exp_bias", 127),
		sign:  vconst("sign_bit", 0x80000000),
	}
	for i := range k.c {
		k.c[i] = fconst("exp_c"+string(rune('2'+i)), expCoef[i])
	}
}

// exp8 writes e^x to dst lane by lane; x is preserved.
//
// x is clamped to [-104, 88.8] (NaN passes through), n = round(x·log2 e) and
// r = x - n·ln2 with ln2 split in two (Cody–Waite, fused), so r is exact to
// about 1e-10; e^r is the degree-7 Taylor polynomial by Horner with FMA, and
// 2^n is applied as 2^(n>>1)·2^(n-n>>1), two normal powers of two, so that
// results in the subnormal range round once and e^x for x > 88.73 is +Inf.
// Below -104 the result is 0.
func (k *expConsts) exp8(x, dst VecVirtual) {
	t, u := YMM(), YMM()
	VMOVUPS(k.lo, t)
	VMAXPS(x, t, t) // max(lo, x): NaN in x is kept
	VMOVUPS(k.hi, u)
	VMINPS(t, u, t) // min(hi, t): NaN in t is kept
	n := YMM()
	VMULPS(k.log2e, t, n)
	VROUNDPS(U8(0), n, n) // to nearest even
	VFNMADD231PS(k.ln2hi, n, t)
	VFNMADD231PS(k.ln2lo, n, t) // t = r
	p := dst
	VMOVUPS(k.c[5], p)
	for i := 4; i >= 0; i-- {
		VFMADD213PS(k.c[i], t, p) // p = p·r + c
	}
	VFMADD213PS(k.one, t, p)
	VFMADD213PS(k.one, t, p)
	ni := YMM()
	VCVTPS2DQ(n, ni)
	n1 := YMM()
	VPSRAD(U8(1), ni, n1)
	VPSUBD(n1, ni, ni)
	VPADDD(k.bias, n1, n1)
	VPADDD(k.bias, ni, ni)
	VPSLLD(U8(23), n1, n1)
	VPSLLD(U8(23), ni, ni)
	VMULPS(n1, p, p)
	VMULPS(ni, p, p)
}

// mapLoop writes the loop of an element-wise kernel func(dst, x *float32,
// n int) over whole vectors of 8: f maps the vector of x to the vector
// stored to dst.
func mapLoop(f func(v VecVirtual) VecVirtual) {
	dst := Mem{Base: Load(Param("dst"), GP64())}
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	v := YMM()
	VMOVUPS(x, v)
	VMOVUPS(f(v), dst)
	ADDQ(U8(32), x.Base)
	ADDQ(U8(32), dst.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

func genExp() {
	TEXT("expAVX2", NOSPLIT, "func(dst, x *float32, n int)")
	Pragma("noescape")
	Doc(
		"expAVX2 writes e^x to dst over n elements; n is a multiple of 8. Its",
		"result is within 2 ulp of the correctly rounded value (see exp8 in the",
		"generator and TestExpAccuracy):",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tdst[i] = float32(math.Exp(float64(x[i])))",
		"\t}",
	)
	mapLoop(func(v VecVirtual) VecVirtual {
		e := YMM()
		k.exp8(v, e)
		return e
	})
}

func genExpSubSum() {
	TEXT("expSubSumAVX2", NOSPLIT, "func(x *float32, m float32, n int) float32")
	Pragma("noescape")
	Doc(
		"expSubSumAVX2 replaces x[i] by e^(x[i]-m) over n elements and returns",
		"their sum; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tx[i] = float32(math.Exp(float64(x[i] - m)))",
		"\t\ts += x[i]",
		"\t}",
	)
	mv := YMM()
	VBROADCASTSS(Load(Param("m"), XMM()), mv)
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	acc := YMM()
	zero(acc)
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	v, e := YMM(), YMM()
	VMOVUPS(x, v)
	VSUBPS(mv, v, v)
	k.exp8(v, e)
	VMOVUPS(e, x)
	VADDPS(e, acc, acc)
	ADDQ(U8(32), x.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	Store(hsum(acc), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func genSiLU() {
	TEXT("siluAVX2", NOSPLIT, "func(dst, x *float32, n int)")
	Pragma("noescape")
	Doc(
		"siluAVX2 writes x·σ(x) to dst over n elements; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tdst[i] = x[i] / (1 + float32(math.Exp(float64(-x[i]))))",
		"\t}",
	)
	mapLoop(func(v VecVirtual) VecVirtual {
		nv, e := YMM(), YMM()
		VXORPS(k.sign, v, nv)
		k.exp8(nv, e)
		VADDPS(k.one, e, e)
		VDIVPS(e, v, e)
		return e
	})
}

// genSoftplus writes softplus(x) = log(1+e^x) as m + log1p(e) with
// m = max(x, 0) and e = e^-|x| ∈ [0, 1], and log1p(e) = 2·atanh(s) with
// s = e/(2+e) ∈ [0, 1/3]: 2s + 2s³/3 + … + 2s¹⁷/17, whose first omitted
// term is below 2^-30 of the sum. Above 20 (and for NaN) the result is x,
// as PyTorch's threshold gives.
func genSoftplus() {
	TEXT("softplusAVX2", NOSPLIT, "func(dst, x *float32, n int)")
	Pragma("noescape")
	Doc(
		"softplusAVX2 writes log(1+e^x) to dst over n elements, x itself where",
		"x > 20 or x is NaN; n is a multiple of 8. The result is within 4 ulp",
		"of the correctly rounded value (TestSoftplus):",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tdst[i] = float32(math.Log1p(math.Exp(float64(x[i]))))",
		"\t}",
	)
	two := fconst("softplus_two", 2)
	limit := fconst("softplus_limit", 20)
	var coef [8]Mem
	for i := range coef {
		coef[i] = fconst(fmt.Sprintf("softplus_c%d", 2*i+3), float32(2/float64(2*i+3)))
	}
	mapLoop(func(v VecVirtual) VecVirtual {
		na, e := YMM(), YMM()
		VORPS(k.sign, v, na) // -|x|
		k.exp8(na, e)
		d := YMM()
		VADDPS(two, e, d)
		sv := YMM()
		VDIVPS(d, e, sv) // s = e/(2+e)
		s2 := YMM()
		VMULPS(sv, sv, s2)
		p := YMM()
		VMOVUPS(coef[7], p)
		for i := 6; i >= 0; i-- {
			VFMADD213PS(coef[i], s2, p) // p = p·s² + c
		}
		t := YMM()
		VMULPS(s2, sv, t) // s³
		s2x := YMM()
		VADDPS(sv, sv, s2x)    // 2s
		VFMADD213PS(s2x, t, p) // p = s³·p + 2s = log1p(e)
		m := YMM()
		VXORPS(m, m, m)
		VMAXPS(m, v, m) // max(x, 0)
		VADDPS(m, p, p)
		mask := YMM()
		VCMPPS(U8(6), limit, v, mask) // !(x <= 20): x > 20 or NaN
		VBLENDVPS(mask, v, p, p)
		return p
	})
}

func genScanBack16() {
	TEXT("scanBack16AVX2", NOSPLIT, "func(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out *float32, nc int)")
	Pragma("noescape")
	Doc(
		"scanBack16AVX2 is one token of the selective scan's backward pass over nc",
		"channels of state size 16: s holds (dy, Δ, x) per channel, out receives",
		"(Σu, Σsb) per channel; dh, gA, dB, dC are updated in place (fused",
		"multiply-adds, sums in 8 lanes):",
		"",
		"\tfor c := 0; c < nc; c++ {",
		"\t\tdy, dl, x := s[3*c], s[3*c+1], s[3*c+2]",
		"\t\tvar su, sb float32",
		"\t\tfor q := 0; q < 16; q++ {",
		"\t\t\ti := c*16 + q",
		"\t\t\tdC[q] += dy * cur[i]",
		"\t\t\tdhq := dh[i] + dy*C[q]",
		"\t\t\tu := dhq * av[i] * prev[i] * A[i]",
		"\t\t\tsu += u",
		"\t\t\tgA[i] += u * dl",
		"\t\t\tsb += dhq * B[q]",
		"\t\t\tdB[q] += dhq * dl * x",
		"\t\t\tdh[i] = dhq * av[i]",
		"\t\t}",
		"\t\tout[2*c], out[2*c+1] = su, sb",
		"\t}",
	)
	ptr := func(name string) Register { return Load(Param(name), GP64()) }
	dh, cur, prev, av, A, gA := ptr("dh"), ptr("cur"), ptr("prev"), ptr("av"), ptr("A"), ptr("gA")
	B, C, dB, dC := ptr("B"), ptr("C"), ptr("dB"), ptr("dC")
	sp, out := ptr("s"), ptr("out")
	nc := Load(Param("nc"), GP64())
	Label("chan")
	CMPQ(nc, U8(0))
	JE(LabelRef("done"))
	dy, dl, dlx := YMM(), YMM(), YMM()
	VBROADCASTSS(Mem{Base: sp}, dy)
	VBROADCASTSS(Mem{Base: sp}.Offset(4), dl)
	VBROADCASTSS(Mem{Base: sp}.Offset(8), dlx)
	VMULPS(dl, dlx, dlx)
	accU, accB := YMM(), YMM()
	zero(accU, accB)
	for blk := 0; blk < 2; blk++ {
		o := 32 * blk
		dhq, t, ab, u := YMM(), YMM(), YMM(), YMM()
		VMOVUPS(Mem{Base: dC}.Offset(o), t)
		VFMADD231PS(Mem{Base: cur}.Offset(o), dy, t)
		VMOVUPS(t, Mem{Base: dC}.Offset(o))
		VMOVUPS(Mem{Base: dh}.Offset(o), dhq)
		VFMADD231PS(Mem{Base: C}.Offset(o), dy, dhq)
		VMOVUPS(Mem{Base: av}.Offset(o), ab)
		VMULPS(ab, dhq, u)
		VMULPS(Mem{Base: prev}.Offset(o), u, u)
		VMULPS(Mem{Base: A}.Offset(o), u, u)
		VADDPS(u, accU, accU)
		g := YMM()
		VMOVUPS(Mem{Base: gA}.Offset(o), g)
		VFMADD231PS(u, dl, g)
		VMOVUPS(g, Mem{Base: gA}.Offset(o))
		VFMADD231PS(Mem{Base: B}.Offset(o), dhq, accB)
		t2 := YMM()
		VMOVUPS(Mem{Base: dB}.Offset(o), t2)
		VFMADD231PS(dhq, dlx, t2)
		VMOVUPS(t2, Mem{Base: dB}.Offset(o))
		VMULPS(ab, dhq, dhq)
		VMOVUPS(dhq, Mem{Base: dh}.Offset(o))
	}
	VMOVSS(hsum(accU), Mem{Base: out})
	VMOVSS(hsum(accB), Mem{Base: out}.Offset(4))
	for _, r := range []Register{dh, cur, prev, av, A, gA} {
		ADDQ(U8(64), r)
	}
	ADDQ(U8(12), sp)
	ADDQ(U8(8), out)
	DECQ(nc)
	JMP(LabelRef("chan"))
	Label("done")
	VZEROUPPER()
	RET()
}

func genTranspose() {
	TEXT("transposeAVX2", NOSPLIT, "func(dst, src *float32, rows, cols, ldd, lds int)")
	Pragma("noescape")
	Doc(
		"transposeAVX2 writes the transpose of the rows×cols block of src (rows",
		"lds floats apart) to dst (rows ldd floats apart); rows and cols are",
		"multiples of 8. It moves 8×8 tiles through registers:",
		"",
		"\tfor r := 0; r < rows; r++ {",
		"\t\tfor c := 0; c < cols; c++ {",
		"\t\t\tdst[c*ldd+r] = src[r*lds+c]",
		"\t\t}",
		"\t}",
	)
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	ldd := Load(Param("ldd"), GP64())
	lds := Load(Param("lds"), GP64())
	SHLQ(U8(2), ldd)
	SHLQ(U8(2), lds)
	// Tile (r0, c0): src + r0·lds + 4·c0, dst + c0·ldd + 4·r0.
	r0, c0 := GP64(), GP64()
	sp, dp, p := GP64(), GP64(), GP64()
	XORQ(r0, r0)
	Label("rowtile")
	CMPQ(r0, rows)
	JGE(LabelRef("done"))
	XORQ(c0, c0)
	Label("coltile")
	CMPQ(c0, cols)
	JGE(LabelRef("nextrow"))
	// sp = src + r0·lds + 4·c0
	MOVQ(r0, sp)
	IMULQ(lds, sp)
	LEAQ(Mem{Base: sp, Index: c0, Scale: 4}, sp)
	ADDQ(src, sp)
	// dp = dst + c0·ldd + 4·r0
	MOVQ(c0, dp)
	IMULQ(ldd, dp)
	LEAQ(Mem{Base: dp, Index: r0, Scale: 4}, dp)
	ADDQ(dst, dp)
	r := make([]VecVirtual, 8)
	MOVQ(sp, p)
	for i := range r {
		r[i] = YMM()
		VMOVUPS(Mem{Base: p}, r[i])
		if i < 7 {
			ADDQ(lds, p)
		}
	}
	t := make([]VecVirtual, 8)
	for i := range t {
		t[i] = YMM()
	}
	for i := 0; i < 8; i += 2 {
		VUNPCKLPS(r[i+1], r[i], t[i])
		VUNPCKHPS(r[i+1], r[i], t[i+1])
	}
	u := make([]VecVirtual, 8)
	for i := range u {
		u[i] = YMM()
	}
	for _, g := range []int{0, 4} {
		VSHUFPS(U8(0x44), t[g+2], t[g], u[g])
		VSHUFPS(U8(0xEE), t[g+2], t[g], u[g+1])
		VSHUFPS(U8(0x44), t[g+3], t[g+1], u[g+2])
		VSHUFPS(U8(0xEE), t[g+3], t[g+1], u[g+3])
	}
	for i := 0; i < 4; i++ {
		VPERM2F128(U8(0x20), u[4+i], u[i], r[i])
		VPERM2F128(U8(0x31), u[4+i], u[i], r[4+i])
	}
	MOVQ(dp, p)
	for i := range r {
		VMOVUPS(r[i], Mem{Base: p})
		if i < 7 {
			ADDQ(ldd, p)
		}
	}
	ADDQ(U8(8), c0)
	JMP(LabelRef("coltile"))
	Label("nextrow")
	ADDQ(U8(8), r0)
	JMP(LabelRef("rowtile"))
	Label("done")
	VZEROUPPER()
	RET()
}

func genScanStep() {
	TEXT("scanStepAVX2", NOSPLIT, "func(h, A, delta, x, B, C, D, y *float32, di, n int)")
	Pragma("noescape")
	Doc(
		"scanStepAVX2 advances the selective-scan state h[di×n] by one token and",
		"writes y[:di]; n is a positive multiple of 8:",
		"",
		"\tfor c := 0; c < di; c++ {",
		"\t\tdx := delta[c] * x[c]",
		"\t\tvar s float32",
		"\t\tfor j := 0; j < n; j++ {",
		"\t\t\tv := exp(delta[c]*A[c*n+j])*h[c*n+j] + dx*B[j]",
		"\t\t\th[c*n+j] = v",
		"\t\t\ts += v * C[j]",
		"\t\t}",
		"\t\ty[c] = s + D[c]*x[c]",
		"\t}",
	)
	h := Load(Param("h"), GP64())
	A := Load(Param("A"), GP64())
	delta := Load(Param("delta"), GP64())
	x := Load(Param("x"), GP64())
	B := Load(Param("B"), GP64())
	C := Load(Param("C"), GP64())
	D := Load(Param("D"), GP64())
	y := Load(Param("y"), GP64())
	di := Load(Param("di"), GP64())
	n := Load(Param("n"), GP64())
	Label("chan")
	CMPQ(di, U8(0))
	JE(LabelRef("done"))
	d, xc, dx := YMM(), YMM(), YMM()
	VBROADCASTSS(Mem{Base: delta}, d)
	VBROADCASTSS(Mem{Base: x}, xc)
	VMULPS(xc, d, dx)
	acc := YMM()
	zero(acc)
	j := GP64()
	XORQ(j, j)
	Label("state")
	a, e, hv := YMM(), YMM(), YMM()
	VMULPS(Mem{Base: A, Index: j, Scale: 4}, d, a)
	k.exp8(a, e)
	VMULPS(Mem{Base: h, Index: j, Scale: 4}, e, hv)
	VFMADD231PS(Mem{Base: B, Index: j, Scale: 4}, dx, hv)
	VMOVUPS(hv, Mem{Base: h, Index: j, Scale: 4})
	VFMADD231PS(Mem{Base: C, Index: j, Scale: 4}, hv, acc)
	ADDQ(U8(8), j)
	CMPQ(j, n)
	JL(LabelRef("state"))
	s := hsum(acc)
	dv := XMM()
	VMOVSS(Mem{Base: D}, dv)
	VFMADD231SS(xc.AsX(), dv, s)
	VMOVSS(s, Mem{Base: y})
	LEAQ(Mem{Base: A, Index: n, Scale: 4}, A)
	LEAQ(Mem{Base: h, Index: n, Scale: 4}, h)
	ADDQ(U8(4), delta)
	ADDQ(U8(4), x)
	ADDQ(U8(4), D)
	ADDQ(U8(4), y)
	DECQ(di)
	JMP(LabelRef("chan"))
	Label("done")
	VZEROUPPER()
	RET()
}
