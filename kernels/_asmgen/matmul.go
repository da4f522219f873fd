package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The matrix kernels below compute every output in one order, whatever
// the kernel, the tile or the position of the output in it; that is what
// makes MatMul batch-invariant (see dotOrder in package kernels). With
// float weights each output has one 8-lane accumulator, starting at zero,
// to which one fused multiply-add per 8 columns adds W[r,c..c+8]·x[c..c+8]
// for c = 0, 8, 16, … in turn; the 8 lanes are then added by one tree,
// ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)), in hsum4 and hsum1 alike. Every
// multiply-add names x first and the weight second. With int8 weights the
// sums are integers, exact in any order.

// dotDoc is the Go loop, for the declarations, of one output in the dot
// order: w and x are the expressions of a weight and an activation at
// column c+l, and out the output.
func dotDoc(indent, w, x, out string) []string {
	lines := []string{
		"var acc [8]float32",
		"for c := 0; c < cols; c += 8 {",
		"\tfor l := range acc {",
		"\t\tacc[l] = fma(" + w + ", " + x + ", acc[l]) // rounded once",
		"\t}",
		"}",
		out + " = reduce8(acc) // ((a0+a1)+(a2+a3)) + ((a4+a5)+(a6+a7))",
	}
	for i, l := range lines {
		lines[i] = indent + l
	}
	return lines
}

// hsum4 returns the lane sums of a, b, c and e in the 4 lanes of an XMM
// register, each added by the tree ((v0+v1)+(v2+v3)) + ((v4+v5)+(v6+v7)).
func hsum4(a, b, c, e VecVirtual) VecVirtual {
	t1 := YMM()
	VHADDPS(b, a, t1) // a0+a1 a2+a3 b0+b1 b2+b3 | a4+a5 a6+a7 b4+b5 b6+b7
	t2 := YMM()
	VHADDPS(e, c, t2)
	VHADDPS(t2, t1, t1) // (a0+a1)+(a2+a3) … | (a4+a5)+(a6+a7) …
	hi := XMM()
	VEXTRACTF128(U8(1), t1, hi)
	out := XMM()
	VADDPS(hi, t1.AsX(), out)
	return out
}

// hsum4To is hsum4 on physical registers: it leaves the result in t1 and
// overwrites t2.
func hsum4To(a, b, c, e, t1, t2 VecPhysical) {
	VHADDPS(b, a, t1)
	VHADDPS(e, c, t2)
	VHADDPS(t2, t1, t1)
	VEXTRACTF128(U8(1), t1, t2.AsX())
	VADDPS(t2.AsX(), t1.AsX(), t1.AsX())
}

// hsum1 returns the lane sum of v in the low lane of an XMM register, by
// the tree of hsum4.
func hsum1(v VecVirtual) VecVirtual {
	t := YMM()
	VHADDPS(v, v, t) // v0+v1 v2+v3 … | v4+v5 v6+v7 …
	VHADDPS(t, t, t) // (v0+v1)+(v2+v3) … | (v4+v5)+(v6+v7) …
	hi := XMM()
	VEXTRACTF128(U8(1), t, hi)
	out := XMM()
	VADDPS(hi, t.AsX(), out)
	return out
}

// The matrix-vector kernels walk 4 rows at a time. Each row of a large
// matrix is only a few KiB, often one page, so the hardware prefetcher
// would restart on every row; the kernels instead prefetch, while they read
// a cache line of each row, the same line of the next 4 rows. That data is
// needed one group later, which covers the memory latency many times over.
// (Without it, a 256 MiB bf16 matrix reads at about half the bandwidth.)

// rowGroup holds the pointers to the 4 rows of a group and the distance to
// the next group.
type rowGroup struct {
	p   []GPVirtual
	ld4 GPVirtual
}

func newRowGroup(ld Op) rowGroup {
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
	for _, p := range g.p {
		PREFETCHT0(Mem{Base: p, Index: g.ld4, Scale: 1})
	}
}

func (g rowGroup) advance(bytes int) {
	for _, p := range g.p {
		ADDQ(U8(bytes), p)
	}
}

// rowsOf returns "1 row" or "n rows".
func rowsOf(n int) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// frameArg returns the argument frame slot of a parameter, for kernels
// whose pointers do not all fit in the 15 general registers.
func frameArg(name string) Mem {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	return b.Addr
}

// dot4 adds, for vecs vectors of 8 columns in turn, the products of the x
// vector at xm(8v) with the weights of 4 rows at row(j, byte offset) to
// their accumulators, in the dot order.
func (d dtype) dot4(xm func(off int) Mem, row func(j, disp int) Mem, acc []VecVirtual, vecs int) {
	for v := 0; v < vecs; v++ {
		xv := YMM()
		VMOVUPS(xm(8*v), xv)
		for j := 0; j < 4; j++ {
			t := YMM()
			d.load8(row(j, 8*v*d.size), t)
			VFMADD231PS(xv, t, acc[j])
		}
	}
}

