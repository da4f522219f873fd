package kernels

import (
	"fmt"
	"math"
	"testing"
)

// TestAttentionWeights: the weights reproduce Attention's output bit for
// bit when summed over the values (so they are the forward pass's own),
// match a float64 softmax, and are zero above the diagonal; the same for
// bfloat16 keys and values.
func TestAttentionWeights(t *testing.T) {
	paths(t, func(t *testing.T) {
		r := newRand(t)
		for _, sh := range attnShapes {
			T, past, nH, nKV, hd := sh[0], sh[1], sh[2], sh[3], sh[4]
			name := fmt.Sprintf("T=%d past=%d heads=%d/%d hd=%d", T, past, nH, nKV, hd)
			n, qd, kvd, group := past+T, nH*hd, nKV*hd, nH/nKV
			q, _ := guarded(r, T*qd, 1)
			K, _ := guarded(r, n*kvd, 2)
			V, _ := guarded(r, n*kvd, 3)
			K16, Kw := toBF16(K)
			V16, _ := toBF16(V)
			scale := float32(4 / math.Sqrt(float64(hd)))
			for _, bf := range []bool{false, true} {
				out := make([]float32, T*qd)
				w, check := guarded(r, nH*T*n, 4)
				if bf {
					AttentionBF16(out, q, K16, V16, T, past, nH, nKV, hd, scale, 0)
					AttentionWeights(w, q, nil, K16, T, past, nH, nKV, hd, scale)
				} else {
					Attention(out, q, K, V, T, past, nH, nKV, hd, scale, 0)
					AttentionWeights(w, q, K, nil, T, past, nH, nKV, hd, scale)
				}
				check(t)
				keys := K
				if bf {
					keys = Kw
				}
				for h := range nH {
					g := h / group
					for tt := range T {
						row := w[(h*T+tt)*n : (h*T+tt+1)*n]
						vis := past + tt + 1
						o := make([]float32, hd)
						if bf {
							weightedSumBF16(o, V16[g*hd:], kvd, row[:vis])
						} else {
							weightedSum(o, V[g*hd:], kvd, row[:vis])
						}
						for d := range hd {
							if got := out[tt*qd+h*hd+d]; math.Float32bits(o[d]) != math.Float32bits(got) {
								t.Fatalf("%s bf16=%v: head %d query %d: weights give %v, Attention %v", name, bf, h, tt, o[d], got)
							}
						}
						// float64 softmax of the same scores.
						s := make([]float64, vis)
						mx := math.Inf(-1)
						for j := range s {
							var dot float64
							for d := range hd {
								dot += float64(q[tt*qd+h*hd+d]) * float64(keys[j*kvd+g*hd+d])
							}
							s[j] = dot * float64(scale)
							mx = max(mx, s[j])
						}
						var z float64
						for j := range s {
							s[j] = math.Exp(s[j] - mx)
							z += s[j]
						}
						for j := range n {
							want := 0.0
							if j < vis {
								want = s[j] / z
							}
							// float32 dot products of up to 128 terms and
							// float32 exp/sum: about 1e-6 of a weight ≤ 1.
							if d := math.Abs(float64(row[j]) - want); !(d <= 2e-6) {
								t.Fatalf("%s bf16=%v: w[%d][%d][%d] = %v, float64 %v", name, bf, h, tt, j, row[j], want)
							}
						}
					}
				}
			}
		}
	})
}
