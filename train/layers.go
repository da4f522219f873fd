package train

import (
	"fmt"
	"math"

	"github.com/jamba-go/jamba/kernels"
)

// This file holds the element-wise layers and RMSNorm, each forward
// followed by its backward. Backward functions add (+=) into gradients.

// lookupActivation returns hidden_act's function and derivative.
func lookupActivation(name string) (kernels.Activation, error) {
	a, ok := kernels.LookupActivation(name)
	if !ok {
		return kernels.Activation{}, fmt.Errorf("train: unsupported hidden_act %q", name)
	}
	return a, nil
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
