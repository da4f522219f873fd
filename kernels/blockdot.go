package kernels

import (
	"encoding/binary"
	"math"
)

// Fused block products. A block format with a Dot kernel is multiplied
// straight from its blocks, without a float32 copy of the weights: each
// row of x is rounded once per product to 16-bit integers in blocks of 32
// values with one float32 scale each (xQ16, below), and each output is a
// sum over blocks of exact integer dot products of the weights' small
// integers with those values (VPMADDWD), scaled by the blocks' float
// scales. llama.cpp does the same with 8-bit activation blocks
// (VPMADDUBSW); 16 bits cost a few more instructions per block, which a
// memory-bound decode hides, and move each activation by at most 1/65534
// of its block's largest magnitude instead of 1/254, so that the rounding
// rarely changes a mixture-of-experts routing decision.
//
// The order of every output is fixed (it is that of the plain-Go kernels
// below, dotQ8_0Generic and its siblings, and the assembly performs the
// same operations with the same roundings), so the results are bit for bit
// the same with and without assembly, and a row's outputs depend on that
// row of x and the weights only: batch-invariant, like every MatMul path.
//
// Per output, with 8 float32 lanes acc[l] from zero: for each block b of
// 32 columns, with its combined scale s_b (weights' scale times the
// activation block's, each product rounded) and the exact integer lane sums
// L_l = Σ_{i ∈ {2l, 2l+1, 16+2l, 17+2l}} w_i·q_i (w the block's integer
// weights, q the activations: the lanes of VPMADDWD over the block's two
// halves, added), acc[l] += float32(s_b·float32(L_l)) (product and sum
// each rounded); the output is reduce8(acc), less reduce8 of an 8-lane sum
// of the blocks' minimum terms for Q4_K and Q5_K.

// BlockDot names the fused product kernel of a block format (see
// BlockFormat.Dot); NoDot means the rows are dequantized and multiplied in
// float32.
type BlockDot uint8

const (
	NoDot   BlockDot = iota
	DotQ8_0          // ggml Q8_0: 32 weights, f16 d, 32 int8 (34 bytes)
	DotQ4_0          // ggml Q4_0: 32 weights, f16 d, 16 bytes of nibbles (18 bytes)
	DotQ4K           // ggml Q4_K: 256 weights in 144 bytes
	DotQ5K           // ggml Q5_K: 256 weights in 176 bytes
	DotQ6K           // ggml Q6_K: 256 weights in 210 bytes
	DotQ5_0          // ggml Q5_0: 32 weights, f16 d, 32 high bits, 16 bytes of nibbles (22 bytes)
	// DotF16: IEEE halves, 8 per "block" of 16 bytes, multiplied exactly
	// as the float32 matrix of the same values (the activations stay
	// float32, the dot order is MatMul's): not quantized, only stored in
	// half the bytes.
	DotF16
)

// dotGeometry is the block size and bytes of each kernel, which the
// format must match for its Dot to be used.
var dotGeometry = [...]struct{ elems, bytes int }{
	DotQ8_0: {32, 34},
	DotQ4_0: {32, 18},
	DotQ4K:  {256, 144},
	DotQ5K:  {256, 176},
	DotQ6K:  {256, 210},
	DotF16:  {8, 16},
	DotQ5_0: {32, 22},
}

