package sample

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

func randomLogits(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 3)
	}
	return x
}

// ranked returns the ids sorted by descending logit, then ascending id.
func ranked(x []float32) []int {
	ids := make([]int, len(x))
	for i := range ids {
		ids[i] = i
	}
	sort.SliceStable(ids, func(a, b int) bool { return x[ids[a]] > x[ids[b]] })
	return ids
}

func sortedKept(s *Sampler) []int {
	out := make([]int, len(s.kept))
	for i, id := range s.kept {
		out[i] = int(id)
	}
	slices.Sort(out)
	return out
}

func TestValidate(t *testing.T) {
	ok := Params{Temperature: 0.7, TopK: 40, TopP: 0.9, MinP: 0.05, RepetitionPenalty: 1.1, PresencePenalty: -2, FrequencyPenalty: 2}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid params: %v", err)
	}
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		param string
		edit  func(*Params)
	}{
		{"", func(p *Params) { p.Temperature = 0 }},
		{"", func(p *Params) { p.Temperature = 2 }},
		{"", func(p *Params) { p.TopP = 1 }},
		{"", func(p *Params) { p.TopK = -1 }},
		{"", func(p *Params) { p.TopK = 0 }},
		{"", func(p *Params) { p.MinP = 1 }},
		{"temperature", func(p *Params) { p.Temperature = -0.1 }},
		{"temperature", func(p *Params) { p.Temperature = 2.01 }},
		{"temperature", func(p *Params) { p.Temperature = nan }},
		{"temperature", func(p *Params) { p.Temperature = inf }},
		{"top_p", func(p *Params) { p.TopP = 0 }},
		{"top_p", func(p *Params) { p.TopP = 1.5 }},
		{"top_p", func(p *Params) { p.TopP = nan }},
		{"top_k", func(p *Params) { p.TopK = -2 }},
		{"min_p", func(p *Params) { p.MinP = -0.1 }},
		{"min_p", func(p *Params) { p.MinP = 1.1 }},
		{"presence_penalty", func(p *Params) { p.PresencePenalty = 2.5 }},
		{"frequency_penalty", func(p *Params) { p.FrequencyPenalty = -2.5 }},
		{"frequency_penalty", func(p *Params) { p.FrequencyPenalty = nan }},
		{"repetition_penalty", func(p *Params) { p.RepetitionPenalty = 0 }},
		{"repetition_penalty", func(p *Params) { p.RepetitionPenalty = -1 }},
		{"repetition_penalty", func(p *Params) { p.RepetitionPenalty = inf }},
	} {
		p := ok
		tc.edit(&p)
		err := p.Validate()
		if tc.param == "" {
			if err != nil {
				t.Errorf("%+v: unexpected %v", p, err)
			}
			continue
		}
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != tc.param {
			t.Errorf("%+v: got %v, want an error naming %s", p, err, tc.param)
		}
	}
}

func TestGreedy(t *testing.T) {
	s := New(Params{}, 5)
	logits := []float32{1, 3, -2, 3, 0}
	orig := slices.Clone(logits)
	for range 3 {
		if got := s.Sample(logits); got != 1 {
			t.Fatalf("greedy = %d, want 1 (the lower of two tied ids)", got)
		}
	}
	if !slices.Equal(logits, orig) {
		t.Error("Sample changed its input")
	}
	inf := float32(math.Inf(-1))
	if got := s.Sample([]float32{inf, inf, inf, inf, inf}); got != -1 {
		t.Errorf("all -Inf: %d", got)
	}
	s = New(Params{Temperature: 1}, 3)
	if got := s.Sample([]float32{inf, float32(math.NaN()), 0}); got != 2 {
		t.Errorf("only usable id: %d", got)
	}
}

func TestPenalties(t *testing.T) {
	s := New(Params{RepetitionPenalty: 2, PresencePenalty: 0.5, FrequencyPenalty: 0.25}, 6)
	s.AcceptPrompt([]int{0, 1, 99})
	s.Accept(2)
	s.Accept(2)
	s.Accept(3)
	s.Accept(-1)
	logits := []float32{4, -4, 4, -4, 4, 1}
	s.Sample(logits)
	want := []float32{
		2,               // prompt, positive: divided
		-8,              // prompt, negative: multiplied
		2 - 0.5 - 0.5,   // generated twice: rep, presence, 2 × frequency
		-8 - 0.5 - 0.25, // generated once
		4,               // unseen
		1,               // unseen
	}
	if !slices.Equal(s.logits, want) {
		t.Errorf("penalised logits %v, want %v", s.logits, want)
	}
	if got := s.Sample(logits); got != 4 {
		t.Errorf("greedy after penalties = %d, want 4", got)
	}
	s.Reset(Params{})
	s.Sample(logits)
	if !slices.Equal(s.logits, logits) {
		t.Errorf("after Reset %v, want %v", s.logits, logits)
	}
}

