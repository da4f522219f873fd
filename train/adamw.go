package train

import (
	"math"
	"strings"
)

// AdamW is the Adam optimizer with decoupled weight decay, in PyTorch's
// form: for step t (from 1), gradient g and learning rate lr,
//
//	θ ← θ − lr·λ·θ                  (only for decayed tensors)
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	θ ← θ − lr·(m/(1−β1ᵗ)) / (sqrt(v/(1−β2ᵗ)) + ε)
//
// M and V use the Params layout.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	M, V                           []float32
	Step                           int // number of updates done
	decay                          []bool
	p                              *Params
}

// NewAdamW returns an optimizer with zero moments for p.
func NewAdamW(p *Params, beta1, beta2, eps, weightDecay float64) *AdamW {
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay,
		M: make([]float32, len(p.Data)), V: make([]float32, len(p.Data)), p: p}
	o.decay = make([]bool, len(p.Tensors))
	for i, t := range p.Tensors {
		o.decay[i] = Decays(t)
	}
	return o
}

// Decays reports whether weight decay applies to a tensor: to the weight
// matrices (linear, conv, embedding; two or more dimensions), not to norms,
// biases, A_log or D.
func Decays(t Tensor) bool {
	return len(t.Shape) >= 2 && strings.HasSuffix(t.Name, ".weight") && !strings.HasSuffix(t.Name, "layernorm.weight")
}

// Update applies one step with gradient g (in the Params layout) at
// learning rate lr.
func (o *AdamW) Update(g []float32, lr float64) {
	o.Step++
	t := float64(o.Step)
	bc1 := 1 - math.Pow(o.Beta1, t)
	bc2 := 1 - math.Pow(o.Beta2, t)
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	stepSize := float32(lr / bc1)
	invBC2 := float32(1 / math.Sqrt(bc2))
	eps := float32(o.Eps)
	theta := o.p.Data
	for i, tn := range o.p.Tensors {
		decay := float32(1)
		if o.decay[i] {
			decay = float32(1 - lr*o.WeightDecay)
		}
		lo, hi := tn.Offset, tn.Offset+tn.Size
		parallel(hi-lo, 1<<14, func(a, b int) {
			for j := lo + a; j < lo+b; j++ {
				gj := g[j]
				m := b1*o.M[j] + (1-b1)*gj
				v := b2*o.V[j] + (1-b2)*gj*gj
				o.M[j], o.V[j] = m, v
				theta[j] = theta[j]*decay - stepSize*m/(float32(math.Sqrt(float64(v)))*invBC2+eps)
			}
		})
	}
}

// GradNorm returns the L2 norm of g, summed in float64 in a fixed order:
// per block of normBlock values, then the blocks in order (the same for any
// thread count).
func GradNorm(g []float32) float64 {
	const normBlock = 1 << 15
	sums := make([]float64, (len(g)+normBlock-1)/normBlock)
	parallel(len(sums), 1, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var s float64
			for _, v := range g[c*normBlock : min((c+1)*normBlock, len(g))] {
				s += float64(v) * float64(v)
			}
			sums[c] = s
		}
	})
	var s float64
	for _, v := range sums {
		s += v
	}
	return math.Sqrt(s)
}

// ClipGradNorm scales g so that its L2 norm is at most maxNorm (no-op for
// maxNorm ≤ 0) and returns the norm before clipping.
func ClipGradNorm(g []float32, maxNorm float64) float64 {
	norm := GradNorm(g)
	if maxNorm > 0 && norm > maxNorm {
		s := float32(maxNorm / (norm + 1e-6))
		parallel(len(g), 1<<15, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				g[i] *= s
			}
		})
	}
	return norm
}

// Schedule is a learning-rate schedule: linear warmup from 0 over Warmup
// steps, then a cosine decay from LR to MinLR at step Steps (and MinLR
// after).
type Schedule struct {
	LR, MinLR     float64
	Warmup, Steps int
}

// At returns the learning rate of step (counted from 0).
func (s Schedule) At(step int) float64 {
	if step < s.Warmup {
		return s.LR * float64(step+1) / float64(s.Warmup)
	}
	if step >= s.Steps || s.Steps <= s.Warmup {
		return s.MinLR
	}
	frac := float64(step-s.Warmup) / float64(s.Steps-s.Warmup)
	return s.MinLR + 0.5*(s.LR-s.MinLR)*(1+math.Cos(math.Pi*frac))
}