// genMatVec writes the matrix-vector kernel of decoding: 4 rows at a time,
// one cache line of each per step, one accumulator per row.
func genMatVec(d dtype) {
	name := "matVec" + d.title + "AVX2"
	TEXT(name, NOSPLIT, "func(y *float32, w *"+d.gotyp+", x *float32, rows, cols, ld int)")
	Pragma("noescape")
	Doc(append([]string{
		name + " writes the products of rows of w (row stride ld) with x to y",
		"in the dot order; cols is a multiple of 8:",
		"",
		"\tfor r := 0; r < rows; r++ {",
	}, append(dotDoc("\t\t", d.widen("w[r*ld+c+l]"), "x[c+l]", "y[r]"), "\t}")...)...)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64()).(GPVirtual)
	x := Load(Param("x"), GP64())
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	ld := Load(Param("ld"), GP64()).(GPVirtual)
	if d.size > 1 {
		SHLQ(U8(d.shift()), ld) // bytes per row
	}
	defer keepBF16Shuf(d)()
	// The main loop reads one cache line (L columns) of each of 4 rows; a
	// loop of 8 columns finishes.
	L := 64 / d.size
	nL := GP64()
	MOVQ(cols, nL)
	ANDQ(I32(-L), nL)
	g := newRowGroup(ld)
	c := GP64()
	xm := func(off int) Mem { return Mem{Base: x, Index: c, Scale: 4, Disp: 4 * off} }

	Label("rows4")
	CMPQ(rows, U8(4))
	JL(LabelRef("rows1"))
	g.start(w, ld)
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	zero(acc...)
	XORQ(c, c)
	Label("lines4")
	CMPQ(c, nL)
	JGE(LabelRef("cols8x4"))
	g.prefetch()
	groupRow := func(j, disp int) Mem { return Mem{Base: g.p[j], Disp: disp} }
	d.dot4(xm, groupRow, acc, L/8)
	g.advance(64)
	ADDQ(U8(L), c)
	JMP(LabelRef("lines4"))
	Label("cols8x4")
	CMPQ(c, cols)
	JGE(LabelRef("sum4"))
	d.dot4(xm, groupRow, acc, 1)
	g.advance(8 * d.size)
	ADDQ(U8(8), c)
	JMP(LabelRef("cols8x4"))
	Label("sum4")
	VMOVUPS(hsum4(acc[0], acc[1], acc[2], acc[3]), Mem{Base: y})
	ADDQ(U8(16), y)
	ADDQ(g.ld4, w)
	SUBQ(U8(4), rows)
	JMP(LabelRef("rows4"))

	Label("rows1")
	CMPQ(rows, U8(0))
	JE(LabelRef("done"))
	a := YMM()
	zero(a)
	XORQ(c, c)
	Label("cols8x1")
	CMPQ(c, cols)
	JGE(LabelRef("sum1"))
	t := YMM()
	d.load8(Mem{Base: w, Index: c, Scale: uint8(d.size)}, t)
	VFMADD231PS(xm(0), t, a)
	ADDQ(U8(8), c)
	JMP(LabelRef("cols8x1"))
	Label("sum1")
	VMOVSS(hsum1(a), Mem{Base: y})
	ADDQ(U8(4), y)
	ADDQ(ld, w)
	DECQ(rows)
	JMP(LabelRef("rows1"))
	Label("done")
	VZEROUPPER()
	RET()
}

// streamPrefetch is how far ahead, in bytes, the streams kernels prefetch
// in each stream (a stream's rows are consecutive, so its bytes are too).
// PREFETCHT0 fills L1 and L2: a line pushed out of L1 before its turn is
// still in L2. (PREFETCHNTA fills L1 alone on Intel's non-inclusive
// caches, and one row ahead of 4 streams of 7 KiB rows is more than L1
// holds: on a Sapphire Rapids core the streams read at 0.3–0.7 of the
// read bandwidth with it, at 1.1–1.2 with this. 768 to 1536 bytes ahead
// measured alike; a row ahead, 0.7–0.9.)
const streamPrefetch = 1024

// streamPrefetchL2 is how far ahead the float streams kernels also
// prefetch into L2 alone (PREFETCHT2): a second, farther request per line
// keeps more of each stream's lines on their way from memory than the L1
// prefetch and the hardware prefetcher do together. On a Sapphire Rapids
// core the float16 streams read 1.11–1.16 times faster with it
// (docs/PERFORMANCE.md, "Decode streaming"); 2 to 6 KiB measured alike, a
// third prefetch (2 and 4 KiB) less well.
const streamPrefetchL2 = 3072

// prefetchAhead prefetches (PREFETCHT0) the lines streamPrefetch bytes
// ahead of each row pointer that a loop step reading the given number of
// bytes of each row will need: one per 64 bytes, at least one.
func prefetchAhead(bytes int, rows ...Register) {
	for _, r := range rows {
		for off := 0; off < bytes || off == 0; off += 64 {
			PREFETCHT0(Mem{Base: r, Disp: streamPrefetch + off})
		}
	}
}

