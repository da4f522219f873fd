package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"
)

// 8-bit activations (opt-in, SetActivationBits(8)). The fused block
// products of blockdot.go round each row of x to int16 blocks; this path
// rounds it to int8 blocks instead, as llama.cpp does, so that the
// products multiply bytes (VPDPBUSD and VPMADDUBSW: 32 products per
// instruction where VPMADDWD does 16) and, for the K-formats, sum a whole
// super-block in integers before one conversion to float32.
//
// Activations. Each row of x is cut into blocks of E values: E = 32 for
// Q8_0, Q4_0 and Q5_0 (ggml's Q8_0), E = 256 for Q4_K, Q5_K and Q6_K (as
// ggml's Q8_K). Per block, with m = max|x_i|: d = m/127 and
// q_i = round(x_i·(127/m)), ties to even, clamped to ±127 (ggml's
// quantize_row_q8_0 as its AVX2 code computes it: the product with 127/m,
// then rounding to nearest; ggml's Q8_K uses the signed maximum, so that
// its q may reach −128, and a rounding away from zero: ours is the
// symmetric Q8_0 rule at both sizes). A block with m = 0, or whose 127/m
// overflows (m below about 3.7e-37), is all zeros with d = 0. Each value
// moves by at most d/2 = m/254. A row holding an Inf or a NaN is
// multiplied through the dequantized float32 weights instead.
//
// Products. A block of 32 weights holds small integers w_i (Q8_0: the
// bytes; Q4_0: nibble − 8; Q5_0: nibble + 16·high bit − 16; Q4_K: the
// nibbles; Q5_K: nibble + 16·high bit; Q6_K: q6 − 32), and its lanes are
// L_l = Σ_{i=4l}^{4l+3} w_i·q_i (exact: 4 consecutive products). Per
// output, with 8 float32 lanes acc[l] from zero:
//
//   - Q8_0, Q4_0, Q5_0, for each block b in order:
//     acc[l] = fma32(s_b, float32(L_l), acc[l]), s_b = float32(d_w·d_b)
//     with d_w the block's half: the product and sum rounded once
//     (VFMADD231PS; fma32 computes it exactly in Go).
//   - Q4_K, Q5_K, for each super-block in order: the exact integers
//     I_l = Σ_j sc_j·L_{j,l} over its 8 sub-blocks j (6-bit scales sc_j),
//     then acc[l] += float32(D·float32(I_l)) with D = float32(d·d_sb);
//     the minimum terms go to 8 more lanes,
//     macc[j] += float32(float32(float32(dmin·m_j)·d_sb)·Σ_j q), and the
//     output is reduce8(acc) − reduce8(macc).
//   - Q6_K, for each super-block in order: I_l = Σ_b sc_{b,l}·L_{b,l}
//     over its 8 blocks of 32, sc_{b,l} the int8 scale of the lane's 16
//     weights (lanes 0-3: the block's first 16, 4-7: its last 16), then
//     acc[l] += float32(D·float32(I_l)), D = float32(d·d_sb).
//
// The output is reduce8(acc) (less the minimum lanes). Bounds: |L_l| ≤
// 4·128·127 < 2^16; |I_l| ≤ 8·63·4·31·127 (Q5_K) or 8·128·4·32·127
// (Q6_K), both below 2^24, so every conversion to float32 is exact. The
// assembly (AVX2 and AVX-512 VNNI) does these operations with these
// roundings, so every path gives the bits of the plain Go below, and an
// output depends on its row of x and the weights only (batch-invariant).

// actBits is the activation width of the fused block products: 16 or 8.
var actBits atomic.Int32

func init() { actBits.Store(16) }

// SetActivationBits chooses how MatMul rounds the activations of weights
// with a fused block kernel (GGUF Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K): 16,
// the default, to int16 blocks of 32 (each value within 1/65534 of its
// block's largest magnitude); 8, to int8 blocks of 32 (Q8_0, Q4_0, Q5_0)
// or 256 (Q4_K, Q5_K, Q6_K) as llama.cpp does (within 1/254 of the
// block's largest magnitude), for faster products. F16, int8 and float
// weights are not affected. Other values are an error. It applies to the products
// that start after it returns.
func SetActivationBits(bits int) error {
	if bits != 8 && bits != 16 {
		return fmt.Errorf("kernels: activation bits %d: want 8 or 16", bits)
	}
	actBits.Store(int32(bits))
	return nil
}

