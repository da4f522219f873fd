package safetensors

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestFloat32ToBF16(t *testing.T) {
	tests := []struct {
		in   uint32 // float32 bits
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0xc0200000, 0xc020}, // -2.5
		{0x40490fdb, 0x4049}, // pi rounds down to 3.140625
		{0x3f808000, 0x3f80}, // tie, even stays
		{0x3f818000, 0x3f82}, // tie, odd rounds up
		{0x3f808001, 0x3f81}, // just above the tie
		{0x3f807fff, 0x3f80}, // just below the tie
		{0x3f7fffff, 0x3f80}, // rounds up across the exponent
		{0x7f7fffff, 0x7f80}, // max float32 overflows to +Inf
		{0x7f7f7fff, 0x7f7f}, // stays the max bfloat16
		{0xff800000, 0xff80}, // -Inf
		{0x80000000, 0x8000}, // -0
		{0x00000001, 0x0000}, // smallest subnormal rounds to 0
		{0x00008000, 0x0000}, // subnormal tie, even
		{0x00018000, 0x0002}, // subnormal tie, odd
		{0x007fffff, 0x0080}, // largest subnormal rounds to the smallest normal
		{0x7fc00000, 0x7fc0}, // quiet NaN
		{0x7f800001, 0x7fc0}, // signalling NaN with a low payload stays NaN
		{0xffa00000, 0xffe0}, // negative NaN keeps its sign and payload
	}
	for _, tt := range tests {
		got := Float32ToBF16(math.Float32frombits(tt.in))
		if got != tt.want {
			t.Errorf("Float32ToBF16(%#08x) = %#04x, want %#04x", tt.in, got, tt.want)
		}
		// The float64 path agrees for every float32 input.
		if got64 := Float64ToBF16(float64(math.Float32frombits(tt.in))); got64 != tt.want {
			t.Errorf("Float64ToBF16(%#08x) = %#04x, want %#04x", tt.in, got64, tt.want)
		}
	}
}

func TestBF16Exhaustive(t *testing.T) {
	for h := range 1 << 16 {
		f := BF16ToFloat32(uint16(h))
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("BF16ToFloat32(%#04x) = %#08x", h, math.Float32bits(f))
		}
		back := Float32ToBF16(f)
		if math.IsNaN(float64(f)) {
			if back&0x7fc0 != 0x7fc0 || back>>15 != uint16(h)>>15 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("round trip of %#04x gave %#04x", h, back)
		}
	}
}

func TestBF16MatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		bits := r.Uint32()
		f := math.Float32frombits(bits)
		if math.IsNaN(float64(f)) {
			continue
		}
		if a, b := Float32ToBF16(f), uint16(roundFloat64(float64(f), 8, 7)); a != b {
			t.Fatalf("%#08x: fast %#04x, generic %#04x", bits, a, b)
		}
	}
}

func TestFloat64ToBF16SingleRounding(t *testing.T) {
	// 1 + 2^-8 + 2^-30 is just above the midpoint between 1 and 1+2^-7.
	// Rounding through float32 first would land exactly on the midpoint and
	// then round to even (1.0).
	x := 1 + math.Ldexp(1, -8) + math.Ldexp(1, -30)
	if got := Float64ToBF16(x); got != 0x3f81 {
		t.Errorf("Float64ToBF16(%v) = %#04x, want 0x3f81", x, got)
	}
	if got := Float32ToBF16(float32(x)); got != 0x3f80 {
		t.Errorf("double rounding check: Float32ToBF16(float32(%v)) = %#04x, want 0x3f80", x, got)
	}
	if got := Float64ToBF16(1e300); got != 0x7f80 {
		t.Errorf("Float64ToBF16(1e300) = %#04x, want +Inf", got)
	}
	if got := Float64ToBF16(-1e-300); got != 0x8000 {
		t.Errorf("Float64ToBF16(-1e-300) = %#04x, want -0", got)
	}
}