// genMatVecStreams writes a matrix-vector kernel that reads a block of 4n
// rows as 4 streams of n consecutive rows (rows j·n+i for j < 4, i < n),
// one row of each stream at a time: each stream reads its rows one after
// the other, so the memory sees 4 long sequential streams per thread
// rather than 4 short ones that jump every row. The outputs keep the dot
// order (one accumulator per row), so they are the bits of genMatVec's.
func genMatVecStreams(d dtype) {
	name := "matVec" + d.title + "StreamsAVX2"
	TEXT(name, NOSPLIT, "func(y *float32, w *"+d.gotyp+", x *float32, n, cols, ld int)")
	Pragma("noescape")
	Doc(append([]string{
		name + " writes the products of the 4n rows of w (row stride ld) with x",
		"to y in the dot order, reading them as 4 streams of n rows; cols is a",
		"multiple of 8:",
		"",
		"\tfor r := 0; r < 4*n; r++ {",
	}, append(dotDoc("\t\t", d.widen("w[r*ld+c+l]"), "x[c+l]", "y[r]"), "\t}")...)...)
	y := Load(Param("y"), GP64()).(GPVirtual)
	r := Load(Param("w"), GP64()).(GPVirtual)
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64()).(GPVirtual)
	cols := Load(Param("cols"), GP64())
	ld := Load(Param("ld"), GP64()).(GPVirtual)
	if d.size > 1 {
		SHLQ(U8(d.shift()), ld) // bytes per row
	}
	defer keepBF16Shuf(d)()
	S := GP64() // bytes between the streams: n rows
	MOVQ(n, S)
	IMULQ(ld, S)
	S3 := GP64()
	LEAQ(Mem{Base: S, Index: S, Scale: 2}, S3)
	yS := GP64() // bytes between the streams' outputs
	MOVQ(n, yS)
	SHLQ(U8(2), yS)
	L := 64 / d.size
	nL := GP64()
	MOVQ(cols, nL)
	ANDQ(I32(-L), nL)
	c := GP64()
	p := GP64()
	xm := func(off int) Mem { return Mem{Base: x, Index: c, Scale: 4, Disp: 4 * off} }
	at := func(base GPVirtual, j, disp int) Mem {
		m := Mem{Base: base, Disp: disp}
		switch j {
		case 1:
			m.Index, m.Scale = S, 1
		case 2:
			m.Index, m.Scale = S, 2
		case 3:
			m.Index, m.Scale = S3, 1
		}
		return m
	}

	Label("row")
	CMPQ(n, U8(0))
	JE(LabelRef("done"))
	MOVQ(r, p)
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	zero(acc...)
	XORQ(c, c)
	Label("lines")
	CMPQ(c, nL)
	JGE(LabelRef("cols8"))
	for j := 0; j < 4; j++ {
		PREFETCHT0(at(p, j, streamPrefetch))
	}
	for j := 0; j < 4; j++ {
		PREFETCHT2(at(p, j, streamPrefetchL2))
	}
	streamRow := func(j, disp int) Mem { return at(p, j, disp) }
	d.dot4(xm, streamRow, acc, L/8)
	ADDQ(U8(64), p)
	ADDQ(U8(L), c)
	JMP(LabelRef("lines"))
	Label("cols8")
	CMPQ(c, cols)
	JGE(LabelRef("sum"))
	d.dot4(xm, streamRow, acc, 1)
	ADDQ(U8(8*d.size), p)
	ADDQ(U8(8), c)
	JMP(LabelRef("cols8"))
	Label("sum")
	h := hsum4(acc[0], acc[1], acc[2], acc[3])
	VMOVSS(h, Mem{Base: y})
	VEXTRACTPS(U8(1), h, Mem{Base: y, Index: yS, Scale: 1})
	VEXTRACTPS(U8(2), h, Mem{Base: y, Index: yS, Scale: 2})
	y3 := GP64()
	LEAQ(Mem{Base: y, Index: yS, Scale: 2}, y3)
	VEXTRACTPS(U8(3), h, Mem{Base: y3, Index: yS, Scale: 1})
	ADDQ(U8(4), y)
	ADDQ(ld, r)
	DECQ(n)
	JMP(LabelRef("row"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genMatVecN writes the product of rows of w with nt ≤ 3 rows of x at
// once, for a few tokens: 4 rows × nt tokens take 12 accumulators, so each
// weight is loaded and widened once for all nt tokens.
func genMatVecN(d dtype, nt int) {
	name := fmt.Sprintf("matVec%sT%dAVX2", d.title, nt)
	TEXT(name, NOSPLIT, "func(y *float32, ldy int, w *"+d.gotyp+", x *float32, ldx, rows, cols, ld int)")
	Pragma("noescape")
	Doc(append([]string{
		fmt.Sprintf("%s writes the products of rows of w (row stride ld) with %d rows", name, nt),
		"of x (row stride ldx) to y (row stride ldy) in the dot order; cols is a",
		"multiple of 8:",
		"",
		fmt.Sprintf("\tfor t := 0; t < %d; t++ {", nt),
		"\t\tfor r := 0; r < rows; r++ {",
	}, append(dotDoc("\t\t\t", d.widen("w[r*ld+c+l]"), "x[t*ldx+c+l]", "y[t*ldy+r]"), "\t\t}", "\t}")...)...)
	// 15 general registers do not hold every pointer, so y, ldy, rows,
	// cols and ld stay in the argument frame.
	yM, ldyM, rowsM, colsM, ldM := frameArg("y"), frameArg("ldy"), frameArg("rows"), frameArg("cols"), frameArg("ld")
	w := Load(Param("w"), GP64()).(GPVirtual)
	x := Load(Param("x"), GP64()).(GPVirtual)
	ldx := Load(Param("ldx"), GP64()).(GPVirtual)
	SHLQ(U8(2), ldyM)
	SHLQ(U8(2), ldx)
	if d.size > 1 {
		SHLQ(U8(d.shift()), ldM)
	}
	L := 64 / d.size
	nL := GP64()
	MOVQ(colsM, nL)
	ANDQ(I32(-L), nL)
	g := newRowGroup(ldM)
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
	JL(LabelRef("rows1"))
	ld := GP64()
	MOVQ(ldM, ld)
	g.start(w, ld)
	acc := make([][]VecVirtual, 4)
	for j := range acc {
		acc[j] = make([]VecVirtual, nt)
		for t := range acc[j] {
			acc[j][t] = YMM()
		}
		zero(acc[j]...)
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
		VMOVUPS(hsum4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]), Mem{Base: yt})
		if t+1 < nt {
			ADDQ(ldyM, yt)
		}
	}
	ADDQ(U8(16), yM)
	ADDQ(g.ld4, w)
	SUBQ(U8(4), rowsM)
	JMP(LabelRef("rows4"))

	Label("rows1")
	CMPQ(rowsM, U8(0))
	JE(LabelRef("done"))
	a := make([]VecVirtual, nt)
	for t := range a {
		a[t] = YMM()
	}
	zero(a...)
	XORQ(c, c)
	Label("cols8x1")
	CMPQ(c, colsM)
	JGE(LabelRef("sum1"))
	tmp := YMM()
	d.load8(Mem{Base: w, Index: c, Scale: uint8(d.size)}, tmp)
	for t := range a {
		VFMADD231PS(xmem(t, 0), tmp, a[t])
	}
	ADDQ(U8(8), c)
	JMP(LabelRef("cols8x1"))
	Label("sum1")
	y1 := GP64()
	MOVQ(yM, y1)
	for t := range a {
		VMOVSS(hsum1(a[t]), Mem{Base: y1})
		if t+1 < nt {
			ADDQ(ldyM, y1)
		}
	}
	ADDQ(U8(4), yM)
	ADDQ(ldM, w)
	DECQ(rowsM)
	JMP(LabelRef("rows1"))
	Label("done")
	VZEROUPPER()
	RET()
}