// TestTopK checks that every draw is among the k largest logits and that
// the kept set is exactly those.
func TestTopK(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		n := 1 + r.IntN(300)
		k := 1 + r.IntN(n+5)
		x := randomLogits(r, n)
		if trial%3 == 0 {
			for i := range x { // many ties
				x[i] = float32(math.Round(float64(x[i])))
			}
		}
		s := New(Params{Temperature: 1, TopK: k, Seed: uint64(trial)}, n)
		want := ranked(x)[:min(k, n)]
		slices.Sort(want)
		for range 20 {
			id := s.Sample(x)
			if _, ok := slices.BinarySearch(want, id); !ok {
				t.Fatalf("n=%d k=%d: drew %d outside the top k", n, k, id)
			}
			if got := sortedKept(s); !slices.Equal(got, want) {
				t.Fatalf("n=%d k=%d: kept %v, want %v", n, k, got, want)
			}
		}
	}
}

// refTopP is the smallest set of most likely ids whose mass reaches p.
func refTopP(x []float32, p float64) []int {
	ids := ranked(x)
	var sum float64
	probs := make([]float64, len(ids))
	for i, id := range ids {
		probs[i] = math.Exp(float64(x[id] - x[ids[0]]))
		sum += probs[i]
	}
	acc := 0.0
	for i := range ids {
		acc += probs[i] / sum
		if acc >= p {
			return ids[:i+1]
		}
	}
	return ids
}

func TestTopP(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		n := 2 + r.IntN(200)
		x := randomLogits(r, n)
		p := 0.05 + 0.9*r.Float64()
		s := New(Params{Temperature: 1, TopP: float32(p), Seed: uint64(trial)}, n)
		want := refTopP(x, float64(float32(p)))
		slices.Sort(want)
		s.Sample(x)
		if got := sortedKept(s); !slices.Equal(got, want) {
			t.Fatalf("n=%d p=%v: kept %v, want %v", n, p, got, want)
		}
		// Smallest: without its least likely member the set falls short.
		mass := func(ids []int) float64 {
			var m, z float64
			for i := range x {
				z += math.Exp(float64(x[i]))
			}
			for _, id := range ids {
				m += math.Exp(float64(x[id]))
			}
			return m / z
		}
		r := ranked(x)[:len(want)]
		if len(r) > 1 && mass(r[:len(r)-1]) >= float64(float32(p))+1e-9 {
			t.Fatalf("kept set is not the smallest")
		}
	}
}

func TestMinP(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 200 {
		n := 2 + r.IntN(200)
		x := randomLogits(r, n)
		minP := r.Float64()
		s := New(Params{Temperature: 1, MinP: float32(minP), Seed: uint64(trial)}, n)
		top := ranked(x)[0]
		var want []int
		for i := range x {
			if math.Exp(float64(x[i]-x[top])) >= float64(float32(minP)) {
				want = append(want, i)
			}
		}
		id := s.Sample(x)
		if got := sortedKept(s); !slices.Equal(got, want) {
			t.Fatalf("min_p=%v: kept %v, want %v", minP, got, want)
		}
		if _, ok := slices.BinarySearch(want, id); !ok {
			t.Fatalf("drew %d outside the min-p set", id)
		}
	}
}

// TestFilterOrder checks top-k, then top-p over what top-k kept, then
// min-p.
func TestFilterOrder(t *testing.T) {
	x := []float32{5, 4, 3, 2, 1, 0}
	s := New(Params{Temperature: 1, TopK: 4, TopP: 0.99, MinP: 0.1}, len(x))
	s.Sample(x)
	// Top-4: ids 0..3. Their renormalised mass needs all four for 0.99.
	// Min-p 0.1 then drops id 3 (e^-3 ≈ 0.05 of the top).
	if got := sortedKept(s); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("kept %v", got)
	}
}

func TestLowTemperatureIsGreedy(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for trial := range 300 {
		x := randomLogits(r, 1+r.IntN(100))
		g := New(Params{RepetitionPenalty: 1.3}, len(x))
		c := New(Params{Temperature: 1e-3, RepetitionPenalty: 1.3, Seed: uint64(trial)}, len(x))
		g.AcceptPrompt([]int{0, 1})
		c.AcceptPrompt([]int{0, 1})
		if a, b := g.Sample(x), c.Sample(x); a != b {
			// Allowed only when the two best logits are within reach
			// of temperature 1e-3.
			ids := ranked(g.logits)
			if len(ids) > 1 && g.logits[ids[0]]-g.logits[ids[1]] > 0.05 {
				t.Fatalf("greedy %d, temperature 1e-3 drew %d", a, b)
			}
		}
	}
}

