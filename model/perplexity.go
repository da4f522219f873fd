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

// LossLlamaWindows measures the loss as llama.cpp's llama-perplexity does:
// ids (the whole text tokenized with its BOS) are cut into non-overlapping
// chunks of ctx tokens from the first one (at most maxChunks, 0: all full
// chunks); each chunk's first token is replaced by bos (when bos ≥ 0), the
// chunk is run from an empty state, and only its second half is scored:
// the logits at positions ctx/2 … ctx−2 against the tokens at ctx/2+1 …
// ctx−1. It returns the mean negative log-likelihood over all scored
// tokens, their number, and each chunk's mean.
func (m *Model) LossLlamaWindows(ids []int, ctx, maxChunks, bos int, progress func(done, total int)) (float64, int, []float64, error) {
	if ctx < 4 {
		return 0, 0, nil, fmt.Errorf("model: chunks of %d tokens score nothing (need at least 4)", ctx)
	}
	nchunk := len(ids) / ctx
	if maxChunks > 0 {
		nchunk = min(nchunk, maxChunks)
	}
	if nchunk == 0 {
		return 0, 0, nil, fmt.Errorf("model: %d tokens are fewer than one chunk of %d", len(ids), ctx)
	}
	V := m.Config.VocabSize
	batch := max(1, min(nchunk, (64<<20)/(ctx*V)))
	ws := m.NewWorkspace()
	seqs := make([]SeqInput, 0, batch)
	bufs := make([][]int, batch)
	per := make([]float64, 0, nchunk)
	first := ctx / 2
	var sum float64
	var n int
	for c := 0; c < nchunk; c += batch {
		seqs = seqs[:0]
		for j := c; j < min(c+batch, nchunk); j++ {
			b := append(bufs[j-c][:0], ids[j*ctx:(j+1)*ctx]...)
			if bos >= 0 {
				b[0] = bos
			}
			bufs[j-c] = b
			seqs = append(seqs, SeqInput{Tokens: b, Logits: AllLogits})
		}
		if err := ws.Forward(seqs); err != nil {
			return 0, 0, nil, err
		}
		for i, s := range seqs {
			lg := ws.Logits(i)
			if !Finite(lg) {
				return 0, 0, nil, m.LocateNonFinite(s.Tokens, len(s.Tokens)-1)
			}
			var cs float64
			for t := first; t+1 < ctx; t++ {
				cs += CrossEntropy(lg[t*V:(t+1)*V], s.Tokens[t+1])
			}
			k := ctx - 1 - first
			per = append(per, cs/float64(k))
			sum += cs
			n += k
		}
		if progress != nil {
			progress(min(c+batch, nchunk), nchunk)
		}
	}
	return sum / float64(n), n, per, nil
}
