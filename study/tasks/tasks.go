// Package tasks generates synthetic in-context tasks that separate what
// attention and state-space layers can do: multi-query associative recall
// (MQAR, as in the Zoology paper), induction copy, selective copying, and a
// few-shot answer-format task modelled on the Jamba paper's IMDB probe.
//
// The tasks need no tokenizer: every token is an id of one shared
// vocabulary of Vocab ids whose first few are markers (Pad, BOS, Sep, Copy,
// Noise). Each task draws its content from its own ranges of the remaining
// ids. Every example is a pure function of the random source and a size
// parameter (pairs, sequence length or shots), so a seed reproduces a data
// set exactly.
package tasks

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
)

// The marker tokens shared by all tasks.
const (
	Pad   = 0 // fills a row after its last example
	BOS   = 1 // starts every example
	Sep   = 2 // ends a context part: the pairs of MQAR, the first copy, a few-shot input
	Copy  = 3 // asks for the marked tokens of selective copying
	Noise = 4 // the filler of selective copying
	first = 8 // first content id
)

// Vocab is the size of the vocabulary every task draws from.
const Vocab = 128

// Content ranges [lo, hi) of the vocabulary (disjoint, so that a model can
// tell a key from a value).
var (
	keyRange   = [2]int{first, first + 48}      // MQAR keys
	valueRange = [2]int{first + 48, first + 96} // MQAR values
	seqRange   = [2]int{first, first + 96}      // induction and selective-copy content
	posRange   = [2]int{first, first + 40}      // few-shot inputs of class 0
	negRange   = [2]int{first + 40, first + 80} // few-shot inputs of class 1
	labelRange = [2]int{first + 80, Vocab}      // few-shot label words
)

// Example is one sequence of a task.
type Example struct {
	Tokens []int // the sequence, from BOS
	// Graded are the positions p ≥ 1 whose token Tokens[p] is an answer: it
	// is predicted from the logits at position p−1.
	Graded []int
	// Labels, when set, are the answer words this example allows (the
	// few-shot task's label words): a prediction outside them does not
	// follow the answer format.
	Labels []int
}

// Task is one synthetic task.
type Task interface {
	// Name is a short identifier ("mqar", "induction", ...).
	Name() string
	// SizeName says what the size parameter counts ("pairs", "length", ...).
	SizeName() string
	// Generate returns an example of size n (at least MinSize).
	Generate(rng *rand.Rand, n int) Example
	// MinSize is the smallest size.
	MinSize() int
	// Len is the length in tokens of an example of size n.
	Len(n int) int
	// Sweep is the default list of sizes to evaluate, smallest first.
	Sweep() []int
}

// All returns the four tasks with their default settings.
func All() []Task {
	return []Task{MQAR{}, Induction{}, SelectiveCopy{Marked: 8}, FewShot{InputLen: 4}}
}

