package study

import (
	"fmt"
	"math/rand/v2"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/study/tasks"
	"github.com/jamba-go/jamba/train"
)

// Forwarder returns the logits of every position of a batch of sequences:
// for sequence i, len(seqs[i])·V floats, position after position.
type Forwarder interface {
	Logits(seqs [][]int) ([][]float32, error)
	Vocab() int
}

// ModelForwarder runs a loaded model's forward pass (any checkpoint).
type ModelForwarder struct {
	M  *model.Model
	ws *model.Workspace
}

func (f *ModelForwarder) Vocab() int { return f.M.Config.VocabSize }

func (f *ModelForwarder) Logits(seqs [][]int) ([][]float32, error) {
	if f.ws == nil {
		f.ws = f.M.NewWorkspace()
	}
	in := make([]model.SeqInput, len(seqs))
	for i, s := range seqs {
		in[i] = model.SeqInput{Tokens: s, Logits: model.AllLogits}
	}
	if err := f.ws.Forward(in); err != nil {
		return nil, err
	}
	out := make([][]float32, len(seqs))
	for i := range seqs {
		out[i] = append([]float32(nil), f.ws.Logits(i)...)
	}
	return out, nil
}

// EngineForwarder runs the trainer's forward pass (train.Backprop with
// KeepLogits), on the calling goroutine when it is serial: the evaluation
// of a model still in training, without saving it.
type EngineForwarder struct{ E *train.Backprop }

func (f EngineForwarder) Vocab() int { return f.E.Config.VocabSize }

func (f EngineForwarder) Logits(seqs [][]int) ([][]float32, error) {
	f.E.KeepLogits = true
	defer func() { f.E.KeepLogits = false }()
	if _, err := f.E.Forward(seqs); err != nil {
		return nil, err
	}
	V := f.Vocab()
	out := make([][]float32, len(seqs))
	off := 0
	for i, s := range seqs {
		out[i] = append([]float32(nil), f.E.Logits[off*V:(off+len(s))*V]...)
		off += len(s)
	}
	return out, nil
}

// TaskResult is a task's score at one size.
type TaskResult struct {
	Task     string
	SizeName string
	Size     int
	Examples int
	Loss     float64 // mean cross-entropy of the answers
	Accuracy float64 // share of answers predicted exactly
	Format   float64 // share of answers that are a label word (NaN: no labels)
}

// EvalTasks scores f on examples examples of every task at every size of
// its sweep, drawn from seed (the same examples for every model given the
// same seed), in batches of batch sequences.
func EvalTasks(f Forwarder, ts []tasks.Task, examples int, seed uint64, batch int) ([]TaskResult, error) {
	var out []TaskResult
	for ti, t := range ts {
		for _, n := range t.Sweep() {
			rng := rand.New(rand.NewPCG(seed, uint64(ti)<<32|uint64(n)))
			var sc tasks.Score
			for done := 0; done < examples; done += batch {
				exs := make([]tasks.Example, min(batch, examples-done))
				seqs := make([][]int, len(exs))
				for i := range exs {
					exs[i] = t.Generate(rng, n)
					seqs[i] = exs[i].Tokens
				}
				lg, err := f.Logits(seqs)
				if err != nil {
					return nil, err
				}
				V := f.Vocab()
				for i, ex := range exs {
					sc.Add(ex, func(p int) []float32 { return lg[i][p*V : (p+1)*V] })
				}
			}
			out = append(out, TaskResult{Task: t.Name(), SizeName: t.SizeName(), Size: n, Examples: examples,
				Loss: sc.Loss(), Accuracy: sc.Accuracy(), Format: sc.FormatRate()})
		}
	}
	return out, nil
}

// MappedForwarder runs the tasks on a model whose vocabulary is not the
// tasks' own: task id j is fed to F as Map[j] (an offset into a text
// model's vocabulary, where the tasks' low ids are often byte or control
// tokens the model never saw in running text, say). The logits it returns
// are F's, permuted so that index j holds the logit of Map[j] and the ids
// outside the map follow in order: the softmax and the arg-max over the
// model's whole vocabulary are unchanged, so a prediction of an id outside
// the map counts as wrong.
type MappedForwarder struct {
	F   Forwarder
	Map []int // task id → model id, distinct, each in [0, F.Vocab())

	perm []int // model id of each output index
}

// NewMappedForwarder checks m (task ids 0..len(m)−1) against f's vocabulary.
func NewMappedForwarder(f Forwarder, m []int) (*MappedForwarder, error) {
	V := f.Vocab()
	if len(m) > V {
		return nil, fmt.Errorf("study: %d task ids do not fit a vocabulary of %d", len(m), V)
	}
	used := make([]bool, V)
	perm := make([]int, 0, V)
	for j, id := range m {
		if id < 0 || id >= V {
			return nil, fmt.Errorf("study: task id %d maps to %d, outside the model's vocabulary of %d", j, id, V)
		}
		if used[id] {
			return nil, fmt.Errorf("study: task ids map to model id %d twice", id)
		}
		used[id] = true
		perm = append(perm, id)
	}
	for id := range V {
		if !used[id] {
			perm = append(perm, id)
		}
	}
	return &MappedForwarder{F: f, Map: m, perm: perm}, nil
}

// OffsetMap maps task id j to j+offset, and the task's BOS to bos when bos
// ≥ 0 (a text model's own start token).
func OffsetMap(vocab, offset, bos int) []int {
	m := make([]int, vocab)
	for j := range m {
		m[j] = j + offset
	}
	if bos >= 0 {
		m[tasks.BOS] = bos
	}
	return m
}

func (f *MappedForwarder) Vocab() int { return f.F.Vocab() }

func (f *MappedForwarder) Logits(seqs [][]int) ([][]float32, error) {
	in := make([][]int, len(seqs))
	for i, s := range seqs {
		in[i] = make([]int, len(s))
		for t, id := range s {
			if id < 0 || id >= len(f.Map) {
				return nil, fmt.Errorf("study: task id %d outside the map of %d ids", id, len(f.Map))
			}
			in[i][t] = f.Map[id]
		}
	}
	lg, err := f.F.Logits(in)
	if err != nil {
		return nil, err
	}
	V := f.Vocab()
	out := make([][]float32, len(lg))
	for i, l := range lg {
		out[i] = make([]float32, len(l))
		for p := 0; p+V <= len(l); p += V {
			src, dst := l[p:p+V], out[i][p:p+V]
			for j, id := range f.perm {
				dst[j] = src[id]
			}
		}
	}
	return out, nil
}
