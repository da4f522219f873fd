package gguf

import "math"

// F16ToFloat32 converts an IEEE half to float32 exactly, as ggml's
// GGML_FP16_TO_FP32 does on x86 (a signalling NaN comes back quiet).
func F16ToFloat32(h uint16) float32 {
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
	// Subnormal: mant * 2^-24, normalised.
	e := uint32(113)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3FF)<<13)
}

// Float32ToF16 rounds f to the nearest IEEE half (ties to even), with
// overflow to infinity and NaN to 0x7E00 (sign kept), exactly as ggml's
// GGML_FP32_TO_FP16 (the FP16 library's bit-exact algorithm).
func Float32ToF16(f float32) uint16 {
	const scaleToInf = 0x1p+112
	const scaleToZero = 0x1p-110
	base := float32(float32(float32(math.Abs(float64(f)))*scaleToInf) * scaleToZero)
	w := math.Float32bits(f)
	shl1W := w + w
	sign := w & 0x80000000
	bias := shl1W & 0xFF000000
	if bias < 0x71000000 {
		bias = 0x71000000
	}
	base = float32(math.Float32frombits((bias>>1)+0x07800000) + base)
	b := math.Float32bits(base)
	expBits := (b >> 13) & 0x00007C00
	mantBits := b & 0x00000FFF
	nonsign := expBits + mantBits
	if shl1W > 0xFF000000 {
		nonsign = 0x7E00
	}
	return uint16(sign>>16 | nonsign)
}

// BF16ToFloat32 widens a bfloat16 to float32 (exact).
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBF16 rounds f to bfloat16 to nearest, ties to even, NaN made
// quiet, subnormals kept: ggml's GGML_FP32_TO_BF16 (and gguf-py's).
func Float32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 64
	}
	return uint16((u + (0x7fff + ((u >> 16) & 1))) >> 16)
}
