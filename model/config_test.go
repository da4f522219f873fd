package model

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	if c.VocabSize != 65536 || c.HiddenSize != 4096 || c.NumHiddenLayers != 32 || c.NumKeyValueHeads != 8 ||
		c.MambaDtRank != 256 || c.NumExperts != 16 || c.AttnLayerOffset != 4 || c.MaxPositionEmbeddings != 262144 ||
		!c.MambaConvBias || c.MambaProjBias || *c.PadTokenID != 0 || c.RMSNormEps != 1e-6 {
		t.Errorf("defaults differ from JambaConfig: %+v", c)
	}
	if c.RouterAuxLossCoef != want.RouterAuxLossCoef || c.InnerSize() != 8192 || c.HeadDimension() != 128 {
		t.Errorf("derived values: inner %d head %d", c.InnerSize(), c.HeadDimension())
	}
}

func TestConfigVariants(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		check func(*Config) bool
	}{
		{"dt rank auto", `{"hidden_size": 1000, "num_attention_heads": 8}`, func(c *Config) bool { return c.MambaDtRank == 63 }},
		{"dt rank int", `{"mamba_dt_rank": 12}`, func(c *Config) bool { return c.MambaDtRank == 12 }},
		{"eos int", `{"eos_token_id": 7}`, func(c *Config) bool { return len(c.EOSTokenIDs) == 1 && c.EOSTokenIDs[0] == 7 }},
		{"eos list", `{"eos_token_id": [2, 518]}`, func(c *Config) bool { return c.IsEOS(518) && c.IsEOS(2) && !c.IsEOS(3) }},
		{"pad null", `{"pad_token_id": null}`, func(c *Config) bool { return c.PadTokenID == nil }},
		{"kv heads null", `{"num_key_value_heads": null}`, func(c *Config) bool { return c.NumKeyValueHeads == 32 }},
		{"legacy n_ctx", `{"n_ctx": 1024}`, func(c *Config) bool { return c.MaxPositionEmbeddings == 1024 }},
		{"new spelling wins", `{"n_ctx": 1024, "max_position_embeddings": 2048}`, func(c *Config) bool { return c.MaxPositionEmbeddings == 2048 }},
		{"num_local_experts alias", `{"num_local_experts": 8}`, func(c *Config) bool { return c.NumExperts == 8 }},
		{"torch_dtype", `{"torch_dtype": "bfloat16"}`, func(c *Config) bool { return c.DType == "bfloat16" }},
		{"inner norms off", `{"mamba_inner_layernorms": false}`, func(c *Config) bool { return !c.MambaInnerLayernorms }},
		{"legacy logits key", `{"calc_logits_for_entire_prompt": false}`, func(c *Config) bool { return true }},
		{"head_dim", `{"hidden_size": 100, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 32}`, func(c *Config) bool { return c.HeadDimension() == 32 }},
		{"unknown keys ignored", `{"foo": [1, 2], "auto_map": {}}`, func(c *Config) bool { return true }},
		{"one expert is dense", `{"num_experts": 1, "num_experts_per_tok": 1}`, func(c *Config) bool { return c.FFN(1) == Dense }},
	}
	for _, tt := range tests {
		c, err := ParseConfig([]byte(tt.json))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !tt.check(c) {
			t.Errorf("%s: unexpected config %+v", tt.name, c)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ json, key string }{
		{`[1]`, ""},
		{`not json`, ""},
		{`{"hidden_size": "32"}`, "hidden_size"},
		{`{"hidden_size": 3.5}`, "hidden_size"},
		{`{"num_attention_heads": 0}`, "num_attention_heads"},
		{`{"num_key_value_heads": -1}`, "num_key_value_heads"},
		{`{"attn_layer_period": 0}`, "attn_layer_period"},
		{`{"expert_layer_period": 0}`, "expert_layer_period"},
		{`{"num_experts": 0}`, "num_experts"},
		{`{"mamba_d_state": 0}`, "mamba_d_state"},
		{`{"mamba_d_conv": -4}`, "mamba_d_conv"},
		{`{"hidden_size": 100, "num_attention_heads": 3}`, "hidden_size / num_attention_heads"},
		{`{"num_attention_heads": 32, "num_key_value_heads": 5}`, "num_attention_heads / num_key_value_heads"},
		{`{"attn_layer_offset": 8}`, "attn_layer_offset / attn_layer_period"},
		{`{"expert_layer_offset": 2}`, "expert_layer_offset / expert_layer_period"},
		{`{"num_experts_per_tok": 17}`, "num_experts_per_tok / num_experts"},
		{`{"mamba_dt_rank": "big"}`, "mamba_dt_rank"},
		{`{"eos_token_id": [2, "x"]}`, "eos_token_id"},
		{`{"eos_token_id": 70000}`, "bos/eos/pad_token_id"},
		{`{"num_hidden_layers": 1000000000}`, "num_hidden_layers"},
		{`{"vocab_size": 1099511627776}`, "vocab_size"},
		{`{"hidden_act": "tanh"}`, "hidden_act"},
		{`{"rms_norm_eps": 0}`, "rms_norm_eps"},
		{`{"use_cache": "yes"}`, "use_cache"},
		{`{"num_hidden_layers": 64, "num_experts": 1024, "expert_layer_period": 1, "expert_layer_offset": 0, "hidden_size": 65536, "intermediate_size": 1000000}`, ""},
		{`{"num_hidden_layers": 4096, "num_experts": 4096}`, "num_hidden_layers / num_experts"},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(tt.json))
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a ConfigError", tt.json, err)
			continue
		}
		if ce.Key != tt.key {
			t.Errorf("%s: error names key %q, want %q (%v)", tt.json, ce.Key, tt.key, err)
		}
		if !strings.Contains(err.Error(), "config.json") {
			t.Errorf("%s: error does not name the file: %v", tt.json, err)
		}
	}
}

// TestLayout checks the layer layout rule on Jamba-v0.1's shape.
func TestLayout(t *testing.T) {
	c := DefaultConfig()
	var got string
	for i := 0; i < 8; i++ {
		got += c.Mixer(i).String()[:1] + c.FFN(i).String()[:2] + " "
	}
	const want = "mml mmo mml mmo aml mmo mml mmo "
	if got != want {
		t.Errorf("layout %q, want %q", got, want)
	}
	total, active := c.ParamCount()
	// Jamba-v0.1: 51.6B total, 11.8B active (the paper's 52B / 12B).
	if total/1e8 != 515 || active/1e8 != 118 {
		t.Errorf("params %d total / %d active, want 51.5xB / 11.8xB", total, active)
	}
	if n := len(c.Spec()); n != 1251 {
		t.Errorf("Jamba-v0.1 has 1251 tensors, spec lists %d", n)
	}
}
