package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/safetensors"
)

// TestInspectPackedExperts: inspect says when a checkpoint stores its
// experts packed as transformers 5 saves them, and when the layout comes
// from layer_types.
func TestInspectPackedExperts(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"vocab_size": 50, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
 "num_attention_heads": 2, "num_key_value_heads": 1, "layer_types": ["linear_attention", "full_attention"],
 "expert_layer_period": 2, "expert_layer_offset": 1, "num_experts": 3, "num_experts_per_tok": 2,
 "mamba_d_state": 4, "mamba_d_conv": 3, "mamba_dt_rank": 2, "max_position_embeddings": 64}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	packed := safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: "model.layers.1.feed_forward.experts.gate_up_proj", DType: safetensors.F32, Shape: []int{3, 48, 16}}, Data: make([]byte, 3*48*16*4)}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), []safetensors.Tensor{packed}, nil); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := run(t, "inspect", "--model", dir)
	if code != 0 {
		t.Fatal(stderr)
	}
	for _, want := range []string{"experts stored packed, as transformers 5 saves them", "layer layout from layer_types", "    1  attention  moe"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = run(t, "inspect", "--model", dir, "--json")
	if !strings.Contains(out, `"experts_stored":"packed"`) || !strings.Contains(out, `"layout_from":"layer_types"`) {
		t.Errorf("inspect --json: %s", out)
	}
}
