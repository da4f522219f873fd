package model

import (
	"fmt"
	"math"
)

// LossOverWindows cuts ids into non-overlapping windows of ctx tokens from
// the first token (a shorter last window is dropped unless it is the only
// one), runs each window from an empty state and returns the mean
// cross-entropy of its ctx−1 next-token predictions over all windows, and the
// number of predictions. At most maxTokens ids are used (0: all). Windows are
// batched so each weight read serves several of them. progress, if set, is
// called after each batch with the windows done and the total.
func (m *Model) LossOverWindows(ids []int, ctx, maxTokens int, progress func(done, total int)) (float64, int, error) {
	if ctx < 2 {
		return 0, 0, fmt.Errorf("model: window of %d tokens has no prediction (need at least 2)", ctx)
	}
	if maxTokens > 0 && len(ids) > maxTokens {
		ids = ids[:maxTokens]
	}
	nwin := len(ids) / ctx
	if nwin == 0 {
		if len(ids) < 2 {
			return 0, 0, fmt.Errorf("model: %d tokens are too few to measure a loss", len(ids))
		}
		nwin, ctx = 1, len(ids)
	}
	V := m.Config.VocabSize
	// Keep the logits of one batch under ~256 MiB.
	batch := max(1, min(nwin, (64<<20)/(ctx*V)))
	ws := m.NewWorkspace()
	seqs := make([]SeqInput, 0, batch)
	var sum float64
	var n int
	for w := 0; w < nwin; w += batch {
		seqs = seqs[:0]
		for j := w; j < min(w+batch, nwin); j++ {
			seqs = append(seqs, SeqInput{Tokens: ids[j*ctx : (j+1)*ctx], Logits: AllLogits})
		}
		if err := ws.Forward(seqs); err != nil {
			return 0, 0, err
		}
		for i, s := range seqs {
			lg := ws.Logits(i)
			if !Finite(lg) {
				return 0, 0, m.LocateNonFinite(s.Tokens, len(s.Tokens)-1)
			}
			for t := 0; t+1 < len(s.Tokens); t++ {
				sum += CrossEntropy(lg[t*V:(t+1)*V], s.Tokens[t+1])
				n++
			}
		}
		if progress != nil {
			progress(min(w+batch, nwin), nwin)
		}
	}
	return sum / float64(n), n, nil
}

// CrossEntropy returns −log softmax(logits)[target], computed in float64.
func CrossEntropy(logits []float32, target int) float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v) - mx)
	}
	return math.Log(z) + mx - float64(logits[target])
}
