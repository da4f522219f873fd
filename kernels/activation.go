package kernels

import (
	"math"
	"sort"
)

// Activation is an element-wise activation function (a value of a Hugging
// Face config's hidden_act) with its derivative.
type Activation struct {
	Name string
	F    func(x float32) float32 // the function
	DF   func(x float32) float32 // its derivative d F / d x
	silu bool                    // F is SiLU: Apply and Derivative use the vector exponential
}

// activations are the supported values of hidden_act, as in transformers'
// ACT2FN.
var activations = map[string]Activation{
	"silu":              {"silu", siluScalar, siluScalarGrad, true},
	"swish":             {"swish", siluScalar, siluScalarGrad, true},
	"relu":              {"relu", relu, reluGrad, false},
	"gelu":              {"gelu", geluErf, geluErfGrad, false},
	"gelu_new":          {"gelu_new", geluTanh, geluTanhGrad, false},
	"gelu_pytorch_tanh": {"gelu_pytorch_tanh", geluTanh, geluTanhGrad, false},
	"gelu_fast":         {"gelu_fast", geluTanh, geluTanhGrad, false},
}

// LookupActivation returns the activation named by hidden_act, and whether
// it is supported.
func LookupActivation(name string) (Activation, bool) {
	a, ok := activations[name]
	return a, ok
}

// ActivationNames lists the supported hidden_act values, sorted.
func ActivationNames() []string {
	names := make([]string, 0, len(activations))
	for n := range activations {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Apply sets dst[i] = F(x[i]); dst may be x.
func (a Activation) Apply(dst, x []float32) { a.each(dst, x, SiLU, a.F) }

// Derivative sets dst[i] = F'(x[i]); dst must not be x.
func (a Activation) Derivative(dst, x []float32) { a.each(dst, x, siluGrads, a.DF) }

// each runs the vector form vec for SiLU, else f element by element.
func (a Activation) each(dst, x []float32, vec func(dst, x []float32), f func(float32) float32) {
	if a.silu {
		vec(dst, x)
		return
	}
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = f(v)
	}
}

// Sigmoids sets dst[i] = σ(x[i]) = 1/(1+e^−x[i]) with the vector
// exponential; dst may be x.
func Sigmoids(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = -v
	}
	Exp(dst, dst)
	for i, v := range dst {
		dst[i] = 1 / (1 + v)
	}
}

// siluGrads sets dst[i] = silu'(x[i]) = σ(1 + x(1 − σ)); dst must not be x.
func siluGrads(dst, x []float32) {
	Sigmoids(dst, x)
	for i, s := range dst[:len(x)] {
		dst[i] = s * (1 + x[i]*(1-s))
	}
}

func sigmoidScalar(x float32) float32 { return 1 / (1 + float32(math.Exp(float64(-x)))) }

// silu(x) = x·σ(x); silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
func siluScalar(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

func siluScalarGrad(x float32) float32 {
	s := sigmoidScalar(x)
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
