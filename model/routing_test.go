package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// TestRoutingStats runs the two rows of tiny-moe's reference batch and
// checks the statistics against transformers: the pooled load-balancing
// loss equals reference.json's aux_loss, and every layer's top-2 counts are
// those of the reference router logits. It also checks the per-layer
// invariants (k selections per token, probabilities summing to the rows,
// entropy at most log E).
func TestRoutingStats(t *testing.T) {
	m, dir := loadFixture(t, "tiny-moe")
	refs := readRefs(t, filepath.Join(dir, "reference.safetensors"))
	ids := ints(refs["input_ids"].data)
	T := refs["input_ids"].shape[1]
	st := NewRoutingStats(m)
	ws := m.NewWorkspace()
	ws.CaptureRouter = true
	for b := range 2 {
		if err := ws.Forward([]SeqInput{{Tokens: ids[b*T : (b+1)*T]}}); err != nil {
			t.Fatal(err)
		}
		st.Add(ws.Router, T)
	}
	var ref struct {
		Aux float64 `json:"aux_loss"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	// Our router logits agree with the reference's to ~1e-6 and pick the
	// same experts, so the loss differs only by float32 softmax rounding:
	// 1e-5 relative is ten times that.
	if got := st.Aux(); math.Abs(got-ref.Aux) > 1e-5*ref.Aux {
		t.Errorf("pooled aux %.7f, transformers %.7f", got, ref.Aux)
	}
	E, k := st.Experts, st.TopK
	for j := range st.Count {
		lg := refs["router_logits."+string(rune('0'+j))].data
		want := make([]float64, E)
		for r := range 2 * T {
			row := lg[r*E : (r+1)*E]
			idx := []int{0, 1, 2, 3}[:E]
			sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
			for _, e := range idx[:k] {
				want[e]++
			}
		}
		var cnt, psum float64
		for e := range E {
			if st.Count[j][e] != want[e] {
				t.Errorf("layer %d expert %d: %v selections, transformers' logits give %v", j, e, st.Count[j][e], want[e])
			}
			cnt += st.Count[j][e]
			psum += st.ProbSum[j][e]
		}
		if cnt != float64(k*st.Rows) || math.Abs(psum-float64(st.Rows)) > 1e-4 {
			t.Errorf("layer %d: %v selections and %v probability for %d rows", j, cnt, psum, st.Rows)
		}
		if h := st.EntropySum[j] / float64(st.Rows); h < 0 || h > math.Log(float64(E))+1e-9 {
			t.Errorf("layer %d: mean entropy %v outside [0, log %d]", j, h, E)
		}
	}
}
