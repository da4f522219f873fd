package model

import "math"

// activations are the supported values of hidden_act, as in transformers' ACT2FN.
var activations = map[string]func(float32) float32{
	"silu":              silu,
	"swish":             silu,
	"relu":              func(x float32) float32 { return max(x, 0) },
	"gelu":              geluErf,
	"gelu_new":          geluTanh,
	"gelu_pytorch_tanh": geluTanh,
	"gelu_fast":         geluTanh,
}

func silu(x float32) float32 { return x / (1 + float32(math.Exp(float64(-x)))) }

func geluErf(x float32) float32 {
	return float32(0.5 * float64(x) * (1 + math.Erf(float64(x)/math.Sqrt2)))
}

func geluTanh(x float32) float32 {
	v := float64(x)
	return float32(0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v))))
}
