package train

import (
	"fmt"
	"sync"

	"github.com/jamba-go/jamba/model"
)

// Workers run the passes of a batch on several Backprops at once: data
// parallelism. Each worker is a Serial Backprop over the same Params (read
// only during a pass) with its own gradient and activations, on a goroutine
// of its own, and takes a fixed share of the batch's rows (contiguous,
// balanced: worker i of w gets rows i·n/w to (i+1)·n/w). A pass is the
// forward pass of every share, then the load-balancing statistics pooled
// over all shares (so the aux loss is that of the whole batch, as one Backprop
// computes it), then the backward pass of every share. The gradients are
// summed at the end of the optimizer step, element by element in worker
// order, so the result depends on the number of workers but not on timing
// or on the thread count.
//
// A token's forward values and its cross-entropy are the same bits as one
// Backprop's over the whole batch (MatMul and the per-token vector loops are
// batch-invariant), so the loss is too: the per-token terms are added in
// the same order. The gradient differs from one Backprop's by the order of
// float32 sums over tokens (each worker sums its own tokens' contributions,
// then the workers' sums are added).
type Workers struct {
	Backprops []*Backprop
	// LossMask restricts the loss of the next passes to chosen targets, as
	// Backprop.LossMask does, for the whole batch (each worker gets its
	// share's rows).
	LossMask [][]bool
	errs     []error
	count    []float64 // pooled load-balancing statistics
	psum     []float64
}

// NewWorkers returns n serial Backprops over p with zero gradients.
func NewWorkers(p *Params, n int) (*Workers, error) {
	if n < 1 {
		return nil, fmt.Errorf("train: %d workers", n)
	}
	w := &Workers{Backprops: make([]*Backprop, n), errs: make([]error, n)}
	for i := range w.Backprops {
		e, err := NewBackprop(p)
		if err != nil {
			return nil, err
		}
		e.Serial = true
		w.Backprops[i] = e
	}
	return w, nil
}

// SetRecompute sets every Backprop's Recompute.
func (w *Workers) SetRecompute(on bool) {
	for _, e := range w.Backprops {
		e.Recompute = on
	}
}

// share returns worker i's rows of n.
func (w *Workers) share(i, n int) (lo, hi int) {
	k := len(w.Backprops)
	return i * n / k, (i + 1) * n / k
}

// each runs fn for every worker on its own goroutine (the first on the
// caller's) and returns the first error in worker order.
func (w *Workers) each(fn func(i int, e *Backprop) error) error {
	var wg sync.WaitGroup
	for i := 1; i < len(w.Backprops); i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w.errs[i] = fn(i, w.Backprops[i])
		}(i)
	}
	w.errs[0] = fn(0, w.Backprops[0])
	wg.Wait()
	for _, err := range w.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ZeroGrad clears every worker's gradient.
func (w *Workers) ZeroGrad() {
	w.each(func(_ int, e *Backprop) error { e.ZeroGrad(); return nil })
}

// Backward computes the loss of a batch, as Backprop.Backward does, and adds
// scale times its gradient to the workers' gradients (each its share's
// part); Grad sums them.
func (w *Workers) Backward(rows [][]int, scale float32) (Loss, error) {
	return w.pass(rows, true, scale)
}

// Forward computes the loss of a batch without gradients.
func (w *Workers) Forward(rows [][]int) (Loss, error) { return w.pass(rows, false, 0) }

