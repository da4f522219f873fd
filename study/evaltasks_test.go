package study

import (
	"hash/fnv"
	"math"
	"testing"

	"github.com/jamba-go/jamba/study/tasks"
)

// hashForwarder is a fake model: the logit of id j at position p is a hash
// of the sequence up to p and j, in the vocabulary space toSpace maps ids
// into (nil: the identity). Its arg-max lands on every kind of id, inside
// and outside the tasks' ids.
type hashForwarder struct {
	V int
	// back maps a model id to the id the hash sees (nil: itself), so that
	// a model over shifted ids computes the same function.
	back func(id int) int
}

func (h hashForwarder) Vocab() int { return h.V }

func (h hashForwarder) Logits(seqs [][]int) ([][]float32, error) {
	out := make([][]float32, len(seqs))
	for i, s := range seqs {
		out[i] = make([]float32, len(s)*h.V)
		f := fnv.New64a()
		for p, id := range s {
			if h.back != nil {
				id = h.back(id)
			}
			f.Write([]byte{byte(id), byte(id >> 8)})
			base := f.Sum64()
			for j := range h.V {
				k := j
				if h.back != nil {
					k = h.back(j)
				}
				x := base ^ uint64(k)*0x9e3779b97f4a7c15
				x ^= x >> 29
				x *= 0xbf58476d1ce4e5b9
				x ^= x >> 32
				out[i][p*h.V+j] = float32(x%1000) / 100
			}
		}
	}
	return out, nil
}

// TestMappedForwarder checks the id map against a model that computes the
// same function on shifted ids: the mapped scores (loss, accuracy, format
// rate) equal those of the unshifted model, and a map with a repeated or
// out-of-range id is refused.
func TestMappedForwarder(t *testing.T) {
	const V, offset, bos = 300, 150, 7
	m := OffsetMap(tasks.Vocab, offset, bos)
	// model id → the id the task-space model sees: the inverse of m on its
	// image, and the rest of the vocabulary, in order, after the task ids
	// (the order MappedForwarder lays them out in).
	back := make([]int, V)
	inImage := map[int]int{}
	for j, id := range m {
		inImage[id] = j
	}
	next := tasks.Vocab
	for id := range V {
		if j, ok := inImage[id]; ok {
			back[id] = j
		} else {
			back[id] = next
			next++
		}
	}
	plain := hashForwarder{V: V}
	shifted, err := NewMappedForwarder(hashForwarder{V: V, back: func(id int) int { return back[id] }}, m)
	if err != nil {
		t.Fatal(err)
	}
	want, err := EvalTasks(plain, tasks.All(), 5, 9, 4)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EvalTasks(shifted, tasks.All(), 5, 9, 4)
	if err != nil {
		t.Fatal(err)
	}
	var someWrong bool
	for i := range want {
		w, g := want[i], got[i]
		if g.Loss != w.Loss || g.Accuracy != w.Accuracy || !(g.Format == w.Format || math.IsNaN(g.Format) && math.IsNaN(w.Format)) {
			t.Errorf("%s size %d: mapped %+v, plain %+v", w.Task, w.Size, g, w)
		}
		someWrong = someWrong || w.Accuracy < 1
	}
	if !someWrong {
		t.Error("the fake model is always right: the comparison shows nothing")
	}
	if _, err := NewMappedForwarder(plain, []int{0, 1, 1}); err == nil {
		t.Error("a map with a repeated id: no error")
	}
	if _, err := NewMappedForwarder(plain, OffsetMap(tasks.Vocab, V-10, -1)); err == nil {
		t.Error("a map past the vocabulary: no error")
	}
}
