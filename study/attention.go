package study

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
	"github.com/jamba-go/jamba/study/tasks"
)

// AttentionMap is the attention of one attention layer over one sequence.
type AttentionMap struct {
	Layer int       // decoder layer index
	Heads int       // query heads
	T     int       // sequence length
	W     []float32 // [Heads][T][T]: W[h][t][j], row t the query, zero for j > t
}

// At returns the weight of query t of head h on position j.
func (a *AttentionMap) At(h, t, j int) float32 { return a.W[(h*a.T+t)*a.T+j] }

// AttentionMaps runs m over ids in one pass from an empty state and returns
// the attention weights of every attention layer, in layer order, as the
// forward pass computes them.
func AttentionMaps(m *model.Model, ids []int) ([]AttentionMap, error) {
	c := m.Config
	var maps []AttentionMap
	ws := m.NewWorkspace()
	ws.Probe = &model.Probe{Attention: func(li, s int, w []float32, T, past int) {
		maps = append(maps, AttentionMap{Layer: li, Heads: c.NumAttentionHeads, T: T, W: append([]float32(nil), w...)})
	}}
	if err := ws.Forward([]model.SeqInput{{Tokens: ids, Logits: model.NoLogits}}); err != nil {
		return nil, err
	}
	return maps, nil
}

// HeadScores are one head's scores over a set of sequences.
type HeadScores struct {
	Layer, Head int
	// Induction is the mean weight that a query whose token occurred
	// before puts on the position right after that token's latest earlier
	// occurrence (where an induction head copies from).
	Induction float64
	// PrevToken is the mean weight a query puts on the position before it.
	PrevToken float64
}

// InductionTargets returns, for each position t of ids, the position after
// the latest earlier occurrence of ids[t], or −1 when ids[t] did not occur
// before. An induction head at t attends there.
func InductionTargets(ids []int) []int {
	last := map[int]int{}
	out := make([]int, len(ids))
	for t, id := range ids {
		out[t] = -1
		if p, ok := last[id]; ok {
			out[t] = p + 1
		}
		last[id] = t
	}
	return out
}

// scoreAdd accumulates one map's induction and previous-token weights per
// head into sums and counts.
type scoreAcc struct {
	ind, prev   []float64
	nInd, nPrev int
}

func (s *scoreAcc) add(a *AttentionMap, targets []int) {
	if s.ind == nil {
		s.ind = make([]float64, a.Heads)
		s.prev = make([]float64, a.Heads)
	}
	for t := 1; t < a.T; t++ {
		for h := range a.Heads {
			s.prev[h] += float64(a.At(h, t, t-1))
		}
		s.nPrev++
		if j := targets[t]; j >= 0 && j <= t {
			for h := range a.Heads {
				s.ind[h] += float64(a.At(h, t, j))
			}
			s.nInd++
		}
	}
}

// ScoreHeads returns the induction and previous-token score of every head
// of every map (maps of several sequences of the same model may be given
// together: the scores are pooled over all of them). seqs[i] are the ids
// maps[i] were computed over.
func ScoreHeads(maps []AttentionMap, seqs [][]int) []HeadScores {
	acc := map[int]*scoreAcc{}
	var layers []int
	for i := range maps {
		a := &maps[i]
		if acc[a.Layer] == nil {
			acc[a.Layer] = &scoreAcc{}
			layers = append(layers, a.Layer)
		}
		acc[a.Layer].add(a, InductionTargets(seqs[i]))
	}
	sort.Ints(layers)
	var out []HeadScores
	for _, l := range layers {
		s := acc[l]
		for h := range s.ind {
			hs := HeadScores{Layer: l, Head: h}
			if s.nInd > 0 {
				hs.Induction = s.ind[h] / float64(s.nInd)
			}
			if s.nPrev > 0 {
				hs.PrevToken = s.prev[h] / float64(s.nPrev)
			}
			out = append(out, hs)
		}
	}
	return out
}