func (w *Workers) pass(rows [][]int, backward bool, scale float32) (Loss, error) {
	e0 := w.Backprops[0]
	if err := checkBatch(rows, e0.d.V); err != nil {
		return Loss{}, err
	}
	if err := checkMask(w.LossMask, rows); err != nil {
		return Loss{}, err
	}
	count := 0
	if w.LossMask != nil {
		count = maskCount(w.LossMask)
	} else {
		for _, r := range rows {
			count += len(r) - 1
		}
	}
	if err := w.forwardShares(rows, backward, scale/float32(max(count, 1))); err != nil {
		return Loss{}, err
	}
	// The cross-entropy terms in token order, as one Backprop adds them; the
	// load-balancing statistics pooled in worker order.
	var ce float64
	w.count = resetF64(w.count, e0.d.E)
	w.psum = resetF64(w.psum, e0.d.E)
	routed := 0
	for i, e := range w.Backprops {
		if lo, hi := w.share(i, len(rows)); lo == hi {
			continue
		}
		for _, v := range e.rowLoss {
			ce += v
		}
		for j := range w.count {
			w.count[j] += e.auxCount[j]
			w.psum[j] += e.auxPsum[j]
		}
		routed += e.auxRows
	}
	loss := makeLoss(ce, count, w.count, w.psum, routed, e0.Config.RouterAuxLossCoef)
	if !backward {
		return loss, nil
	}
	err := w.each(func(i int, e *Backprop) error {
		if lo, hi := w.share(i, len(rows)); lo < hi {
			e.backward(scale, w.count, routed)
		}
		return nil
	})
	return loss, err
}

// forwardShares runs each worker's forward pass over its share of rows
// (keeping what the backward pass needs when backward).
func (w *Workers) forwardShares(rows [][]int, backward bool, gscale float32) error {
	return w.each(func(i int, e *Backprop) error {
		lo, hi := w.share(i, len(rows))
		if lo == hi {
			return nil
		}
		e.LossMask = nil
		if w.LossMask != nil {
			e.LossMask = w.LossMask[lo:hi]
		}
		err := e.setBatch(rows[lo:hi])
		if err == nil {
			e.forward(backward, gscale)
		}
		// The share's mask served this forward only (the backward reads
		// none); a later pass of the Backprop alone must not find it.
		e.LossMask = nil
		return err
	})
}

// Grad adds the other workers' gradients to the first worker's, element by
// element in worker order, and returns it.
func (w *Workers) Grad() []float32 {
	dst := w.Backprops[0].trainGrad()
	parallel(len(dst), 1<<15, func(lo, hi int) {
		d := dst[lo:hi]
		for _, e := range w.Backprops[1:] {
			for i, v := range e.trainGrad()[lo:hi] {
				d[i] += v
			}
		}
	})
	return dst
}

// rowCE computes the forward pass of rows and appends each row's summed
// cross-entropy to dst.
func (w *Workers) rowCE(dst []float64, rows [][]int) ([]float64, error) {
	if err := checkBatch(rows, w.Backprops[0].d.V); err != nil {
		return dst, err
	}
	if err := checkMask(w.LossMask, rows); err != nil {
		return dst, err
	}
	if err := w.forwardShares(rows, false, 0); err != nil {
		return dst, err
	}
	for i, e := range w.Backprops {
		if lo, hi := w.share(i, len(rows)); lo < hi {
			dst = e.appendRowCE(dst)
		}
	}
	return dst, nil
}

// appendRowCE appends the summed cross-entropy of each row of the last
// pass, the terms added in token order.
func (e *Backprop) appendRowCE(dst []float64) []float64 {
	for s := 0; s < e.nseq(); s++ {
		var sum float64
		for _, v := range e.rowLoss[e.seqStart[s]:e.seqStart[s+1]] {
			sum += v
		}
		dst = append(dst, sum)
	}
	return dst
}

// checkBatch checks that rows is a batch a Backprop with vocabulary V can
// run: at least one row, each of at least two tokens in [0, V).
func checkBatch(rows [][]int, V int) error {
	if len(rows) == 0 {
		return errEmptyBatch
	}
	for i, r := range rows {
		if len(r) < 2 {
			return fmt.Errorf("row %d has %d tokens: %w", i, len(r), ErrShortRow)
		}
		for _, id := range r {
			if id < 0 || id >= V {
				return fmt.Errorf("train: row %d: %w: %d not in [0, %d)", i, model.ErrTokenRange, id, V)
			}
		}
	}
	return nil
}
