package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The dequantizers below follow ggml-quants.c's dequantize_row_* operation
// for operation in float32. Every product that feeds a sum is converted to
// float32 explicitly, also when it is first assigned to a variable: Go may
// fuse x*y+z into one FMA, even across statements, unless a conversion
// rounds the product (it does on arm64; the arm64 build of this package
// contains no fused multiply-add).

// Dequantize converts the blocks or elements in src, of type t, to float32
// in dst. len(dst) must be a multiple of t's block size and src must hold
// exactly len(dst) elements of t. Results equal ggml's reference
// dequantizers bit for bit.
//
// Block layouts (little-endian, as ggml-common.h declares them; RowBytes
// gives a row's size):
//
//	Q4_0  32 elems, 18 B: d f16 | qs[16] (elem j: low nibble of qs[j], elem j+16: high nibble)
//	Q4_1  32 elems, 20 B: d f16 | m f16 | qs[16]
//	Q5_0  32 elems, 22 B: d f16 | qh[4] (bit j: 5th bit of elem j) | qs[16]
//	Q5_1  32 elems, 24 B: d f16 | m f16 | qh[4] | qs[16]
//	Q8_0  32 elems, 34 B: d f16 | qs[32] int8
//	Q2_K 256 elems, 84 B: scales[16] (low nibble scale, high nibble min) | qs[64] | d f16 | dmin f16
//	Q3_K 256 elems, 110 B: hmask[32] | qs[64] | scales[12] (16 6-bit scales) | d f16
//	Q4_K 256 elems, 144 B: d f16 | dmin f16 | scales[12] (8 6-bit scales, 8 6-bit mins) | qs[128]
//	Q5_K 256 elems, 176 B: d f16 | dmin f16 | scales[12] | qh[32] | qs[128]
//	Q6_K 256 elems, 210 B: ql[128] | qh[64] | scales[16] int8 | d f16
//	Q8_K 256 elems, 292 B: d f32 | qs[256] int8 | bsums[16] int16
func Dequantize(t Type, src []byte, dst []float32) error {
	if !t.CanDequantize() {
		return fmt.Errorf("%w: cannot convert %s to float32", ErrType, t)
	}
	want := t.RowBytes(int64(len(dst)))
	if want < 0 || want != int64(len(src)) {
		return fmt.Errorf("%w: %d %s elements need %d bytes (a multiple of %d elements), got %d", ErrSize, len(dst), t, want, t.BlockSize(), len(src))
	}
	le := binary.LittleEndian
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToFloat32(le.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToFloat32(le.Uint16(src[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(le.Uint16(src[2*i:])))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(src[4*i:])))
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(le.Uint64(src[8*i:])))
		}
	default:
		bs, bb := t.BlockSize(), t.BlockBytes()
		f := blockDequantizers[t]
		for i := 0; i < len(dst)/bs; i++ {
			f(src[i*bb:(i+1)*bb], dst[i*bs:(i+1)*bs])
		}
	}
	return nil
}

var blockDequantizers = map[Type]func(b []byte, y []float32){
	Q4_0: dequantQ4_0,
	Q4_1: dequantQ4_1,
	Q5_0: dequantQ5_0,
	Q5_1: dequantQ5_1,
	Q8_0: dequantQ8_0,
	Q2_K: dequantQ2_K,
	Q3_K: dequantQ3_K,
	Q4_K: dequantQ4_K,
	Q5_K: dequantQ5_K,
	Q6_K: dequantQ6_K,
	Q8_K: dequantQ8_K,
}

func half(b []byte) float32 { return F16ToFloat32(binary.LittleEndian.Uint16(b)) }

func dequantQ4_0(b []byte, y []float32) {
	d := half(b)
	qs := b[2:18]
	for j := 0; j < 16; j++ {
		y[j] = float32(int(qs[j]&0x0F)-8) * d
		y[j+16] = float32(int(qs[j]>>4)-8) * d
	}
}

func dequantQ4_1(b []byte, y []float32) {
	d, m := half(b), half(b[2:])
	qs := b[4:20]
	for j := 0; j < 16; j++ {
		y[j] = float32(float32(qs[j]&0x0F)*d) + m
		y[j+16] = float32(float32(qs[j]>>4)*d) + m
	}
}

func dequantQ5_0(b []byte, y []float32) {
	d := half(b)
	qh := binary.LittleEndian.Uint32(b[2:])
	qs := b[6:22]
	for j := 0; j < 16; j++ {
		xh0 := byte(qh>>j<<4) & 0x10
		xh1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(int32(qs[j]&0x0F|xh0)-16) * d
		y[j+16] = float32(int32(qs[j]>>4|xh1)-16) * d
	}
}

func dequantQ5_1(b []byte, y []float32) {
	d, m := half(b), half(b[2:])
	qh := binary.LittleEndian.Uint32(b[4:])
	qs := b[8:24]
	for j := 0; j < 16; j++ {
		xh0 := byte(qh>>j<<4) & 0x10
		xh1 := byte(qh>>(j+12)) & 0x10
		y[j] = float32(float32(qs[j]&0x0F|xh0)*d) + m
		y[j+16] = float32(float32(qs[j]>>4|xh1)*d) + m
	}
}

func dequantQ8_0(b []byte, y []float32) {
	d := half(b)
	for j := 0; j < 32; j++ {
		y[j] = float32(int8(b[2+j])) * d
	}
}

