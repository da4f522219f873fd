package kernels

import (
	"encoding/binary"
	"math"
)

// Block dequantizers for the formats the engine multiplies most (see
// BlockFormat): equal bit for bit to ggml's dequantize_row_* (the tests
// compare them with package gguf's), with an AVX2 path where it pays.

// F16ToF32 widens an IEEE half to float32 exactly (a NaN stays a NaN, quiet).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1F
	mant := uint32(h & 0x3FF)
	switch {
	case exp == 0x1F:
		if mant != 0 {
			return math.Float32frombits(sign | 0x7FC00000 | mant<<13)
		}
		return math.Float32frombits(sign | 0x7F800000)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	e := uint32(113) // subnormal: normalise
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3FF)<<13)
}

// Q4_K super-blocks: 256 weights in 144 bytes (d and dmin as halves, 12
// bytes of 6-bit sub-block scales and mins, 128 bytes of 4-bit weights).
const (
	q4kElems = 256
	q4kBytes = 144
)

// q4kBatch is how many super-blocks get their scales computed per call of
// the assembly kernel.
const q4kBatch = 16

// DequantizeQ4K widens the len(dst)/256 Q4_K super-blocks in src to
// float32 in dst, as ggml's dequantize_row_q4_K: y = d·sc·q − dmin·m per
// sub-block of 32, each product and difference rounded to float32.
func DequantizeQ4K(dst []float32, src []byte) {
	nb := len(dst) / q4kElems
	_ = src[nb*q4kBytes-1]
	var dm [q4kBatch * 16]float32
	for b0 := 0; b0 < nb; b0 += q4kBatch {
		n := min(q4kBatch, nb-b0)
		for i := range n {
			q4kScales((*[16]float32)(dm[16*i:]), src[(b0+i)*q4kBytes:])
		}
		y := dst[b0*q4kElems : (b0+n)*q4kElems]
		qs := src[b0*q4kBytes : (b0+n)*q4kBytes]
		if useAVX2 {
			dequantQ4KAVX2(&y[0], &qs[16], &dm[0], n)
			continue
		}
		for i := range n {
			dequantQ4KBlock((*[q4kElems]float32)(y[i*q4kElems:]), (*[128]byte)(qs[i*q4kBytes+16:]), (*[16]float32)(dm[16*i:]))
		}
	}
}

// q4kScales computes a super-block's 8 sub-block scales d·sc and mins
// dmin·m (ggml's get_scale_min_k4).
func q4kScales(dm *[16]float32, b []byte) {
	d := F16ToF32(binary.LittleEndian.Uint16(b))
	dmin := F16ToF32(binary.LittleEndian.Uint16(b[2:]))
	s := b[4:16]
	for j := range 8 {
		var sc, m byte
		if j < 4 {
			sc, m = s[j]&63, s[j+4]&63
		} else {
			sc, m = (s[j+4]&0xF)|((s[j-4]>>6)<<4), (s[j+4]>>4)|((s[j]>>6)<<4)
		}
		dm[j] = d * float32(sc)
		dm[8+j] = dmin * float32(m)
	}
}

// dequantQ4KBlock is the plain-Go kernel of one super-block.
func dequantQ4KBlock(y *[q4kElems]float32, q *[128]byte, dm *[16]float32) {
	for j := range 4 {
		d1, m1, d2, m2 := dm[2*j], dm[8+2*j], dm[2*j+1], dm[9+2*j]
		for l := range 32 {
			v := q[32*j+l]
			y[64*j+l] = float32(d1*float32(v&15)) - m1
			y[64*j+32+l] = float32(d2*float32(v>>4)) - m2
		}
	}
}

// Q8_0 blocks: 32 weights in 34 bytes (d as a half, 32 int8).
const (
	q80Elems = 32
	q80Bytes = 34
	q80Batch = 64
)

// DequantizeQ8_0 widens the len(dst)/32 Q8_0 blocks in src to float32 in
// dst, as ggml's dequantize_row_q8_0: y = q·d, rounded to float32.
func DequantizeQ8_0(dst []float32, src []byte) {
	nb := len(dst) / q80Elems
	_ = src[nb*q80Bytes-1]
	var d [q80Batch]float32
	for b0 := 0; b0 < nb; b0 += q80Batch {
		n := min(q80Batch, nb-b0)
		for i := range n {
			d[i] = F16ToF32(binary.LittleEndian.Uint16(src[(b0+i)*q80Bytes:]))
		}
		y := dst[b0*q80Elems : (b0+n)*q80Elems]
		qs := src[b0*q80Bytes : (b0+n)*q80Bytes]
		if useAVX2 {
			dequantQ8_0AVX2(&y[0], &qs[2], &d[0], n)
			continue
		}
		for i := range n {
			yb, qb := (*[32]float32)(y[32*i:]), (*[34]byte)(qs[34*i:])
			for l := range 32 {
				yb[l] = float32(int8(qb[2+l])) * d[i]
			}
		}
	}
}

