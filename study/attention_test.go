package study

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

// TestScoreHeadsHandBuilt scores a hand-built map of four heads over a
// repeated random sequence: a perfect induction head, a perfect
// previous-token head, a head that always looks at position 0, and a
// uniform causal head, whose scores follow from the definitions.
func TestScoreHeadsHandBuilt(t *testing.T) {
	const L = 6
	seq := RepeatedRandom(rand.New(rand.NewPCG(1, 2)), 1, L, 10, 50, 1)[0] // BOS + 2×6
	T := len(seq)
	a := AttentionMap{Layer: 3, Heads: 4, T: T, W: make([]float32, 4*T*T)}
	set := func(h, q, k int, v float32) { a.W[(h*T+q)*T+k] = v }
	targets := InductionTargets(seq)
	for q := range T {
		if j := targets[q]; j >= 0 {
			set(0, q, j, 1)
		} else {
			set(0, q, 0, 1)
		}
		set(1, q, max(q-1, 0), 1)
		set(2, q, 0, 1)
		for k := 0; k <= q; k++ {
			set(3, q, k, float32(1/float64(q+1)))
		}
	}
	// The induction queries are exactly the second copy, each aimed at the
	// token after its twin in the first copy.
	for q := range T {
		want := -1
		if q > L {
			want = q - L + 1
		}
		if targets[q] != want {
			t.Fatalf("InductionTargets(%v)[%d] = %d, want %d", seq, q, targets[q], want)
		}
	}
	got := ScoreHeads([]AttentionMap{a}, [][]int{seq})
	// Uniform head: mean of 1/(q+1) over the L queries of the second copy
	// (q = L+1..2L), and over all queries q ≥ 1 for the previous token.
	var uInd, uPrev float64
	for q := L + 1; q <= 2*L; q++ {
		uInd += 1 / float64(q+1)
	}
	for q := 1; q < T; q++ {
		uPrev += 1 / float64(q+1)
	}
	want := []HeadScores{
		{3, 0, 1, 1 / float64(T-1)}, // query 1 falls back on position 0, its previous token
		{3, 1, 0, 1},
		{3, 2, 0, 1 / float64(T-1)}, // only query 1's previous token is position 0
		{3, 3, uInd / L, uPrev / float64(T-1)},
	}
	if len(got) != len(want) {
		t.Fatalf("%d scores, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		// float32 weights 1/(q+1) carry a rounding of 6e-8 relative.
		if g.Layer != w.Layer || g.Head != w.Head || math.Abs(g.Induction-w.Induction) > 1e-7 || math.Abs(g.PrevToken-w.PrevToken) > 1e-7 {
			t.Errorf("head %d: got %+v, want %+v", i, g, w)
		}
	}
	// The baseline the docs compare with is the uniform head's score.
	if u := UniformInductionScore([][]int{seq}); math.Abs(u-uInd/L) > 1e-15 {
		t.Errorf("UniformInductionScore %v, uniform head %v", u, uInd/L)
	}
	if b, ok := BestInductionHead(got); !ok || b.Head != 0 {
		t.Errorf("best induction head %+v, want head 0", b)
	}
}

// fixtureInputs returns a fixture model and its reference input ids (row
// 0) and hidden states (float64, [L+1][T·H] of row 0, HF's convention).
func fixtureInputs(t *testing.T, name string) (*model.Model, []int, [][]float64) {
	t.Helper()
	dir := testutil.Fixture(t, filepath.Join("models", name))
	m, err := model.Load(dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	it, err := f.Tensor("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	ids64, err := it.Int64()
	if err != nil {
		t.Fatal(err)
	}
	T := it.Shape[1]
	ids := make([]int, T)
	for i := range ids {
		ids[i] = int(ids64[i])
	}
	ht, err := f.Tensor("hidden_states")
	if err != nil {
		t.Fatal(err)
	}
	hs, err := ht.Float64()
	if err != nil {
		t.Fatal(err)
	}
	L1, B, H := ht.Shape[0], ht.Shape[1], ht.Shape[3]
	out := make([][]float64, L1)
	for l := range out {
		out[l] = hs[(l*B)*T*H : (l*B+1)*T*H]
	}
	return m, ids, out
}

// f64Matrix reads a weight matrix as float64 rows.
func f64Matrix(w *kernels.Matrix) [][]float64 {
	out := make([][]float64, w.Rows)
	row := make([]float32, w.Cols)
	for r := range out {
		w.Row(row, r)
		out[r] = make([]float64, w.Cols)
		for i, v := range row {
			out[r][i] = float64(v)
		}
	}
	return out
}

// rmsNorm64 is RMSNorm in float64.
func rmsNorm64(x []float64, w []float32, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(w[i]) * v * inv
	}
	return out
}

func matVec64(W [][]float64, x []float64) []float64 {
	out := make([]float64, len(W))
	for r, row := range W {
		for i, v := range row {
			out[r] += v * x[i]
		}
	}
	return out
}

// TestAttentionMapsFixture compares the maps of every attention layer of
// the fixture models with a float64 computation from transformers' own
// hidden states: the layer's input (hidden_states[i]), its input norm, the
// query and key projections, the scaled causal softmax, grouped heads.
func TestAttentionMapsFixture(t *testing.T) {
	for _, name := range []string{"tiny-moe", "tiny-moe-variant", "tiny-dense"} {
		m, ids, hs := fixtureInputs(t, name)
		c := m.Config
		maps, err := AttentionMaps(m, ids)
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		for i := range c.NumHiddenLayers {
			if c.Mixer(i) == model.Attention {
				want = append(want, i)
			}
		}
		if len(maps) != len(want) {
			t.Fatalf("%s: %d maps, %d attention layers", name, len(maps), len(want))
		}
		H, T, hd := c.HiddenSize, len(ids), c.HeadDimension()
		nH, nKV := c.NumAttentionHeads, c.NumKeyValueHeads
		var worst float64
		for mi, a := range maps {
			li := want[mi]
			if a.Layer != li || a.Heads != nH || a.T != T {
				t.Fatalf("%s: map %d is layer %d, %d heads, T %d", name, mi, a.Layer, a.Heads, a.T)
			}
			l := &m.Layers[li]
			Wq, Wk := f64Matrix(l.Attn.Q), f64Matrix(l.Attn.K)
			q := make([][]float64, T)
			k := make([][]float64, T)
			for tt := range T {
				x := rmsNorm64(hs[li][tt*H:(tt+1)*H], l.InputNorm, c.RMSNormEps)
				q[tt], k[tt] = matVec64(Wq, x), matVec64(Wk, x)
			}
			for h := range nH {
				g := h / (nH / nKV)
				for tt := range T {
					s := make([]float64, tt+1)
					mx := math.Inf(-1)
					for j := range s {
						for d := range hd {
							s[j] += q[tt][h*hd+d] * k[j][g*hd+d]
						}
						s[j] /= math.Sqrt(float64(hd))
						mx = max(mx, s[j])
					}
					var z float64
					for j := range s {
						s[j] = math.Exp(s[j] - mx)
						z += s[j]
					}
					for j := range T {
						ref := 0.0
						if j <= tt {
							ref = s[j] / z
						}
						worst = max(worst, math.Abs(float64(a.At(h, tt, j))-ref))
					}
				}
			}
		}
		// Our float32 forward reaches the attention layers' input within
		// ~1e-5 relative of transformers' float64 hidden states (the
		// fixtures' tolerance); through RMSNorm, two projections and a
		// softmax of O(1) scores that moves a weight in [0, 1] by about
		// 1e-6 (8.4e-7 at most seen); 1e-5 leaves a margin of ten.
		if worst > 1e-5 {
			t.Errorf("%s: attention weights differ from float64 by up to %.3g", name, worst)
		}
		t.Logf("%s: %d attention layers, largest difference %.2g", name, len(maps), worst)
	}
}
