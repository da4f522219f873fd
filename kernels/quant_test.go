package kernels

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/jamba-go/jamba/gguf"
)

// DequantizeQ4K equals ggml's dequantize_row_q4_K (package gguf's, tested
// bit for bit against ggml's own outputs) on random blocks and on blocks
// whose d and dmin are 0, −0, subnormal, the largest half, ±Inf and NaN, on
// the assembly and the plain-Go paths, for 1 to 37 super-blocks (full and
// partial batches of the assembly kernel).
func TestDequantizeQ4K(t *testing.T) {
	halves := []uint16{0, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01}
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, nb := range []int{1, 2, 15, 16, 17, 37} {
			src := make([]byte, nb*144)
			for i := range src {
				src[i] = byte(r.IntN(256))
			}
			for b := 0; b < nb; b++ {
				if b%2 == 1 {
					binary.LittleEndian.PutUint16(src[b*144:], halves[r.IntN(len(halves))])
					binary.LittleEndian.PutUint16(src[b*144+2:], halves[r.IntN(len(halves))])
				}
			}
			want := make([]float32, nb*256)
			if err := gguf.Dequantize(gguf.Q4_K, src, want); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, nb*256)
			DequantizeQ4K(got, src)
			for i := range want {
				// A NaN's payload is the processor's (as in ggml): NaN matches NaN.
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
					t.Fatalf("%d blocks: y[%d] = %v (%08x), ggml %v (%08x)", nb, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
			}
		}
	})
}

func TestF16ToF32(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		got, want := F16ToF32(uint16(h)), gguf.F16ToFloat32(uint16(h))
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("half %04x: %08x, want %08x", h, math.Float32bits(got), math.Float32bits(want))
		}
	}
}