// genPack writes the kernel that packs weights for genGemm: 4 rows widened
// to float32 and interleaved by 8 columns, so that one pointer walks the 4
// rows of a tile.
func genPack(d dtype) {
	name := "pack" + d.title + "AVX2"
	TEXT(name, NOSPLIT, "func(dst *float32, src *"+d.gotyp+", ld, kc int)")
	Pragma("noescape")
	Doc(
		name+" widens 4 rows × kc columns of src (row stride ld) to float32 and",
		"interleaves them by 8 columns; kc is a positive multiple of 8:",
		"",
		"\tfor k := 0; k < kc; k += 8 {",
		"\t\tfor j := 0; j < 4; j++ {",
		"\t\t\tfor l := 0; l < 8; l++ {",
		"\t\t\t\tdst[4*k+8*j+l] = "+d.widen("src[j*ld+k+l]"),
		"\t\t\t}",
		"\t\t}",
		"\t}",
	)
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ld := Load(Param("ld"), GP64())
	kc := Load(Param("kc"), GP64())
	if d.size > 1 {
		SHLQ(U8(d.shift()), ld)
	}
	ld3 := GP64()
	LEAQ(Mem{Base: ld, Index: ld, Scale: 2}, ld3)
	rows := []Mem{
		{Base: src},
		{Base: src, Index: ld, Scale: 1},
		{Base: src, Index: ld, Scale: 2},
		{Base: src, Index: ld3, Scale: 1},
	}
	// The next 4 rows (packPanel's next group), one line of each per 64
	// bytes read from a row: a call reads only kc columns of each row,
	// too short a stream for the hardware prefetcher to hide the latency
	// of memory.
	next := GP64()
	LEAQ(Mem{Base: src, Index: ld, Scale: 4}, next)
	Label("loop")
	for j, m := range rows {
		t := YMM()
		d.load8(m, t)
		VMOVUPS(t, Mem{Base: dst, Disp: 32 * j})
	}
	for j := range rows {
		PREFETCHT0(Mem{Base: next, Index: rows[j].Index, Scale: rows[j].Scale})
	}
	ADDQ(U8(8*d.size), next)
	ADDQ(U8(128), dst)
	ADDQ(U8(8*d.size), src)
	SUBQ(U8(8), kc)
	JNZ(LabelRef("loop"))
	VZEROUPPER()
	RET()
}

