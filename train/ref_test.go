package train

import (
	"testing"

	"github.com/jamba-go/jamba/internal/ref"
)

// refLoss is the float64 reference loss (internal/ref) of the parameters
// theta, in the layout of p: the mean next-token cross-entropy over rows
// and the load-balancing loss. The lookup of the padding id reads padRow
// (when not nil) instead of theta, so that perturbing that row of theta
// shows only the gradient that transformers gives it (none from the
// lookup, the LM head's part when tied).
func refLoss(t testing.TB, p *Params, theta []float64, rows [][]int, padRow []float64) (ce, aux float64) {
	t.Helper()
	c, err := ref.ConfigOf(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	weights := func(name string) []float64 {
		tn, ok := p.Lookup(name)
		if !ok {
			return nil
		}
		return theta[tn.Offset : tn.Offset+tn.Size]
	}
	pad := -1
	if p.Config.PadTokenID != nil {
		pad = *p.Config.PadTokenID
	}
	return ref.Loss(c, weights, rows, pad, padRow)
}
