package lora

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

// peftIDs are the token ids of the PEFT fixtures' reference logits
// (tiny-dense's taken modulo its vocabulary).
var (
	peftIDs      = []int{1, 17, 300, 5, 42, 99, 250, 7, 8, 123, 311, 64, 2, 77, 190, 45, 12, 260, 31, 150, 9, 288, 101, 56}
	peftDenseIDs = []int{1, 17, 44, 5, 42, 99, 250, 7, 8, 123, 55, 64, 2, 77, 190, 45, 12, 4, 31, 150, 9, 32, 101, 56}
)

// TestPEFTAdapterLogits loads adapters made by PEFT 0.21 on transformers
// 5.17 (float64 weights, random factors, rank 4, alpha 8; testdata/lora/):
//
//   - peft-tiny-moe-all: every linear layer of tiny-moe PEFT finds but the
//     LM head (Mamba, attention, dense MLP projections, routers), 48 modules;
//   - peft-tiny-dense-all: the same on tiny-dense (no routers), 28 modules;
//   - peft-tiny-moe-experts: q_proj, v_proj and the packed experts through
//     target_parameters (experts.gate_up_proj, experts.down_proj), read as
//     per-expert adapters;
//
// and compares the merged model's logits with PEFT's float64 logits,
// adapted and base, within 1e-4 of the largest logit. Our forward is
// float32 (the base logits agree to about 2e-6 relative; the merged
// weights add one float32 rounding of W + s·B·A), so 1e-4 leaves a margin
// of about 30× while a wrong scale, a transposed factor, a misplaced
// expert block or a module left out moves the logits by O(1) (each adapter
// moves them by about the largest logit).
//
// PEFT's forward on transformers 5.17's Mamba path (CPU, no Mamba kernels)
// leaves the dt_proj adapters out: its logits are those of the other
// modules merged (to 2e-6), and with dt_proj merged too they differ by
// 0.1–0.3 of the largest logit. W + s·B·A for every module is LoRA's
// definition and what PEFT's merge_and_unload writes, so Merge keeps the
// dt_proj adapters; the comparison leaves them out, and the test requires
// that they do change the logits (so that the exclusion is needed, not a
// tolerance in disguise).
func TestPEFTAdapterLogits(t *testing.T) {
	for _, fx := range []struct {
		adapter, model string
		ids            []int
		modules, dt    int
	}{
		{"peft-tiny-moe-all", "tiny-moe", peftIDs, 48, 7},
		{"peft-tiny-dense-all", "tiny-dense", peftDenseIDs, 28, 0},
		{"peft-tiny-moe-experts", "tiny-moe", peftIDs, 2 + 4*4*3, 0},
	} {
		t.Run(fx.adapter, func(t *testing.T) {
			dir := filepath.Join("..", "testdata", "lora", fx.adapter)
			base, err := model.Load(filepath.Join("..", "testdata", "models", fx.model), model.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			ad, err := Load(dir, base.Config)
			if err != nil {
				t.Fatal(err)
			}
			noDt := *ad
			noDt.Modules = nil
			for _, m := range ad.Modules {
				if !strings.HasSuffix(m.Name, ".dt_proj") {
					noDt.Modules = append(noDt.Modules, m)
				}
			}
			dt := len(ad.Modules) - len(noDt.Modules)
			if ad.Config.Rank != 4 || ad.Config.Scale() != 2 || len(ad.Modules) != fx.modules || (fx.dt > 0 && dt != fx.dt) {
				t.Fatalf("adapter: %s, scale %g, %d dt_proj modules", ad.Describe(), ad.Config.Scale(), dt)
			}
			merged := base.ShareWeights()
			if err := Merge(merged, &noDt); err != nil {
				t.Fatal(err)
			}
			all := base.ShareWeights()
			if err := Merge(all, ad); err != nil {
				t.Fatal(err)
			}
			f, err := safetensors.Open(filepath.Join(dir, "reference_logits.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cases := []struct {
				name, ref string
				m         *model.Model
				match     bool
			}{{"adapted", "adapted", merged, true}, {"base", "base", base, true}}
			if dt > 0 {
				cases[0].name = "adapted, dt_proj left out"
				cases = append(cases, struct {
					name, ref string
					m         *model.Model
					match     bool
				}{"adapted, every module", "adapted", all, false})
			}
			for _, c := range cases {
				tt, err := f.Tensor(c.ref)
				if err != nil {
					t.Fatal(err)
				}
				want, err := tt.Float64()
				if err != nil {
					t.Fatal(err)
				}
				ws := c.m.NewWorkspace()
				if err := ws.Forward([]model.SeqInput{{Tokens: fx.ids, Logits: model.AllLogits}}); err != nil {
					t.Fatal(err)
				}
				got := ws.Logits(0)
				if len(got) != len(want) {
					t.Fatalf("%s: %d logits, reference %d", c.name, len(got), len(want))
				}
				var diff, scale float64
				for i, w := range want {
					diff = max(diff, math.Abs(float64(got[i])-w))
					scale = max(scale, math.Abs(w))
				}
				t.Logf("%s: max |ours − PEFT| %.3g, %.2e of the largest logit %.3f", c.name, diff, diff/scale, scale)
				if c.match && diff > 1e-4*scale {
					t.Errorf("%s: max |logit difference| %.3g, largest logit %.3g", c.name, diff, scale)
				}
				if !c.match && diff < 1e-2*scale {
					t.Errorf("%s: the dt_proj adapters change nothing (%.3g): the exclusion above is not needed", c.name, diff)
				}
			}
		})
	}
}

// TestReadConfigRefuses checks that adapter configs this package cannot
// apply exactly are refused with the key named.
func TestReadConfigRefuses(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("..", "testdata", "lora", "peft-tiny-moe-all", ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ from, to, key string }{
		{`"peft_type": "LORA"`, `"peft_type": "IA3"`, "peft_type"},
		{`"use_dora": false`, `"use_dora": true`, "use_dora"},
		{`"bias": "none"`, `"bias": "all"`, "bias"},
		{`"target_parameters": null`, `"target_parameters": ["mamba.A_log"]`, "target_parameters"},
		{`"lora_bias": false`, `"lora_bias": true`, "lora_bias"},
		{`"rank_pattern": {}`, `"rank_pattern": {"q_proj": 8}`, "rank_pattern"},
		{`"fan_in_fan_out": false`, `"fan_in_fan_out": true`, "fan_in_fan_out"},
		{`"r": 4`, `"r": 0`, "r 0"},
		{`"target_modules": [`, `"target_modules": ".*proj", "x": [`, "target_modules"},
	} {
		s := strings.Replace(string(good), c.from, c.to, 1)
		if s == string(good) {
			t.Fatalf("%s: %q not in the fixture's config", c.key, c.from)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadConfig(dir)
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: error %v", c.key, err)
		}
	}
}

// TestSaveLoadRoundTrip saves adapters of every target of tiny-moe with
// random factors and reads them back: the same modules and bits, experts
// written packed as PEFT writes transformers 5's (target_parameters, keys
// under feed_forward.experts and experts.base_layer, no per-expert keys),
// and, for an adapter read from per-expert files (separate A for gate and
// up), per-expert keys again.
func TestSaveLoadRoundTrip(t *testing.T) {
	cfg, err := model.LoadConfig(filepath.Join("..", "testdata", "models", "tiny-moe"))
	if err != nil {
		t.Fatal(err)
	}
	ad, err := New(cfg, Config{Rank: 3, Alpha: 5, Targets: Targets})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ad.Data {
		ad.Data[i] = float32(math.Sin(float64(i)))
	}
	dir := t.TempDir()
	if err := ad.Save(dir); err != nil {
		t.Fatal(err)
	}
	cj, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cj), `"experts.gate_up_proj"`) {
		t.Errorf("adapter_config.json has no target_parameters for the experts:\n%s", cj)
	}
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	names := f.Names()
	f.Close()
	packed := 0
	for _, n := range names {
		if strings.Contains(n, ".experts.0.") {
			t.Errorf("per-expert key %s in a packed adapter", n)
		}
		if strings.HasSuffix(n, "experts.base_layer.lora_A.weight") {
			packed++
		}
	}
	if packed != 4 {
		t.Errorf("%d packed gate_up adapters, want one per MoE layer (4)", packed)
	}
	back, err := Load(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Modules) != len(ad.Modules) || len(back.Data) != len(ad.Data) {
		t.Fatalf("read back %s, saved %s", back.Describe(), ad.Describe())
	}
	for i, m := range ad.Modules {
		if back.Modules[i] != m {
			t.Fatalf("module %d: read back %+v, saved %+v", i, back.Modules[i], m)
		}
	}
	for i, v := range ad.Data {
		if back.Data[i] != v {
			t.Fatalf("value %d: read back %v, saved %v", i, back.Data[i], v)
		}
	}
	// Per-expert A for gate and up (transformers 4's layout, as PEFT
	// makes it there): written one by one.
	single := *ad
	single.Modules = append([]Module(nil), ad.Modules...)
	single.Data = make([]float32, single.layout(func(*Module) bool { return false }))
	for i := range single.Data {
		single.Data[i] = float32(math.Cos(float64(i)))
	}
	dir2 := t.TempDir()
	if err := single.Save(dir2); err != nil {
		t.Fatal(err)
	}
	back2, err := Load(dir2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range single.Data {
		if back2.Data[i] != v {
			t.Fatalf("per-expert adapter, value %d: read back %v, saved %v", i, back2.Data[i], v)
		}
	}
	if cj, _ := os.ReadFile(filepath.Join(dir2, ConfigFile)); strings.Contains(string(cj), "gate_up_proj") {
		t.Errorf("a per-expert adapter was saved with target_parameters")
	}
}

// TestPackedExpertsAsPEFT reads PEFT's packed-experts adapter
// (testdata/lora/peft-tiny-moe-experts) and writes it again: every tensor
// of PEFT's file comes back under the same name and shape with the same
// values (float32 of PEFT's float64), and no other tensor is written, so
// the packed layout Save writes is PEFT's.
func TestPackedExpertsAsPEFT(t *testing.T) {
	cfg, err := model.LoadConfig(filepath.Join("..", "testdata", "models", "tiny-moe"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join("..", "testdata", "lora", "peft-tiny-moe-experts")
	ad, err := Load(src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ad.Save(dir); err != nil {
		t.Fatal(err)
	}
	a, err := safetensors.Open(filepath.Join(src, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Len() != b.Len() {
		t.Errorf("PEFT's file has %d tensors, ours %d", a.Len(), b.Len())
	}
	for _, name := range a.Names() {
		ta, err := a.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := b.Tensor(name)
		if err != nil {
			t.Fatalf("%s: not written (%v)", name, err)
		}
		if !slices.Equal(ta.Shape, tb.Shape) {
			t.Fatalf("%s: shape %v, PEFT's %v", name, tb.Shape, ta.Shape)
		}
		va, _ := ta.Float32()
		vb, _ := tb.Float32()
		for i := range va {
			if va[i] != vb[i] {
				t.Fatalf("%s: value %d is %v, PEFT's %v", name, i, vb[i], va[i])
			}
		}
	}
}
