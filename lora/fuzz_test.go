package lora

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

// FuzzLoad feeds arbitrary adapter_config.json and adapter_model.safetensors
// bytes to LoadBytes (Load's parser) for tiny-moe's config: it must return an adapter or an
// error, never panic, and an adapter it returns has only modules the model
// has, factors of the model's shapes, and finite values.
func FuzzLoad(f *testing.F) {
	cfg, err := model.LoadConfig(filepath.Join("..", "testdata", "models", "tiny-moe"))
	if err != nil {
		f.Fatal(err)
	}
	// Small seeds (the fixtures are hundreds of kB): a rank-1 adapter of
	// the routers as Save writes it, and a packed-experts adapter of one
	// layer in PEFT's form.
	ad, err := New(cfg, Config{Rank: 1, Alpha: 2, Targets: []string{"router"}})
	if err != nil {
		f.Fatal(err)
	}
	ad.Init(1)
	c, err := ad.ConfigJSON()
	if err != nil {
		f.Fatal(err)
	}
	var ts []safetensors.Tensor
	for i, m := range ad.Modules {
		for _, x := range []struct {
			name  string
			shape []int
			v     []float32
		}{{m.KeyA(), []int{1, m.In}, ad.A(i)}, {m.KeyB(), []int{m.Out, 1}, ad.B(i)}} {
			data, err := safetensors.EncodeFloat32(safetensors.F32, x.v)
			if err != nil {
				f.Fatal(err)
			}
			ts = append(ts, safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: x.name, DType: safetensors.F32, Shape: x.shape}, Data: data})
		}
	}
	w, err := safetensors.Marshal(ts, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c, w)
	E, I, H := cfg.NumExperts, cfg.IntermediateSize, cfg.HiddenSize
	packed, err := safetensors.Marshal([]safetensors.Tensor{
		{TensorInfo: safetensors.TensorInfo{Name: "base_model.model.model.layers.1.feed_forward.experts.lora_A.weight", DType: safetensors.F32, Shape: []int{E, I}}, Data: make([]byte, 4*E*I)},
		{TensorInfo: safetensors.TensorInfo{Name: "base_model.model.model.layers.1.feed_forward.experts.lora_B.weight", DType: safetensors.F32, Shape: []int{H, E}}, Data: make([]byte, 4*H*E)},
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"peft_type": "LORA", "r": 1, "lora_alpha": 2, "target_modules": [], "target_parameters": ["experts.down_proj"]}`), packed)
	shapes := map[string][]int{}
	for _, s := range cfg.Spec() {
		shapes[s.Name] = s.Shape
	}
	f.Fuzz(func(t *testing.T, config, weights []byte) {
		a, err := LoadBytes("fuzz", config, weights, cfg)
		if err != nil {
			return
		}
		r := a.Config.Rank
		for i, m := range a.Modules {
			sh, ok := shapes[m.Weight()]
			if !ok || sh[0] != m.Out || sh[1] != m.In {
				t.Fatalf("module %s %d×%d: the model has %v", m.Name, m.Out, m.In, sh)
			}
			if len(a.A(i)) != r*m.In || len(a.B(i)) != m.Out*r {
				t.Fatalf("module %s: factors of %d and %d values", m.Name, len(a.A(i)), len(a.B(i)))
			}
		}
		for _, v := range a.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("a non-finite value loaded")
			}
		}
	})
}
