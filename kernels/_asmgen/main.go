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
	genSum()
	genSumSq()
	genScaleMul()
	genScale()
	genMax()
	genMulAdd()
	genExp()
	genExpSubSum()
	genSiLU()
	genScanStep()
	for _, d := range dtypes {
		genMatVec(d)
	}
	for _, d := range dtypes {
		genMatVecN(d, 2)
		genMatVecN(d, 3)
	}
	genMatVecI8x16()
	genAbsMax()
	genQuantI16()
	for _, d := range dtypes {
		genPack(d)
	}
	genGemm()

	Generate()
}

// dtype describes how a weight type is loaded and widened to 8 float32.
type dtype struct {
	name  string // f32, bf16, i8
	title string // F32, BF16, I8
	gotyp string // Go element type
	size  int    // bytes per element
}

var dtypes = []dtype{
	{"f32", "F32", "float32", 4},
	{"bf16", "BF16", "uint16", 2},
	{"i8", "I8", "int8", 1},
}

// load8 loads 8 consecutive weights at m into dst as float32.
func (d dtype) load8(m Mem, dst VecVirtual) {
	switch d.name {
	case "f32":
		VMOVUPS(m, dst)
	case "bf16":
		VPMOVZXWD(m, dst)
		VPSLLD(U8(16), dst, dst)
	case "i8":
		VPMOVSXBD(m, dst)
		VCVTDQ2PS(dst, dst)
	}
}

// widen is the Go expression that converts one weight v to float32.
func (d dtype) widen(v string) string {
	switch d.name {
	case "bf16":
		return "math.Float32frombits(uint32(" + v + ")<<16)"
	case "i8":
		return "float32(" + v + ")"
	}
	return v
}

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

