package model

import (
	"context"
	"fmt"
	"slices"

	"github.com/jamba-go/jamba/cache"
)

// Sampler picks the next token from a row of logits. AcceptPrompt records
// the prompt's tokens and Accept each generated token, for penalties.
type Sampler interface {
	Sample(logits []float32) int
	AcceptPrompt(ids []int)
	Accept(id int)
}

// Greedy is the Sampler that takes the largest logit (ties: lowest id).
type Greedy struct{}

// Sample returns the argmax of logits.
func (Greedy) Sample(logits []float32) int { return Argmax(logits) }

// Accept does nothing.
func (Greedy) Accept(int) {}

// AcceptPrompt does nothing.
func (Greedy) AcceptPrompt([]int) {}

// Argmax returns the index of the largest value, the lowest on ties.
func Argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// FinishReason says why a generation ended normally: the OpenAI API's
// finish_reason values. Generate and the engine both report it.
type FinishReason string

const (
	// FinishStop: an end-of-sequence (or stop) token was sampled.
	FinishStop FinishReason = "stop"
	// FinishLength: the most tokens asked for were generated, or the
	// context is full.
	FinishLength FinishReason = "length"
)

// PrefillChunk is the number of prompt tokens a prefill computes per
// forward call: Generate's default, and the engine's step budget, so that
// a sequence served alone is computed in the same chunks.
const PrefillChunk = 512

// GenerateOptions control Generate.
type GenerateOptions struct {
	MaxTokens    int     // tokens to generate at most (> 0)
	Sampler      Sampler // nil: greedy
	IgnoreEOS    bool    // keep going past end-of-sequence tokens
	PrefillChunk int     // prompt tokens per forward call (0: PrefillChunk)
	Context      int     // maximum sequence length (0: the config's max_position_embeddings)
}

// Generate continues prompt one token at a time with a fresh hybrid cache
// and calls emit with each new token as soon as it is sampled (an EOS token
// that stops generation is not emitted). It returns the generated ids.
func (m *Model) Generate(ctx context.Context, prompt []int, opt GenerateOptions, emit func(id int) error) ([]int, FinishReason, error) {
	limit := opt.Context
	if limit <= 0 {
		limit = m.Config.MaxPositionEmbeddings
	}
	st := m.NewCache(min(len(prompt)+max(opt.MaxTokens, 0), limit))
	return m.Continue(ctx, m.NewWorkspace(), st, prompt, opt, emit)
}

// Continue feeds tokens to the sequence state st (which may already hold a
// conversation) and then generates like Generate. Every generated token but
// the last is fed to st as well, so st ends holding the prompt and all but
// the last generated token.
func (m *Model) Continue(ctx context.Context, ws *Workspace, st *cache.Seq, tokens []int, opt GenerateOptions, emit func(id int) error) ([]int, FinishReason, error) {
	if len(tokens) == 0 {
		return nil, "", fmt.Errorf("model: empty prompt")
	}
	if opt.MaxTokens <= 0 {
		return nil, "", fmt.Errorf("model: max tokens must be positive, got %d", opt.MaxTokens)
	}
	limit := opt.Context
	if limit <= 0 {
		limit = m.Config.MaxPositionEmbeddings
	}
	if st.Len+len(tokens) >= limit {
		return nil, "", fmt.Errorf("model: prompt of %d tokens leaves no room in a context of %d", st.Len+len(tokens), limit)
	}
	smp := opt.Sampler
	if smp == nil {
		smp = Greedy{}
	}
	chunk := opt.PrefillChunk
	if chunk <= 0 {
		chunk = PrefillChunk
	}
	smp.AcceptPrompt(tokens)
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	start := st.Len
	logits, err := m.Prefill(ws, st, tokens, chunk)
	if err != nil {
		return nil, "", err
	}
	// At most the room left in the context: MaxTokens comes from the user
	// and may be absurd.
	out := make([]int, 0, max(1, min(opt.MaxTokens, limit-st.Len)))
	tok := make([]int, 1)
	in := []SeqInput{{Tokens: tok, Cache: st}}
	for {
		if !Finite(logits) {
			return out, "", m.LocateNonFinite(append(slices.Clone(tokens), out...), start+len(tokens)+len(out)-1)
		}
		id := smp.Sample(logits)
		if !opt.IgnoreEOS && m.IsEOS(id) {
			return out, FinishStop, nil
		}
		smp.Accept(id)
		out = append(out, id)
		if emit != nil {
			if err := emit(id); err != nil {
				return out, "", err
			}
		}
		if len(out) >= opt.MaxTokens || st.Len+1 >= limit {
			return out, FinishLength, nil
		}
		if err := ctx.Err(); err != nil {
			return out, "", err
		}
		tok[0] = id
		if err := ws.Forward(in); err != nil {
			return out, "", err
		}
		logits = ws.Logits(0)
	}
}

// Prefill feeds tokens to st in chunks and returns the last token's logits
// (valid until the next use of ws).
func (m *Model) Prefill(ws *Workspace, st *cache.Seq, tokens []int, chunk int) ([]float32, error) {
	if chunk <= 0 {
		chunk = len(tokens)
	}
	var logits []float32
	for i := 0; i < len(tokens); i += chunk {
		end := min(i+chunk, len(tokens))
		rows := LastLogits
		if end < len(tokens) {
			rows = NoLogits
		}
		if err := ws.Forward([]SeqInput{{Tokens: tokens[i:end], Cache: st, Logits: rows}}); err != nil {
			return nil, err
		}
		logits = ws.Logits(0)
	}
	return logits, nil
}
