package train

import "testing"

// refLoss is the float64 reference loss (internal/ref) of the parameters
// theta, in the layout of p: the mean next-token cross-entropy over rows
// and the load-balancing loss. The lookup of the padding id reads padRow
// (when not nil) instead of theta, so that perturbing that row of theta
// shows only the gradient that transformers gives it (none from the
// lookup, the LM head's part when tied).
func refLoss(t testing.TB, p *Params, theta []float64, rows [][]int, padRow []float64) (ce, aux float64) {
	t.Helper()
	return refMaskedLoss(t, p, theta, rows, nil, padRow)
}
