package tasks

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// solve answers the graded token at position p of ex from the tokens
// before it alone, by the rule of the task: it is the oracle the generators'
// answers are checked against (a generator whose answer key disagrees with
// its own context is wrong).
func solve(t *testing.T, task Task, ex Example, p int) int {
	ctx := ex.Tokens[:p]
	switch f := task.(type) {
	case MQAR:
		// The value after the same key in the pairs part (before Sep).
		key := ctx[p-1]
		sep := slices.Index(ctx, Sep)
		for i := 1; i+1 < sep; i += 2 {
			if ctx[i] == key {
				return ctx[i+1]
			}
		}
	case Induction:
		// The token after the earlier occurrence of the previous token; the
		// first answer follows Sep and repeats the first token.
		prev := ctx[p-1]
		if prev == Sep {
			return ctx[1]
		}
		for i := p - 2; i >= 0; i-- {
			if ctx[i] == prev {
				return ctx[i+1]
			}
		}
	case SelectiveCopy:
		// The j-th non-noise token of the body, j = answers already given.
		c := slices.Index(ctx, Copy)
		j := p - c - 1
		for _, id := range ctx[1:c] {
			if id != Noise {
				if j == 0 {
					return id
				}
				j--
			}
		}
	case FewShot:
		// The label shown for an earlier input of the query's class.
		L := f.inLen()
		query := ctx[p-1-L : p-1]
		cls := f.Class(query)
		for i := 1; i+L+1 < p-1-L; i += L + 2 {
			if f.Class(ctx[i:i+L]) == cls {
				return ctx[i+L+1]
			}
		}
	}
	t.Fatalf("%s: no answer derivable for position %d of %v", task.Name(), p, ex.Tokens)
	return -1
}

func TestGeneratorsAnswerCorrectly(t *testing.T) {
	for _, task := range All() {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, n := range task.Sweep() {
			for range 50 {
				ex := task.Generate(rng, n)
				if len(ex.Tokens) != task.Len(n) {
					t.Fatalf("%s size %d: %d tokens, Len says %d", task.Name(), n, len(ex.Tokens), task.Len(n))
				}
				if ex.Tokens[0] != BOS || len(ex.Graded) == 0 {
					t.Fatalf("%s size %d: starts with %d, %d graded", task.Name(), n, ex.Tokens[0], len(ex.Graded))
				}
				for _, id := range ex.Tokens {
					if id < 0 || id >= Vocab || id == Pad {
						t.Fatalf("%s: token %d outside the content vocabulary", task.Name(), id)
					}
				}
				for _, p := range ex.Graded {
					if want := solve(t, task, ex, p); ex.Tokens[p] != want {
						t.Fatalf("%s size %d: position %d holds %d, the context says %d\n%v", task.Name(), n, p, ex.Tokens[p], want, ex.Tokens)
					}
				}
				if _, ok := task.(FewShot); ok {
					// Two different label words, the answer one of them.
					q := ex.Tokens[ex.Graded[0]]
					if !slices.Contains(ex.Labels, q) || ex.Labels[0] == ex.Labels[1] {
						t.Fatalf("fewshot: answer %d, labels %v", q, ex.Labels)
					}
				}
			}
		}
	}
}

func TestFewShotClassesBalanced(t *testing.T) {
	f := FewShot{InputLen: 4}
	rng := rand.New(rand.NewPCG(3, 4))
	var count [2]int
	for range 2000 {
		ex := f.Generate(rng, 4)
		p := ex.Graded[0]
		count[f.Class(ex.Tokens[p-1-4:p-1])]++
	}
	// Classes are drawn with probability 1/2: 2000 draws land within 4.5
	// standard deviations (±100) of 1000 except with probability < 1e-5.
	if math.Abs(float64(count[0]-1000)) > 100 {
		t.Fatalf("query classes %v: not balanced", count)
	}
}

func TestDeterministic(t *testing.T) {
	gen := func(seed uint64) []int {
		rng := rand.New(rand.NewPCG(seed, 0))
		var all []int
		for _, task := range All() {
			for _, n := range task.Sweep() {
				all = append(all, task.Generate(rng, n).Tokens...)
			}
		}
		all = append(all, Row(rng, All(), 256)...)
		return all
	}
	a, b, c := gen(7), gen(7), gen(8)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed gave different examples")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave the same examples")
	}
}

