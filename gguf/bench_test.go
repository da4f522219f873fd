package gguf

import (
	"math/rand/v2"
	"testing"
)

func benchInput(n int) []float32 {
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64()) * 0.02
	}
	return x
}

func BenchmarkQuantize(b *testing.B) {
	for _, typ := range []Type{Q8_0, Q4_0, Q4_K, Q6_K} {
		b.Run(typ.String(), func(b *testing.B) {
			x := benchInput(1 << 16)
			dst := make([]byte, typ.RowBytes(int64(len(x))))
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if err := Quantize(typ, x, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDequantize(b *testing.B) {
	for _, typ := range []Type{BF16, Q8_0, Q4_0, Q4_K, Q6_K} {
		b.Run(typ.String(), func(b *testing.B) {
			x := benchInput(1 << 16)
			src := make([]byte, typ.RowBytes(int64(len(x))))
			if err := Quantize(typ, x, src); err != nil {
				b.Fatal(err)
			}
			y := make([]float32, len(x))
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				if err := Dequantize(typ, src, y); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
