package model

import (
	"math/rand/v2"
	"testing"

	"github.com/jamba-go/jamba/gguf"
	"github.com/jamba-go/jamba/kernels"
)

func BenchmarkScratchBlocks(b *testing.B) {
	kernels.SetThreads(1)
	defer kernels.SetThreads(0)
	R, C := 1024, 2560
	src := make([]float32, R*C)
	for i := range src {
		src[i] = rand.Float32() - 0.5
	}
	x := make([]float32, C)
	y := make([]float32, R)
	f := &kernels.Matrix{Rows: R, Cols: C, DType: kernels.F32, F32: src}
	b.Run("f32", func(b *testing.B) {
		for range b.N {
			kernels.MatMul(y, x, 1, f)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(R*C), "ns/weight")
	})
	for _, typ := range []gguf.Type{gguf.Q4_K, gguf.Q8_0, gguf.Q6_K} {
		q := make([]byte, typ.RowBytes(int64(R*C)))
		gguf.Quantize(typ, src, q)
		w := &kernels.Matrix{Rows: R, Cols: C, DType: kernels.Blocks, Q: q, Format: BlockFormat(typ)}
		b.Run(typ.String(), func(b *testing.B) {
			for range b.N {
				kernels.MatMul(y, x, 1, w)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(R*C), "ns/weight")
		})
		b.Run(typ.String()+"-deq", func(b *testing.B) {
			for range b.N {
				gguf.Dequantize(typ, q, src)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(R*C), "ns/weight")
		})
	}
}