func TestFloat32ToF16(t *testing.T) {
	tests := []struct {
		in   float64
		want uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},                  // max
		{65519.99, 0x7bff},               // below the midpoint to Inf
		{65520, 0x7c00},                  // midpoint rounds to even: Inf
		{math.Inf(-1), 0xfc00},           // -Inf
		{math.Ldexp(1, -14), 0x0400},     // smallest normal
		{math.Ldexp(1, -24), 0x0001},     // smallest subnormal
		{math.Ldexp(1, -25), 0x0000},     // half of it: tie to even 0
		{math.Ldexp(3, -26), 0x0001},     // 0.75 of it
		{math.Ldexp(3, -25), 0x0002},     // 1.5 of it: tie to even 2
		{math.Ldexp(1023, -24), 0x03ff},  // largest subnormal
		{math.Ldexp(2047, -25), 0x0400},  // rounds up into the normals
		{1 + math.Ldexp(1, -11), 0x3c00}, // tie, even stays
		{1 + math.Ldexp(3, -11), 0x3c02}, // tie, odd rounds up
		{0.1, 0x2e66},
		{math.Copysign(0, -1), 0x8000},
	}
	for _, tt := range tests {
		if got := Float32ToF16(float32(tt.in)); got != tt.want {
			t.Errorf("Float32ToF16(%v) = %#04x, want %#04x", tt.in, got, tt.want)
		}
		if got := Float64ToF16(tt.in); got != tt.want {
			t.Errorf("Float64ToF16(%v) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
	if got := Float32ToF16(float32(math.NaN())); got&0x7e00 != 0x7e00 {
		t.Errorf("Float32ToF16(NaN) = %#04x, want a quiet NaN", got)
	}
}

func TestF16Exhaustive(t *testing.T) {
	for h := range 1 << 16 {
		f := F16ToFloat32(uint16(h))
		back := Float32ToF16(f)
		if math.IsNaN(float64(f)) {
			if h&0x7c00 != 0x7c00 || back&0x7e00 != 0x7e00 || back>>15 != uint16(h)>>15 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("round trip of %#04x (%v) gave %#04x", h, f, back)
		}
	}
}

// TestF16RandomAgainstBig compares rounding in the normal range with
// math/big's 11-bit nearest-even rounding.
func TestF16RandomAgainstBig(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 1 << 18 {
		x := math.Ldexp(r.Float64()+0.5, r.IntN(30)-14) // in [2^-15, 2^15)
		if r.IntN(2) == 0 {
			x = -x
		}
		want, _ := new(big.Float).SetPrec(11).SetMode(big.ToNearestEven).SetFloat64(x).Float64()
		if math.Abs(want) < math.Ldexp(1, -14) {
			continue // subnormal range: big.Float has no gradual underflow
		}
		if got := float64(F16ToFloat32(Float64ToF16(x))); got != want {
			t.Fatalf("F16(%v) = %v, want %v", x, got, want)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	if _, err := EncodeFloat32(I32, []float32{1}); !errors.Is(err, ErrDTypeMismatch) {
		t.Errorf("EncodeFloat32(I32): %v", err)
	}
	if _, err := EncodeFloat64(BOOL, []float64{1}); !errors.Is(err, ErrDTypeMismatch) {
		t.Errorf("EncodeFloat64(BOOL): %v", err)
	}
	if _, err := EncodeInt64(F32, []int64{1}); !errors.Is(err, ErrDTypeMismatch) {
		t.Errorf("EncodeInt64(F32): %v", err)
	}
	for _, tt := range []struct {
		dtype DType
		v     int64
	}{{I32, math.MaxInt32 + 1}, {I16, math.MinInt16 - 1}, {I8, 128}, {U8, -1}, {U8, 256}, {BOOL, 2}} {
		if _, err := EncodeInt64(tt.dtype, []int64{0, tt.v}); !errors.Is(err, ErrRange) {
			t.Errorf("EncodeInt64(%s, %d): %v, want ErrRange", tt.dtype, tt.v, err)
		}
	}
}

func TestDTypeSize(t *testing.T) {
	want := map[DType]int{F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, "U32": 0, "": 0, "f32": 0}
	for d, size := range want {
		if got := d.Size(); got != size {
			t.Errorf("%q.Size() = %d, want %d", d, got, size)
		}
	}
}
