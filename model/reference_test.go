package model

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/ref"
	"github.com/jamba-go/jamba/safetensors"
)

// refForward runs the float64 reference (internal/ref) over ids with the
// config of m and the weights of the checkpoint in dir, and returns the
// logits [T][V].
func refForward(t *testing.T, m *Model, dir string, ids []int) [][]float64 {
	t.Helper()
	c, err := ref.ConfigOf(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	weights := map[string][]float64{}
	for _, name := range set.Names() {
		tn, err := set.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if weights[name], err = tn.Float64(); err != nil {
			t.Fatal(err)
		}
	}
	return ref.Forward(c, func(name string) []float64 { return weights[name] }, ids)
}

// layoutCases are configurations the fixtures do not show, as config.json
// overrides of a small base.
var layoutCases = []struct{ name, json string }{
	{"attention at layer 0", `"attn_layer_period": 3, "attn_layer_offset": 0`},
	{"all attention", `"attn_layer_period": 1, "attn_layer_offset": 0`},
	{"pure mamba", `"attn_layer_period": 9, "attn_layer_offset": 8`},
	{"all moe, 5 experts top-3", `"expert_layer_period": 1, "expert_layer_offset": 0, "num_experts": 5, "num_experts_per_tok": 3`},
	{"one expert is dense", `"num_experts": 1, "num_experts_per_tok": 1`},
	{"odd heads, MHA", `"hidden_size": 24, "num_attention_heads": 3, "num_key_value_heads": 3, "attn_layer_offset": 1`},
	{"head_dim override", `"num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 5, "attn_layer_offset": 1`},
	{"gelu, no inner norms, biases, tied", `"hidden_act": "gelu", "mamba_inner_layernorms": false, "mamba_proj_bias": true, "mamba_conv_bias": false, "tie_word_embeddings": true`},
	{"odd state and conv", `"mamba_d_state": 5, "mamba_d_conv": 2, "mamba_expand": 3, "mamba_dt_rank": 3`},
}

const layoutBase = `"vocab_size": 61, "hidden_size": 16, "intermediate_size": 20, "num_hidden_layers": 4,
 "num_attention_heads": 4, "num_key_value_heads": 2, "attn_layer_period": 2, "attn_layer_offset": 1,
 "expert_layer_period": 2, "expert_layer_offset": 1, "num_experts": 4, "num_experts_per_tok": 2,
 "mamba_d_state": 8, "mamba_d_conv": 4, "mamba_dt_rank": 4, "max_position_embeddings": 4096,
 "initializer_range": 0.3`

// randomModel writes a random checkpoint for the config and loads it,
// returning its folder too. initializer_range 0.3 gives O(1) activations,
// so a wrong formula shows.
func randomModel(t *testing.T, cfgJSON string, seed uint64) (*Model, string) {
	t.Helper()
	c, err := ParseConfig([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteInit(c, dir, "f32", seed, nil); err != nil {
		t.Fatal(err)
	}
	// Give biases, norms, dt bias and A_log random values too, so that
	// every parameter matters.
	rng := rand.New(rand.NewPCG(seed, 99))
	ranges := []struct {
		suffix string
		lo, hi float32
	}{
		{"layernorm.weight", 0.5, 1.5}, // input, pre-FFN, final, dt, B and C norms
		{"dt_proj.bias", -4, -1},
		{".bias", -0.5, 0.5}, // conv1d, in_proj, out_proj
		{"mamba.D", 0.5, 1.5},
		{"A_log", 0, 2.7},
	}
	rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
		for i, tn := range ts {
			for _, r := range ranges {
				if !strings.HasSuffix(tn.Name, r.suffix) {
					continue
				}
				v, err := tn.Float32()
				if err != nil {
					t.Fatal(err)
				}
				for j := range v {
					v[j] = r.lo + (r.hi-r.lo)*rng.Float32()
				}
				if ts[i].Data, err = safetensors.EncodeFloat32(tn.DType, v); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		return ts
	})
	m, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, dir
}

// TestLayoutsAgainstReference runs layouts the fixtures lack through the
// engine (one pass, then chunked) and the float64 reference.
func TestLayoutsAgainstReference(t *testing.T) {
	for i, tc := range layoutCases {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := randomModel(t, "{"+layoutBase+", "+tc.json+"}", uint64(i+1))
			rng := rand.New(rand.NewPCG(uint64(i), 5))
			ids := make([]int, 23)
			for j := range ids {
				ids[j] = rng.IntN(m.Config.VocabSize)
			}
			want := refForward(t, m, dir, ids)
			flat := make([]float64, 0, len(ids)*m.Config.VocabSize)
			for _, r := range want {
				flat = append(flat, r...)
			}
			ws := m.NewWorkspace()
			if err := ws.Forward([]SeqInput{{Tokens: ids, Logits: AllLogits}}); err != nil {
				t.Fatal(err)
			}
			// float32 vs float64 on O(1) activations: ~1e-6; 1e-4 is the spec's bar.
			if e := relErr(ws.Logits(0), flat); e > refTol {
				t.Errorf("one pass: relative error %.3g", e)
			}
			st := m.NewCache(0)
			var got []float32
			for _, n := range []int{5, 1, 1, 9, 7} {
				pos := st.Len
				if err := ws.Forward([]SeqInput{{Tokens: ids[pos : pos+n], Cache: st, Logits: AllLogits}}); err != nil {
					t.Fatal(err)
				}
				got = append(got, ws.Logits(0)...)
			}
			if e := relErr(got, flat); e > refTol {
				t.Errorf("chunked: relative error %.3g", e)
			}
		})
	}
}

// TestLongSequence runs 600 tokens through tiny-moe in chunks of 100 and
// compares every position with the float64 reference.
func TestLongSequence(t *testing.T) {
	if testing.Short() {
		t.Skip("float64 reference over 600 tokens")
	}
	m, dir := loadFixture(t, "tiny-moe")
	rng := rand.New(rand.NewPCG(42, 0))
	ids := make([]int, 600)
	for i := range ids {
		ids[i] = rng.IntN(m.Config.VocabSize)
	}
	want := refForward(t, m, dir, ids)
	ws := m.NewWorkspace()
	st := m.NewCache(0)
	V := m.Config.VocabSize
	for pos := 0; pos < len(ids); pos += 100 {
		if err := ws.Forward([]SeqInput{{Tokens: ids[pos : pos+100], Cache: st, Logits: AllLogits}}); err != nil {
			t.Fatal(err)
		}
		lg := ws.Logits(0)
		for j := 0; j < 100; j++ {
			if e := relErr(lg[j*V:(j+1)*V], want[pos+j]); e > refTol {
				t.Fatalf("position %d: relative error %.3g", pos+j, e)
			}
		}
	}
}

// TestReferenceMatchesFixture guards the reference itself: on tiny-moe it
// must reproduce Hugging Face's logits.
func TestReferenceMatchesFixture(t *testing.T) {
	m, dir := loadFixture(t, "tiny-moe-variant")
	refs := readRefs(t, filepath.Join(dir, "reference.safetensors"))
	T := refs["input_ids"].shape[1]
	ids := ints(refs["input_ids"].data[:T])
	got := refForward(t, m, dir, ids)
	V := m.Config.VocabSize
	var diff, mag float64
	for tt := 0; tt < T; tt++ {
		for v := 0; v < V; v++ {
			w := refs["logits"].data[tt*V+v]
			diff = math.Max(diff, math.Abs(got[tt][v]-w))
			mag = math.Max(mag, math.Abs(w))
		}
	}
	// Both float64; HF rounds norms and softmaxes through float32 (~1e-7).
	if diff/mag > 1e-5 {
		t.Errorf("reference vs HF: relative error %.3g", diff/mag)
	}
}
