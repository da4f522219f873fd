package lora

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/model"
)

// TestLowRankOnTheFly applies two PEFT adapters of tiny-moe on the fly
// (LowRankFor: every module kind, Mamba in_proj split, routers, packed
// experts read per expert) and requires:
//
//   - each adapter's logits within 1e-5 of the largest logit of the model
//     with it merged (float32 sums in another order: x·Wᵀ + s·(x·Aᵀ)·Bᵀ
//     against x·(W + s·B·A)ᵀ);
//   - one batch holding a sequence of the base, one of each adapter and a
//     second chunk of a sequence continuing its cache, to give each
//     sequence exactly the bits it gets alone (the products are batch
//     invariant and each adapter's rows are multiplied apart);
//   - the base model left as it was.
func TestLowRankOnTheFly(t *testing.T) {
	base, err := model.Load(filepath.Join("..", "testdata", "models", "tiny-moe"), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	var lrs []*model.LowRank
	var merged []*model.Model
	for _, name := range []string{"peft-tiny-moe-all", "peft-tiny-moe-experts"} {
		ad, err := Load(filepath.Join("..", "testdata", "lora", name), base.Config)
		if err != nil {
			t.Fatal(err)
		}
		lr, err := LowRankFor(base, ad)
		if err != nil {
			t.Fatal(err)
		}
		mm := base.ShareWeights()
		if err := Merge(mm, ad); err != nil {
			t.Fatal(err)
		}
		lrs, merged = append(lrs, lr), append(merged, mm)
	}
	ids := [][]int{peftIDs, peftIDs[3:17], {9, 8, 7, 6, 5, 4, 3}}
	alone := func(m *model.Model, lr *model.LowRank, toks []int) []float32 {
		ws := m.NewWorkspace()
		if err := ws.Forward([]model.SeqInput{{Tokens: toks, Logits: model.AllLogits, Adapter: lr}}); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), ws.Logits(0)...)
	}
	for i, lr := range lrs {
		got, want := alone(base, lr, ids[0]), alone(merged[i], nil, ids[0])
		var diff, scale float64
		for j, w := range want {
			diff = max(diff, math.Abs(float64(got[j]-w)))
			scale = max(scale, math.Abs(float64(w)))
		}
		t.Logf("adapter %d on the fly against merged: %.2e of the largest logit", i, diff/scale)
		if diff > 1e-5*scale {
			t.Errorf("adapter %d: on the fly and merged differ by %.3g (largest logit %.3g)", i, diff, scale)
		}
	}
	// A mixed batch, the third sequence continuing a cache filled with the
	// same adapter.
	c := base.NewCache(64)
	ws := base.NewWorkspace()
	if err := ws.Forward([]model.SeqInput{{Tokens: ids[2][:3], Cache: c, Adapter: lrs[1]}}); err != nil {
		t.Fatal(err)
	}
	batch := []model.SeqInput{
		{Tokens: ids[0], Logits: model.AllLogits},
		{Tokens: ids[1], Logits: model.AllLogits, Adapter: lrs[0]},
		{Tokens: ids[0], Logits: model.AllLogits, Adapter: lrs[1]},
		{Tokens: ids[2][3:], Cache: c, Logits: model.AllLogits, Adapter: lrs[1]},
	}
	if err := ws.Forward(batch); err != nil {
		t.Fatal(err)
	}
	whole := alone(base, lrs[1], ids[2])
	wants := [][]float32{alone(base, nil, ids[0]), alone(base, lrs[0], ids[1]), alone(base, lrs[1], ids[0]), whole[3*base.Config.VocabSize:]}
	for s, want := range wants {
		got := ws.Logits(s)
		if len(got) != len(want) {
			t.Fatalf("sequence %d: %d logits, alone %d", s, len(got), len(want))
		}
		for j := range want {
			if got[j] != want[j] {
				// The chunked sequence is compared with a single pass:
				// chunks give the same logits as one pass (SeqInput).
				t.Fatalf("sequence %d of the mixed batch: logit %d is %v, alone %v", s, j, got[j], want[j])
			}
		}
	}
}

// TestLowRankDecodeAllocs: a decode step of a batch mixing the base and two
// adapters applied on the fly allocates nothing once warm, as a decode step
// of the base alone (model.TestDecodeAllocs).
func TestLowRankDecodeAllocs(t *testing.T) {
	base, err := model.Load(filepath.Join("..", "testdata", "models", "tiny-moe"), model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	var lrs []*model.LowRank
	for _, name := range []string{"peft-tiny-moe-all", "peft-tiny-moe-experts"} {
		ad, err := Load(filepath.Join("..", "testdata", "lora", name), base.Config)
		if err != nil {
			t.Fatal(err)
		}
		lr, err := LowRankFor(base, ad)
		if err != nil {
			t.Fatal(err)
		}
		lrs = append(lrs, lr)
	}
	ws := base.NewWorkspace()
	in := []model.SeqInput{{Tokens: []int{7}}, {Tokens: []int{8}, Adapter: lrs[0]}, {Tokens: []int{9}, Adapter: lrs[1]}, {Tokens: []int{10}, Adapter: lrs[0]}}
	for i := range in {
		in[i].Cache = base.NewCache(256)
		if err := ws.Forward([]model.SeqInput{{Tokens: []int{1, 5, 9, 13}, Cache: in[i].Cache, Adapter: in[i].Adapter}}); err != nil {
			t.Fatal(err)
		}
	}
	ws.Forward(in) // warm the decode-sized buffers
	allocs := testing.AllocsPerRun(50, func() {
		if err := ws.Forward(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a decode step with adapters allocates %.1f times", allocs)
	}
}
