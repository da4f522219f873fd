// Package sample turns a model's logits into the next token: the logits
// processors of an OpenAI-style request (repetition, presence and
// frequency penalties, temperature, top-k, top-p, min-p) and a seeded
// sampler.
//
// A [Sampler] applies, in this order, as Hugging Face transformers and
// vLLM do:
//
//  1. repetition penalty (Hugging Face semantics): every id seen in the
//     prompt or the output has its logit divided by the penalty when
//     positive and multiplied by it when negative;
//  2. presence and frequency penalties (OpenAI semantics): every id
//     generated so far loses frequency_penalty × its count, plus
//     presence_penalty once; prompt tokens do not count;
//  3. temperature: logits are divided by it; temperature 0 stops here and
//     picks the argmax of the penalised logits, ties going to the lowest id;
//  4. top-k: only the k largest logits stay (ties broken towards the
//     lower id);
//  5. top-p: of those, sorted by probability, the smallest prefix whose
//     probability mass reaches top_p stays;
//  6. min-p: of those, ids whose probability is below min_p times the
//     largest probability go;
//  7. one id is drawn from the softmax of what remains.
//
// Sample neither changes the logits it is given nor allocates.
package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Params are the sampling fields of a request.
//
// The zero value means greedy decoding with nothing else applied;
// inside a Sampler TopP 0 and RepetitionPenalty 0 also mean off, although
// [Params.Validate] rejects them as request values.
type Params struct {
	// Temperature divides the logits; 0 means greedy decoding.
	Temperature float32
	// TopK keeps the k most likely ids; 0 or -1 means off.
	TopK int
	// TopP keeps the smallest set of most likely ids whose probability
	// mass reaches it; 1 means off.
	TopP float32
	// MinP drops ids whose probability is below MinP times that of the
	// most likely id; 0 means off.
	MinP float32
	// RepetitionPenalty penalises every id seen in the prompt or the
	// output (Hugging Face semantics); 1 means off.
	RepetitionPenalty float32
	// PresencePenalty is subtracted once from the logit of every id
	// generated so far (OpenAI semantics).
	PresencePenalty float32
	// FrequencyPenalty is subtracted from the logit of every id generated
	// so far, once per occurrence (OpenAI semantics).
	FrequencyPenalty float32
	// Seed seeds the random number generator: the same seed, parameters
	// and logits give the same tokens.
	Seed uint64
}

// ParamError reports a sampling parameter out of range. Param is the
// request field's name (temperature, top_p, ...).
type ParamError struct {
	Param string
	Value float64
	Range string
}

// Error names the field, its allowed range and the value given.
func (e *ParamError) Error() string {
	return fmt.Sprintf("sample: %s must be %s, got %v", e.Param, e.Range, e.Value)
}

// Validate checks the ranges an API request may use: temperature in
// [0, 2], top_p in (0, 1], top_k ≥ 0 or -1, min_p in [0, 1], presence and
// frequency penalties in [-2, 2], repetition_penalty > 0, all finite. The
// error is a *[ParamError] naming the first field out of range.
func (p Params) Validate() error {
	bad := func(name string, v float32, ok bool, rng string) error {
		if ok && !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
			return nil
		}
		return &ParamError{Param: name, Value: float64(v), Range: rng}
	}
	checks := []error{
		bad("temperature", p.Temperature, p.Temperature >= 0 && p.Temperature <= 2, "in [0, 2]"),
		bad("top_p", p.TopP, p.TopP > 0 && p.TopP <= 1, "in (0, 1]"),
		bad("min_p", p.MinP, p.MinP >= 0 && p.MinP <= 1, "in [0, 1]"),
		bad("presence_penalty", p.PresencePenalty, p.PresencePenalty >= -2 && p.PresencePenalty <= 2, "in [-2, 2]"),
		bad("frequency_penalty", p.FrequencyPenalty, p.FrequencyPenalty >= -2 && p.FrequencyPenalty <= 2, "in [-2, 2]"),
		bad("repetition_penalty", p.RepetitionPenalty, p.RepetitionPenalty > 0, "greater than 0"),
	}
	if p.TopK < -1 {
		return &ParamError{Param: "top_k", Value: float64(p.TopK), Range: "-1 (off), 0 (off) or positive"}
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	return nil
}

// Sampler picks tokens for one sequence. It owns its random number
// generator and all its scratch memory, so [Sampler.Sample] does not
// allocate. A Sampler is not safe for concurrent use.
type Sampler struct {
	p     Params
	vocab int
	src   *rand.PCG
	rng   *rand.Rand

	logits []float32 // processed logits of the last Sample call
	cand   []int32   // candidate ids
	probs  []float64 // unnormalised probabilities, indexed by id
	order  byLogit
	kept   []int32 // ids left after the filters in the last Sample call

	counts   []int32 // times each id was generated
	inPrompt []bool  // ids seen in the prompt
	touched  []int32 // distinct ids with counts > 0 or inPrompt
}