// ByName returns the tasks named in a comma-separated list ("all" or ""
// for every task).
func ByName(list string) ([]Task, error) {
	all := All()
	if list == "" || list == "all" {
		return all, nil
	}
	var out []Task
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, t := range all {
			if t.Name() == name {
				out = append(out, t)
				found = true
			}
		}
		if !found {
			var names []string
			for _, t := range all {
				names = append(names, t.Name())
			}
			return nil, fmt.Errorf("tasks: unknown task %q (have %s)", name, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// Fit returns the largest size of t whose examples fit in seq tokens, or 0
// when even the smallest does not.
func Fit(t Task, seq int) int {
	n := 0
	for s := t.MinSize(); t.Len(s) <= seq; s++ {
		n = s
	}
	return n
}

// distinct draws k distinct ids from [r[0], r[1]) (k ≤ the range's size).
func distinct(rng *rand.Rand, r [2]int, k int) []int {
	p := rng.Perm(r[1] - r[0])[:k]
	for i := range p {
		p[i] += r[0]
	}
	return p
}

func draw(rng *rand.Rand, r [2]int) int { return r[0] + rng.IntN(r[1]-r[0]) }

// MQAR is multi-query associative recall: BOS, n key-value pairs (distinct
// keys), Sep, then n queries, each a key of the context (in random order,
// each once) followed by its value; the values after the queries are
// graded. An attention layer looks the key up; a recurrent state must hold
// all n pairs at once.
type MQAR struct{}

func (MQAR) Name() string     { return "mqar" }
func (MQAR) SizeName() string { return "pairs" }
func (MQAR) MinSize() int     { return 1 }
func (MQAR) Len(n int) int    { return 4*n + 2 }
func (MQAR) Sweep() []int     { return []int{2, 4, 8, 12, 16, 24, 32} }

func (MQAR) Generate(rng *rand.Rand, n int) Example {
	n = min(max(n, 1), keyRange[1]-keyRange[0])
	keys := distinct(rng, keyRange, n)
	vals := make([]int, n)
	for i := range vals {
		vals[i] = draw(rng, valueRange)
	}
	ex := Example{Tokens: make([]int, 0, 4*n+2)}
	ex.Tokens = append(ex.Tokens, BOS)
	for i := range keys {
		ex.Tokens = append(ex.Tokens, keys[i], vals[i])
	}
	ex.Tokens = append(ex.Tokens, Sep)
	for _, i := range rng.Perm(n) {
		ex.Tokens = append(ex.Tokens, keys[i], vals[i])
		ex.Graded = append(ex.Graded, len(ex.Tokens)-1)
	}
	return ex
}

// Induction is induction copy: BOS, a random sequence of n distinct tokens,
// Sep, the same sequence again; every token of the second copy is graded.
// The head that solves it attends from a token of the second copy to the
// token after the same token in the first copy.
type Induction struct{}

func (Induction) Name() string     { return "induction" }
func (Induction) SizeName() string { return "length" }
func (Induction) MinSize() int     { return 1 }
func (Induction) Len(n int) int    { return 2*n + 2 }
func (Induction) Sweep() []int     { return []int{4, 8, 16, 24, 32, 48} }

func (Induction) Generate(rng *rand.Rand, n int) Example {
	n = min(max(n, 1), seqRange[1]-seqRange[0])
	s := distinct(rng, seqRange, n)
	ex := Example{Tokens: make([]int, 0, 2*n+2)}
	ex.Tokens = append(ex.Tokens, BOS)
	ex.Tokens = append(ex.Tokens, s...)
	ex.Tokens = append(ex.Tokens, Sep)
	for _, id := range s {
		ex.Tokens = append(ex.Tokens, id)
		ex.Graded = append(ex.Graded, len(ex.Tokens)-1)
	}
	return ex
}

// SelectiveCopy is the selective-copying task of the Mamba paper: BOS, a
// sequence of n positions of which Marked hold random content tokens and the
// others Noise, then Copy and the content tokens in order, all graded. Its
// size is the length n of the noisy part.
type SelectiveCopy struct{ Marked int }

func (SelectiveCopy) Name() string     { return "selective" }
func (SelectiveCopy) SizeName() string { return "length" }
func (s SelectiveCopy) MinSize() int   { return s.marked() }
func (s SelectiveCopy) Len(n int) int  { return n + 2 + s.marked() }
func (s SelectiveCopy) Sweep() []int   { return []int{16, 32, 48, 64, 96} }
func (s SelectiveCopy) marked() int    { return max(s.Marked, 1) }

func (s SelectiveCopy) Generate(rng *rand.Rand, n int) Example {
	m := s.marked()
	n = max(n, m)
	pos := rng.Perm(n)[:m]
	sort.Ints(pos)
	body := make([]int, n)
	for i := range body {
		body[i] = Noise
	}
	content := make([]int, m)
	for i, p := range pos {
		content[i] = draw(rng, seqRange)
		body[p] = content[i]
	}
	ex := Example{Tokens: make([]int, 0, n+2+m)}
	ex.Tokens = append(ex.Tokens, BOS)
	ex.Tokens = append(ex.Tokens, body...)
	ex.Tokens = append(ex.Tokens, Copy)
	for _, id := range content {
		ex.Tokens = append(ex.Tokens, id)
		ex.Graded = append(ex.Graded, len(ex.Tokens)-1)
	}
	return ex
}

// FewShot is the answer-format task, after the Jamba paper's IMDB probe:
// BOS, then k labelled examples and one query, each InputLen input tokens,
// Sep, and a label word. An input's class is fixed by its tokens (at least
// three quarters of them come from its class's half of the input range, as
// a review's words carry its sentiment), but the two label words are drawn
// afresh for every sequence, so the answer's form is learnt only from the
// context. Only the query's label is graded; Labels holds the sequence's
// two label words. The first two examples have different classes, so every
// sequence shows both label words. Its size is k, the number of shots.
type FewShot struct{ InputLen int }

func (FewShot) Name() string     { return "fewshot" }
func (FewShot) SizeName() string { return "shots" }
func (FewShot) MinSize() int     { return 2 }
func (f FewShot) Len(k int) int  { return 1 + (k+1)*(f.inLen()+2) }
func (FewShot) Sweep() []int     { return []int{2, 4, 6, 8, 12, 16} }
func (f FewShot) inLen() int     { return max(f.InputLen, 1) }

func (f FewShot) Generate(rng *rand.Rand, k int) Example {
	k = max(k, 2)
	L := f.inLen()
	labels := distinct(rng, labelRange, 2)
	ex := Example{Tokens: make([]int, 0, f.Len(k)), Labels: labels}
	ex.Tokens = append(ex.Tokens, BOS)
	first := rng.IntN(2)
	for i := 0; i <= k; i++ {
		class := rng.IntN(2)
		if i < 2 {
			class = first ^ i
		}
		own, other := posRange, negRange
		if class == 1 {
			own, other = negRange, posRange
		}
		// At most a quarter of the input from the other class's range.
		odd := rng.IntN(L/4 + 1)
		for j := 0; j < L; j++ {
			r := own
			if j < odd {
				r = other
			}
			ex.Tokens = append(ex.Tokens, draw(rng, r))
		}
		rest := ex.Tokens[len(ex.Tokens)-L:]
		rng.Shuffle(L, func(a, b int) { rest[a], rest[b] = rest[b], rest[a] })
		ex.Tokens = append(ex.Tokens, Sep, labels[class])
		if i == k {
			ex.Graded = append(ex.Graded, len(ex.Tokens)-1)
		}
	}
	return ex
}

// Class returns the class (0 or 1) that FewShot gives an input of tokens:
// the range most of them come from.
func (FewShot) Class(input []int) int {
	var neg int
	for _, id := range input {
		if id >= negRange[0] && id < negRange[1] {
			neg++
		}
	}
	if 2*neg > len(input) {
		return 1
	}
	return 0
}
