package kernels

import (
	"math"
	"testing"
)

// TestActivationDerivatives checks every activation's derivative against a
// float64 central difference of its function, and Apply and Derivative
// (the vector paths) against F and DF, on values that cross zero and reach
// the tails. F rounds to float32 (6e-8·|F|); divided by the step 2e-3 that
// is up to 3e-5·|F|, 5e-4 at x = 15, and the truncation error is about
// 1e-7·|F”'|: 1e-2 relative leaves room, and a wrong formula errs by O(1).
func TestActivationDerivatives(t *testing.T) {
	xs := []float32{-9, -3.5, -1, -0.25, 0, 1e-3, 0.3, 1, 2.5, 7, 15}
	for _, name := range ActivationNames() {
		a, ok := LookupActivation(name)
		if !ok || a.Name != name {
			t.Fatalf("%s: lookup gives %q, %v", name, a.Name, ok)
		}
		applied, derived := make([]float32, len(xs)), make([]float32, len(xs))
		a.Apply(applied, xs)
		a.Derivative(derived, xs)
		for i, x := range xs {
			if x == 0 && name == "relu" {
				continue // not differentiable at 0
			}
			const h = 1e-3
			f := func(v float64) float64 { return float64(a.F(float32(v))) }
			num := (f(float64(x)+h) - f(float64(x)-h)) / (2 * h)
			if d := float64(a.DF(x)); math.Abs(d-num) > 1e-2*math.Max(1, math.Abs(num)) {
				t.Errorf("%s'(%v) = %v, central difference %v", name, x, d, num)
			}
			// The vector SiLU rounds differently from the scalar one (its own
			// exponential, checked in kernels_test): 1e-5 relative.
			if d := math.Abs(float64(applied[i] - a.F(x))); d > 1e-5*math.Max(1, math.Abs(float64(a.F(x)))) {
				t.Errorf("%s: Apply(%v) = %v, F = %v", name, x, applied[i], a.F(x))
			}
			if d := math.Abs(float64(derived[i] - a.DF(x))); d > 1e-5*math.Max(1, math.Abs(float64(a.DF(x)))) {
				t.Errorf("%s: Derivative(%v) = %v, DF = %v", name, x, derived[i], a.DF(x))
			}
		}
	}
	if _, ok := LookupActivation("tanh"); ok {
		t.Error("tanh is not a supported hidden_act")
	}
}