// ActivationBits reports the activation width set by SetActivationBits.
func ActivationBits() int { return int(actBits.Load()) }

// act8Max is the largest 8-bit activation.
const act8Max = 127

// xAct8 holds the rows of x rounded to int8 blocks of elems values (32 or
// 256, the weights' block): x[t*C+c] ≈ d[(t*C+c)/elems]·q[t*C+c]. Per
// block of 32 values b, s[b] holds Σ q (exact in float32) and
// aux[n·b:n·(b+1)] (n = auxLanes(elems)) what the VNNI kernels need. For
// elems = 256 (n = 8) the 32 bytes q_i+128, four per int32, little-endian
// (the K-formats' kernels multiply them with signed weights, Q6_K's AVX2
// ones too). For elems = 32 (n = 24): first the same bytes with each
// int32 twice, aux[24b+2l] = aux[24b+2l+1] = q_{4l..4l+3}+128 (the
// several-token kernels of Q8_0, Q4_0 and Q5_0 hold two rows interleaved
// by int32 lanes; xGroup8 keeps these 16), then the lanes
// aux[24b+16+l] = −128·Σ_{i=4l}^{4l+3} q_i (the one-token kernels
// multiply w+128 with q). For elems = 256, ms[(t*nd+sb)*4+k] holds the
// sums Σq of blocks 8sb+2k and 8sb+2k+1 as the low and high int16 of an
// int32 (|Σq| ≤ 32·127): the Q4_K and Q5_K kernels multiply them with
// the minima by VPMADDWD. Rows with ok[t] false hold an Inf or a NaN.
type xAct8 struct {
	elems  int
	q      []int8
	d, s   []float32
	aux    []int32
	k8     []int32 // blocks of 32: −8·Σq per block (Q4_0's lanes kernels)
	ms     []int32 // blocks of 256: pairs of Σq (above)
	ok     []bool
	groups []xGroup8
	gq     []int8
	gd, gs []float32
	gaux   []int32
	gk8    []int32
	gms    []int32
}

// xGroup8 is nt tokens' 8-bit activations interleaved: block of 32 b of
// token t at q[(b*nt+t)*32:] and aux[(b*nt+t)*n:] (n = groupAuxLanes: the
// first n of xAct8's aux per block); for
// blocks of 32 weights its scale at d[b*nt+t] and, twice, at
// s[2(b*nt+t)] and s[2(b*nt+t)+1] (the VNNI kernels multiply two rows'
// halves by the tokens' scales at once; these formats need no Σ q), for
// super-blocks of 256 the scale of super-block sb at d[sb*nt+t] (no s:
// their kernels need none) and xAct8's ms of super-block sb, pair k at
// ms[(sb*4+k)*8+t] (8 int32 for every group: the kernels load a vector of
// 8 tokens' pairs; those of tokens ≥ nt are 0). The kernels of several
// tokens read 8 scales from d[sb*nt:], past the group's end at its last
// super-block: xAct8's gd has groupTokens8 floats to spare.
type xGroup8 struct {
	tokens [groupTokens8]int
	nt     int
	q      []int8
	d, s   []float32
	aux    []int32
	k8     []int32 // blocks of 32: xAct8's k8 of block b, token t at b*nt+t
	ms     []int32 // blocks of 256: pairs of Σq (above)
}

// nc is the nc of blockDot8Rows for format k: the group's ms for Q4_K
// and Q5_K, its k8 for Q4_0, else its aux.
func (g *xGroup8) nc(k BlockDot) []int32 {
	switch k {
	case DotQ4K, DotQ5K:
		return g.ms
	case DotQ4_0:
		return g.k8
	}
	return g.aux
}

// msLanes is the number of int32 of xAct8's ms per super-block and token,
// groupMSLanes that of xGroup8's per super-block.
const (
	msLanes      = 4
	groupMSLanes = 4 * groupTokens8
)

// auxLanes is the number of int32 of xAct8's aux per block of 32 values
// for weights in blocks of elems, groupAuxLanes that of xGroup8's.
func auxLanes(elems int) int {
	if elems == q8Block {
		return 24
	}
	return 8
}

