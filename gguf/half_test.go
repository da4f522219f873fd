package gguf

import (
	"math"
	"math/rand/v2"
	"testing"
)

// f16Value is the exact value of a finite half, computed independently of
// F16ToFloat32 in float64.
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e, m := int(h>>10)&0x1F, float64(h&0x3FF)
	if e == 0 {
		return sign * m * math.Pow(2, -24)
	}
	return sign * (1 + m/1024) * math.Pow(2, float64(e-15))
}

func TestHalfConversions(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToFloat32(h)
		exp := h >> 10 & 0x1F
		switch {
		case exp == 0x1F && h&0x3FF != 0:
			if f == f || math.Float32bits(f)&0x00400000 == 0 {
				t.Fatalf("F16ToFloat32(%#04x) = %#08x, want a quiet NaN", h, math.Float32bits(f))
			}
		case exp == 0x1F:
			if !math.IsInf(float64(f), 0) || math.Signbit(float64(f)) != (h&0x8000 != 0) {
				t.Fatalf("F16ToFloat32(%#04x) = %g, want ±inf", h, f)
			}
		default:
			if float64(f) != f16Value(h) || math.Signbit(float64(f)) != (h&0x8000 != 0) {
				t.Fatalf("F16ToFloat32(%#04x) = %g, want %g", h, f, f16Value(h))
			}
			// Every finite half survives the round trip.
			if back := Float32ToF16(f); back != h {
				t.Fatalf("Float32ToF16(F16ToFloat32(%#04x)) = %#04x", h, back)
			}
		}
		// bf16 widening is exact and round-trips, NaNs staying NaN.
		b := BF16ToFloat32(h)
		if back := Float32ToBF16(b); back != h && !(b != b && back&0x7F80 == 0x7F80 && back&0x7F != 0 && back&0x40 != 0) {
			t.Fatalf("Float32ToBF16(BF16ToFloat32(%#04x)) = %#04x", h, back)
		}
	}
	// Rounding to f16 is to nearest, ties to even: compare with the two
	// neighbouring halves in float64.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(r.Uint32())
		if f != f || math.Abs(float64(f)) >= 65520 { // NaN, or rounds to inf
			continue
		}
		h := Float32ToF16(f)
		got, x := f16Value(h), float64(f)
		if got == x || h&0x7FFF == 0x7BFF && math.Abs(x) > 65504 {
			continue
		}
		n := f16Value(nextHalf(h, x > got))
		switch dg, dn := math.Abs(got-x), math.Abs(n-x); {
		case dn < dg:
			t.Fatalf("Float32ToF16(%g) = %#04x (%g), but %g is nearer", f, h, got, n)
		case dn == dg && h&1 != 0:
			t.Fatalf("Float32ToF16(%g) = %#04x (%g): a tie not rounded to even", f, h, got)
		}
	}
}

// nextHalf returns the half next to h in the direction of up (in value).
func nextHalf(h uint16, up bool) uint16 {
	neg := h&0x8000 != 0
	mag := h & 0x7FFF
	if mag == 0 {
		if up {
			return 1
		}
		return 0x8001
	}
	if up != neg {
		return h + 1
	}
	return h - 1
}
