package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// BF16ToFloat32 converts a bfloat16 bit pattern to float32 (exactly).
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBF16 converts f to the nearest bfloat16, ties to even. Values
// beyond the bfloat16 range become ±Inf; NaN stays NaN (quiet, same sign).
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep the sign and top payload bits, force quiet
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// Float64ToBF16 converts f to the nearest bfloat16, ties to even, with a
// single rounding (no detour through float32).
func Float64ToBF16(f float64) uint16 { return uint16(roundFloat64(f, 8, 7)) }

// F16ToFloat32 converts an IEEE 754 half-precision bit pattern to float32
// (exactly).
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// Subnormal: mant * 2^-24, exact in float32.
	v := float32(mant) * (1.0 / (1 << 24))
	return math.Float32frombits(sign | math.Float32bits(v))
}

// Float32ToF16 converts f to the nearest IEEE 754 half-precision value,
// ties to even, including subnormals. Values beyond the range become ±Inf.
func Float32ToF16(f float32) uint16 { return uint16(roundFloat64(float64(f), 5, 10)) }

// Float64ToF16 converts f to the nearest IEEE 754 half-precision value,
// ties to even, with a single rounding.
func Float64ToF16(f float64) uint16 { return uint16(roundFloat64(f, 5, 10)) }

// roundFloat64 rounds x to a binary floating-point format with expBits
// exponent bits and mantBits stored mantissa bits (ties to even, overflow
// to infinity, gradual underflow) and returns its bit pattern.
func roundFloat64(x float64, expBits, mantBits uint) uint64 {
	b := math.Float64bits(x)
	sign := (b >> 63) << (expBits + mantBits)
	exp := int((b >> 52) & 0x7ff)
	mant := b & (1<<52 - 1)
	expMax := uint64(1)<<expBits - 1
	if exp == 0x7ff {
		if mant == 0 {
			return sign | expMax<<mantBits
		}
		// NaN: keep the top payload bits, force quiet.
		return sign | expMax<<mantBits | mant>>(52-mantBits) | 1<<(mantBits-1)
	}
	sig := mant
	e := exp - 1023
	if exp == 0 {
		e = -1022
	} else {
		sig |= 1 << 52
	}
	if sig == 0 {
		return sign
	}
	bias := 1<<(expBits-1) - 1
	te := e + bias // target biased exponent
	shift := 52 - int(mantBits)
	if te < 1 { // subnormal in the target format
		shift += 1 - te
		te = 0
	}
	if shift > 60 {
		return sign // far below half the smallest subnormal
	}
	q := sig >> shift
	rem := sig & (1<<shift - 1)
	half := uint64(1) << (shift - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	if te == 0 {
		// q <= 1<<mantBits; a carry into bit mantBits is the smallest normal.
		return sign | q
	}
	if q == 1<<(mantBits+1) {
		q >>= 1
		te++
	}
	if uint64(te) >= expMax {
		return sign | expMax<<mantBits
	}
	return sign | uint64(te)<<mantBits | q&(1<<mantBits-1)
}

// EncodeFloat32 encodes v as little-endian elements of a float dtype (F64,
// F32, F16 or BF16), rounding to nearest even where the dtype is narrower.
func EncodeFloat32(dtype DType, v []float32) ([]byte, error) {
	if !dtype.IsFloat() {
		return nil, newError("", "", fmt.Errorf("%w: cannot encode float32 values as %s", ErrDTypeMismatch, dtype))
	}
	out := make([]byte, len(v)*dtype.Size())
	putFloat32(dtype, out, v)
	return out, nil
}

// putFloat32 encodes v into out, which holds exactly len(v) elements of
// the float dtype.
func putFloat32(dtype DType, out []byte, v []float32) {
	switch dtype {
	case F64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(float64(x)))
		}
	case F32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
	case F16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToF16(x))
		}
	case BF16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(x))
		}
	}
}

// EncodeFloat64 encodes v as little-endian elements of a float dtype (F64,
// F32, F16 or BF16), rounding to nearest even (once) where the dtype is
// narrower.
func EncodeFloat64(dtype DType, v []float64) ([]byte, error) {
	if !dtype.IsFloat() {
		return nil, newError("", "", fmt.Errorf("%w: cannot encode float64 values as %s", ErrDTypeMismatch, dtype))
	}
	out := make([]byte, len(v)*dtype.Size())
	switch dtype {
	case F64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(x))
		}
	case F32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(float32(x)))
		}
	case F16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], Float64ToF16(x))
		}
	case BF16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], Float64ToBF16(x))
		}
	}
	return out, nil
}

// EncodeInt64 encodes v as little-endian elements of an integer dtype (I64,
// I32, I16, I8, U8) or BOOL (values 0 and 1 only). A value that does not fit
// the dtype is an ErrRange error.
func EncodeInt64(dtype DType, v []int64) ([]byte, error) {
	var lo, hi int64
	switch dtype {
	case I64:
		lo, hi = math.MinInt64, math.MaxInt64
	case I32:
		lo, hi = math.MinInt32, math.MaxInt32
	case I16:
		lo, hi = math.MinInt16, math.MaxInt16
	case I8:
		lo, hi = math.MinInt8, math.MaxInt8
	case U8:
		lo, hi = 0, math.MaxUint8
	case BOOL:
		lo, hi = 0, 1
	default:
		return nil, newError("", "", fmt.Errorf("%w: cannot encode int64 values as %s", ErrDTypeMismatch, dtype))
	}
	size := dtype.Size()
	out := make([]byte, len(v)*size)
	for i, x := range v {
		if x < lo || x > hi {
			return nil, newError("", "", fmt.Errorf("%w: element %d = %d, %s holds [%d, %d]", ErrRange, i, x, dtype, lo, hi))
		}
		switch size {
		case 8:
			binary.LittleEndian.PutUint64(out[8*i:], uint64(x))
		case 4:
			binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
		case 2:
			binary.LittleEndian.PutUint16(out[2*i:], uint16(x))
		case 1:
			out[i] = byte(x)
		}
	}
	return out, nil
}