func groupAuxLanes(elems int) int {
	if elems == q8Block {
		return 16
	}
	return 8
}

// quantize rounds the T rows of C columns (a multiple of elems) of x in
// blocks of elems (32 or 256).
func (a *xAct8) quantize(x []float32, T, C, elems int) {
	a.resize(T, C, elems)
	a.rows(x, C, 0, T)
}

// resize makes room for T rows of C columns in blocks of elems and forgets
// the groups.
func (a *xAct8) resize(T, C, elems int) {
	nb, nd, na := C/q8Block, C/elems, auxLanes(elems)
	if cap(a.q) < T*C {
		a.q = make([]int8, T*C)
	}
	if cap(a.s) < T*nb {
		a.s = make([]float32, T*nb)
	}
	if cap(a.aux) < na*T*nb {
		a.aux = make([]int32, na*T*nb)
	}
	if cap(a.d) < T*nd {
		a.d = make([]float32, T*nd)
	}
	if cap(a.ok) < T {
		a.ok = make([]bool, T)
	}
	if cap(a.k8) < T*nb {
		a.k8 = make([]int32, T*nb)
	}
	if cap(a.ms) < msLanes*T*nd {
		a.ms = make([]int32, msLanes*T*nd)
	}
	a.elems = elems
	a.q, a.d, a.s, a.aux, a.ok = a.q[:T*C], a.d[:T*nd], a.s[:T*nb], a.aux[:na*T*nb], a.ok[:T]
	a.k8, a.ms = a.k8[:T*nb], a.ms[:msLanes*T*nd]
	a.groups = a.groups[:0]
}

// rows rounds rows t0..t1 of x (rows of C columns; resize first). Rows
// are independent: several threads may round disjoint ranges at once.
func (a *xAct8) rows(x []float32, C, t0, t1 int) {
	nb, nd, na := C/q8Block, C/a.elems, auxLanes(a.elems)
	for t := t0; t < t1; t++ {
		a.ok[t] = quantizeAct8Row(a.q[t*C:(t+1)*C], a.d[t*nd:(t+1)*nd], a.s[t*nb:(t+1)*nb], a.aux[na*t*nb:na*(t+1)*nb], x[t*C:(t+1)*C])
		switch {
		case !a.ok[t]:
		case a.elems == q8Block:
			for b, s := range a.s[t*nb : (t+1)*nb] {
				a.k8[t*nb+b] = -8 * int32(s) // Σq is exact in float32
			}
		default:
			ms := a.ms[msLanes*t*nd : msLanes*(t+1)*nd]
			for i := range ms {
				s := a.s[t*nb+2*i : t*nb+2*i+2]
				ms[i] = int32(uint32(uint16(int16(s[0]))) | uint32(uint16(int16(s[1])))<<16)
			}
		}
	}
}

// tokenAux is the nc of blockDot8Rows for token t of a (rows of C
// columns) and format k: its aux, its k8 for Q4_0, its ms for Q4_K and
// Q5_K.
func (a *xAct8) tokenAux(k BlockDot, t, C int) []int32 {
	nb := C / q8Block
	switch k {
	case DotQ4_0:
		return a.k8[t*nb : (t+1)*nb]
	case DotQ4K, DotQ5K:
		nd := C / a.elems
		return a.ms[msLanes*t*nd : msLanes*(t+1)*nd]
	}
	na := auxLanes(a.elems)
	return a.aux[na*t*nb : na*(t+1)*nb]
}

// groupTokens8 is the most tokens the AVX-512 VNNI 8-bit kernels multiply
// at once (they hold two rows per register, so 8 tokens' accumulators and
// integer lanes fit the 32 registers); the AVX2 ones take groupTokens.
const groupTokens8 = 8

// act8MaxTokens is the most tokens the 8-bit kernels of format k take at
// once on rows rows: 8 with AVX-512 VNNI on an even number of rows (every
// chunk of rows is then even: chunks are multiples of 4 rows), and 8 for
// the blocks of 32 anyway (their AVX2 kernels, which take an odd last row,
// go to 8); else 4 (the AVX2 kernels of the K-formats).
func act8MaxTokens(k BlockDot, rows int) int {
	if useAVX512 && rows%2 == 0 || dotGeometry[k].elems == q8Block {
		return groupTokens8
	}
	return groupTokens
}