func TestRowPacking(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, seq := range []int{16, 64, 129} {
		s := Stream(rng, All(), seq, 20)
		if len(s) != 20*seq {
			t.Fatalf("seq %d: stream of %d tokens, want %d", seq, len(s), 20*seq)
		}
		for r := 0; r < 20; r++ {
			if s[r*seq] != BOS {
				t.Fatalf("seq %d: row %d starts with %d, not BOS", seq, r, s[r*seq])
			}
		}
	}
	if Fit(MQAR{}, 130) != 32 || Fit(MQAR{}, 129) != 31 || Fit(MQAR{}, 5) != 0 {
		t.Fatalf("Fit(MQAR): %d %d %d", Fit(MQAR{}, 130), Fit(MQAR{}, 129), Fit(MQAR{}, 5))
	}
}

func TestScore(t *testing.T) {
	ex := FewShot{InputLen: 4}.Generate(rand.New(rand.NewPCG(1, 1)), 3)
	ans := ex.Tokens[ex.Graded[0]]
	other := ex.Labels[0]
	if other == ans {
		other = ex.Labels[1]
	}
	// Uniform logits: loss log V; the arg-max (id 0, Pad) is not a label.
	var s Score
	s.Add(ex, func(int) []float32 { return make([]float32, Vocab) })
	if math.Abs(s.Loss()-math.Log(Vocab)) > 1e-12 || s.Accuracy() != 0 || s.FormatRate() != 0 {
		t.Fatalf("uniform: loss %v (want log %d), accuracy %v, format %v", s.Loss(), Vocab, s.Accuracy(), s.FormatRate())
	}
	// The wrong label word: in format, not correct.
	s = Score{}
	s.Add(ex, func(int) []float32 { l := make([]float32, Vocab); l[other] = 5; return l })
	if s.Accuracy() != 0 || s.FormatRate() != 1 {
		t.Fatalf("wrong label: accuracy %v, format %v", s.Accuracy(), s.FormatRate())
	}
	// The right one with logit 5 against 127 zeros: loss log(e⁵+127) − 5.
	s = Score{}
	s.Add(ex, func(int) []float32 { l := make([]float32, Vocab); l[ans] = 5; return l })
	want := math.Log(math.Exp(5)+Vocab-1) - 5
	if s.Accuracy() != 1 || math.Abs(s.Loss()-want) > 1e-12 {
		t.Fatalf("right label: accuracy %v, loss %v want %v", s.Accuracy(), s.Loss(), want)
	}
	if !math.IsNaN((&Score{}).FormatRate()) {
		t.Fatal("format rate of a task without labels should be NaN")
	}
}

// recorder wraps a task and keeps every example it generates.
type recorder struct {
	Task
	got *[]Example
}

func (r recorder) Generate(rng *rand.Rand, n int) Example {
	ex := r.Task.Generate(rng, n)
	*r.got = append(*r.got, ex)
	return ex
}

// TestRowGraded checks the answer mask of packed rows: the same rows as
// Stream from the same seed, and the mask true exactly at the graded
// positions of the examples the row was packed from (found by laying the
// recorded examples end to end), each holding its example's answer.
func TestRowGraded(t *testing.T) {
	for _, seq := range []int{16, 64, 129} {
		plain := Stream(rand.New(rand.NewPCG(7, uint64(seq))), All(), seq, 30)
		var got []Example
		var ts []Task
		for _, task := range All() {
			ts = append(ts, recorder{task, &got})
		}
		ids, mask := StreamGraded(rand.New(rand.NewPCG(7, uint64(seq))), ts, seq, 30)
		if len(ids) != len(plain) || len(mask) != len(ids) {
			t.Fatalf("seq %d: %d tokens and %d mask entries, Stream %d", seq, len(ids), len(mask), len(plain))
		}
		for i := range ids {
			if ids[i] != plain[i] {
				t.Fatalf("seq %d: token %d is %d, Stream's %d", seq, i, ids[i], plain[i])
			}
		}
		want := make([]bool, len(ids))
		pos, row := 0, 0
		answers := 0
		for _, ex := range got {
			// An example that does not fit the rest of the row is never
			// drawn, so a new row starts where the next example's BOS is.
			if pos+len(ex.Tokens) > (row+1)*seq || ids[pos] != BOS {
				row++
				pos = row * seq
			}
			for j, id := range ex.Tokens {
				if int(ids[pos+j]) != id {
					t.Fatalf("seq %d: example at %d differs from the row at %d", seq, pos, pos+j)
				}
			}
			for _, g := range ex.Graded {
				want[pos+g] = true
				answers++
			}
			pos += len(ex.Tokens)
		}
		if answers == 0 {
			t.Fatalf("seq %d: no answers", seq)
		}
		for i := range want {
			if mask[i] != want[i] {
				t.Fatalf("seq %d: token %d (id %d): mask %v, graded %v", seq, i, ids[i], mask[i], want[i])
			}
		}
	}
}
