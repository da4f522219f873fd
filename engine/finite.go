package engine

import (
	"fmt"
	"slices"
)

// nonFinite is the error of a sequence whose logits hold a NaN or an
// infinity: ErrNonFinite, with the first layer whose output is not finite
// (found by running the slot's tokens through the model again).
func (e *Engine) nonFinite(sl *slot) error {
	if len(sl.ids) == 0 {
		return ErrNonFinite
	}
	if e.cpu == nil {
		// Locating the layer runs the tokens through the CPU model again:
		// too slow to do unasked after a device's step.
		return fmt.Errorf("%w: after %d tokens (run them on the CPU to find the layer)", ErrNonFinite, len(sl.ids))
	}
	ids := slices.Clone(sl.ids)
	return fmt.Errorf("%w: %v", ErrNonFinite, e.m.LocateNonFinite(ids, len(ids)-1))
}