// DequantizeF16 widens the len(dst) halves in src to float32 (exactly).
func DequantizeF16(dst []float32, src []byte) {
	_ = src[2*len(dst)-1]
	for i := range dst {
		dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// f16Rows computes the outputs r0..r1 of all T tokens with float16
// weights (DotF16): up to 4 tokens per pass over those rows with the
// assembly, each output in the dot order (bit for bit the float32 path on
// the widened weights); without it, each row widened and multiplied by
// rowDot.
func f16Rows(s *scratch, dst, x []float32, T int, w *Matrix, r0, r1 int) {
	R, C := w.Rows, w.Cols
	rb := 2 * C
	q := w.Q[r0*rb : r1*rb]
	nr := r1 - r0
	if useAVX2 {
		if len(s.blockOut) < groupTokens*nr {
			s.blockOut = make([]float32, groupTokens*nr)
		}
		for t0 := 0; t0 < T; t0 += groupTokens {
			nt := min(groupTokens, T-t0)
			out := s.blockOut[:nt*nr]
			if nt == 1 && w.Bytes() >= streamsMinBytes {
				// A matrix from memory: 4 long streams of rows, as
				// matVecRows reads bfloat16 ones (the same bits).
				matVecF16Streams(out, q, nr, C, x[t0*C:(t0+1)*C])
			} else {
				matVecF16(out, q, nr, C, x[t0*C:(t0+nt)*C], nt)
			}
			if nt == 1 {
				copy(dst[t0*R+r0:t0*R+r1], out)
				continue
			}
			for i := range nt {
				y := dst[(t0+i)*R+r0 : (t0+i)*R+r1]
				for r := range y {
					y[r] = out[r*nt+i]
				}
			}
		}
		return
	}
	if len(s.deq) < C {
		s.deq = make([]float32, C)
	}
	row := Matrix{Rows: 1, Cols: C, DType: F32, F32: s.deq[:C]}
	for r := r0; r < r1; r++ {
		DequantizeF16(row.F32, q[(r-r0)*rb:(r-r0+1)*rb])
		for t := range T {
			dst[t*R+r] = rowDot(&row, 0, x[t*C:(t+1)*C])
		}
	}
}

// fused reports whether w is multiplied by a fused block kernel.
func fused(w *Matrix) bool {
	if w.DType != Blocks || w.Format == nil || w.Format.Dot == NoDot || int(w.Format.Dot) >= len(dotGeometry) {
		return false
	}
	g := dotGeometry[w.Format.Dot]
	return g.elems == w.Format.Elems && g.bytes == w.Format.Bytes
}

// q8Block is the number of activations that share one scale.
const q8Block = 32

// xQ8 holds the rows of x rounded to 16-bit blocks for the fused kernels:
// x[t*C+c] ≈ d[t*C/32+c/32]·q[t*C+c], and s holds each block's Σ q (as a
// float32, exact: at most 32·32767). A row with ok[t] false (it holds Inf
// or NaN) is multiplied through the dequantized weights in float32
// instead.
type xQ8 struct {
	q    []int16
	d, s []float32
	ok   []bool
	// For the assembly's several-token kernels, the finite rows in groups
	// of up to groupTokens, interleaved (packGroup).
	groups     []xGroup
	gq         []int16
	gd, gs     []float32
	groupBlock int // the format's block size when the groups were packed
}

// groupTokens is the most tokens a fused kernel multiplies at once; the
// AVX-512 kernels of Q8_0, Q4_0 and Q5_0 take up to groupTokens512 (two
// rows per register: the accumulators of 8 tokens and two pairs of rows
// fit the 32 registers), which MatMul packs for an even number of rows,
// so that no odd row is left to the AVX2 kernels.
const (
	groupTokens    = 4
	groupTokens512 = 8
)

// xGroup is nt tokens' activations interleaved: block b of token t at
// q[(b*nt+t)*32:], and its scale (and Σ q) at d[b*nt+t] for blocks of 32
// weights or d[(b/8*nt+t)*8+b%8] for super-blocks of 256.
type xGroup struct {
	tokens [groupTokens512]int
	nt     int
	q      []int16
	d, s   []float32
}

// quantize rounds the T rows of C columns (a multiple of 32) of x.
func (a *xQ8) quantize(x []float32, T, C int) {
	a.resize(T, C)
	a.rows(x, C, 0, T)
}

// resize makes room for T rows of C columns and forgets the groups.
func (a *xQ8) resize(T, C int) {
	nb := C / q8Block
	if cap(a.q) < T*C {
		a.q = make([]int16, T*C)
	}
	if cap(a.d) < T*nb {
		a.d = make([]float32, T*nb)
		a.s = make([]float32, T*nb)
	}
	if cap(a.ok) < T {
		a.ok = make([]bool, T)
	}
	a.q, a.d, a.s, a.ok = a.q[:T*C], a.d[:T*nb], a.s[:T*nb], a.ok[:T]
	a.groups = a.groups[:0]
}

// rows rounds rows t0..t1 of x (rows of C columns; resize first). Rows
// are independent: several threads may round disjoint ranges at once.
func (a *xQ8) rows(x []float32, C, t0, t1 int) {
	nb := C / q8Block
	for t := t0; t < t1; t++ {
		a.ok[t] = quantizeQ8Row(a.q[t*C:(t+1)*C], a.d[t*nb:(t+1)*nb], a.s[t*nb:(t+1)*nb], x[t*C:(t+1)*C])
	}
}

// layout puts the finite rows in groups of up to maxNT tokens for weights
// in blocks of elems and gives each group its part of the buffers; fill
// then packs them.
func (a *xQ8) layout(T, C, elems, maxNT int) {
	nb := C / q8Block
	if cap(a.gq) < T*C {
		a.gq = make([]int16, T*C)
	}
	if cap(a.gd) < T*nb {
		a.gd = make([]float32, T*nb)
		a.gs = make([]float32, T*nb)
	}
	if cap(a.groups) < T {
		a.groups = make([]xGroup, 0, T)
	}
	a.groups, a.groupBlock = a.groups[:0], elems
	used := 0
	tokenGroups(a.ok[:T], maxNT, func(tokens [groupTokens512]int, n int) {
		g := xGroup{tokens: tokens, nt: n}
		g.q, g.d, g.s = a.gq[used*C:(used+n)*C], a.gd[used*nb:(used+n)*nb], a.gs[used*nb:(used+n)*nb]
		used += n
		a.groups = append(a.groups, g)
	})
}

// tokenGroups calls group with each run of up to maxNT (≤ 8) of the
// tokens t whose ok[t] is set (rows without Inf or NaN), in order: the
// token groups of the several-token kernels.
func tokenGroups(ok []bool, maxNT int, group func(tokens [groupTokens512]int, n int)) {
	var tokens [groupTokens512]int
	n := 0
	for t, fine := range ok {
		if !fine {
			continue
		}
		tokens[n] = t
		n++
		if n == maxNT {
			group(tokens, n)
			n = 0
		}
	}
	if n > 0 {
		group(tokens, n)
	}
}

// fill packs group i (layout). Groups are independent: several threads
// may fill different ones at once.
func (a *xQ8) fill(i, C int) {
	nb := C / q8Block
	g := &a.groups[i]
	n := g.nt
	for i, t := range g.tokens[:n] {
		for b := range nb {
			copy(g.q[(b*n+i)*q8Block:(b*n+i+1)*q8Block], a.q[t*C+b*q8Block:t*C+(b+1)*q8Block])
			j := b*n + i
			if a.groupBlock == 256 {
				j = (b/8*n+i)*8 + b%8
			}
			g.d[j], g.s[j] = a.d[t*nb+b], a.s[t*nb+b]
		}
	}
}

// quantizeQ8Row rounds x to blocks of 32 int16: per block, with
// m = max|x|, d = m/32767 and q = round(x·(32767/m)) (ties to even), so
// that each value moves by at most about d/2. A block whose 32767/m
// overflows (m below 2^-113) is stored as zeros. It returns false, leaving
// the rest unset, when x holds an Inf or a NaN.
func quantizeQ8Row(q []int16, d, s, x []float32) bool {
	for b := range d {
		xb := x[q8Block*b : q8Block*(b+1)]
		qb := q[q8Block*b : q8Block*(b+1)]
		m := absMax(xb) // NaN if xb holds an Inf or a NaN
		if m != m {
			return false
		}
		id := qMax / m
		if m == 0 || id > math.MaxFloat32 {
			clear(qb)
			d[b], s[b] = 0, 0
			continue
		}
		// round(x·id), ties to even: |x·id| ≤ m·(32767/m), which rounds
		// to at most 32767.
		quantI16(qb, xb, id)
		var sum int32
		for _, v := range qb {
			sum += int32(v)
		}
		d[b], s[b] = m/qMax, float32(sum)
	}
	return true
}

// fusedRows computes the outputs r0..r1 of all T tokens with a fused block
// kernel, token by token over those rows (which stay in the cache).
func fusedRows(s *scratch, dst, x []float32, T int, w *Matrix, a *xQ8, r0, r1 int) {
	R, C := w.Rows, w.Cols
	rb := w.Format.rowBytes(C)
	nb := C / q8Block
	q := w.Q[r0*rb : r1*rb]
	if T > 1 && useAVX2 {
		// Groups of tokens share each widened weight block.
		for t := range T {
			if !a.ok[t] {
				blockRows(s, dst[t*R:(t+1)*R], x[t*C:(t+1)*C], 1, w, r0, r1)
			}
		}
		nr := r1 - r0
		if len(s.blockOut) < groupTokens512*nr {
			s.blockOut = make([]float32, groupTokens512*nr)
		}
		for _, g := range a.groups {
			out := s.blockOut[:g.nt*nr]
			blockDotRowsN(out, w.Format.Dot, q, rb, g.nt, g.q, g.d, g.s)
			for i, t := range g.tokens[:g.nt] {
				y := dst[t*R+r0 : t*R+r1]
				for r := range y {
					y[r] = out[r*g.nt+i]
				}
			}
		}
		return
	}
	for t := range T {
		out := dst[t*R : (t+1)*R]
		if !a.ok[t] {
			blockRows(s, out, x[t*C:(t+1)*C], 1, w, r0, r1)
			continue
		}
		blockDotRows(out[r0:r1], w.Format.Dot, q, rb, a.q[t*C:(t+1)*C], a.d[t*nb:(t+1)*nb], a.s[t*nb:(t+1)*nb])
	}
}

// blockDotRowsGeneric sets y[i] to the fused product of row i of the
// blocks in w (rb bytes each) with the quantized activations q, d, s.
func blockDotRowsGeneric(y []float32, k BlockDot, w []byte, rb int, q []int16, d, s []float32) {
	g := dotGeometry[k]
	nb := rb / g.bytes * g.elems / q8Block
	q, d, s = q[:nb*q8Block], d[:nb], s[:nb]
	for i := range y {
		row := w[i*rb : (i+1)*rb]
		switch k {
		case DotQ8_0:
			y[i] = dotQ8_0Generic(row, q, d)
		case DotQ4_0:
			y[i] = dotQ4_0Generic(row, q, d)
		case DotQ4K:
			y[i] = dotQ4KGeneric(row, q, d, s)
		case DotQ5K:
			y[i] = dotQ5KGeneric(row, q, d, s)
		case DotQ6K:
			y[i] = dotQ6KGeneric(row, q, d)
		case DotQ5_0:
			y[i] = dotQ5_0Generic(row, q, d)
		}
	}
}

func half(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }

// qMax is the largest activation integer.
const qMax = 32767

// addLanes adds one block to the 8 lanes: acc[l] += s·L_l, with
// L_l = Σ w[i]·q[i] over i = 2l, 2l+1, 16+2l, 17+2l, exact.
func addLanes(acc *[8]float32, s float32, w *[32]int32, q []int16) {
	q = q[:32]
	for l := range 8 {
		var L int32
		for _, i := range [4]int{2 * l, 2*l + 1, 16 + 2*l, 17 + 2*l} {
			L += w[i] * int32(q[i])
		}
		acc[l] += float32(s * float32(L))
	}
}

// dotQ8_0Generic is the fused product of a row of Q8_0 blocks with q8
// activations.
func dotQ8_0Generic(w []byte, q []int16, d []float32) float32 {
	var acc [8]float32
	var wi [32]int32
	for b := range d {
		blk := w[34*b : 34*b+34]
		for i := range wi {
			wi[i] = int32(int8(blk[2+i]))
		}
		addLanes(&acc, float32(half(blk)*d[b]), &wi, q[32*b:])
	}
	return reduce8(&acc)
}

// dotQ4_0Generic is the fused product of a row of Q4_0 blocks (weights
// nibble−8, the low nibbles first) with q8 activations.
func dotQ4_0Generic(w []byte, q []int16, d []float32) float32 {
	var acc [8]float32
	var wi [32]int32
	for b := range d {
		blk := w[18*b : 18*b+18]
		for i := range 16 {
			wi[i] = int32(blk[2+i]&15) - 8
			wi[16+i] = int32(blk[2+i]>>4) - 8
		}
		addLanes(&acc, float32(half(blk)*d[b]), &wi, q[32*b:])
	}
	return reduce8(&acc)
}

// dotQ5_0Generic is the fused product of a row of Q5_0 blocks (weights
// nibble + 16·high bit − 16; the high bits of weights 0-31 are bits 0-31 of
// the little-endian qh) with the activations.
func dotQ5_0Generic(w []byte, q []int16, d []float32) float32 {
	var acc [8]float32
	var wi [32]int32
	for b := range d {
		blk := w[22*b : 22*b+22]
		qh := binary.LittleEndian.Uint32(blk[2:])
		for i := range 16 {
			wi[i] = int32(blk[6+i]&15|byte(qh>>i&1)<<4) - 16
			wi[16+i] = int32(blk[6+i]>>4|byte(qh>>(16+i)&1)<<4) - 16
		}
		addLanes(&acc, float32(half(blk)*d[b]), &wi, q[32*b:])
	}
	return reduce8(&acc)
}

// q4kScaleMins unpacks the 8 six-bit scales and mins of a Q4_K or Q5_K
// super-block (ggml's get_scale_min_k4).
func q4kScaleMins(s []byte) (sc, m [8]byte) {
	s = s[:12]
	for j := range 8 {
		if j < 4 {
			sc[j], m[j] = s[j]&63, s[j+4]&63
		} else {
			sc[j], m[j] = (s[j+4]&0xF)|((s[j-4]>>6)<<4), (s[j+4]>>4)|((s[j]>>6)<<4)
		}
	}
	return sc, m
}

// dotQ4KGeneric is the fused product of a row of Q4_K super-blocks with q8
// activations: per sub-block j of 32 (activation block b), the weights
// w = d·sc_j·q − dmin·m_j give A = (d·sc_j)·d_b on the lanes and
// M = (dmin·m_j)·d_b times the block's Σ q on lane j of the minimum sums.
func dotQ4KGeneric(w []byte, q []int16, d, s []float32) float32 {
	return dotK45(w, q, d, s, false)
}

// dotQ5KGeneric is dotQ4KGeneric for Q5_K, whose weights have a fifth
// bit (bit j of qh[i] for sub-block j).
func dotQ5KGeneric(w []byte, q []int16, d, s []float32) float32 {
	return dotK45(w, q, d, s, true)
}

func dotK45(w []byte, q []int16, d, s []float32, five bool) float32 {
	var acc, macc [8]float32
	var wi [32]int32
	bs, off := 144, 16
	if five {
		bs, off = 176, 48
	}
	for sb := 0; sb < len(d)/8; sb++ {
		blk := w[bs*sb : bs*(sb+1)]
		dd, dmin := half(blk), half(blk[2:])
		sc, m := q4kScaleMins(blk[4:16])
		for j := range 8 {
			b := 8*sb + j
			A := float32(float32(dd*float32(sc[j])) * d[b])
			M := float32(float32(dmin*float32(m[j])) * d[b])
			macc[j] += float32(M * s[b])
			qs := blk[off+32*(j/2) : off+32*(j/2)+32]
			sh := 4 * (j % 2)
			for i := range wi {
				v := int32(qs[i]>>sh) & 15
				if five && blk[16+i]>>j&1 != 0 {
					v += 16
				}
				wi[i] = v
			}
			addLanes(&acc, A, &wi, q[32*b:])
		}
	}
	return reduce8(&acc) - reduce8(&macc)
}

// dotQ6KGeneric is the fused product of a row of Q6_K super-blocks with q8
// activations: per group of 32 (half h, group g: activation block b) the
// 16-weight scales sc enter the integer lane sums,
// L_l = Σ sc_{i/16}·(q6_i−32)·q_i (at most 4·128·32·32767 < 2^31; its
// conversion to float32 rounds), and D = d·d_b scales them.
func dotQ6KGeneric(w []byte, q []int16, d []float32) float32 {
	var acc [8]float32
	for sb := 0; sb < len(d)/8; sb++ {
		blk := w[210*sb : 210*(sb+1)]
		dd := half(blk[208:])
		for h := range 2 {
			for g := range 4 {
				b := 8*sb + 4*h + g
				D := float32(dd * d[b])
				qb := q[32*b : 32*b+32]
				for l := range 8 {
					var L int32
					for _, i := range [4]int{2 * l, 2*l + 1, 16 + 2*l, 17 + 2*l} {
						ql := blk[64*h+32*(g&1)+i]
						if g >= 2 {
							ql >>= 4
						}
						qh := blk[128+32*h+i] >> (2 * g) & 3
						v := int32(ql&15|qh<<4) - 32
						sc := int32(int8(blk[192+8*h+2*g+i/16]))
						L += sc * v * int32(qb[i])
					}
					acc[l] += float32(D * float32(L))
				}
			}
		}
	}
	return reduce8(&acc)
}
