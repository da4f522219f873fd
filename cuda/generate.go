package cuda

import (
	"context"
	"fmt"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

// Generate continues prompt like model.Model.Generate, on the GPU. With a
// nil or greedy sampler, or a *sample.Sampler without penalties, the next
// token is chosen on the GPU (temperature, top-k, top-p, min-p; its own
// random draws from the sampler's seed) and only its id crosses to the
// host; any other sampler (penalties, custom ones) gets the last row of
// logits copied back each step.
func (m *Model) Generate(ctx context.Context, prompt []int, opt model.GenerateOptions, emit func(id int) error) ([]int, model.FinishReason, error) {
	if len(prompt) == 0 {
		return nil, "", fmt.Errorf("cuda: empty prompt")
	}
	if opt.MaxTokens <= 0 {
		return nil, "", fmt.Errorf("cuda: max tokens must be positive, got %d", opt.MaxTokens)
	}
	limit := opt.Context
	if limit <= 0 {
		limit = m.Config.MaxPositionEmbeddings
	}
	if len(prompt) >= limit {
		return nil, "", fmt.Errorf("cuda: prompt of %d tokens leaves no room in a context of %d", len(prompt), limit)
	}
	st, err := m.NewSeq(min(len(prompt)+opt.MaxTokens, limit))
	if err != nil {
		return nil, "", err
	}
	defer st.Free()
	smp := opt.Sampler
	_, greedy := smp.(model.Greedy)
	greedy = greedy || smp == nil
	onGPU, so := greedy, SampleOptions{}
	if ps, ok := smp.(*sample.Sampler); ok {
		if p := ps.Params(); (p.RepetitionPenalty == 0 || p.RepetitionPenalty == 1) && p.PresencePenalty == 0 && p.FrequencyPenalty == 0 {
			onGPU = true
			so = SampleOptions{Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP, MinP: p.MinP, Seed: p.Seed}
		}
	}
	if smp != nil {
		smp.AcceptPrompt(prompt)
	}
	chunk := opt.PrefillChunk
	if chunk <= 0 {
		chunk = 2048
	}
	for i := 0; i < len(prompt); i += chunk {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		end := min(i+chunk, len(prompt))
		if err := m.Forward([]SeqInput{{Tokens: prompt[i:end], Cache: st, NoLogits: end < len(prompt)}}); err != nil {
			return nil, "", err
		}
	}
	// At most the room left in the context: MaxTokens comes from the user.
	out := make([]int, 0, max(1, min(opt.MaxTokens, limit-len(prompt))))
	tok := make([]int, 1)
	in := []SeqInput{{Tokens: tok, Cache: st}}
	for {
		var id int
		if onGPU {
			so.Step = uint64(len(out))
			ids, err := m.Sample(so)
			if err != nil {
				return out, "", err
			}
			id = ids[0]
		} else {
			logits, err := m.Logits(0)
			if err != nil {
				return out, "", err
			}
			if !model.Finite(logits) {
				id = -1
			} else {
				id = smp.Sample(logits)
			}
		}
		if id < 0 {
			return out, "", fmt.Errorf("cuda: the logits after %d tokens are not finite (NaN or infinity); run on the CPU to find the layer", st.Len)
		}
		if !opt.IgnoreEOS && m.isEOS(id) {
			return out, model.FinishStop, nil
		}
		if smp != nil {
			smp.Accept(id)
		}
		out = append(out, id)
		if emit != nil {
			if err := emit(id); err != nil {
				return out, "", err
			}
		}
		if len(out) >= opt.MaxTokens || st.Len+1 >= limit {
			return out, model.FinishLength, nil
		}
		if err := ctx.Err(); err != nil {
			return out, "", err
		}
		tok[0] = id
		if err := m.Forward(in); err != nil {
			return out, "", err
		}
	}
}

func (m *Model) isEOS(id int) bool {
	if len(m.EOS) > 0 {
		for _, e := range m.EOS {
			if e == id {
				return true
			}
		}
		return false
	}
	return m.Config.IsEOS(id)
}

// LossOverWindows is model.Model.LossOverWindows on the GPU: the mean
// next-token cross-entropy over non-overlapping windows of ctx tokens, each
// from an empty state, and the number of predictions.
func (m *Model) LossOverWindows(ids []int, ctx, maxTokens int, progress func(done, total int)) (float64, int, error) {
	if ctx < 2 {
		return 0, 0, fmt.Errorf("cuda: window of %d tokens has no prediction (need at least 2)", ctx)
	}
	if maxTokens > 0 && len(ids) > maxTokens {
		ids = ids[:maxTokens]
	}
	nwin := len(ids) / ctx
	if nwin == 0 {
		if len(ids) < 2 {
			return 0, 0, fmt.Errorf("cuda: %d tokens are too few to measure a loss", len(ids))
		}
		nwin, ctx = 1, len(ids)
	}
	V := m.Config.VocabSize
	batch := max(1, min(nwin, (64<<20)/(ctx*V)))
	seqs := make([]*Seq, batch)
	for i := range seqs {
		s, err := m.NewSeq(ctx)
		if err != nil {
			return 0, 0, err
		}
		defer s.Free()
		seqs[i] = s
	}
	in := make([]SeqInput, 0, batch)
	var sum float64
	var n int
	for w := 0; w < nwin; w += batch {
		in = in[:0]
		for j := w; j < min(w+batch, nwin); j++ {
			s := seqs[j-w]
			if err := s.Reset(); err != nil {
				return 0, 0, err
			}
			in = append(in, SeqInput{Tokens: ids[j*ctx : (j+1)*ctx], Cache: s, AllLogits: true})
		}
		if err := m.Forward(in); err != nil {
			return 0, 0, err
		}
		for i, s := range in {
			lg, err := m.Logits(i)
			if err != nil {
				return 0, 0, err
			}
			for t := 0; t+1 < len(s.Tokens); t++ {
				sum += model.CrossEntropy(lg[t*V:(t+1)*V], s.Tokens[t+1])
				n++
			}
		}
		if progress != nil {
			progress(min(w+batch, nwin), nwin)
		}
	}
	return sum / float64(n), n, nil
}
