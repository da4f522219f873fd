package kernels

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/jamba-go/jamba/gguf"
)

// DequantizeQ4K, DequantizeQ6K and DequantizeQ8_0 equal ggml's
// dequantize_row_* (package gguf's, tested bit for bit against ggml's own
// outputs) on random blocks and on blocks whose scales are 0, −0,
// subnormal, the largest half, ±Inf and NaN, on the assembly and the
// plain-Go paths, for block counts around the assembly kernels' batches.
func TestDequantizeBlocks(t *testing.T) {
	halves := []uint16{0, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01}
	for _, c := range []struct {
		typ   gguf.Type
		f     func([]float32, []byte)
		half  []int // offsets of the block's halves
		sizes []int // block counts: one, partial and full batches of the assembly kernel
	}{
		{gguf.Q4_K, DequantizeQ4K, []int{0, 2}, []int{1, 2, 15, 16, 17, 37}},
		{gguf.Q6_K, DequantizeQ6K, []int{208}, []int{1, 2, 15, 16, 17, 37}},
		{gguf.Q8_0, DequantizeQ8_0, []int{0}, []int{1, 3, 63, 64, 65, 200}},
		{gguf.Q4_0, DequantizeQ4_0, []int{0}, []int{1, 3, 63, 64, 65, 200}},
	} {
		t.Run(c.typ.String(), func(t *testing.T) { checkDequantize(t, c.typ, c.f, c.half, c.sizes, halves) })
	}
}

func checkDequantize(t *testing.T, typ gguf.Type, f func([]float32, []byte), halfAt []int, sizes []int, halves []uint16) {
	bs, bb := typ.BlockSize(), typ.BlockBytes()
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, nb := range sizes {
			src := make([]byte, nb*bb)
			for i := range src {
				src[i] = byte(r.IntN(256))
			}
			for b := 0; b < nb; b++ {
				for _, o := range halfAt {
					h := uint16(0x3000 + r.IntN(0x1000)) // a moderate scale
					if b%2 == 1 {
						h = halves[r.IntN(len(halves))]
					}
					binary.LittleEndian.PutUint16(src[b*bb+o:], h)
				}
			}
			want := make([]float32, nb*bs)
			if err := gguf.Dequantize(typ, src, want); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, nb*bs)
			f(got, src)
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

func TestDequantizeAllocs(t *testing.T) {
	for _, c := range []struct {
		typ gguf.Type
		f   func([]float32, []byte)
	}{{gguf.Q4_0, DequantizeQ4_0}, {gguf.Q4_K, DequantizeQ4K}, {gguf.Q6_K, DequantizeQ6K}, {gguf.Q8_0, DequantizeQ8_0}} {
		src := make([]byte, 40*c.typ.BlockBytes())
		dst := make([]float32, 40*c.typ.BlockSize())
		if n := testing.AllocsPerRun(10, func() { c.f(dst, src) }); n != 0 {
			t.Errorf("%v: %v allocations", c.typ, n)
		}
	}
}
