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
	ids := slices.Clone(sl.ids)
	return fmt.Errorf("%w: %v", ErrNonFinite, e.m.LocateNonFinite(ids, len(ids)-1))
}
