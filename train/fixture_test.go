package train

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/safetensors"
)

var tinyFixtures = []string{"tiny-dense", "tiny-moe", "tiny-moe-long", "tiny-moe-variant", "tiny-moe-bf16"}

// Tolerances against the fixtures, which transformers computed in float64
// from the stored weights (with float32 rounding inside its norms and
// softmaxes). Our pass is float32 throughout:
//
//   - gradients: 1e-3 relative L2 error per tensor is the bar. A
//     float32 backward lands around 1e-6..1e-5 (summation order and float32
//     exponentials), so the bar only catches formula errors, which random
//     O(1) weights turn into O(1) differences.
//   - losses: 1e-5 relative is the bar; float32 logits carry about 1e-6
//     relative error and the cross-entropy is summed in float64.
//   - exactly zero reference gradients (experts no token chose, the padding
//     row of the embedding) must be below 1e-7 absolute; ours are exact
//     zeros there since nothing is ever added.
const (
	gradTol = 1e-3
	lossTol = 1e-5
	zeroTol = 1e-7
)

type fixtureRef struct {
	Loss        float64 `json:"loss"`
	LossWithAux float64 `json:"loss_with_aux"`
	AuxLoss     float64 `json:"aux_loss"`
}

// fixtureRows returns the input_ids rows of a fixture's reference.safetensors.
func fixtureRows(t testing.TB, dir string) [][]int {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tt, err := f.Tensor("input_ids")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tt.Int64()
	if err != nil {
		t.Fatal(err)
	}
	B, T := tt.Shape[0], tt.Shape[1]
	rows := make([][]int, B)
	for b := range rows {
		for _, v := range ids[b*T : (b+1)*T] {
			rows[b] = append(rows[b], int(v))
		}
	}
	return rows
}

func readFixtureRef(t testing.TB, dir string) fixtureRef {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref fixtureRef
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// relL2 returns ‖got − want‖ / ‖want‖ and ‖got‖∞.
func relL2(got []float32, want []float64) (rel, maxAbs float64) {
	var num, den float64
	for i, w := range want {
		g := float64(got[i])
		num += (g - w) * (g - w)
		den += w * w
		maxAbs = max(maxAbs, math.Abs(g))
	}
	if den == 0 {
		return 0, maxAbs
	}
	return math.Sqrt(num / den), maxAbs
}

// checkGrads compares every gradient tensor of p's layout in grad with the
// file of reference gradients, and reports the largest relative error.
func checkGrads(t *testing.T, p *Params, grad []float32, refPath string) float64 {
	t.Helper()
	f, err := safetensors.Open(refPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Len() != len(p.Tensors) {
		t.Errorf("%s has %d tensors, the model %d", refPath, f.Len(), len(p.Tensors))
	}
	worst := 0.0
	for _, tn := range p.Tensors {
		rt, err := f.Tensor(tn.Name)
		if err != nil {
			t.Errorf("reference has no %s: %v", tn.Name, err)
			continue
		}
		want, err := rt.Float64()
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != tn.Size {
			t.Errorf("%s: reference has %d values, ours %d", tn.Name, len(want), tn.Size)
			continue
		}
		got := grad[tn.Offset : tn.Offset+tn.Size]
		allZero := true
		for _, v := range want {
			if v != 0 {
				allZero = false
				break
			}
		}
		rel, maxAbs := relL2(got, want)
		if allZero {
			if maxAbs >= zeroTol {
				t.Errorf("%s: reference gradient is zero, ours has max |g| = %g", tn.Name, maxAbs)
			}
			continue
		}
		// Rows that are exactly zero in the reference (the padding row of
		// the embedding) must be zero in ours too.
		if len(tn.Shape) == 2 {
			cols := tn.Shape[1]
			for r := 0; r < tn.Shape[0]; r++ {
				zero := true
				for _, v := range want[r*cols : (r+1)*cols] {
					if v != 0 {
						zero = false
						break
					}
				}
				if !zero {
					continue
				}
				for _, v := range got[r*cols : (r+1)*cols] {
					if math.Abs(float64(v)) >= zeroTol {
						t.Errorf("%s: row %d is zero in the reference, ours has %g", tn.Name, r, v)
						break
					}
				}
			}
		}
		worst = max(worst, rel)
		if rel > gradTol {
			t.Errorf("%s: relative L2 error %.3g > %g", tn.Name, rel, gradTol)
		}
	}
	return worst
}

func checkLoss(t *testing.T, name string, got, want float64) {
	t.Helper()
	if rel := math.Abs(got-want) / math.Abs(want); rel > lossTol {
		t.Errorf("%s = %.9g, want %.9g (relative error %.2g > %g)", name, got, want, rel, lossTol)
	}
}

func TestFixtureGradients(t *testing.T) {
	for _, name := range tinyFixtures {
		for _, recompute := range []bool{false, true} {
			label := name
			if recompute {
				label += "/recompute"
			}
			t.Run(label, func(t *testing.T) {
				dir := testutil.Fixture(t, "models/"+name)
				p, err := LoadParams(dir)
				if err != nil {
					t.Fatal(err)
				}
				e, err := NewBackprop(p)
				if err != nil {
					t.Fatal(err)
				}
				e.Recompute = recompute
				loss, err := e.Backward(fixtureRows(t, dir), 1)
				if err != nil {
					t.Fatal(err)
				}
				ref := readFixtureRef(t, dir)
				checkLoss(t, "loss", loss.CE, ref.Loss)
				checkLoss(t, "loss_with_aux", loss.Total, ref.LossWithAux)
				worst := checkGrads(t, p, e.Grad, testutil.Fixture(t, "models/"+name+"/reference_grads.safetensors"))
				t.Logf("loss %.7f (ref %.7f), with aux %.7f (ref %.7f), aux %.6g (ref %.6g); worst gradient relative L2 error %.2e",
					loss.CE, ref.Loss, loss.Total, ref.LossWithAux, loss.Aux, ref.AuxLoss, worst)
			})
		}
	}
}