// hsum4 returns the lane sums of a, b, c and e in the 4 lanes of an XMM register.
func hsum4(a, b, c, e VecVirtual) VecVirtual {
	t1 := YMM()
	VHADDPS(b, a, t1)
	t2 := YMM()
	VHADDPS(e, c, t2)
	VHADDPS(t2, t1, t1)
	hi := XMM()
	VEXTRACTF128(U8(1), t1, hi)
	out := XMM()
	VADDPS(hi, t1.AsX(), out)
	return out
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

func fconst(name string, v float32) Mem { return vconst(name, math.Float32bits(v)) }

func makeConsts() {
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
	dst := Mem{Base: Load(Param("dst"), GP64())}
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	v, e := YMM(), YMM()
	VMOVUPS(x, v)
	k.exp8(v, e)
	VMOVUPS(e, dst)
	ADDQ(U8(32), x.Base)
	ADDQ(U8(32), dst.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
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
	dst := Mem{Base: Load(Param("dst"), GP64())}
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	v, nv, e := YMM(), YMM(), YMM()
	VMOVUPS(x, v)
	VXORPS(k.sign, v, nv)
	k.exp8(nv, e)
	VADDPS(k.one, e, e)
	VDIVPS(e, v, e)
	VMOVUPS(e, dst)
	ADDQ(U8(32), x.Base)
	ADDQ(U8(32), dst.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
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

// The matrix-vector kernels walk 4 rows at a time. Each row of a large
// matrix is only a few KiB, often one page, so the hardware prefetcher
// would restart on every row; the kernels instead prefetch, while they read
// a cache line of each row, the same line of the next 4 rows. That data is
// needed one group later, which covers the memory latency many times over.
// (Without it, a 256 MiB bf16 matrix reads at about half the bandwidth.)
const prefetchNext = true

// rowGroup holds the pointers to the 4 rows of a group and the distance to
// the next group.
type rowGroup struct {
	p   []GPVirtual
	ld4 GPVirtual
}

func newRowGroup(w, ld GPVirtual) rowGroup {
	g := rowGroup{p: []GPVirtual{GP64(), GP64(), GP64(), GP64()}, ld4: GP64()}
	MOVQ(ld, g.ld4)
	SHLQ(U8(2), g.ld4)
	return g
}

// start points the group at the rows from w on.
func (g rowGroup) start(w, ld GPVirtual) {
	MOVQ(w, g.p[0])
	LEAQ(Mem{Base: w, Index: ld, Scale: 1}, g.p[1])
	LEAQ(Mem{Base: w, Index: ld, Scale: 2}, g.p[2])
	LEAQ(Mem{Base: g.p[1], Index: ld, Scale: 2}, g.p[3])
}

func (g rowGroup) prefetch() {
	if prefetchNext {
		for _, p := range g.p {
			PREFETCHT0(Mem{Base: p, Index: g.ld4, Scale: 1})
		}
	}
}

func (g rowGroup) advance(bytes int) {
	for _, p := range g.p {
		ADDQ(U8(bytes), p)
	}
}

func genMatVec(d dtype) {
	name := "matVec" + d.title + "AVX2"
	TEXT(name, NOSPLIT, "func(y *float32, w *"+d.gotyp+", x *float32, rows, cols, ld int)")
	Pragma("noescape")
	Doc(
		name+" writes the products of rows of w (row stride ld) with x to y;",
		"cols is a multiple of 8. Each sum runs over 2×8 interleaved partial sums:",
		"",
		"\tfor r := 0; r < rows; r++ {",
		"\t\tvar s float32",
		"\t\tfor c := 0; c < cols; c++ {",
		"\t\t\ts += "+d.widen("w[r*ld+c]")+" * x[c]",
		"\t\t}",
		"\t\ty[r] = s",
		"\t}",
	)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	x := Load(Param("x"), GP64())
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	ld := Load(Param("ld"), GP64())
	if d.size > 1 {
		SHLQ(U8(map[int]uint8{2: 1, 4: 2}[d.size]), ld) // bytes per row
	}
	// The main loop reads one cache line (L columns) of each of 4 rows; a
	// loop of 8 columns finishes.
	L := 64 / d.size
	nL := GP64()
	MOVQ(cols, nL)
	ANDQ(I32(-L), nL)
	g := newRowGroup(w.(GPVirtual), ld.(GPVirtual))
	c := GP64()
	xm := func(off int) Mem { return Mem{Base: x, Index: c, Scale: 4, Disp: 4 * off} }

	Label("rows4")
	CMPQ(rows, U8(4))
	JL(LabelRef("rows1"))
	g.start(w.(GPVirtual), ld.(GPVirtual))
	acc := make([]VecVirtual, 8)
	for i := range acc {
		acc[i] = YMM()
	}
	zero(acc...)
	XORQ(c, c)
	Label("lines4")
	CMPQ(c, nL)
	JGE(LabelRef("cols8x4"))
	g.prefetch()
	for v := 0; v < L/8; v++ {
		xv := YMM()
		VMOVUPS(xm(8*v), xv)
		for j := 0; j < 4; j++ {
			t := YMM()
			d.load8(Mem{Base: g.p[j], Disp: 8 * v * d.size}, t)
			VFMADD231PS(xv, t, acc[2*j+v%2])
		}
	}
	g.advance(64)
	ADDQ(U8(L), c)
	JMP(LabelRef("lines4"))
	Label("cols8x4")
	CMPQ(c, cols)
	JGE(LabelRef("sum4"))
	x2 := YMM()
	VMOVUPS(xm(0), x2)
	for j := 0; j < 4; j++ {
		t := YMM()
		d.load8(Mem{Base: g.p[j]}, t)
		VFMADD231PS(x2, t, acc[2*j])
	}
	g.advance(8 * d.size)
	ADDQ(U8(8), c)
	JMP(LabelRef("cols8x4"))
	Label("sum4")
	for j := 0; j < 4; j++ {
		VADDPS(acc[2*j+1], acc[2*j], acc[2*j])
	}
	s := hsum4(acc[0], acc[2], acc[4], acc[6])
	VMOVUPS(s, Mem{Base: y})
	ADDQ(U8(16), y)
	ADDQ(g.ld4, w)
	SUBQ(U8(4), rows)
	JMP(LabelRef("rows4"))

	Label("rows1")
	CMPQ(rows, U8(0))
	JE(LabelRef("done"))
	a0, a1, a2, a3 := YMM(), YMM(), YMM(), YMM()
	zero(a0, a1, a2, a3)
	XORQ(c, c)
	wm := func(off int) Mem { return Mem{Base: w, Index: c, Scale: uint8(d.size), Disp: off * d.size} }
	Label("lines1")
	CMPQ(c, nL)
	JGE(LabelRef("cols8x1"))
	for v := 0; v < L/8; v++ {
		t := YMM()
		d.load8(wm(8*v), t)
		VFMADD231PS(xm(8*v), t, []VecVirtual{a0, a1, a2, a3}[v%4])
	}
	ADDQ(U8(L), c)
	JMP(LabelRef("lines1"))
	Label("cols8x1")
	CMPQ(c, cols)
	JGE(LabelRef("sum1"))
	t2 := YMM()
	d.load8(wm(0), t2)
	VFMADD231PS(xm(0), t2, a0)
	ADDQ(U8(8), c)
	JMP(LabelRef("cols8x1"))
	Label("sum1")
	VADDPS(a1, a0, a0)
	VADDPS(a3, a2, a2)
	VADDPS(a2, a0, a0)
	VMOVSS(hsum(a0), Mem{Base: y})
	ADDQ(U8(4), y)
	ADDQ(ld, w)
	DECQ(rows)
	JMP(LabelRef("rows1"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genMatVecN writes the product of rows of w with nt ≤ 3 vectors of x at
// once, for a few tokens: 4 rows × nt tokens take 12 accumulators, so each
// weight is loaded and widened once for all nt tokens.
func genMatVecN(d dtype, nt int) {
	name := fmt.Sprintf("matVec%sT%dAVX2", d.title, nt)
	TEXT(name, NOSPLIT, "func(y *float32, ldy int, w *"+d.gotyp+", x *float32, ldx, rows, cols, ld int)")
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s writes the products of rows of w (row stride ld) with %d rows", name, nt),
		"of x (row stride ldx) to y (row stride ldy); rows is a multiple of 4 and",
		"cols of 8:",
		"",
		fmt.Sprintf("\tfor t := 0; t < %d; t++ {", nt),
		"\t\tfor r := 0; r < rows; r++ {",
		"\t\t\tvar s float32",
		"\t\t\tfor c := 0; c < cols; c++ {",
		"\t\t\t\ts += "+d.widen("w[r*ld+c]")+" * x[t*ldx+c]",
		"\t\t\t}",
		"\t\t\ty[t*ldy+r] = s",
		"\t\t}",
		"\t}",
	)
	// 15 general registers do not hold every pointer, so y, ldy, rows,
	// cols and ld stay in the argument frame.
	arg := func(name string) Mem {
		b, err := Param(name).Resolve()
		if err != nil {
			panic(err)
		}
		return b.Addr
	}
	yM, ldyM, rowsM, colsM, ldM := arg("y"), arg("ldy"), arg("rows"), arg("cols"), arg("ld")
	w := Load(Param("w"), GP64()).(GPVirtual)
	x := Load(Param("x"), GP64()).(GPVirtual)
	ldx := Load(Param("ldx"), GP64()).(GPVirtual)
	SHLQ(U8(2), ldyM)
	SHLQ(U8(2), ldx)
	if d.size > 1 {
		SHLQ(U8(map[int]uint8{2: 1, 4: 2}[d.size]), ldM)
	}
	L := 64 / d.size
	nL := GP64()
	MOVQ(colsM, nL)
	ANDQ(I32(-L), nL)
	g := rowGroup{p: []GPVirtual{GP64(), GP64(), GP64(), GP64()}, ld4: GP64()}
	MOVQ(ldM, g.ld4)
	SHLQ(U8(2), g.ld4)
	c := GP64()
	xs := []GPVirtual{x, GP64(), GP64()}
	if nt > 1 {
		LEAQ(Mem{Base: x, Index: ldx, Scale: 1}, xs[1])
	}
	if nt > 2 {
		LEAQ(Mem{Base: x, Index: ldx, Scale: 2}, xs[2])
	}
	xmem := func(t, off int) Mem { return Mem{Base: xs[t], Index: c, Scale: 4, Disp: 4 * off} }

	Label("rows4")
	CMPQ(rowsM, U8(4))
	JL(LabelRef("done"))
	ld := GP64()
	MOVQ(ldM, ld)
	g.start(w, ld)
	acc := make([][]VecVirtual, 4)
	for j := range acc {
		acc[j] = make([]VecVirtual, nt)
		for t := range acc[j] {
			acc[j][t] = YMM()
			VXORPS(acc[j][t], acc[j][t], acc[j][t])
		}
	}
	XORQ(c, c)
	step := func(v int) {
		xr := make([]VecVirtual, nt)
		for t := range xr {
			xr[t] = YMM()
			VMOVUPS(xmem(t, 8*v), xr[t])
		}
		for j := 0; j < 4; j++ {
			tmp := YMM()
			d.load8(Mem{Base: g.p[j], Disp: 8 * v * d.size}, tmp)
			for t := range xr {
				VFMADD231PS(xr[t], tmp, acc[j][t])
			}
		}
	}
	Label("lines")
	CMPQ(c, nL)
	JGE(LabelRef("cols8"))
	g.prefetch()
	for v := 0; v < L/8; v++ {
		step(v)
	}
	g.advance(64)
	ADDQ(U8(L), c)
	JMP(LabelRef("lines"))
	Label("cols8")
	CMPQ(c, colsM)
	JGE(LabelRef("sum"))
	step(0)
	g.advance(8 * d.size)
	ADDQ(U8(8), c)
	JMP(LabelRef("cols8"))
	Label("sum")
	yt := GP64()
	MOVQ(yM, yt)
	for t := 0; t < nt; t++ {
		s := hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t])
		VMOVUPS(s, Mem{Base: yt})
		if t+1 < nt {
			ADDQ(ldyM, yt)
		}
	}
	ADDQ(U8(16), yM)
	ADDQ(g.ld4, w)
	SUBQ(U8(4), rowsM)
	JMP(LabelRef("rows4"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genPack writes a kernel that transposes 8 rows × kc columns of a weight
// matrix into a panel of float32 with row stride panelWidth.
const panelWidth = 24

func genPack(d dtype) {
	name := "pack" + d.title + "AVX2"
	sig := "func(dst *float32, src *" + d.gotyp + ", ld, kc int)"
	doc := []string{
		name + " widens 8 rows × kc columns of src (row stride ld) to float32",
		"and stores them transposed in dst with row stride 24; kc is a multiple of 8:",
		"",
		"\tfor k := 0; k < kc; k++ {",
		"\t\tfor j := 0; j < 8; j++ {",
		"\t\t\tdst[k*24+j] = " + d.widen("src[j*ld+k]"),
		"\t\t}",
		"\t}",
	}
	if d.name == "i8" {
		sig = "func(dst *float32, src *int8, ld, kc int, scales *float32)"
		doc[0] = name + " widens 8 rows × kc columns of src (row stride ld), times"
		doc[1] = "the row scales, and stores them transposed in dst with row stride 24:"
		doc[5] = "\t\t\tdst[k*24+j] = scales[j] * float32(src[j*ld+k])"
	}
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(doc...)
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ld := Load(Param("ld"), GP64())
	kc := Load(Param("kc"), GP64())
	if d.size > 1 {
		SHLQ(U8(map[int]uint8{2: 1, 4: 2}[d.size]), ld)
	}
	var sc VecVirtual
	if d.name == "i8" {
		sc = YMM()
		VMOVUPS(Mem{Base: Load(Param("scales"), GP64())}, sc)
	}
	// Rows 0-3 at src + {0,1,2,3}·ld, rows 4-7 at src4 + the same.
	ld3 := GP64()
	LEAQ(Mem{Base: ld, Index: ld, Scale: 2}, ld3)
	src4 := GP64()
	LEAQ(Mem{Base: src, Index: ld, Scale: 4}, src4)
	row := func(j int) Mem {
		base := src
		if j >= 4 {
			base = src4
		}
		switch j % 4 {
		case 0:
			return Mem{Base: base}
		case 1:
			return Mem{Base: base, Index: ld, Scale: 1}
		case 2:
			return Mem{Base: base, Index: ld, Scale: 2}
		}
		return Mem{Base: base, Index: ld3, Scale: 1}
	}
	Label("loop")
	CMPQ(kc, U8(8))
	JL(LabelRef("done"))
	r := make([]VecVirtual, 8)
	for j := range r {
		r[j] = YMM()
		d.load8(row(j), r[j])
	}
	t := make([]VecVirtual, 8)
	for i := 0; i < 4; i++ {
		t[2*i], t[2*i+1] = YMM(), YMM()
		VUNPCKLPS(r[2*i+1], r[2*i], t[2*i])
		VUNPCKHPS(r[2*i+1], r[2*i], t[2*i+1])
	}
	// s[0..3]: rows 0-3 of columns {0,4}, {1,5}, {2,6}, {3,7}; s[4..7]: rows 4-7.
	s := make([]VecVirtual, 8)
	for h := 0; h < 2; h++ {
		a, b := t[4*h], t[4*h+2]        // unpack lo of rows (0,1),(2,3)
		c, e := t[4*h+1], t[4*h+3]      // unpack hi
		s[4*h], s[4*h+1] = YMM(), YMM() // columns 0|4, 1|5
		s[4*h+2], s[4*h+3] = YMM(), YMM()
		VSHUFPS(U8(0x44), b, a, s[4*h])
		VSHUFPS(U8(0xee), b, a, s[4*h+1])
		VSHUFPS(U8(0x44), e, c, s[4*h+2])
		VSHUFPS(U8(0xee), e, c, s[4*h+3])
	}
	for k := 0; k < 4; k++ {
		lo, hi := YMM(), YMM()
		VPERM2F128(U8(0x20), s[4+k], s[k], lo) // column k
		VPERM2F128(U8(0x31), s[4+k], s[k], hi) // column k+4
		if d.name == "i8" {
			VMULPS(sc, lo, lo)
			VMULPS(sc, hi, hi)
		}
		VMOVUPS(lo, Mem{Base: dst, Disp: 4 * panelWidth * k})
		VMOVUPS(hi, Mem{Base: dst, Disp: 4 * panelWidth * (k + 4)})
	}
	ADDQ(U32(8*4*panelWidth), dst)
	ADDQ(U8(8*d.size), src)
	ADDQ(U8(8*d.size), src4)
	SUBQ(U8(8), kc)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genGemm writes the 4×24 micro-kernel of the matrix-matrix product. It keeps
// the 4×24 block of results in 12 registers; each step broadcasts one value of
// each of the 4 rows of x and multiplies it with 24 consecutive panel values.
func genGemm() {
	TEXT("gemm4x24AVX2", NOSPLIT, "func(c *float32, ldc int, x *float32, ldx int, p *float32, kc int, add bool)")
	Pragma("noescape")
	Doc(
		"gemm4x24AVX2 multiplies 4 rows of x (row stride ldx) by a packed panel p",
		"of kc×24 and stores (or with add, adds) the 4×24 result in c (row stride",
		"ldc); kc is positive:",
		"",
		"\tfor t := 0; t < 4; t++ {",
		"\t\tfor j := 0; j < 24; j++ {",
		"\t\t\tvar s float32",
		"\t\t\tfor k := 0; k < kc; k++ {",
		"\t\t\t\ts += x[t*ldx+k] * p[k*24+j]",
		"\t\t\t}",
		"\t\t\tif add {",
		"\t\t\t\ts += c[t*ldc+j]",
		"\t\t\t}",
		"\t\t\tc[t*ldc+j] = s",
		"\t\t}",
		"\t}",
	)
	c := Load(Param("c"), GP64())
	ldc := Load(Param("ldc"), GP64())
	x := Load(Param("x"), GP64())
	ldx := Load(Param("ldx"), GP64())
	p := Load(Param("p"), GP64())
	kc := Load(Param("kc"), GP64())
	SHLQ(U8(2), ldc)
	SHLQ(U8(2), ldx)
	ld3 := GP64()
	LEAQ(Mem{Base: ldx, Index: ldx, Scale: 2}, ld3)
	acc := []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11}
	for _, a := range acc {
		VXORPS(a, a, a)
	}
	xr := []Mem{
		{Base: x},
		{Base: x, Index: ldx, Scale: 1},
		{Base: x, Index: ldx, Scale: 2},
		{Base: x, Index: ld3, Scale: 1},
	}
	step := func(off int) {
		VMOVUPS(Mem{Base: p, Disp: off * 96}, Y12)
		VMOVUPS(Mem{Base: p, Disp: off*96 + 32}, Y13)
		VMOVUPS(Mem{Base: p, Disp: off*96 + 64}, Y14)
		for t := 0; t < 4; t++ {
			VBROADCASTSS(xr[t].Offset(4*off), Y15)
			VFMADD231PS(Y12, Y15, acc[3*t])
			VFMADD231PS(Y13, Y15, acc[3*t+1])
			VFMADD231PS(Y14, Y15, acc[3*t+2])
		}
	}
	Label("loop4")
	CMPQ(kc, U8(4))
	JL(LabelRef("loop1"))
	for u := 0; u < 4; u++ {
		step(u)
	}
	ADDQ(U8(16), x)
	ADDQ(U32(4*96), p)
	SUBQ(U8(4), kc)
	JMP(LabelRef("loop4"))
	Label("loop1")
	CMPQ(kc, U8(0))
	JE(LabelRef("store"))
	step(0)
	ADDQ(U8(4), x)
	ADDQ(U8(96), p)
	DECQ(kc)
	JMP(LabelRef("loop1"))

	Label("store")
	add := Load(Param("add"), GP8())
	for t := 0; t < 4; t++ {
		if t > 0 {
			ADDQ(ldc, c)
		}
		CMPB(add, U8(0))
		JE(LabelRef("put" + string(rune('0'+t))))
		for j := 0; j < 3; j++ {
			VADDPS(Mem{Base: c, Disp: 32 * j}, acc[3*t+j], acc[3*t+j])
		}
		Label("put" + string(rune('0'+t)))
		for j := 0; j < 3; j++ {
			VMOVUPS(acc[3*t+j], Mem{Base: c, Disp: 32 * j})
		}
	}
	VZEROUPPER()
	RET()
}

// i8Block is the number of columns the int8×int16 kernel sums in int32
// before it converts to float32: each int32 lane then adds at most
// 4096/16/2 = 128 pair sums of |q·x| ≤ 2·128·32767, below 2^31.
const i8Block = 4096

func genMatVecI8x16() {
	name := "matVecI8x16AVX2"
	TEXT(name, NOSPLIT, "func(y *float32, w *int8, x *int16, rows, cols, ld int)")
	Pragma("noescape")
	Doc(
		name+" writes the products of rows of int8 w (row stride ld) with int16",
		"x to y; cols is a multiple of 16. The sums are exact in int32 over blocks of",
		"4096 columns, whose results are added in float32:",
		"",
		"\tfor r := 0; r < rows; r++ {",
		"\t\tvar s float32",
		"\t\tfor c0 := 0; c0 < cols; c0 += 4096 {",
		"\t\t\tvar b int32",
		"\t\t\tfor c := c0; c < min(c0+4096, cols); c++ {",
		"\t\t\t\tb += int32(w[r*ld+c]) * int32(x[c])",
		"\t\t\t}",
		"\t\t\ts += float32(b)",
		"\t\t}",
		"\t\ty[r] = s",
		"\t}",
	)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	x := Load(Param("x"), GP64())
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	ld := Load(Param("ld"), GP64())
	g := newRowGroup(w.(GPVirtual), ld.(GPVirtual))
	c, end, endL := GP64(), GP64(), GP64()
	xm := func(off int) Mem { return Mem{Base: x, Index: c, Scale: 2, Disp: 2 * off} }

	// blockEnd sets end = min(c+i8Block, cols) and endL to end rounded down
	// to a multiple of 64 columns past c.
	blockEnd := func() {
		LEAQ(Mem{Base: c, Disp: i8Block}, end)
		CMPQ(end, cols)
		CMOVQGT(cols, end)
		MOVQ(end, endL)
		SUBQ(c, endL)
		ANDQ(I8(-64), endL)
		ADDQ(c, endL)
	}

	Label("rows4")
	CMPQ(rows, U8(4))
	JL(LabelRef("rows1"))
	g.start(w.(GPVirtual), ld.(GPVirtual))
	fa := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	zero(fa...)
	acc := make([]VecVirtual, 8)
	for i := range acc {
		acc[i] = YMM()
	}
	XORQ(c, c)
	Label("block4")
	CMPQ(c, cols)
	JGE(LabelRef("sum4"))
	blockEnd()
	for _, a := range acc {
		VPXOR(a, a, a)
	}
	Label("lines4")
	CMPQ(c, endL)
	JGE(LabelRef("cols16x4"))
	g.prefetch()
	for v := 0; v < 4; v++ {
		xv := YMM()
		VMOVDQU(xm(16*v), xv)
		for j := 0; j < 4; j++ {
			t := YMM()
			VPMOVSXBW(Mem{Base: g.p[j], Disp: 16 * v}, t)
			VPMADDWD(xv, t, t)
			VPADDD(t, acc[2*j+v%2], acc[2*j+v%2])
		}
	}
	g.advance(64)
	ADDQ(U8(64), c)
	JMP(LabelRef("lines4"))
	Label("cols16x4")
	CMPQ(c, end)
	JGE(LabelRef("flush4"))
	xw := YMM()
	VMOVDQU(xm(0), xw)
	for j := 0; j < 4; j++ {
		t := YMM()
		VPMOVSXBW(Mem{Base: g.p[j]}, t)
		VPMADDWD(xw, t, t)
		VPADDD(t, acc[2*j], acc[2*j])
	}
	g.advance(16)
	ADDQ(U8(16), c)
	JMP(LabelRef("cols16x4"))
	Label("flush4")
	for j := 0; j < 4; j++ {
		VPADDD(acc[2*j+1], acc[2*j], acc[2*j])
		VCVTDQ2PS(acc[2*j], acc[2*j])
		VADDPS(acc[2*j], fa[j], fa[j])
	}
	JMP(LabelRef("block4"))
	Label("sum4")
	s := hsum4(fa[0], fa[1], fa[2], fa[3])
	VMOVUPS(s, Mem{Base: y})
	ADDQ(U8(16), y)
	ADDQ(g.ld4, w)
	SUBQ(U8(4), rows)
	JMP(LabelRef("rows4"))

	Label("rows1")
	CMPQ(rows, U8(0))
	JE(LabelRef("done"))
	f1 := YMM()
	zero(f1)
	XORQ(c, c)
	Label("block1")
	CMPQ(c, cols)
	JGE(LabelRef("sum1"))
	blockEnd()
	a1 := YMM()
	VPXOR(a1, a1, a1)
	Label("cols16x1")
	CMPQ(c, end)
	JGE(LabelRef("flush1"))
	t := YMM()
	VPMOVSXBW(Mem{Base: w, Index: c, Scale: 1}, t)
	VPMADDWD(xm(0), t, t)
	VPADDD(t, a1, a1)
	ADDQ(U8(16), c)
	JMP(LabelRef("cols16x1"))
	Label("flush1")
	VCVTDQ2PS(a1, a1)
	VADDPS(a1, f1, f1)
	JMP(LabelRef("block1"))
	Label("sum1")
	VMOVSS(hsum(f1), Mem{Base: y})
	ADDQ(U8(4), y)
	ADDQ(ld, w)
	DECQ(rows)
	JMP(LabelRef("rows1"))
	Label("done")
	VZEROUPPER()
	RET()
}

func genAbsMax() {
	TEXT("absMaxAVX2", NOSPLIT, "func(x *float32, n int) float32")
	Pragma("noescape")
	Doc(
		"absMaxAVX2 returns the largest |x[i]| for i < n; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tm = max(m, abs(x[i]))",
		"\t}",
	)
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	m, sgn := YMM(), YMM()
	zero(m)
	VMOVUPS(k.sign, sgn)
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	t := YMM()
	VANDNPS(x, sgn, t) // clear the sign bit
	VMAXPS(t, m, m)
	ADDQ(U8(32), x.Base)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	hi := XMM()
	VEXTRACTF128(U8(1), m, hi)
	lo := m.AsX()
	VMAXPS(hi, lo, lo)
	VPERMILPS(U8(0x4e), lo, hi)
	VMAXPS(hi, lo, lo)
	VPERMILPS(U8(0xb1), lo, hi)
	VMAXPS(hi, lo, lo)
	Store(lo, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func genQuantI16() {
	TEXT("quantI16AVX2", NOSPLIT, "func(dst *int16, x *float32, s float32, n int)")
	Pragma("noescape")
	Doc(
		"quantI16AVX2 rounds x[i]·s to the nearest int16 (ties to even,",
		"saturating) for i < n; n is a multiple of 16:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tdst[i] = int16(math.RoundToEven(float64(x[i] * s)))",
		"\t}",
	)
	sv := YMM()
	VBROADCASTSS(Load(Param("s"), XMM()), sv)
	dst := Mem{Base: Load(Param("dst"), GP64())}
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	Label("loop")
	CMPQ(n, U8(16))
	JL(LabelRef("done"))
	a, b := YMM(), YMM()
	VMULPS(x, sv, a)
	VMULPS(x.Offset(32), sv, b)
	VCVTPS2DQ(a, a)
	VCVTPS2DQ(b, b)
	VPACKSSDW(b, a, a) // [a0-3 b0-3 | a4-7 b4-7]
	VPERMQ(U8(0xd8), a, a)
	VMOVDQU(a, dst)
	ADDQ(U8(64), x.Base)
	ADDQ(U8(32), dst.Base)
	SUBQ(U8(16), n)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}