func dequantQ2_K(b []byte, y []float32) {
	scales, q := b[0:16], b[16:80]
	d, dmin := half(b[80:]), half(b[82:])
	is := 0
	for n := 0; n < QK_K; n += 128 {
		shift := 0
		for j := 0; j < 4; j++ {
			for h := 0; h < 2; h++ {
				sc := scales[is]
				is++
				dl := float32(d * float32(sc&0xF))
				ml := float32(dmin * float32(sc>>4))
				for l := 0; l < 16; l++ {
					y[l] = float32(dl*float32((q[l+16*h]>>shift)&3)) - ml
				}
				y = y[16:]
			}
			shift += 2
		}
		q = q[32:]
	}
}

// q3Scales unpacks Q3_K's twelve scale bytes into sixteen 6-bit values
// (ggml's kmask shuffle), still biased by 32.
func q3Scales(s []byte) (out [16]int8) {
	le := binary.LittleEndian
	const kmask1, kmask2 = 0x03030303, 0x0f0f0f0f
	a0, a1, tmp := le.Uint32(s[0:]), le.Uint32(s[4:]), le.Uint32(s[8:])
	aux := [4]uint32{
		(a0 & kmask2) | (((tmp >> 0) & kmask1) << 4),
		(a1 & kmask2) | (((tmp >> 2) & kmask1) << 4),
		((a0 >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4),
		((a1 >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4),
	}
	for i := range out {
		out[i] = int8(aux[i/4] >> (8 * (i % 4)))
	}
	return out
}

func dequantQ3_K(b []byte, y []float32) {
	hm, q := b[0:32], b[32:96]
	scales := q3Scales(b[96:108])
	dAll := half(b[108:])
	var m byte = 1
	is := 0
	for n := 0; n < QK_K; n += 128 {
		shift := 0
		for j := 0; j < 4; j++ {
			for h := 0; h < 2; h++ {
				dl := dAll * float32(int(scales[is])-32)
				is++
				for l := 0; l < 16; l++ {
					v := int((q[l+16*h] >> shift) & 3)
					if hm[l+16*h]&m == 0 {
						v -= 4
					}
					y[l] = dl * float32(v)
				}
				y = y[16:]
			}
			shift += 2
			m <<= 1
		}
		q = q[32:]
	}
}

// scaleMinK4 returns the j-th 6-bit scale and min of Q4_K and Q5_K
// (ggml's get_scale_min_k4).
func scaleMinK4(j int, q []byte) (d, m byte) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return (q[j+4] & 0xF) | ((q[j-4] >> 6) << 4), (q[j+4] >> 4) | ((q[j] >> 6) << 4)
}

func dequantQ4_K(b []byte, y []float32) {
	d, dmin := half(b), half(b[2:])
	scales, q := b[4:16], b[16:144]
	for j, is := 0, 0; j < QK_K; j, is = j+64, is+2 {
		sc, m := scaleMinK4(is, scales)
		d1, m1 := float32(d*float32(sc)), float32(dmin*float32(m))
		sc, m = scaleMinK4(is+1, scales)
		d2, m2 := float32(d*float32(sc)), float32(dmin*float32(m))
		for l := 0; l < 32; l++ {
			y[l] = float32(d1*float32(q[l]&0xF)) - m1
		}
		for l := 0; l < 32; l++ {
			y[32+l] = float32(d2*float32(q[l]>>4)) - m2
		}
		y, q = y[64:], q[32:]
	}
}

func dequantQ5_K(b []byte, y []float32) {
	d, dmin := half(b), half(b[2:])
	scales, qh, ql := b[4:16], b[16:48], b[48:176]
	var u1, u2 byte = 1, 2
	for j, is := 0, 0; j < QK_K; j, is = j+64, is+2 {
		sc, m := scaleMinK4(is, scales)
		d1, m1 := float32(d*float32(sc)), float32(dmin*float32(m))
		sc, m = scaleMinK4(is+1, scales)
		d2, m2 := float32(d*float32(sc)), float32(dmin*float32(m))
		for l := 0; l < 32; l++ {
			v := ql[l] & 0xF
			if qh[l]&u1 != 0 {
				v += 16
			}
			y[l] = float32(d1*float32(v)) - m1
		}
		for l := 0; l < 32; l++ {
			v := ql[l] >> 4
			if qh[l]&u2 != 0 {
				v += 16
			}
			y[32+l] = float32(d2*float32(v)) - m2
		}
		y, ql = y[64:], ql[32:]
		u1 <<= 2
		u2 <<= 2
	}
}

func dequantQ6_K(b []byte, y []float32) {
	ql, qh, sc := b[0:128], b[128:192], b[192:208]
	d := half(b[208:])
	for n := 0; n < QK_K; n += 128 {
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int8((ql[l]&0xF)|((qh[l]>>0)&3)<<4) - 32
			q2 := int8((ql[l+32]&0xF)|((qh[l]>>2)&3)<<4) - 32
			q3 := int8((ql[l]>>4)|((qh[l]>>4)&3)<<4) - 32
			q4 := int8((ql[l+32]>>4)|((qh[l]>>6)&3)<<4) - 32
			y[l] = float32(d*float32(int8(sc[is]))) * float32(q1)
			y[l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
			y[l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
			y[l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
		}
		y, ql, qh, sc = y[128:], ql[64:], qh[32:], sc[8:]
	}
}

func dequantQ8_K(b []byte, y []float32) {
	d := math.Float32frombits(binary.LittleEndian.Uint32(b))
	for j := 0; j < QK_K; j++ {
		y[j] = d * float32(int8(b[4+j]))
	}
}