// genGemm writes the matrix-matrix micro-kernel: a tile of nt ≤ 3 rows of x
// × 4 packed weight rows, one 8-lane accumulator per output (12 for nt = 3,
// with 3 x vectors and one weight vector: 7 loads per 12 multiply-adds). It
// runs over one depth block of a panel of quads of 4 rows; the partial
// accumulators go to memory between blocks, which changes no bit.
func genGemm(nt int) {
	name := fmt.Sprintf("gemm%dx4AVX2", nt)
	TEXT(name, NOSPLIT, "func(y *float32, ldy int, acc *float32, x *float32, ldx int, p *float32, quads, kc, mode int)")
	Pragma("noescape")
	Doc([]string{
		fmt.Sprintf("%s multiplies %s of x (row stride ldx) by quads packed groups", name, rowsOf(nt)),
		"of 4 weight rows (see packF32AVX2; kc columns each, a positive multiple of",
		"8), in the dot order. The 8 lanes of each output start at zero, or with",
		"mode&1 at the partial sums in acc (32 floats per token and group, tokens",
		"inner); with mode&2 they are reduced into y (row stride ldy), otherwise",
		"stored back to acc:",
		"",
		"\tfor q := 0; q < quads; q++ {",
		fmt.Sprintf("\t\tfor t := 0; t < %d; t++ {", nt),
		"\t\t\tfor j := 0; j < 4; j++ {",
		fmt.Sprintf("\t\t\t\tlanes := acc[32*(%d*q+t)+8*j:][:8] // or zeros", nt),
		"\t\t\t\tfor k := 0; k < kc; k += 8 {",
		"\t\t\t\t\tfor l := range lanes {",
		"\t\t\t\t\t\tlanes[l] = fma(p[q*4*kc+4*k+8*j+l], x[t*ldx+k+l], lanes[l])",
		"\t\t\t\t\t}",
		"\t\t\t\t}",
		"\t\t\t\ty[t*ldy+4*q+j] = reduce8(lanes) // with mode&2",
		"\t\t\t}",
		"\t\t}",
		"\t}",
	}...)
	y := Load(Param("y"), GP64())
	ldy := Load(Param("ldy"), GP64())
	acc := Load(Param("acc"), GP64())
	x := Load(Param("x"), GP64())
	ldx := Load(Param("ldx"), GP64())
	p := Load(Param("p"), GP64())
	quads := Load(Param("quads"), GP64())
	kc := Load(Param("kc"), GP64())
	mode := Load(Param("mode"), GP64())
	SHLQ(U8(2), ldy)
	SHLQ(U8(2), ldx)
	xk, n := GP64(), GP64()
	// Accumulator of token t and row j: Y(4t+j); x vectors Y12-Y14; the
	// weight vector Y15.
	ys := []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}
	a := ys[:4*nt]
	xr := ys[12 : 12+nt]
	wv := Y15
	xmem := []Mem{{Base: xk}, {Base: xk, Index: ldx, Scale: 1}, {Base: xk, Index: ldx, Scale: 2}}
	ymem := []Mem{{Base: y}, {Base: y, Index: ldy, Scale: 1}, {Base: y, Index: ldy, Scale: 2}}

	Label("quad")
	CMPQ(quads, U8(0))
	JE(LabelRef("done"))
	TESTQ(U32(1), mode)
	JZ(LabelRef("zero"))
	for i, r := range a {
		VMOVUPS(Mem{Base: acc, Disp: 32 * i}, r)
	}
	JMP(LabelRef("start"))
	Label("zero")
	for _, r := range a {
		VXORPS(r, r, r)
	}
	Label("start")
	// The partial sums of the next group (or of the next tokens' first
	// group, which follow in memory) are in L2 by now; fetch them while
	// this group runs, so that its successor does not start on a miss.
	for off := 0; off < 128*nt; off += 64 {
		PREFETCHT0(Mem{Base: acc, Disp: 128*nt + off})
	}
	MOVQ(x, xk)
	MOVQ(kc, n)
	Label("k")
	for t := range xr {
		VMOVUPS(xmem[t], xr[t])
	}
	for j := 0; j < 4; j++ {
		VMOVUPS(Mem{Base: p, Disp: 32 * j}, wv)
		for t := range xr {
			VFMADD231PS(xr[t], wv, a[4*t+j])
		}
	}
	ADDQ(U8(32), xk)
	ADDQ(U32(128), p)
	SUBQ(U8(8), n)
	JNZ(LabelRef("k"))
	TESTQ(U32(2), mode)
	JNZ(LabelRef("final"))
	for i, r := range a {
		VMOVUPS(r, Mem{Base: acc, Disp: 32 * i})
	}
	JMP(LabelRef("next"))
	Label("final")
	for t := 0; t < nt; t++ {
		hsum4To(a[4*t], a[4*t+1], a[4*t+2], a[4*t+3], Y12, Y13)
		VMOVUPS(X12, ymem[t])
	}
	Label("next")
	ADDQ(U8(16), y)
	ADDQ(U32(128*nt), acc)
	DECQ(quads)
	JMP(LabelRef("quad"))
	Label("done")
	VZEROUPPER()
	RET()
}

