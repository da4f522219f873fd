package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestWeightedSum compares the attention's weighted sum of value rows
// (dispatched: assembly where the machine has it) with its plain-Go
// reference, for f32 and bf16 rows, on widths around the vector length and
// rows that start ld floats apart. The assembly fuses each multiply-add and
// the reference may not: each of the len(p) steps may differ by one
// rounding, so the bar is len(p) float32 epsilons of Σ|p·w| per element.
func TestWeightedSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, C := range []int{1, 7, 8, 9, 31, 63, 64, 65, 130} {
		for _, keys := range []int{1, 2, 5, 17} {
			ld := C + 3
			w := make([]float32, keys*ld)
			wb := make([]uint16, keys*ld)
			for i := range w {
				wb[i] = F32ToBF16(rng.Float32()*2 - 1)
				w[i] = BF16ToF32(wb[i]) // the same values in both forms
			}
			p := make([]float32, keys)
			for i := range p {
				p[i] = rng.Float32()
			}
			start := make([]float32, C)
			for i := range start {
				start[i] = rng.Float32() - 0.5
			}
			bound := make([]float64, C)
			for c := range C {
				bound[c] = math.Abs(float64(start[c]))
				for j := range keys {
					bound[c] += math.Abs(float64(p[j] * w[j*ld+c]))
				}
				bound[c] *= float64(keys) * 1.2e-7
			}
			check := func(name string, got, want []float32) {
				for c := range C {
					if d := math.Abs(float64(got[c] - want[c])); d > bound[c] {
						t.Fatalf("%s C=%d keys=%d: column %d is %v, reference %v", name, C, keys, c, got[c], want[c])
					}
				}
			}
			got, want := append([]float32(nil), start...), append([]float32(nil), start...)
			weightedSum(got, w, ld, p)
			weightedSumGeneric(want, w, ld, p)
			check("f32", got, want)
			got, want = append(got[:0], start...), append(want[:0], start...)
			weightedSumBF16(got, wb, ld, p)
			weightedSumBF16Generic(want, wb, ld, p)
			check("bf16", got, want)
		}
	}
}