// Q6_K super-blocks: 256 weights in 210 bytes (128 bytes of low 4 bits, 64
// of high 2 bits, 16 int8 scales, d as a half).
const (
	q6kElems = 256
	q6kBytes = 210
	q6kBatch = 16
)

// DequantizeQ6K widens the len(dst)/256 Q6_K super-blocks in src to
// float32 in dst, as ggml's dequantize_row_q6_K: y = (d·sc)·q, each product
// rounded to float32.
func DequantizeQ6K(dst []float32, src []byte) {
	nb := len(dst) / q6kElems
	_ = src[nb*q6kBytes-1]
	var ds [q6kBatch * 16]float32
	for b0 := 0; b0 < nb; b0 += q6kBatch {
		n := min(q6kBatch, nb-b0)
		for i := range n {
			b := src[(b0+i)*q6kBytes:]
			d := F16ToF32(binary.LittleEndian.Uint16(b[208:]))
			for k := range 16 {
				ds[16*i+k] = d * float32(int8(b[192+k]))
			}
		}
		y := dst[b0*q6kElems : (b0+n)*q6kElems]
		bs := src[b0*q6kBytes : (b0+n)*q6kBytes]
		if useAVX2 {
			dequantQ6KAVX2(&y[0], &bs[0], &ds[0], n)
			continue
		}
		for i := range n {
			dequantQ6KBlock((*[q6kElems]float32)(y[i*q6kElems:]), (*[q6kBytes]byte)(bs[i*q6kBytes:]), (*[16]float32)(ds[16*i:]))
		}
	}
}

// dequantQ6KBlock is the plain-Go kernel of one super-block.
func dequantQ6KBlock(y *[q6kElems]float32, b *[q6kBytes]byte, ds *[16]float32) {
	for h := range 2 {
		ql, qh, s := b[64*h:], b[128+32*h:], ds[8*h:]
		yh := y[128*h:]
		for l := range 32 {
			is := l / 16
			yh[l] = s[is] * float32(int8(ql[l]&15|(qh[l]&3)<<4)-32)
			yh[l+32] = s[is+2] * float32(int8(ql[l+32]&15|(qh[l]>>2&3)<<4)-32)
			yh[l+64] = s[is+4] * float32(int8(ql[l]>>4|(qh[l]>>4&3)<<4)-32)
			yh[l+96] = s[is+6] * float32(int8(ql[l+32]>>4|(qh[l]>>6&3)<<4)-32)
		}
	}
}

// Q4_0 blocks: 32 weights in 18 bytes (d as a half, 16 bytes of 4-bit
// weights: the low nibbles are weights 0-15, the high ones 16-31).
const (
	q40Elems = 32
	q40Bytes = 18
	q40Batch = 64
)

// DequantizeQ4_0 widens the len(dst)/32 Q4_0 blocks in src to float32 in
// dst, as ggml's dequantize_row_q4_0: y = (q−8)·d, rounded to float32.
func DequantizeQ4_0(dst []float32, src []byte) {
	nb := len(dst) / q40Elems
	_ = src[nb*q40Bytes-1]
	var d [q40Batch]float32
	for b0 := 0; b0 < nb; b0 += q40Batch {
		n := min(q40Batch, nb-b0)
		for i := range n {
			d[i] = F16ToF32(binary.LittleEndian.Uint16(src[(b0+i)*q40Bytes:]))
		}
		y := dst[b0*q40Elems : (b0+n)*q40Elems]
		qs := src[b0*q40Bytes : (b0+n)*q40Bytes]
		if useAVX2 {
			dequantQ4_0AVX2(&y[0], &qs[2], &d[0], n)
			continue
		}
		for i := range n {
			yb, qb := (*[32]float32)(y[32*i:]), (*[18]byte)(qs[18*i:])
			for j := range 16 {
				yb[j] = float32(int(qb[2+j]&15)-8) * d[i]
				yb[j+16] = float32(int(qb[2+j]>>4)-8) * d[i]
			}
		}
	}
}