// i8Block is the number of columns the int8 kernels sum in int32 before
// they move the sums to float64: each int32 lane then adds at most
// 4096/16 = 256 results of VPMADDWD, each at most 2·128·32767 in magnitude
// (|w| ≤ 128, |x| ≤ 32767), so at most 2147418112 < 2^31.
const i8Block = 4096

// genDotI8 writes the int8 × int16 kernel for nt ≤ 3 rows of x: 4 weight
// rows at a time, one cache line of each per step (prefetching the next 4
// rows like genMatVec), sign-extended to int16 and multiplied with
// VPMADDWD. The sums are exact: int32 lanes over blocks of i8Block
// columns, then float64, which holds every integer below 2^53.
func genDotI8(nt int) { genDotI8Kernel(nt, false, false) }

// genDotI8VNNI writes the same kernels with VPDPWSSD (AVX-512 VNNI, on
// 256-bit registers) in place of each VPMADDWD and VPADDD: the same
// exact int32 sums, one instruction instead of two.
func genDotI8VNNI() {
	for nt := 1; nt <= 3; nt++ {
		genDotI8Kernel(nt, false, true)
	}
	genDotI8Kernel(1, true, true)
}

// genDotI8Streams writes the one-token int8 kernel that reads a block of
// 4n rows as 4 streams of n consecutive rows (see genMatVecStreams), one
// row of each at a time, and writes their sums interleaved: tot[4i+j] is
// the sum of row j·n+i.
func genDotI8Streams() { genDotI8Kernel(1, true, false) }

// prefetchRowsI8 is log2 of how many rows ahead in each stream the int8
// streams kernel prefetches: int8 rows are half as long as bf16 ones, so
// one row ahead would keep half as many bytes in flight.
const prefetchRowsI8 = 1

// vnniDoc is the last line of the doc comment of an int8 kernel.
func vnniDoc(vnni bool) string {
	if vnni {
		return "(VPDPWSSD on 256-bit registers: it needs AVX-512 VNNI and VL.)"
	}
	return ""
}

