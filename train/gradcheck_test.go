package train

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/model"
)

// tinyConfig is a hybrid config small enough for finite differences over
// every parameter: 3 layers (attention at layer 1, MoE at layer 1), H = 8.
func tinyConfig(t testing.TB, mod func(c *model.Config)) *model.Config {
	t.Helper()
	c := model.DefaultConfig()
	c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = 24, 8, 12, 3
	c.NumAttentionHeads, c.NumKeyValueHeads = 2, 1
	c.NumExperts, c.NumExpertsPerTok = 3, 2
	c.AttnLayerPeriod, c.AttnLayerOffset = 2, 1
	c.ExpertLayerPeriod, c.ExpertLayerOffset = 2, 1
	c.MambaDState, c.MambaDConv, c.MambaExpand, c.MambaDtRank = 4, 3, 2, 2
	// A large coefficient so that the aux loss's gradient is not lost
	// under the cross-entropy's in the comparison.
	c.RouterAuxLossCoef = 0.05
	c.MaxPositionEmbeddings = 1024
	if mod != nil {
		mod(c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// randomParams fills p with O(1) random values in the spirit of the
// fixtures: linear weights N(0, 1/in), norm weights near 1, A_log spread
// around log(1..N), D near 1, dt biases giving Δ in [0.001, 0.1].
func randomParams(cfg *model.Config, seed uint64) *Params {
	p := NewParams(cfg)
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, t := range p.Tensors {
		v := p.Data[t.Offset : t.Offset+t.Size]
		name := t.Name
		for i := range v {
			nv := rng.NormFloat64()
			var x float64
			switch {
			case strings.HasSuffix(name, "layernorm.weight"):
				x = 1 + 0.2*nv
			case strings.HasSuffix(name, "A_log"):
				x = math.Log(float64(i%t.Shape[1]+1)) + 0.2*nv
			case strings.HasSuffix(name, "mamba.D"):
				x = 1 + 0.3*nv
			case strings.HasSuffix(name, "dt_proj.bias"):
				dt := math.Exp(math.Log(0.001) + rng.Float64()*(math.Log(0.1)-math.Log(0.001)))
				x = math.Log(math.Expm1(dt))
			case strings.HasSuffix(name, ".bias"):
				x = 0.1 * nv
			case strings.HasSuffix(name, "conv1d.weight"):
				x = 0.5 * nv
			case name == "model.embed_tokens.weight":
				x = nv
			default:
				x = nv / math.Sqrt(float64(t.Shape[1]))
			}
			v[i] = float32(x)
		}
	}
	return p
}

func randomRows(seed uint64, V int, lens ...int) [][]int {
	rng := rand.New(rand.NewPCG(seed, 11))
	rows := make([][]int, len(lens))
	for i, n := range lens {
		for range n {
			rows[i] = append(rows[i], rng.IntN(V))
		}
	}
	return rows
}

// checkTensorGrad compares a tensor's gradient with its finite
// differences: a relative L2 error above 1e-3 is an error (the bar of
// TestFiniteDifferences, see there), and where the differences are all
// zero ours must stay below 1e-6. It returns the relative error (0 for a
// zero tensor).
func checkTensorGrad(t *testing.T, name string, got []float32, want []float64) float64 {
	t.Helper()
	rel, maxAbs := relL2(got, want)
	var norm float64
	for _, w := range want {
		norm = max(norm, math.Abs(w))
	}
	if norm < 1e-9 {
		if maxAbs > 1e-6 {
			t.Errorf("%s: finite differences give zero, ours has max |g| = %g", name, maxAbs)
		}
		return 0
	}
	if rel > 1e-3 {
		t.Errorf("%s: relative L2 error %.3g against finite differences", name, rel)
	}
	return rel
}

type gradCase struct {
	name string
	mod  func(c *model.Config)
	lens []int
}

// gradCases are layouts and options the fixtures do not show.
var gradCases = []gradCase{
	{"hybrid", nil, []int{7, 7}},
	{"all-attention", func(c *model.Config) {
		c.AttnLayerPeriod, c.AttnLayerOffset = 1, 0
		c.ExpertLayerPeriod, c.ExpertLayerOffset = 1, 0
		c.NumExperts, c.NumExpertsPerTok = 4, 1
	}, []int{6, 9}},
	{"pure-mamba-long-ragged", func(c *model.Config) {
		c.AttnLayerPeriod, c.AttnLayerOffset = 4, 3 // layers 0..2: no attention
		c.NumHiddenLayers = 2
	}, []int{37, 20}},
	{"attention-at-0-gqa-5-experts-top3", func(c *model.Config) {
		c.AttnLayerPeriod, c.AttnLayerOffset = 3, 0
		c.NumAttentionHeads, c.NumKeyValueHeads = 4, 2
		c.NumExperts, c.NumExpertsPerTok = 5, 3
		c.ExpertLayerPeriod, c.ExpertLayerOffset = 3, 0
	}, []int{8, 5, 6}},
	{"no-inner-norms-tied-proj-bias-gelu", func(c *model.Config) {
		c.MambaInnerLayernorms = false
		c.MambaConvBias = false
		c.MambaProjBias = true
		c.TieWordEmbeddings = true
		c.HiddenAct = "gelu"
	}, []int{7, 6}},
	{"dense-tanh-gelu-head-dim-padding", func(c *model.Config) {
		c.NumExperts, c.NumExpertsPerTok = 1, 1
		c.HiddenAct = "gelu_pytorch_tanh"
		c.HeadDim = 3
		c.TieWordEmbeddings = true
	}, []int{6, 6}},
	{"top-k-equals-experts", func(c *model.Config) {
		c.NumExperts, c.NumExpertsPerTok = 2, 2
		c.ExpertLayerPeriod, c.ExpertLayerOffset = 1, 0
		c.MambaExpand = 3
	}, []int{5, 7}},
}

// TestReferenceMatchesFixtures checks the float64 reference loss itself
// against the fixtures' losses (transformers, float64). The fixtures carry
// float32 rounding from transformers' norms and softmaxes (about 1e-7
// relative), so 1e-6 relative is ample.
func TestReferenceMatchesFixtures(t *testing.T) {
	for _, name := range []string{"tiny-dense", "tiny-moe-variant"} {
		t.Run(name, func(t *testing.T) {
			dir := testutil.Fixture(t, filepath.Join("models", name))
			p, err := LoadParams(dir)
			if err != nil {
				t.Fatal(err)
			}
			theta := make([]float64, len(p.Data))
			for i, v := range p.Data {
				theta[i] = float64(v)
			}
			ce, aux := refLoss(t, p, theta, fixtureRows(t, dir), nil)
			ref := readFixtureRef(t, dir)
			if rel := math.Abs(ce-ref.Loss) / ref.Loss; rel > 1e-6 {
				t.Errorf("reference CE %.9g, fixture %.9g", ce, ref.Loss)
			}
			if rel := math.Abs(aux-ref.AuxLoss) / max(ref.AuxLoss, 1e-300); ref.AuxLoss != 0 && rel > 1e-6 {
				t.Errorf("reference aux %.9g, fixture %.9g", aux, ref.AuxLoss)
			}
		})
	}
}

// TestFiniteDifferences compares the engine's float32 gradient with float64
// central differences of the reference loss (over every entry of small
// tensors and a random sample of the others), for
// layouts the fixtures do not cover. The central difference with step 1e-5
// has truncation error O(1e-10·f”') and rounding error about
// 1e-16·|L|/1e-5 ≈ 1e-11, so it is exact to far below the float32 gradient's
// own rounding (about 1e-6 relative); the per-tensor bar of 1e-3 relative L2
// is the fixtures' and catches any formula error. MoE top-k choices are
// piecewise constant; a step of 1e-5 does not cross a choice unless two
// probabilities are that close, which these seeds avoid.
func TestFiniteDifferences(t *testing.T) {
	if testing.Short() {
		t.Skip("finite differences over every parameter")
	}
	for ci, tc := range gradCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(t, tc.mod)
			p := randomParams(cfg, uint64(100+ci))
			rows := randomRows(uint64(200+ci), cfg.VocabSize, tc.lens...)
			if tc.name == "dense-tanh-gelu-head-dim-padding" {
				rows[0][2], rows[1][0] = 0, 0 // the padding id: no lookup gradient
			}
			e, err := NewBackprop(p)
			if err != nil {
				t.Fatal(err)
			}
			loss, err := e.Backward(rows, 1)
			if err != nil {
				t.Fatal(err)
			}
			theta := make([]float64, len(p.Data))
			for i, v := range p.Data {
				theta[i] = float64(v)
			}
			pad := *cfg.PadTokenID
			padRow := append([]float64(nil), theta[pad*cfg.HiddenSize:(pad+1)*cfg.HiddenSize]...)
			total := func() float64 {
				ce, aux := refLoss(t, p, theta, rows, padRow)
				return ce + cfg.RouterAuxLossCoef*aux
			}
			want := total()
			if rel := math.Abs(loss.Total-want) / want; rel > 1e-5 {
				t.Errorf("loss %.9g, float64 reference %.9g", loss.Total, want)
			}
			// Up to fdSamples entries per tensor (all of small ones), the
			// padding row of the embedding always.
			const h, fdSamples = 1e-5, 40
			rng := rand.New(rand.NewPCG(uint64(ci), 3))
			var idx []int
			for _, tn := range p.Tensors {
				if tn.Size <= fdSamples {
					for i := range tn.Size {
						idx = append(idx, tn.Offset+i)
					}
					continue
				}
				for _, i := range rng.Perm(tn.Size)[:fdSamples] {
					idx = append(idx, tn.Offset+i)
				}
				if tn.Name == "model.embed_tokens.weight" {
					for i := range cfg.HiddenSize {
						idx = append(idx, tn.Offset+pad*cfg.HiddenSize+i)
					}
				}
			}
			fd := make([]float64, len(theta))
			got := make([]float32, len(theta))
			for _, i := range idx {
				got[i] = e.Grad[i]
				v := theta[i]
				theta[i] = v + h
				lp := total()
				theta[i] = v - h
				lm := total()
				theta[i] = v
				fd[i] = (lp - lm) / (2 * h)
			}
			worst := 0.0
			for _, tn := range p.Tensors {
				got, want := got[tn.Offset:tn.Offset+tn.Size], fd[tn.Offset:tn.Offset+tn.Size]
				worst = max(worst, checkTensorGrad(t, tn.Name, got, want))
			}
			t.Logf("%d of %d parameters, loss %.6f, worst relative L2 error %.2e", len(idx), len(theta), loss.Total, worst)
		})
	}
}