// New returns a sampler for a vocabulary of vocab ids.
func New(p Params, vocab int) *Sampler {
	s := &Sampler{
		vocab:    vocab,
		src:      rand.NewPCG(0, 0),
		logits:   make([]float32, vocab),
		cand:     make([]int32, 0, vocab),
		probs:    make([]float64, vocab),
		counts:   make([]int32, vocab),
		inPrompt: make([]bool, vocab),
		touched:  make([]int32, 0, 256),
	}
	s.rng = rand.New(s.src)
	s.Reset(p)
	return s
}

// Reset prepares the sampler for a new request with parameters p: it
// reseeds the generator and forgets the tokens seen so far.
func (s *Sampler) Reset(p Params) {
	s.p = p
	s.src.Seed(p.Seed, p.Seed^0x9e3779b97f4a7c15)
	for _, id := range s.touched {
		s.counts[id] = 0
		s.inPrompt[id] = false
	}
	s.touched = s.touched[:0]
}

// Params returns the parameters in use.
func (s *Sampler) Params() Params { return s.p }

func (s *Sampler) touch(id int) {
	if s.counts[id] == 0 && !s.inPrompt[id] {
		s.touched = append(s.touched, int32(id))
	}
}

// AcceptPrompt records prompt tokens. They count for the repetition
// penalty only.
func (s *Sampler) AcceptPrompt(ids []int) {
	for _, id := range ids {
		if id < 0 || id >= s.vocab {
			continue
		}
		s.touch(id)
		s.inPrompt[id] = true
	}
}

// Accept records a generated token. It counts for every penalty.
func (s *Sampler) Accept(id int) {
	if id < 0 || id >= s.vocab {
		return
	}
	s.touch(id)
	s.counts[id]++
}

// Sample returns the next token for logits, which must hold one value per
// id of the vocabulary, and which Sample does not change. It returns -1
// only when every logit is -Inf or NaN.
func (s *Sampler) Sample(logits []float32) int {
	if len(logits) != s.vocab {
		panic(fmt.Sprintf("sample: %d logits for a vocabulary of %d", len(logits), s.vocab))
	}
	x := s.logits
	copy(x, logits)
	s.penalise(x)

	if s.p.Temperature <= 0 {
		return argmax(x)
	}
	if s.p.Temperature != 1 {
		inv := 1 / s.p.Temperature
		for i := range x {
			x[i] *= inv
		}
	}

	// Candidates: every id with a usable logit.
	cand := s.cand[:0]
	for i, v := range x {
		if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), -1) {
			cand = append(cand, int32(i))
		}
	}
	if len(cand) == 0 {
		return -1
	}
	s.order = byLogit{ids: cand, x: x}
	if k := s.p.TopK; k > 0 && k < len(cand) {
		s.order.selectTop(k)
		cand = cand[:k]
		s.order.ids = cand
	}

	// Probabilities relative to the largest logit, indexed by id.
	maxv := x[cand[0]]
	for _, id := range cand {
		maxv = max(maxv, x[id])
	}
	probs := s.probs
	sum := 0.0
	for _, id := range cand {
		p := math.Exp(float64(x[id] - maxv))
		probs[id] = p
		sum += p
	}

	if s.p.TopP > 0 && s.p.TopP < 1 {
		// Smallest prefix, in descending order, whose mass reaches
		// top_p. Sorting everything is slow for a large vocabulary and
		// the nucleus is usually small, so sort the m most likely ids
		// for growing m until they hold enough mass.
		target := float64(s.p.TopP) * sum
		n := len(cand)
		acc := 0.0
		for m := min(64, len(cand)); ; m = min(8*m, len(cand)) {
			if m < len(cand) {
				s.order.selectTop(m)
			}
			s.order.ids = cand[:m]
			sort.Sort(&s.order)
			s.order.ids = cand
			acc = 0
			found := false
			for i, id := range cand[:m] {
				acc += probs[id]
				if acc >= target {
					n, found = i+1, true
					break
				}
			}
			if found || m == len(cand) {
				break
			}
		}
		cand, sum = cand[:n], acc
	}

	if s.p.MinP > 0 {
		// The most likely id has probability 1 relative to maxv.
		thr := float64(s.p.MinP)
		j := 0
		sum = 0
		for _, id := range cand {
			if probs[id] >= thr {
				cand[j] = id
				sum += probs[id]
				j++
			}
		}
		cand = cand[:j]
	}

	s.kept = cand
	u := s.rng.Float64() * sum
	acc := 0.0
	for _, id := range cand {
		acc += probs[id]
		if u < acc {
			return int(id)
		}
	}
	return int(cand[len(cand)-1])
}

