package tasks

import (
	"math"
	"math/rand/v2"
)

// Row packs examples of the tasks ts into one training row of exactly seq
// tokens: it repeatedly picks a task at random and a size at random among
// those that fit in the rest of the row, and fills what no example fits
// with Pad. Every example starts with BOS, so a model sees where one ends.
func Row(rng *rand.Rand, ts []Task, seq int) []int {
	row, _ := RowGraded(rng, ts, seq)
	return row
}

// RowGraded is Row that also returns which of the row's tokens are graded
// answers (the examples' Graded positions): the targets of a loss
// restricted to answers. It draws the same row as Row from the same
// random state.
func RowGraded(rng *rand.Rand, ts []Task, seq int) ([]int, []bool) {
	row := make([]int, 0, seq)
	graded := make([]bool, seq)
	for {
		rest := seq - len(row)
		var fit []Task
		for _, t := range ts {
			if t.Len(t.MinSize()) <= rest {
				fit = append(fit, t)
			}
		}
		if len(fit) == 0 {
			break
		}
		t := fit[rng.IntN(len(fit))]
		hi := Fit(t, rest)
		n := t.MinSize() + rng.IntN(hi-t.MinSize()+1)
		ex := t.Generate(rng, n)
		for _, p := range ex.Graded {
			graded[len(row)+p] = true
		}
		row = append(row, ex.Tokens...)
	}
	for len(row) < seq {
		row = append(row, Pad)
	}
	return row, graded
}

// Stream returns rows training rows of seq tokens (see Row) one after the
// other, as a token stream whose windows of seq tokens from the start are
// the rows.
func Stream(rng *rand.Rand, ts []Task, seq, rows int) []int32 {
	out, _ := StreamGraded(rng, ts, seq, rows)
	return out
}

// StreamGraded is Stream that also returns, token by token, whether the
// token is a graded answer (see RowGraded).
func StreamGraded(rng *rand.Rand, ts []Task, seq, rows int) ([]int32, []bool) {
	out := make([]int32, 0, seq*rows)
	graded := make([]bool, 0, seq*rows)
	for range rows {
		row, g := RowGraded(rng, ts, seq)
		for _, id := range row {
			out = append(out, int32(id))
		}
		graded = append(graded, g...)
	}
	return out, graded
}

// Score accumulates a task's loss and accuracy over examples.
type Score struct {
	Answers int     // graded tokens
	LossSum float64 // Σ cross-entropy of the graded tokens, nats
	Correct int     // graded tokens whose arg-max prediction is right
	// InFormat counts, for examples with Labels, graded tokens whose
	// prediction is one of the example's label words (right or wrong).
	InFormat, Formatted int
}

// Add grades one example; logits(p) returns the model's logits at position
// p of ex.Tokens (the prediction of the token at p+1).
func (s *Score) Add(ex Example, logits func(p int) []float32) {
	for _, p := range ex.Graded {
		lg := logits(p - 1)
		want := ex.Tokens[p]
		best := 0
		mx := math.Inf(-1)
		for j, v := range lg {
			if float64(v) > mx {
				mx, best = float64(v), j
			}
		}
		var z float64
		for _, v := range lg {
			z += math.Exp(float64(v) - mx)
		}
		s.LossSum += math.Log(z) + mx - float64(lg[want])
		s.Answers++
		if best == want {
			s.Correct++
		}
		if ex.Labels != nil {
			s.Formatted++
			for _, l := range ex.Labels {
				if best == l {
					s.InFormat++
				}
			}
		}
	}
}

// Loss is the mean cross-entropy of the graded tokens.
func (s *Score) Loss() float64 { return s.LossSum / float64(max(s.Answers, 1)) }

// Accuracy is the share of graded tokens predicted exactly (arg-max).
func (s *Score) Accuracy() float64 { return float64(s.Correct) / float64(max(s.Answers, 1)) }

// FormatRate is the share of predictions that are one of the example's
// label words, NaN for tasks without labels.
func (s *Score) FormatRate() float64 {
	if s.Formatted == 0 {
		return math.NaN()
	}
	return float64(s.InFormat) / float64(s.Formatted)
}