// group packs the finite rows in groups of up to maxNT tokens (xGroup8).
func (a *xAct8) group(T, C, maxNT int) {
	a.layout(T, C, maxNT)
	for i := range a.groups {
		a.fill(i, C)
	}
}

// layout puts the finite rows in groups of up to maxNT tokens and gives
// each group its part of the buffers; fill then packs them.
func (a *xAct8) layout(T, C, maxNT int) {
	nb, nd, ga := C/q8Block, C/a.elems, groupAuxLanes(a.elems)
	if cap(a.gq) < T*C {
		a.gq = make([]int8, T*C)
	}
	if cap(a.gs) < 2*T*nb {
		a.gs = make([]float32, 2*T*nb)
	}
	if cap(a.gaux) < ga*T*nb {
		a.gaux = make([]int32, ga*T*nb)
	}
	if cap(a.gd) < T*nd+groupTokens8 {
		a.gd = make([]float32, T*nd+groupTokens8)
	}
	if cap(a.gk8) < T*nb {
		a.gk8 = make([]int32, T*nb)
	}
	if a.elems != q8Block && cap(a.gms) < groupMSLanes*T*nd {
		a.gms = make([]int32, groupMSLanes*T*nd)
	}
	if cap(a.groups) < T {
		a.groups = make([]xGroup8, 0, T)
	}
	a.groups = a.groups[:0]
	used := 0
	tokenGroups(a.ok[:T], maxNT, func(tokens [groupTokens8]int, n int) {
		g := xGroup8{tokens: tokens, nt: n}
		g.q, g.d = a.gq[used*C:(used+n)*C], a.gd[used*nd:(used+n)*nd]
		g.aux = a.gaux[ga*used*nb : ga*(used+n)*nb]
		if a.elems == q8Block {
			g.s = a.gs[2*used*nb : 2*(used+n)*nb]
			g.k8 = a.gk8[used*nb : (used+n)*nb]
		} else {
			g.ms = a.gms[groupMSLanes*used*nd : groupMSLanes*(used*nd+nd)]
		}
		used += n
		a.groups = append(a.groups, g)
	})
}

// fill packs group i (layout). Groups are independent: several threads
// may fill different ones at once.
func (a *xAct8) fill(i, C int) {
	nb, nd, na, ga := C/q8Block, C/a.elems, auxLanes(a.elems), groupAuxLanes(a.elems)
	g := &a.groups[i]
	n := g.nt
	for i, t := range g.tokens[:n] {
		for b := range nb {
			j := b*n + i
			copy(g.q[j*q8Block:(j+1)*q8Block], a.q[t*C+b*q8Block:t*C+(b+1)*q8Block])
			copy(g.aux[ga*j:ga*(j+1)], a.aux[na*(t*nb+b):na*(t*nb+b)+ga])
			if a.elems == q8Block {
				g.s[2*j], g.s[2*j+1] = a.d[t*nd+b], a.d[t*nd+b]
				g.k8[j] = a.k8[t*nb+b]
			}
		}
		for b := range nd {
			g.d[b*n+i] = a.d[t*nd+b]
			if a.elems != q8Block {
				for k := range msLanes {
					g.ms[(b*msLanes+k)*groupTokens8+i] = a.ms[msLanes*(t*nd+b)+k]
				}
			}
		}
	}
	if a.elems != q8Block {
		for b := range nd {
			for k := range msLanes {
				clear(g.ms[(b*msLanes+k)*groupTokens8+n : (b*msLanes+k+1)*groupTokens8])
			}
		}
	}
}