// penalise applies the repetition, presence and frequency penalties.
func (s *Sampler) penalise(x []float32) {
	rep := s.p.RepetitionPenalty
	if rep == 0 {
		rep = 1
	}
	pres, freq := s.p.PresencePenalty, s.p.FrequencyPenalty
	if rep == 1 && pres == 0 && freq == 0 {
		return
	}
	for _, id := range s.touched {
		v := x[id]
		if rep != 1 {
			if v > 0 {
				v /= rep
			} else {
				v *= rep
			}
		}
		if c := s.counts[id]; c > 0 {
			v -= freq*float32(c) + pres
		}
		x[id] = v
	}
}

// argmax returns the id of the largest logit, the lowest such id on ties,
// ignoring NaN; -1 if there is none.
func argmax(x []float32) int {
	best := -1
	for i, v := range x {
		if math.IsNaN(float64(v)) {
			continue
		}
		if best < 0 || v > x[best] {
			best = i
		}
	}
	if best >= 0 && math.IsInf(float64(x[best]), -1) {
		return -1
	}
	return best
}

// byLogit orders ids by descending logit, then ascending id.
type byLogit struct {
	ids []int32
	x   []float32
}

func (b *byLogit) Len() int { return len(b.ids) }
func (b *byLogit) Less(i, j int) bool {
	vi, vj := b.x[b.ids[i]], b.x[b.ids[j]]
	return vi > vj || vi == vj && b.ids[i] < b.ids[j]
}
func (b *byLogit) Swap(i, j int) { b.ids[i], b.ids[j] = b.ids[j], b.ids[i] }

// selectTop moves the k first ids in byLogit order to the front, in no
// particular order (quickselect with a median-of-three pivot).
func (b *byLogit) selectTop(k int) {
	lo, hi := 0, len(b.ids)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if b.Less(mid, lo) {
			b.Swap(mid, lo)
		}
		if b.Less(hi, lo) {
			b.Swap(hi, lo)
		}
		if b.Less(hi, mid) {
			b.Swap(hi, mid)
		}
		// The median of the three is the pivot; partition around it.
		b.Swap(mid, hi)
		store := lo
		for i := lo; i < hi; i++ {
			if b.Less(i, hi) {
				b.Swap(i, store)
				store++
			}
		}
		b.Swap(store, hi)
		switch {
		case store == k-1 || store == k:
			return
		case store < k:
			lo = store + 1
		default:
			hi = store - 1
		}
	}
}

// Logprobs reports, for the logits of the last [Sampler.Sample] call, the
// log-softmax after penalties and temperature (temperature 0 counting as
// 1), before top-k, top-p and min-p: the value for id, and the len(topIDs)
// most likely ids with theirs in topIDs and topLogprobs (which must be as
// long), most likely first, ties to the lower id. This is what the OpenAI
// logprobs and top_logprobs fields report. It does not allocate.
func (s *Sampler) Logprobs(id int, topIDs []int, topLogprobs []float32) float32 {
	x := s.logits
	maxv := float32(math.Inf(-1))
	for _, v := range x {
		if v > maxv {
			maxv = v
		}
	}
	sum := 0.0
	for _, v := range x {
		if !math.IsNaN(float64(v)) {
			sum += math.Exp(float64(v - maxv))
		}
	}
	lse := float64(maxv) + math.Log(sum)
	lp := func(i int) float32 { return float32(float64(x[i]) - lse) }

	n := min(len(topIDs), len(topLogprobs), len(x))
	for k := range n {
		topIDs[k] = -1
	}
	filled := 0
	for i, v := range x {
		if math.IsNaN(float64(v)) {
			continue
		}
		if filled == n && (n == 0 || v <= x[topIDs[n-1]]) {
			continue
		}
		// Insert i, keeping the list sorted; equal values keep the
		// earlier (lower) id first.
		j := min(filled, n-1)
		for j > 0 && x[topIDs[j-1]] < v {
			topIDs[j] = topIDs[j-1]
			j--
		}
		topIDs[j] = i
		if filled < n {
			filled++
		}
	}
	for k := range n {
		if topIDs[k] >= 0 {
			topLogprobs[k] = lp(topIDs[k])
		}
	}
	if id < 0 || id >= len(x) {
		return float32(math.Inf(-1))
	}
	return lp(id)
}