func TestSeed(t *testing.T) {
	x := randomLogits(rand.New(rand.NewPCG(9, 9)), 50)
	draw := func(seed uint64) []int {
		s := New(Params{Temperature: 1.5, TopP: 0.95, Seed: seed}, len(x))
		out := make([]int, 200)
		for i := range out {
			out[i] = s.Sample(x)
			s.Accept(out[i])
		}
		return out
	}
	a, b := draw(42), draw(42)
	if !slices.Equal(a, b) {
		t.Error("same seed, different tokens")
	}
	if slices.Equal(a, draw(43)) {
		t.Error("seeds 42 and 43 gave the same 200 tokens")
	}
	// Reset with the same seed starts the same sequence again.
	s := New(Params{Temperature: 1.5, TopP: 0.95, Seed: 42}, len(x))
	for range 10 {
		s.Sample(x)
	}
	s.Reset(Params{Temperature: 1.5, TopP: 0.95, Seed: 42})
	if got := s.Sample(x); got != a[0] {
		t.Errorf("after Reset drew %d, want %d", got, a[0])
	}
}

// TestDistribution draws 100 000 tokens and compares each id's count with
// N·p, where p is the softmax of logits/temperature. A count is binomial
// with standard deviation σ = sqrt(N·p·(1-p)); the test allows 5σ per id,
// which a correct sampler exceeds with probability about 6e-7 per id, and
// the seed is fixed, so the test is deterministic.
func TestDistribution(t *testing.T) {
	const N = 100000
	logits := []float32{2, 1, 0.5, 0, -1, -3, 1, 0.25}
	for _, temp := range []float32{1, 0.7} {
		s := New(Params{Temperature: temp, Seed: 7}, len(logits))
		counts := make([]int, len(logits))
		for range N {
			counts[s.Sample(logits)]++
		}
		var z float64
		for _, l := range logits {
			z += math.Exp(float64(l / temp))
		}
		for i, l := range logits {
			p := math.Exp(float64(l/temp)) / z
			sigma := math.Sqrt(N * p * (1 - p))
			if d := math.Abs(float64(counts[i]) - N*p); d > 5*sigma {
				t.Errorf("T=%v id %d: %d draws, expected %.0f ± %.0f", temp, i, counts[i], N*p, sigma)
			}
		}
	}
}

func TestZeroAllocations(t *testing.T) {
	const vocab = 4096
	x := randomLogits(rand.New(rand.NewPCG(1, 1)), vocab)
	for _, p := range []Params{
		{},
		{Temperature: 0.8},
		{Temperature: 0.8, TopK: 40, TopP: 0.9, MinP: 0.05, RepetitionPenalty: 1.1, PresencePenalty: 0.5, FrequencyPenalty: 0.5, Seed: 1},
		{Temperature: 1, TopP: 0.5},
	} {
		s := New(p, vocab)
		s.AcceptPrompt([]int{1, 2, 3})
		s.Accept(4)
		ids := make([]int, 5)
		lps := make([]float32, 5)
		if n := testing.AllocsPerRun(100, func() {
			id := s.Sample(x)
			s.Logprobs(id, ids, lps)
		}); n != 0 {
			t.Errorf("%+v: %v allocations per Sample and Logprobs", p, n)
		}
	}
}

func TestLogprobs(t *testing.T) {
	x := []float32{1, 3, 2, 3, -1}
	s := New(Params{Temperature: 1}, len(x))
	id := s.Sample(x)
	ids := make([]int, 3)
	lps := make([]float32, 3)
	lp := s.Logprobs(id, ids, lps)
	var z float64
	for _, v := range x {
		z += math.Exp(float64(v))
	}
	want := func(i int) float64 { return float64(x[i]) - math.Log(z) }
	if math.Abs(float64(lp)-want(id)) > 1e-5 {
		t.Errorf("logprob of %d = %v, want %v", id, lp, want(id))
	}
	if !slices.Equal(ids, []int{1, 3, 2}) {
		t.Errorf("top ids %v, want [1 3 2]", ids)
	}
	for k, i := range ids {
		if math.Abs(float64(lps[k])-want(i)) > 1e-5 {
			t.Errorf("top %d: %v, want %v", k, lps[k], want(i))
		}
	}
	// Temperature applies: at 0.5 the logits are doubled.
	s = New(Params{Temperature: 0.5}, len(x))
	id = s.Sample(x)
	z = 0
	for _, v := range x {
		z += math.Exp(2 * float64(v))
	}
	if got, w := s.Logprobs(id, nil, nil), 2*float64(x[id])-math.Log(z); math.Abs(float64(got)-w) > 1e-5 {
		t.Errorf("at temperature 0.5: %v, want %v", got, w)
	}
}

func BenchmarkSample(b *testing.B) {
	x := randomLogits(rand.New(rand.NewPCG(1, 1)), 65536)
	for _, bc := range []struct {
		name string
		p    Params
	}{
		{"greedy", Params{}},
		{"temperature", Params{Temperature: 0.8}},
		{"topk40-topp0.9", Params{Temperature: 0.8, TopK: 40, TopP: 0.9}},
		{"topp0.9", Params{Temperature: 0.8, TopP: 0.9}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := New(bc.p, len(x))
			b.ReportAllocs()
			for b.Loop() {
				s.Sample(x)
			}
		})
	}
}