// quantizeAct8Row rounds x to int8 in len(x)/len(d) values per scale (see
// the top of this file), and sets each block of 32's Σ q in s and the
// VNNI terms in aux (xAct8). It returns false, leaving the rest unset,
// when x holds an Inf or a NaN.
func quantizeAct8Row(q []int8, d, s []float32, aux []int32, x []float32) bool {
	elems := len(x) / len(d)
	var t [256]int16
	for b := range d {
		xb := x[elems*b : elems*(b+1)]
		qb := q[elems*b : elems*(b+1)]
		m := absMax(xb) // NaN if xb holds an Inf or a NaN
		if m != m {
			return false
		}
		id := act8Max / m
		if m == 0 || id > math.MaxFloat32 {
			clear(qb)
			d[b] = 0
			continue
		}
		// round(x·id), ties to even: |x·id| ≤ m·(127/m), which rounds to
		// at most 127, so the int16 values fit int8.
		tb := t[:elems]
		quantI16(tb, xb, id)
		for i, v := range tb {
			qb[i] = int8(v)
		}
		d[b] = m / act8Max
	}
	na := auxLanes(elems)
	for b := range s {
		qb := q[q8Block*b : q8Block*(b+1)]
		ab := aux[na*b : na*(b+1)]
		var sum int32
		for l := range 8 {
			q0, q1, q2, q3 := qb[4*l], qb[4*l+1], qb[4*l+2], qb[4*l+3]
			g := int32(q0) + int32(q1) + int32(q2) + int32(q3)
			sum += g
			u := int32(0x80808080 ^ (uint32(uint8(q0)) | uint32(uint8(q1))<<8 | uint32(uint8(q2))<<16 | uint32(uint8(q3))<<24))
			if na == 8 {
				ab[l] = u
				continue
			}
			ab[2*l], ab[2*l+1] = u, u
			ab[16+l] = -128 * g
		}
		s[b] = float32(sum)
	}
	return true
}