func genDotI8Kernel(nt int, streams, vnni bool) {
	suffix := "AVX2"
	if vnni {
		suffix = "AVX512"
	}
	name := fmt.Sprintf("dotI8T%d%s", nt, suffix)
	if streams {
		name = "dotI8Streams" + suffix
		TEXT(name, NOSPLIT, "func(tot *float64, ldt int, w *int8, ld int, x *int16, ldx, rows, cols int)")
		Pragma("noescape")
		Doc(
			name+" writes to tot the exact dot products of the 4·rows rows of int8 w",
			"(row stride ld) with int16 x, reading them as 4 streams of rows rows;",
			"cols is a multiple of 16, |w| ≤ 128 and |x| ≤ 32767 (ldt and ldx are",
			"unused):",
			"",
			"\tfor i := 0; i < rows; i++ {",
			"\t\tfor j := 0; j < 4; j++ {",
			"\t\t\tvar s int64",
			"\t\t\tfor c := 0; c < cols; c++ {",
			"\t\t\t\ts += int64(w[(j*rows+i)*ld+c]) * int64(x[c])",
			"\t\t\t}",
			"\t\t\ttot[4*i+j] = float64(s)",
			"\t\t}",
			"\t}",
			vnniDoc(vnni),
		)
	} else {
		TEXT(name, NOSPLIT, "func(tot *float64, ldt int, w *int8, ld int, x *int16, ldx, rows, cols int)")
		Pragma("noescape")
	}
	if !streams {
		Doc(
			fmt.Sprintf("%s writes to tot (row stride ldt) the exact dot products of rows", name),
			fmt.Sprintf("of int8 w (row stride ld) with %s of int16 x (row stride ldx); cols is", rowsOf(nt)),
			"a multiple of 16, |w| ≤ 128 and |x| ≤ 32767:",
			"",
			fmt.Sprintf("\tfor t := 0; t < %d; t++ {", nt),
			"\t\tfor r := 0; r < rows; r++ {",
			"\t\t\tvar s int64",
			"\t\t\tfor c := 0; c < cols; c++ {",
			"\t\t\t\ts += int64(w[r*ld+c]) * int64(x[t*ldx+c])",
			"\t\t\t}",
			"\t\t\ttot[t*ldt+r] = float64(s)",
			"\t\t}",
			"\t}",
			vnniDoc(vnni),
		)
	}
	totM, ldtM, rowsM, colsM := frameArg("tot"), frameArg("ldt"), frameArg("rows"), frameArg("cols")
	w := Load(Param("w"), GP64()).(GPVirtual)
	ld := Load(Param("ld"), GP64()).(GPVirtual)
	x := Load(Param("x"), GP64()).(GPVirtual)
	ldx := Load(Param("ldx"), GP64()).(GPVirtual)
	SHLQ(U8(1), ldx)
	SHLQ(U8(3), ldtM)
	g := newRowGroup(ld)
	groupRows := 4 // rows handed to one pass of the group loop
	stride := ld   // bytes between the rows of a group
	if streams {
		// A group is row i of each stream: its rows lie rows·ld bytes
		// apart, the next group starts one row on, and the prefetch
		// fetches the next row of each stream.
		S := GP64()
		MOVQ(rowsM, S)
		IMULQ(ld, S)
		stride = S
		MOVQ(ld, g.ld4)
		SHLQ(U8(prefetchRowsI8), g.ld4)
		groupRows = 1
	}
	xs := []GPVirtual{x, GP64(), GP64()}
	if nt > 1 {
		LEAQ(Mem{Base: x, Index: ldx, Scale: 1}, xs[1])
	}
	if nt > 2 {
		LEAQ(Mem{Base: x, Index: ldx, Scale: 2}, xs[2])
	}
	c, end, endL := GP64(), GP64(), GP64()
	xm := func(t, off int) Mem { return Mem{Base: xs[t], Index: c, Scale: 2, Disp: 2 * off} }

	// blockEnd sets end = min(c+i8Block, cols) and endL to end rounded down
	// to a multiple of 64 columns past c.
	blockEnd := func() {
		LEAQ(Mem{Base: c, Disp: i8Block}, end)
		CMPQ(end, colsM)
		CMOVQGT(colsM, end)
		MOVQ(end, endL)
		SUBQ(c, endL)
		ANDQ(I8(-64), endL)
		ADDQ(c, endL)
	}
	// madd adds the products of weights wv (16 int16) with the 16 int16
	// at x row t to the int32 lanes of a. The x vectors of the first two
	// tokens are in registers; the third is read from memory, which leaves
	// a register for the products.
	madd := func(xr []VecVirtual, t, off int, wv, a VecVirtual) {
		if vnni {
			if t < len(xr) {
				VPDPWSSD(xr[t], wv, a)
			} else {
				VPDPWSSD(xm(t, off), wv, a)
			}
			return
		}
		p := YMM()
		if t < len(xr) {
			VPMADDWD(xr[t], wv, p)
		} else {
			VPMADDWD(xm(t, off), wv, p)
		}
		VPADDD(p, a, a)
	}
	loadX := func(off int) []VecVirtual {
		xr := make([]VecVirtual, min(nt, 2))
		for t := range xr {
			xr[t] = YMM()
			VMOVDQU(xm(t, off), xr[t])
		}
		return xr
	}
	// toF64 returns the sum of the 8 int32 lanes of a as 4 float64 lanes.
	toF64 := func(a VecVirtual) VecVirtual {
		lo, hi := YMM(), YMM()
		VCVTDQ2PD(a.AsX(), lo)
		h := XMM()
		VEXTRACTI128(U8(1), a, h)
		VCVTDQ2PD(h, hi)
		VADDPD(hi, lo, lo)
		return lo
	}

	Label("rows4")
	CMPQ(rowsM, U8(groupRows))
	JL(LabelRef("rows1"))
	g.start(w, stride)
	tp := GP64()
	MOVQ(totM, tp)
	z := YMM()
	VXORPD(z, z, z)
	for t := 0; t < nt; t++ {
		VMOVUPD(z, Mem{Base: tp})
		if t+1 < nt {
			ADDQ(ldtM, tp)
		}
	}
	acc := make([][]VecVirtual, nt)
	for t := range acc {
		acc[t] = []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	}
	XORQ(c, c)
	Label("block4")
	CMPQ(c, colsM)
	JGE(LabelRef("next4"))
	blockEnd()
	for _, at := range acc {
		for _, a := range at {
			VPXOR(a, a, a)
		}
	}
	step := func(off int) {
		xr := loadX(off)
		for j := 0; j < 4; j++ {
			wv := YMM()
			VPMOVSXBW(Mem{Base: g.p[j], Disp: off}, wv)
			for t := range acc {
				madd(xr, t, off, wv, acc[t][j])
			}
		}
	}
	Label("lines4")
	CMPQ(c, endL)
	JGE(LabelRef("cols16x4"))
	g.prefetch()
	for v := 0; v < 4; v++ {
		step(16 * v)
	}
	g.advance(64)
	ADDQ(U8(64), c)
	JMP(LabelRef("lines4"))
	Label("cols16x4")
	CMPQ(c, end)
	JGE(LabelRef("flush4"))
	step(0)
	g.advance(16)
	ADDQ(U8(16), c)
	JMP(LabelRef("cols16x4"))
	Label("flush4")
	// For each token, the 4 row sums in the 4 float64 lanes of one vector
	// are added to tot; all of it is exact.
	MOVQ(totM, tp)
	for t, at := range acc {
		s := []VecVirtual{toF64(at[0]), toF64(at[1]), toF64(at[2]), toF64(at[3])}
		h01, h23 := YMM(), YMM()
		VHADDPD(s[1], s[0], h01) // s0 01, s1 01, s0 23, s1 23
		VHADDPD(s[3], s[2], h23)
		lo, hi := YMM(), YMM()
		VPERM2F128(U8(0x20), h23, h01, lo)
		VPERM2F128(U8(0x31), h23, h01, hi)
		VADDPD(hi, lo, lo)
		VADDPD(Mem{Base: tp}, lo, lo)
		VMOVUPD(lo, Mem{Base: tp})
		if t+1 < nt {
			ADDQ(ldtM, tp)
		}
	}
	JMP(LabelRef("block4"))
	Label("next4")
	ADDQ(U8(32), totM)
	if streams {
		ADDQ(ld, w)
	} else {
		ADDQ(g.ld4, w)
	}
	SUBQ(U8(groupRows), rowsM)
	JMP(LabelRef("rows4"))

	Label("rows1")
	if streams {
		JMP(LabelRef("done"))
	}
	CMPQ(rowsM, U8(0))
	JE(LabelRef("done"))
	MOVQ(totM, tp)
	for t := 0; t < nt; t++ {
		MOVQ(U32(0), Mem{Base: tp})
		if t+1 < nt {
			ADDQ(ldtM, tp)
		}
	}
	a1 := make([]VecVirtual, nt)
	for t := range a1 {
		a1[t] = YMM()
	}
	XORQ(c, c)
	Label("block1")
	CMPQ(c, colsM)
	JGE(LabelRef("next1"))
	blockEnd()
	for _, a := range a1 {
		VPXOR(a, a, a)
	}
	Label("cols16x1")
	CMPQ(c, end)
	JGE(LabelRef("flush1"))
	wv := YMM()
	VPMOVSXBW(Mem{Base: w, Index: c, Scale: 1}, wv)
	xr := loadX(0)
	for t, a := range a1 {
		madd(xr, t, 0, wv, a)
	}
	ADDQ(U8(16), c)
	JMP(LabelRef("cols16x1"))
	Label("flush1")
	MOVQ(totM, tp)
	for t, a := range a1 {
		s := toF64(a)
		h := XMM()
		VEXTRACTF128(U8(1), s, h)
		VADDPD(h, s.AsX(), h)
		VHADDPD(h, h, h)
		VADDSD(Mem{Base: tp}, h, h)
		VMOVSD(h, Mem{Base: tp})
		if t+1 < nt {
			ADDQ(ldtM, tp)
		}
	}
	JMP(LabelRef("block1"))
	Label("next1")
	ADDQ(U8(8), totM)
	ADDQ(ld, w)
	DECQ(rowsM)
	JMP(LabelRef("rows1"))
	Label("done")
	VZEROUPPER()
	RET()
}

func genAbsMax() {
	TEXT("absMaxAVX2", NOSPLIT, "func(x *float32, n int) float32")
	Pragma("noescape")
	Doc(
		"absMaxAVX2 returns the largest |x[i]| for i < n, or NaN if any x[i] is",
		"Inf or NaN; n is a multiple of 8:",
		"",
		"\tfor i := 0; i < n; i++ {",
		"\t\tif x[i]-x[i] != 0 {",
		"\t\t\treturn NaN",
		"\t\t}",
		"\t\tm = max(m, abs(x[i]))",
		"\t}",
	)
	x := Mem{Base: Load(Param("x"), GP64())}
	n := Load(Param("n"), GP64())
	m, sgn, fin := YMM(), YMM(), YMM()
	zero(m, fin)
	VMOVUPS(k.sign, sgn)
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	v, t := YMM(), YMM()
	VMOVUPS(x, v)
	VANDNPS(v, sgn, t) // clear the sign bit
	VMAXPS(t, m, m)
	// x-x is 0 for finite x and NaN for Inf and NaN; a NaN stays in the sum.
	VSUBPS(v, v, v)
	VADDPS(v, fin, fin)
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
	VADDPS(hsum1(fin), lo, lo)
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
