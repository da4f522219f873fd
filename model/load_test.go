package model

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/safetensors"
)

const smallConfig = `{"vocab_size": 50, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
 "num_attention_heads": 2, "num_key_value_heads": 1, "attn_layer_period": 2, "attn_layer_offset": 1,
 "expert_layer_period": 2, "expert_layer_offset": 1, "num_experts": 3, "num_experts_per_tok": 2,
 "mamba_d_state": 4, "mamba_d_conv": 3, "mamba_dt_rank": 2, "max_position_embeddings": 64}`

// writeSmall writes a random checkpoint and returns its folder.
func writeSmall(t *testing.T) string {
	t.Helper()
	c, err := ParseConfig([]byte(smallConfig))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteInit(c, dir, "f32", 1, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rewrite replaces model.safetensors in dir with edit(tensors).
func rewrite(t *testing.T, dir string, edit func([]safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	path := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		tt, _ := f.Tensor(n)
		tt.Data = append([]byte(nil), tt.Data...)
		ts = append(ts, tt)
	}
	f.Close()
	if err := safetensors.WriteFile(path, edit(ts), nil); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	const victim = "model.layers.0.mamba.x_proj.weight"
	tests := []struct {
		name string
		edit func([]safetensors.Tensor) []safetensors.Tensor
		want string
	}{
		{"missing tensor", func(ts []safetensors.Tensor) []safetensors.Tensor {
			var out []safetensors.Tensor
			for _, x := range ts {
				if x.Name != victim {
					out = append(out, x)
				}
			}
			return out
		}, victim + ": missing"},
		{"wrong shape", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == victim {
					ts[i].Shape = []int{ts[i].Shape[1], ts[i].Shape[0]}
				}
			}
			return ts
		}, victim + ": shape [32 10]"},
		{"unexpected tensor", func(ts []safetensors.Tensor) []safetensors.Tensor {
			extra := ts[0]
			extra.Name = "model.layers.9.extra.weight"
			return append(ts, extra)
		}, "model.layers.9.extra.weight"},
		{"integer weights", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == victim {
					ts[i].DType = safetensors.I32
				}
			}
			return ts
		}, "not a float type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSmall(t)
			rewrite(t, dir, tt.edit)
			_, err := Load(dir, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("truncated file", func(t *testing.T) {
		dir := writeSmall(t)
		path := filepath.Join(dir, "model.safetensors")
		st, _ := os.Stat(path)
		if err := os.Truncate(path, st.Size()-10); err != nil {
			t.Fatal(err)
		}
		_, err := Load(dir, Options{})
		if err == nil || !strings.Contains(err.Error(), "model.safetensors") {
			t.Fatalf("got %v, want an error naming the file", err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		dir := writeSmall(t)
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"hidden_size": "16"}`), 0o644)
		_, err := Load(dir, Options{})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "hidden_size" || !strings.Contains(err.Error(), filepath.Join(dir, "config.json")) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no weights", func(t *testing.T) {
		dir := writeSmall(t)
		os.Remove(filepath.Join(dir, "model.safetensors"))
		if _, err := Load(dir, Options{}); err == nil {
			t.Fatal("loaded a checkpoint without weights")
		}
	})
}

// TestInitRoundTrip writes a random bf16 checkpoint and checks it loads with
// Hugging Face's initial values where they are fixed.
func TestInitRoundTrip(t *testing.T) {
	c, _ := ParseConfig([]byte(smallConfig))
	dir := t.TempDir()
	if err := WriteInit(c, dir, "bf16", 7, nil); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w := m.Layers[0].Mamba
	N := c.MambaDState
	for i, a := range w.A {
		// A = −exp(log(n+1)) = −(n+1), up to bf16 rounding of log(n+1) (2^-8 relative).
		want := -float32(i%N + 1)
		if d := a - want; d > 0.02*-want || d < 0.02*want {
			t.Fatalf("A[%d] = %v, want about %v", i, a, want)
		}
	}
	for _, d := range w.D {
		if d != 1 {
			t.Fatalf("D = %v, want 1", d)
		}
	}
	row := make([]float32, c.HiddenSize)
	m.Embed.Row(row, 0)
	for _, v := range row {
		if v != 0 {
			t.Fatal("padding row of the embedding is not zero")
		}
	}
	if m.Embed.DType.String() != "bf16" {
		t.Errorf("bf16 weights loaded as %v", m.Embed.DType)
	}
	ws := m.NewWorkspace()
	if err := ws.Forward([]SeqInput{{Tokens: []int{1, 2, 3}}}); err != nil {
		t.Fatal(err)
	}
	if err := ws.Forward([]SeqInput{{Tokens: []int{50}}}); err == nil || !errors.Is(err, ErrTokenRange) {
		t.Errorf("token 50 of a 50-token vocabulary: got %v", err)
	}
}

// TestLoadFiles loads a checkpoint from memory and from its folder: the
// same weights give the same logits, bit for bit; a missing file is named.
func TestLoadFiles(t *testing.T) {
	dir := writeSmall(t)
	files := func(name string) ([]byte, bool) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return b, err == nil
	}
	fromDir, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fromDir.Close()
	fromMem, err := LoadFiles("small", files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fromMem.Close()
	ids := []int{1, 7, 3, 49, 0, 12}
	logits := func(m *Model) []float32 {
		ws := m.NewWorkspace()
		if err := ws.Forward([]SeqInput{{Tokens: ids, Logits: AllLogits}}); err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), ws.Logits(0)...)
	}
	a, b := logits(fromDir), logits(fromMem)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("logit %d: %v from the folder, %v from memory", i, a[i], b[i])
		}
	}
	_, err = LoadFiles("small", func(name string) ([]byte, bool) {
		if name == "model.safetensors" {
			return nil, false
		}
		return files(name)
	}, Options{})
	if err == nil || !strings.Contains(err.Error(), "small has no file model.safetensors") {
		t.Errorf("without model.safetensors: %v", err)
	}
	if _, err := LoadFiles("small", func(string) ([]byte, bool) { return nil, false }, Options{}); err == nil || !strings.Contains(err.Error(), "no config.json") {
		t.Errorf("without config.json: %v", err)
	}
}
