package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/safetensors"
)

// repackAsTransformers5 writes into a new folder the checkpoint in src as
// transformers 5 re-saves it: each MoE layer's experts packed into
// experts.gate_up_proj [E, 2I, H] (gate rows, then up rows, per expert) and
// experts.down_proj [E, H, I], and the layout in config.json as layer_types.
// attn_layer_period and attn_layer_offset are set to a layout that differs
// (period 2, offset 0), so that a loader reading them instead of
// layer_types builds the wrong layers.
func repackAsTransformers5(t *testing.T, src string) string {
	t.Helper()
	cfg, err := LoadConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	get := func(name string) safetensors.Tensor {
		tt, err := set.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	var out []safetensors.Tensor
	packed := map[string]bool{}
	E, I, H := cfg.NumExperts, cfg.IntermediateSize, cfg.HiddenSize
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		if cfg.FFN(i) != MoE {
			continue
		}
		f := fmt.Sprintf("model.layers.%d.feed_forward.", i)
		var gu, dn []byte
		var dt safetensors.DType
		for j := 0; j < E; j++ {
			e := fmt.Sprintf("%sexperts.%d.", f, j)
			for _, n := range []string{"gate_proj.weight", "up_proj.weight"} {
				tt := get(e + n)
				gu, dt = append(gu, tt.Data...), tt.DType
				packed[e+n] = true
			}
			dn = append(dn, get(e+"down_proj.weight").Data...)
			packed[e+"down_proj.weight"] = true
		}
		out = append(out,
			safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: f + PackedGateUp, DType: dt, Shape: []int{E, 2 * I, H}}, Data: gu},
			safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: f + PackedDown, DType: dt, Shape: []int{E, H, I}}, Data: dn})
	}
	if len(packed) == 0 {
		t.Fatalf("%s has no MoE layer to repack", src)
	}
	for _, n := range set.Names() {
		if !packed[n] {
			tt := get(n)
			tt.Data = append([]byte(nil), tt.Data...)
			out = append(out, tt)
		}
	}
	dst := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dst, "model.safetensors"), out, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	data, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	var types []string
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		if cfg.Mixer(i) == Attention {
			types = append(types, "full_attention")
		} else {
			types = append(types, "linear_attention")
		}
	}
	raw["layer_types"] = types
	raw["attn_layer_period"], raw["attn_layer_offset"] = 2, 0
	data, _ = json.Marshal(raw)
	if err := os.WriteFile(filepath.Join(dst, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestPackedExperts loads float32 and bfloat16 fixtures repacked as
// transformers 5 saves them and checks that every logit is bit-identical
// to the checkpoint as published (same weights, same arithmetic), and that
// the layout comes from layer_types.
func TestPackedExperts(t *testing.T) {
	for _, name := range []string{"tiny-moe", "tiny-moe-bf16"} {
		t.Run(name, func(t *testing.T) {
			src := testutil.Fixture(t, filepath.Join("models", name))
			want, err := Load(src, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer want.Close()
			dst := repackAsTransformers5(t, src)
			got, err := Load(dst, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			if !got.PackedExperts || want.PackedExperts {
				t.Fatalf("PackedExperts: repacked %v, published %v", got.PackedExperts, want.PackedExperts)
			}
			c := want.Config
			differs := false
			for i := 0; i < c.NumHiddenLayers; i++ {
				differs = differs || (i%2 == 0) != (c.Mixer(i) == Attention)
			}
			if !differs {
				t.Fatal("period 2, offset 0 gives the fixture's own layout: the test would not show layer_types at work")
			}
			for i := 0; i < c.NumHiddenLayers; i++ {
				if got.Config.Mixer(i) != c.Mixer(i) {
					t.Fatalf("layer %d: mixer %v from layer_types, %v in the published config", i, got.Config.Mixer(i), c.Mixer(i))
				}
			}
			ids := make([]int, 19)
			for i := range ids {
				ids[i] = (i*7919 + 3) % c.VocabSize
			}
			wa, wb := want.NewWorkspace(), got.NewWorkspace()
			if err := wa.Forward([]SeqInput{{Tokens: ids, Logits: AllLogits}}); err != nil {
				t.Fatal(err)
			}
			if err := wb.Forward([]SeqInput{{Tokens: ids, Logits: AllLogits}}); err != nil {
				t.Fatal(err)
			}
			la, lb := wa.Logits(0), wb.Logits(0)
			for i := range la {
				if math.Float32bits(la[i]) != math.Float32bits(lb[i]) {
					t.Fatalf("logit %d: %v repacked, %v published", i, lb[i], la[i])
				}
			}
		})
	}
}

// TestPackedExpertsWrongShape: a packed tensor of the wrong shape is
// refused with its name and both shapes.
func TestPackedExpertsWrongShape(t *testing.T) {
	dst := repackAsTransformers5(t, testutil.Fixture(t, filepath.Join("models", "tiny-moe-bf16")))
	var victim string
	rewrite(t, dst, func(ts []safetensors.Tensor) []safetensors.Tensor {
		for i := range ts {
			if strings.HasSuffix(ts[i].Name, PackedDown) && victim == "" {
				victim = ts[i].Name
				s := ts[i].Shape
				ts[i].Shape = []int{s[0], s[2], s[1]} // [E, I, H]: transposed experts
			}
		}
		return ts
	})
	_, err := Load(dst, Options{})
	if err == nil || !strings.Contains(err.Error(), victim) || !strings.Contains(err.Error(), "the config needs") {
		t.Fatalf("transposed %s: %v", victim, err)
	}
}

func TestLayerTypes(t *testing.T) {
	base := strings.TrimSuffix(smallConfig, "}")
	c, err := ParseConfig([]byte(base + `, "num_hidden_layers": 4, "layer_types": ["full_attention", "linear_attention", "linear_attention", "full_attention"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []MixerKind
	for i := 0; i < 4; i++ {
		got = append(got, c.Mixer(i))
	}
	if fmt.Sprint(got) != fmt.Sprint([]MixerKind{Attention, Mamba, Mamba, Attention}) {
		t.Errorf("layout %v", got)
	}
	for _, tc := range []struct{ types, want string }{
		{`["full_attention"]`, "layer_types / num_hidden_layers: 1 layer types for 4 layers"},
		{`["full_attention", "sliding_attention", "mamba", "mamba"]`, `layer_types[1]: unknown layer type "sliding_attention"`},
		{`"mamba"`, "layer_types: want a list of strings"},
	} {
		_, err := ParseConfig([]byte(base + `, "num_hidden_layers": 4, "layer_types": ` + tc.types + `}`))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("layer_types %s: %v, want %q", tc.types, err, tc.want)
		}
	}
}