// fusedRows8 is fusedRows for 8-bit activations.
func fusedRows8(s *scratch, dst, x []float32, T int, w *Matrix, a *xAct8, r0, r1 int) {
	R, C := w.Rows, w.Cols
	rb := w.Format.rowBytes(C)
	nb, nd := C/q8Block, C/a.elems
	q := w.Q[r0*rb : r1*rb]
	if T > 1 && useAVX2 {
		for t := range T {
			if !a.ok[t] {
				blockRows(s, dst[t*R:(t+1)*R], x[t*C:(t+1)*C], 1, w, r0, r1)
			}
		}
		nr := r1 - r0
		if len(s.blockOut) < groupTokens8*nr {
			s.blockOut = make([]float32, groupTokens8*nr)
		}
		for _, g := range a.groups {
			out := s.blockOut[:g.nt*nr]
			if w.Format.Dot == DotQ4_0 {
				// One row per lane: the outputs token after token.
				if g.nt == 1 {
					t := g.tokens[0]
					blockDot8Lanes(out, nr, q, rb, nr, 1, 1, a.q[t*C:(t+1)*C], a.d[t*nd:(t+1)*nd], a.tokenAux(DotQ4_0, t, C))
				} else {
					blockDot8Lanes(out, nr, q, rb, nr, g.nt, g.nt, g.q, g.d, g.k8)
				}
				for i, t := range g.tokens[:g.nt] {
					copy(dst[t*R+r0:t*R+r1], out[i*nr:(i+1)*nr])
				}
				continue
			}
			if g.nt == 1 {
				// One token: its own rows (the one-token kernels read
				// xAct8's layout).
				t := g.tokens[0]
				blockDot8Rows(out, w.Format.Dot, q, rb, 1, a.q[t*C:(t+1)*C], a.d[t*nd:(t+1)*nd], a.s[t*nb:(t+1)*nb], a.tokenAux(w.Format.Dot, t, C))
			} else {
				blockDot8Rows(out, w.Format.Dot, q, rb, g.nt, g.q, g.d, g.s, g.nc(w.Format.Dot))
			}
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
		blockDot8Rows(out[r0:r1], w.Format.Dot, q, rb, 1, a.q[t*C:(t+1)*C], a.d[t*nd:(t+1)*nd], a.s[t*nb:(t+1)*nb], a.tokenAux(w.Format.Dot, t, C))
	}
}

// blockDot8RowsGeneric sets y[i] to the 8-bit product of row i of the
// blocks in w (rb bytes each) with one token's activations q, d, s (one
// d per block of the format, one s per 32 values).
func blockDot8RowsGeneric(y []float32, k BlockDot, w []byte, rb int, q []int8, d, s []float32) {
	g := dotGeometry[k]
	nb := rb / g.bytes * g.elems / q8Block
	q, d, s = q[:nb*q8Block], d[:rb/g.bytes], s[:nb]
	for i := range y {
		row := w[i*rb : (i+1)*rb]
		switch k {
		case DotQ8_0:
			y[i] = dot8Q8_0Generic(row, q, d, s)
		case DotQ4_0:
			y[i] = dot8Q4_0Generic(row, q, d, s)
		case DotQ5_0:
			y[i] = dot8Q5_0Generic(row, q, d, s)
		case DotQ4K:
			y[i] = dot8Q4KGeneric(row, q, d, s)
		case DotQ5K:
			y[i] = dot8Q5KGeneric(row, q, d, s)
		case DotQ6K:
			y[i] = dot8Q6KGeneric(row, q, d, s)
		}
	}
}

// addLanes8 adds one block to the 8 lanes: acc[l] = fma32(sc, L_l,
// acc[l]) with L_l = Σ_{i=4l}^{4l+3} w[i]·q[i], exact.
func addLanes8(acc *[8]float32, sc float32, w *[32]int32, q []int8) {
	q = q[:32]
	for l := range 8 {
		L := w[4*l]*int32(q[4*l]) + w[4*l+1]*int32(q[4*l+1]) + w[4*l+2]*int32(q[4*l+2]) + w[4*l+3]*int32(q[4*l+3])
		acc[l] = fma32(sc, float32(L), acc[l])
	}
}

// fma32 is a·b + c rounded once to float32, as VFMADD231PS computes it.
// The product is exact in float64; the sum is rounded to odd in float64
// (RNE, then moved to the odd neighbour on the side of the exact error
// when inexact and even), and rounding that to float32 gives the correctly
// rounded result, since 53 ≥ 2·24 + 2 bits (Boldo and Melquiond,
// "Emulation of FMA and correctly rounded sums", IEEE TC 2008).
func fma32(a, b, c float32) float32 {
	p, z := float64(a)*float64(b), float64(c)
	s := p + z
	if math.IsInf(s, 0) || s != s {
		return float32(s)
	}
	bb := s - p
	if e := (p - (s - bb)) + (z - bb); e != 0 && math.Float64bits(s)&1 == 0 {
		s = math.Nextafter(s, math.Copysign(math.Inf(1), e))
	}
	return float32(s)
}

// dot8Q8_0Generic is the 8-bit product of a row of Q8_0 blocks (s unused).
func dot8Q8_0Generic(w []byte, q []int8, d, s []float32) float32 {
	var acc [8]float32
	var wi [32]int32
	for b := range d {
		blk := w[34*b : 34*b+34]
		for i := range wi {
			wi[i] = int32(int8(blk[2+i]))
		}
		addLanes8(&acc, float32(half(blk)*d[b]), &wi, q[32*b:])
	}
	return reduce8(&acc)
}

// dot8Q4_0Generic is the 8-bit product of a row of Q4_0 blocks (s unused).
func dot8Q4_0Generic(w []byte, q []int8, d, s []float32) float32 {
	return dot8Q4_0Strided(w[:len(d)*18], q, d, 1, 0)
}

// blockDot8LanesGeneric is blockDot8Lanes in Go for rows r0..rows.
func blockDot8LanesGeneric(y []float32, ys int, w []byte, rb, r0, rows, nt, lt int, q []int8, d []float32) {
	for r := r0; r < rows; r++ {
		for t := range nt {
			y[t*ys+r] = dot8Q4_0Strided(w[r*rb:(r+1)*rb], q, d, lt, t)
		}
	}
}

// dot8Q4_0Strided is the 8-bit product of a row of Q4_0 blocks with token
// t of activations laid out lt tokens per block (block b of token t at
// q[(b·lt+t)·32:] and d[b·lt+t]; xGroup8's layout, xAct8's row for lt =
// 1). Unlike the other formats' lanes, each block is summed whole in
// integers, I = Σ (w_i−8)·q_i (|I| ≤ 32·8·127, exact in float32), and
// added to one accumulator: acc = fma32(float32(half·d_b), float32(I),
// acc), block after block. The kernels hold one row per lane
// (blockDot8Lanes).
func dot8Q4_0Strided(w []byte, q []int8, d []float32, lt, t int) float32 {
	var acc float32
	for b := range len(w) / 18 {
		blk := w[18*b : 18*b+18]
		qb := q[(b*lt+t)*q8Block:][:q8Block]
		var I int32
		for i := range 16 {
			I += (int32(blk[2+i]&15)-8)*int32(qb[i]) + (int32(blk[2+i]>>4)-8)*int32(qb[16+i])
		}
		acc = fma32(float32(half(blk)*d[b*lt+t]), float32(I), acc)
	}
	return acc
}

// dot8Q5_0Generic is the 8-bit product of a row of Q5_0 blocks (s unused).
func dot8Q5_0Generic(w []byte, q []int8, d, s []float32) float32 {
	var acc [8]float32
	var wi [32]int32
	for b := range d {
		blk := w[22*b : 22*b+22]
		qh := binary.LittleEndian.Uint32(blk[2:])
		for i := range 16 {
			wi[i] = int32(blk[6+i]&15|byte(qh>>i&1)<<4) - 16
			wi[16+i] = int32(blk[6+i]>>4|byte(qh>>(16+i)&1)<<4) - 16
		}
		addLanes8(&acc, float32(half(blk)*d[b]), &wi, q[32*b:])
	}
	return reduce8(&acc)
}

// dot8Q4KGeneric is the 8-bit product of a row of Q4_K super-blocks.
func dot8Q4KGeneric(w []byte, q []int8, d, s []float32) float32 {
	return dot8K45(w, q, d, s, false)
}

// dot8Q5KGeneric is the 8-bit product of a row of Q5_K super-blocks.
func dot8Q5KGeneric(w []byte, q []int8, d, s []float32) float32 {
	return dot8K45(w, q, d, s, true)
}

// dot8K45 is the order of operations of the 8-bit Q4_K and Q5_K products.
// Per super-block, with D = dd·d_sb and Dm = dmin·d_sb rounded to float32:
// the integer lanes I_l = Σ_j sc_j·Σ_{i≡l} v·q (exact) are added to the 8
// accumulators by one FMA each, acc_l = fma(D, I_l, acc_l), and the
// minima's integer M = Σ_j m_j·Σq_j (|M| ≤ 8·63·4064 < 2^24: exact in
// float32, whatever the order of its sum) by one FMA to one accumulator,
// macc = fma(Dm, M, macc). The product is reduce8(acc) − macc.
func dot8K45(w []byte, q []int8, d, s []float32, five bool) float32 {
	var acc [8]float32
	var macc float32
	bs, off := 144, 16
	if five {
		bs, off = 176, 48
	}
	for sb := range d {
		blk := w[bs*sb : bs*(sb+1)]
		dd, dmin := half(blk), half(blk[2:])
		sc, m := q4kScaleMins(blk[4:16])
		var I [8]int32
		var M int32
		for j := range 8 {
			b := 8*sb + j
			M += int32(m[j]) * int32(s[b]) // s holds Σq, an integer
			qs := blk[off+32*(j/2) : off+32*(j/2)+32]
			sh := 4 * (j % 2)
			qb := q[32*b : 32*b+32]
			for i := range 32 {
				v := int32(qs[i]>>sh) & 15
				if five && blk[16+i]>>j&1 != 0 {
					v += 16
				}
				I[i/4] += int32(sc[j]) * v * int32(qb[i])
			}
		}
		D, Dm := float32(dd*d[sb]), float32(dmin*d[sb])
		for l := range acc {
			acc[l] = fma32(D, float32(I[l]), acc[l])
		}
		macc = fma32(Dm, float32(M), macc)
	}
	return reduce8(&acc) - macc
}

// dot8Q6KGeneric is the 8-bit product of a row of Q6_K super-blocks (s
// unused).
func dot8Q6KGeneric(w []byte, q []int8, d, s []float32) float32 {
	var acc [8]float32
	for sb := range d {
		blk := w[210*sb : 210*(sb+1)]
		var I [8]int32
		for h := range 2 {
			for g := range 4 {
				b := 8*sb + 4*h + g
				qb := q[32*b : 32*b+32]
				for i := range 32 {
					ql := blk[64*h+32*(g&1)+i]
					if g >= 2 {
						ql >>= 4
					}
					qh := blk[128+32*h+i] >> (2 * g) & 3
					v := int32(ql&15|qh<<4) - 32
					sc := int32(int8(blk[192+8*h+2*g+i/16]))
					I[i/4] += sc * v * int32(qb[i])
				}
			}
		}
		D := float32(half(blk[208:]) * d[sb])
		for l := range acc {
			acc[l] += float32(D * float32(I[l]))
		}
	}
	return reduce8(&acc)
}
