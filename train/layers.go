package train

import (
	"fmt"
	"math"

	"github.com/jamba-go/jamba/kernels"
)

// This file holds the element-wise layers and RMSNorm, each forward
// followed by its backward. Backward functions add (+=) into gradients.

// activation is an element-wise function with its derivative.
type activation struct {
	f    func(x float32) float32
	df   func(x float32) float32 // d f / d x
	silu bool                    // f is SiLU: use the vector exponential
}

// activations are the supported values of hidden_act (transformers' ACT2FN).
var activations = map[string]activation{
	"silu":              {silu, siluGrad, true},
	"swish":             {silu, siluGrad, true},
	"relu":              {relu, reluGrad, false},
	"gelu":              {geluErf, geluErfGrad, false},
	"gelu_new":          {geluTanh, geluTanhGrad, false},
	"gelu_pytorch_tanh": {geluTanh, geluTanhGrad, false},
	"gelu_fast":         {geluTanh, geluTanhGrad, false},
}

// forward sets dst[i] = f(x[i]); dst may be x.
func (a activation) forward(dst, x []float32) {
	if a.silu {
		kernels.SiLU(dst, x)
		return
	}
	for i, v := range x {
		dst[i] = a.f(v)
	}
}

// grad sets dst[i] = f'(x[i]); dst must not be x.
func (a activation) grad(dst, x []float32) {
	if a.silu {
		siluGrads(dst, x)
		return
	}
	for i, v := range x {
		dst[i] = a.df(v)
	}
}

// sigmoids sets dst[i] = σ(x[i]) = 1/(1+e^−x[i]) with the vector
// exponential; dst may be x.
func sigmoids(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = -v
	}
	kernels.Exp(dst, dst)
	for i, v := range dst {
		dst[i] = 1 / (1 + v)
	}
}

// siluGrads sets dst[i] = silu'(x[i]) = σ(1 + x(1 − σ)); dst must not be x.
func siluGrads(dst, x []float32) {
	sigmoids(dst, x)
	for i, s := range dst[:len(x)] {
		dst[i] = s * (1 + x[i]*(1-s))
	}
}

func lookupActivation(name string) (activation, error) {
	a, ok := activations[name]
	if !ok {
		return activation{}, fmt.Errorf("train: unsupported hidden_act %q", name)
	}
	return a, nil
}

func sigmoid(x float32) float32 { return 1 / (1 + float32(math.Exp(float64(-x)))) }

// silu(x) = x·σ(x); silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
func silu(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

func siluGrad(x float32) float32 {
	s := sigmoid(x)
	return s * (1 + x*(1-s))
}

func relu(x float32) float32 { return max(x, 0) }

func reluGrad(x float32) float32 {
	if x > 0 {
		return 1
	}
	return 0
}

// geluErf(x) = x·Φ(x); derivative Φ(x) + x·φ(x).
func geluErf(x float32) float32 {
	return float32(0.5 * float64(x) * (1 + math.Erf(float64(x)/math.Sqrt2)))
}

func geluErfGrad(x float32) float32 {
	v := float64(x)
	cdf := 0.5 * (1 + math.Erf(v/math.Sqrt2))
	pdf := math.Exp(-0.5*v*v) / math.Sqrt(2*math.Pi)
	return float32(cdf + v*pdf)
}

// geluTanh(x) = ½x(1 + tanh(u)), u = √(2/π)(x + 0.044715x³).
func geluTanh(x float32) float32 {
	v := float64(x)
	return float32(0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v))))
}

func geluTanhGrad(x float32) float32 {
	v := float64(x)
	k := math.Sqrt(2 / math.Pi)
	th := math.Tanh(k * (v + 0.044715*v*v*v))
	return float32(0.5*(1+th) + 0.5*v*(1-th*th)*k*(1+3*0.044715*v*v))
}

// rmsNormForward normalises each row of len(w) floats of x into y:
// y = w ⊙ x·r with r = 1/sqrt(mean(x²) + eps), and stores r per row in rstd.
func rmsNormForward(p pool, y, rstd, x, w []float32, rows int, eps float32) {
	n := len(w)
	p.parallel(rows, 64, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			xr, yr := x[t*n:(t+1)*n], y[t*n:(t+1)*n]
			var ss float32
			for _, v := range xr {
				ss += v * v
			}
			r := float32(1 / math.Sqrt(float64(ss/float32(n)+eps)))
			rstd[t] = r
			for i, v := range xr {
				yr[i] = w[i] * (v * r)
			}
		}
	})
}

// rmsNormBackward adds the gradients of rmsNormForward: with g = dy ⊙ w,
// dx = r·g − x·r³·mean(g ⊙ x) (added into dx) and dw += Σ_rows dy ⊙ x·r.
// Rows run in parallel with per-chunk dw partials in part.
func rmsNormBackward(p pool, part *partials, dx, dw, dy, x, rstd, w []float32, rows int) {
	n := len(w)
	chunks, _ := p.split(rows, 64)
	part.reset(chunks, n)
	p.parallelFor(rows, 64, func(c, lo, hi int) {
		local := part.get(c)
		for t := lo; t < hi; t++ {
			xr, dyr, dxr := x[t*n:(t+1)*n], dy[t*n:(t+1)*n], dx[t*n:(t+1)*n]
			r := rstd[t]
			var dot float32
			for i, v := range xr {
				dot += dyr[i] * w[i] * v
				local[i] += dyr[i] * v * r
			}
			c := dot * r * r * r / float32(n)
			for i, v := range xr {
				dxr[i] += r*dyr[i]*w[i] - c*v
			}
		}
	})
	part.sumInto(p, dw)
}