// RepeatedRandom returns n sequences of BOS (when bos ≥ 0) followed by
// length distinct random ids from [lo, hi), twice: the standard probe of
// induction heads. It panics unless hi−lo ≥ length.
func RepeatedRandom(rng *rand.Rand, n, length, lo, hi, bos int) [][]int {
	out := make([][]int, n)
	for i := range out {
		perm := rng.Perm(hi - lo)[:length]
		var s []int
		if bos >= 0 {
			s = append(s, bos)
		}
		for r := 0; r < 2; r++ {
			for _, p := range perm {
				s = append(s, lo+p)
			}
		}
		out[i] = s
	}
	return out
}

// InductionProbe scores every attention head of m on n repeated random
// sequences of length tokens (ids drawn from [lo, hi)), pooled.
func InductionProbe(m *model.Model, rng *rand.Rand, n, length, lo, hi int) ([]HeadScores, error) {
	if hi-lo < length {
		return nil, fmt.Errorf("study: %d distinct ids needed, the range [%d, %d) has %d", length, lo, hi, hi-lo)
	}
	bos := -1
	if b := m.Config.BOSTokenID; b != nil && *b < m.Config.VocabSize {
		bos = *b
	}
	return pooledScores(m, RepeatedRandom(rng, n, length, lo, hi, bos))
}

// TaskInductionScores scores every attention head of m on n examples of the
// induction task of size length (BOS, length distinct ids, Sep, the same
// ids: the format the ablation's models are trained on), pooled.
func TaskInductionScores(m *model.Model, rng *rand.Rand, n, length int) ([]HeadScores, error) {
	seqs := make([][]int, n)
	for i := range seqs {
		seqs[i] = tasks.Induction{}.Generate(rng, length).Tokens
	}
	return pooledScores(m, seqs)
}

// pooledScores scores every attention head of m on the attention maps of
// all of seqs, pooled.
func pooledScores(m *model.Model, seqs [][]int) ([]HeadScores, error) {
	var maps []AttentionMap
	var mapSeqs [][]int
	for _, s := range seqs {
		ms, err := AttentionMaps(m, s)
		if err != nil {
			return nil, err
		}
		for range ms {
			mapSeqs = append(mapSeqs, s)
		}
		maps = append(maps, ms...)
	}
	return ScoreHeads(maps, mapSeqs), nil
}

// BestInductionHead returns the head with the highest induction score
// (ok false when there is no head).
func BestInductionHead(hs []HeadScores) (best HeadScores, ok bool) {
	for _, h := range hs {
		if !ok || h.Induction > best.Induction {
			best, ok = h, true
		}
	}
	return best, ok
}

// UniformInductionScore is the induction score of a head that spreads its
// weight evenly over the past, on the same sequences: the mean of 1/(t+1)
// over the queries that have an induction target.
func UniformInductionScore(seqs [][]int) float64 {
	var s float64
	var n int
	for _, ids := range seqs {
		for t, j := range InductionTargets(ids) {
			if t > 0 && j >= 0 {
				s += 1 / float64(t+1)
				n++
			}
		}
	}
	return s / float64(max(n, 1))
}

// WriteAttentionSafetensors writes each map as a float32 tensor
// "layers.{i}.attention" of shape [heads, T, T], atomically.
func WriteAttentionSafetensors(path string, maps []AttentionMap, meta map[string]string) error {
	infos := make([]safetensors.TensorInfo, len(maps))
	for i, a := range maps {
		infos[i] = safetensors.TensorInfo{Name: fmt.Sprintf("layers.%d.attention", a.Layer), DType: safetensors.F32, Shape: []int{a.Heads, a.T, a.T}}
	}
	w, err := safetensors.Create(path, infos, meta)
	if err != nil {
		return err
	}
	for i, a := range maps {
		if err := w.WriteFloat32(infos[i].Name, a.W); err != nil {
			return err
		}
	}
	return w.Close()
}
