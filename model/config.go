package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"

	"github.com/jamba-go/jamba/internal/safefile"
	"github.com/jamba-go/jamba/kernels"
)

// MixerKind is the sequence mixer of a decoder layer.
type MixerKind uint8

const (
	Mamba     MixerKind = iota // selective state-space mixer
	Attention                  // causal softmax attention without positional encoding
)

func (k MixerKind) String() string {
	if k == Attention {
		return "attention"
	}
	return "mamba"
}

// FFNKind is the feed-forward block of a decoder layer.
type FFNKind uint8

const (
	Dense FFNKind = iota // SwiGLU MLP
	MoE                  // top-k mixture of SwiGLU experts
)

func (k FFNKind) String() string {
	if k == MoE {
		return "moe"
	}
	return "mlp"
}

// Config is a JambaConfig as stored in a Hugging Face config.json. Every field
// has the default of transformers' JambaConfig; Parse fills missing keys with
// it and accepts the legacy spellings of the original Jamba-v0.1 release.
type Config struct {
	VocabSize             int     `json:"vocab_size"`
	TieWordEmbeddings     bool    `json:"tie_word_embeddings"`
	HiddenSize            int     `json:"hidden_size"`
	IntermediateSize      int     `json:"intermediate_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	NumKeyValueHeads      int     `json:"num_key_value_heads"`
	HeadDim               int     `json:"head_dim,omitempty"` // 0: hidden_size / num_attention_heads
	HiddenAct             string  `json:"hidden_act"`
	InitializerRange      float64 `json:"initializer_range"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	UseCache              bool    `json:"use_cache"`
	OutputRouterLogits    bool    `json:"output_router_logits"`
	RouterAuxLossCoef     float64 `json:"router_aux_loss_coef"`
	PadTokenID            *int    `json:"pad_token_id"` // nil: no padding token
	BOSTokenID            *int    `json:"bos_token_id"`
	EOSTokenIDs           []int   `json:"-"` // eos_token_id: an int or a list
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	AttentionDropout      float64 `json:"attention_dropout"`
	NumExpertsPerTok      int     `json:"num_experts_per_tok"`
	NumExperts            int     `json:"num_experts"`
	ExpertLayerPeriod     int     `json:"expert_layer_period"`
	ExpertLayerOffset     int     `json:"expert_layer_offset"`
	AttnLayerPeriod       int     `json:"attn_layer_period"`
	AttnLayerOffset       int     `json:"attn_layer_offset"`
	UseMambaKernels       bool    `json:"use_mamba_kernels"`
	MambaDState           int     `json:"mamba_d_state"`
	MambaDConv            int     `json:"mamba_d_conv"`
	MambaExpand           int     `json:"mamba_expand"`
	MambaDtRank           int     `json:"mamba_dt_rank"` // "auto" resolves to ceil(hidden_size/16)
	MambaConvBias         bool    `json:"mamba_conv_bias"`
	MambaProjBias         bool    `json:"mamba_proj_bias"`
	MambaInnerLayernorms  bool    `json:"-"` // legacy key; the dt/B/C RMSNorms exist (true for every Jamba)
	UseMambapy            bool    `json:"use_mambapy"`
	UseAssociativeScan    bool    `json:"use_associative_scan"`
	DType                 string  `json:"dtype,omitempty"` // "dtype" or legacy "torch_dtype"
	// LayerTypes is the mixer of each layer as transformers 5 may save it
	// ("full_attention" or "linear_attention", also "attention" or
	// "mamba"); when present it decides the layout, else the attention
	// period and offset do.
	LayerTypes []string `json:"layer_types,omitempty"`
}

// DefaultConfig returns JambaConfig's defaults (the Jamba-v0.1 shape).
func DefaultConfig() *Config {
	pad, bos := 0, 1
	return &Config{
		VocabSize: 65536, HiddenSize: 4096, IntermediateSize: 14336, NumHiddenLayers: 32,
		NumAttentionHeads: 32, NumKeyValueHeads: 8, HiddenAct: "silu", InitializerRange: 0.02,
		RMSNormEps: 1e-6, UseCache: true, RouterAuxLossCoef: 0.001,
		PadTokenID: &pad, BOSTokenID: &bos, EOSTokenIDs: []int{2},
		MaxPositionEmbeddings: 262144, NumExpertsPerTok: 2, NumExperts: 16,
		ExpertLayerPeriod: 2, ExpertLayerOffset: 1, AttnLayerPeriod: 8, AttnLayerOffset: 4,
		UseMambaKernels: true, MambaDState: 16, MambaDConv: 4, MambaExpand: 2, MambaDtRank: 256,
		MambaConvBias: true, MambaInnerLayernorms: true, UseAssociativeScan: true,
	}
}

// ConfigError reports a bad config.json value, naming the file and the key.
type ConfigError struct {
	File string // path of config.json, or "" when parsed from memory
	Key  string // the offending key, or two keys joined by " / "
	Msg  string
}

func (e *ConfigError) Error() string {
	f := e.File
	if f == "" {
		f = "config.json"
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", f, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", f, e.Key, e.Msg)
}

// LoadConfig reads and validates dir/config.json.
func LoadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, "config.json")
	data, err := safefile.ReadFile(path, safefile.MaxConfig)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		if ce, ok := err.(*ConfigError); ok {
			ce.File = path
		}
		return nil, err
	}
	return c, nil
}

// ParseConfig parses a config.json document, applies the defaults of missing
// keys, resolves "auto" values and validates the result.
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, &ConfigError{Msg: "not a JSON object: " + err.Error()}
	}
	if raw == nil {
		return nil, &ConfigError{Msg: "not a JSON object"}
	}
	c := DefaultConfig()
	p := &configParser{raw: raw}
	p.integer("vocab_size", &c.VocabSize)
	p.boolean("tie_word_embeddings", &c.TieWordEmbeddings)
	p.integer("hidden_size", &c.HiddenSize)
	p.integer("intermediate_size", &c.IntermediateSize)
	p.integer("num_hidden_layers", &c.NumHiddenLayers)
	p.integer("num_attention_heads", &c.NumAttentionHeads)
	if v, ok := raw["num_key_value_heads"]; ok && isNull(v) {
		c.NumKeyValueHeads = c.NumAttentionHeads // null means multi-head attention
	} else {
		p.integer("num_key_value_heads", &c.NumKeyValueHeads)
	}
	p.integer("head_dim", &c.HeadDim)
	p.str("hidden_act", &c.HiddenAct)
	p.number("initializer_range", &c.InitializerRange)
	p.number("rms_norm_eps", &c.RMSNormEps)
	p.boolean("use_cache", &c.UseCache)
	p.boolean("output_router_logits", &c.OutputRouterLogits)
	p.number("router_aux_loss_coef", &c.RouterAuxLossCoef)
	p.optInt("pad_token_id", &c.PadTokenID)
	p.optInt("bos_token_id", &c.BOSTokenID)
	p.intOrList("eos_token_id", &c.EOSTokenIDs)
	p.integer("n_ctx", &c.MaxPositionEmbeddings) // legacy spelling; the new one wins
	p.integer("max_position_embeddings", &c.MaxPositionEmbeddings)
	p.number("attention_dropout", &c.AttentionDropout)
	p.integer("num_experts_per_tok", &c.NumExpertsPerTok)
	p.integer("num_local_experts", &c.NumExperts) // attribute-map alias
	p.integer("num_experts", &c.NumExperts)
	p.integer("expert_layer_period", &c.ExpertLayerPeriod)
	p.integer("expert_layer_offset", &c.ExpertLayerOffset)
	p.integer("attn_layer_period", &c.AttnLayerPeriod)
	p.integer("attn_layer_offset", &c.AttnLayerOffset)
	p.boolean("use_mamba_kernels", &c.UseMambaKernels)
	p.integer("mamba_d_state", &c.MambaDState)
	p.integer("mamba_d_conv", &c.MambaDConv)
	p.integer("mamba_expand", &c.MambaExpand)
	c.MambaDtRank = -1 // "auto"
	p.dtRank(&c.MambaDtRank)
	p.boolean("mamba_conv_bias", &c.MambaConvBias)
	p.boolean("mamba_proj_bias", &c.MambaProjBias)
	p.boolean("mamba_inner_layernorms", &c.MambaInnerLayernorms)
	p.boolean("use_mambapy", &c.UseMambapy)
	p.boolean("use_associative_scan", &c.UseAssociativeScan)
	p.str("torch_dtype", &c.DType)
	p.str("dtype", &c.DType)
	p.strList("layer_types", &c.LayerTypes)
	var legacyLogits bool
	p.boolean("calc_logits_for_entire_prompt", &legacyLogits) // legacy; inert
	if p.err != nil {
		return nil, p.err
	}
	if c.MambaDtRank == -1 && c.HiddenSize > 0 {
		c.MambaDtRank = (c.HiddenSize + 15) / 16
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Limits on sizes, so that absurd configs fail before any arithmetic overflows.
const (
	maxDim    = 1 << 20 // hidden, intermediate, heads, state sizes
	maxLayers = 1 << 12
	maxVocab  = 1 << 24
	maxParams = 1e15
)

// Validate checks every field that the model's arithmetic depends on.
func (c *Config) Validate() error {
	pos := []struct {
		key string
		v   int
		max int
	}{
		{"vocab_size", c.VocabSize, maxVocab},
		{"hidden_size", c.HiddenSize, maxDim},
		{"intermediate_size", c.IntermediateSize, maxDim},
		{"num_hidden_layers", c.NumHiddenLayers, maxLayers},
		{"num_attention_heads", c.NumAttentionHeads, maxDim},
		{"num_key_value_heads", c.NumKeyValueHeads, maxDim},
		{"num_experts", c.NumExperts, 1 << 12},
		{"num_experts_per_tok", c.NumExpertsPerTok, 1 << 12},
		{"expert_layer_period", c.ExpertLayerPeriod, maxLayers},
		{"attn_layer_period", c.AttnLayerPeriod, maxLayers},
		{"mamba_d_state", c.MambaDState, 1 << 12},
		{"mamba_d_conv", c.MambaDConv, 1 << 10},
		{"mamba_expand", c.MambaExpand, 1 << 8},
		{"mamba_dt_rank", c.MambaDtRank, maxDim},
	}
	for _, f := range pos {
		if f.v <= 0 {
			return &ConfigError{Key: f.key, Msg: fmt.Sprintf("must be positive, got %d", f.v)}
		}
		if f.v > f.max {
			return &ConfigError{Key: f.key, Msg: fmt.Sprintf("%d exceeds the supported maximum %d", f.v, f.max)}
		}
	}
	if c.HeadDim < 0 || c.HeadDim > maxDim {
		return &ConfigError{Key: "head_dim", Msg: fmt.Sprintf("out of range: %d", c.HeadDim)}
	}
	if c.HeadDim == 0 && c.HiddenSize%c.NumAttentionHeads != 0 {
		return &ConfigError{Key: "hidden_size / num_attention_heads", Msg: fmt.Sprintf("%d is not divisible by %d (set head_dim to override)", c.HiddenSize, c.NumAttentionHeads)}
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return &ConfigError{Key: "num_attention_heads / num_key_value_heads", Msg: fmt.Sprintf("%d is not divisible by %d", c.NumAttentionHeads, c.NumKeyValueHeads)}
	}
	if c.AttnLayerOffset < 0 || c.AttnLayerOffset >= c.AttnLayerPeriod {
		return &ConfigError{Key: "attn_layer_offset / attn_layer_period", Msg: fmt.Sprintf("offset %d must be in [0, %d)", c.AttnLayerOffset, c.AttnLayerPeriod)}
	}
	if c.LayerTypes != nil {
		if len(c.LayerTypes) != c.NumHiddenLayers {
			return &ConfigError{Key: "layer_types / num_hidden_layers", Msg: fmt.Sprintf("%d layer types for %d layers", len(c.LayerTypes), c.NumHiddenLayers)}
		}
		for i, t := range c.LayerTypes {
			if _, ok := layerTypes[t]; !ok {
				return &ConfigError{Key: fmt.Sprintf("layer_types[%d]", i), Msg: fmt.Sprintf("unknown layer type %q (want \"full_attention\" or \"linear_attention\")", t)}
			}
		}
	}
	if c.ExpertLayerOffset < 0 || c.ExpertLayerOffset >= c.ExpertLayerPeriod {
		return &ConfigError{Key: "expert_layer_offset / expert_layer_period", Msg: fmt.Sprintf("offset %d must be in [0, %d)", c.ExpertLayerOffset, c.ExpertLayerPeriod)}
	}
	if c.NumExpertsPerTok > c.NumExperts {
		return &ConfigError{Key: "num_experts_per_tok / num_experts", Msg: fmt.Sprintf("top-k %d exceeds %d experts", c.NumExpertsPerTok, c.NumExperts)}
	}
	if !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0) {
		return &ConfigError{Key: "rms_norm_eps", Msg: fmt.Sprintf("must be a positive finite number, got %v", c.RMSNormEps)}
	}
	if _, ok := kernels.LookupActivation(c.HiddenAct); !ok {
		return &ConfigError{Key: "hidden_act", Msg: fmt.Sprintf("unsupported activation %q (supported: %v)", c.HiddenAct, kernels.ActivationNames())}
	}
	for _, id := range append(c.EOSTokenIDs, derefOr(c.BOSTokenID, 0), derefOr(c.PadTokenID, 0)) {
		if id < 0 || id >= c.VocabSize {
			return &ConfigError{Key: "bos/eos/pad_token_id", Msg: fmt.Sprintf("token id %d outside the vocabulary [0, %d)", id, c.VocabSize)}
		}
	}
	if c.NumHiddenLayers*c.NumExperts > 1<<20 {
		return &ConfigError{Key: "num_hidden_layers / num_experts", Msg: fmt.Sprintf("%d layers of %d experts are more tensors than supported", c.NumHiddenLayers, c.NumExperts)}
	}
	// Sizes multiply: bound the parameter count in float64 before any
	// integer arithmetic on it can overflow.
	H, I, E := float64(c.HiddenSize), float64(c.IntermediateSize), float64(c.NumExperts)
	Di := float64(c.MambaExpand) * H
	perLayer := 4*H*float64(c.NumAttentionHeads+c.NumKeyValueHeads)*float64(c.HeadDimension()) +
		3*Di*H + Di*float64(c.MambaDtRank+2*c.MambaDState+c.MambaDConv) + E*(3*H*I+H) + 3*H*I
	if n := float64(c.NumHiddenLayers)*perLayer + 2*float64(c.VocabSize)*H; n > maxParams {
		return &ConfigError{Key: "", Msg: fmt.Sprintf("the config describes about %.3g parameters, more than the supported %.0e", n, float64(maxParams))}
	}
	if c.MaxPositionEmbeddings <= 0 {
		return &ConfigError{Key: "max_position_embeddings", Msg: fmt.Sprintf("must be positive, got %d", c.MaxPositionEmbeddings)}
	}
	return nil
}

func derefOr(p *int, d int) int {
	if p == nil {
		return d
	}
	return *p
}

// HeadDimension is the attention head size: head_dim if set, else hidden/heads.
func (c *Config) HeadDimension() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// InnerSize is the Mamba inner width mamba_expand × hidden_size.
func (c *Config) InnerSize() int { return c.MambaExpand * c.HiddenSize }

// layerTypes are the spellings of layer_types: transformers 5's and the
// layers_block_type names.
var layerTypes = map[string]MixerKind{
	"full_attention": Attention, "attention": Attention,
	"linear_attention": Mamba, "mamba": Mamba,
}

// Mixer returns the mixer kind of layer i: from layer_types when the config
// has them, else from the attention period and offset.
func (c *Config) Mixer(i int) MixerKind {
	if c.LayerTypes != nil {
		return layerTypes[c.LayerTypes[i]]
	}
	if i%c.AttnLayerPeriod == c.AttnLayerOffset {
		return Attention
	}
	return Mamba
}

// FFN returns the feed-forward kind of layer i: MoE only where the expert
// period selects the layer and there is more than one expert.
func (c *Config) FFN(i int) FFNKind {
	if i%c.ExpertLayerPeriod == c.ExpertLayerOffset && c.NumExperts > 1 {
		return MoE
	}
	return Dense
}

// IsEOS reports whether id is one of the end-of-sequence ids.
func (c *Config) IsEOS(id int) bool {
	for _, e := range c.EOSTokenIDs {
		if e == id {
			return true
		}
	}
	return false
}

// MarshalJSON writes the config in the layout transformers saves.
func (c *Config) MarshalJSON() ([]byte, error) {
	type plain Config
	m := map[string]any{}
	b, err := json.Marshal((*plain)(c))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if len(c.EOSTokenIDs) == 1 {
		m["eos_token_id"] = c.EOSTokenIDs[0]
	} else {
		m["eos_token_id"] = c.EOSTokenIDs
	}
	if !c.MambaInnerLayernorms {
		m["mamba_inner_layernorms"] = false // legacy key; only written when the norms are absent
	}
	if c.PadTokenID == nil {
		m["pad_token_id"] = nil
	}
	if c.DType == "" {
		m["dtype"] = "float32"
	}
	m["model_type"] = "jamba"
	m["architectures"] = []string{"JambaForCausalLM"}
	return json.MarshalIndent(m, "", "  ")
}

// configParser reads typed values from a raw config object, keeping the first error.
type configParser struct {
	raw map[string]json.RawMessage
	err error
}

func (p *configParser) get(key string) (json.RawMessage, bool) {
	if p.err != nil {
		return nil, false
	}
	v, ok := p.raw[key]
	return v, ok
}

func (p *configParser) fail(key, want string, v json.RawMessage) {
	p.err = &ConfigError{Key: key, Msg: fmt.Sprintf("want %s, got %s", want, truncate(string(v), 40))}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

func parseInt(v json.RawMessage) (int, bool) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int(f), true
}

func (p *configParser) integer(key string, dst *int) {
	v, ok := p.get(key)
	if !ok || isNull(v) {
		return
	}
	n, ok := parseInt(v)
	if !ok {
		p.fail(key, "an integer", v)
		return
	}
	*dst = n
}

func (p *configParser) optInt(key string, dst **int) {
	v, ok := p.get(key)
	if !ok {
		return
	}
	if isNull(v) {
		*dst = nil
		return
	}
	n, ok := parseInt(v)
	if !ok {
		p.fail(key, "an integer or null", v)
		return
	}
	*dst = &n
}

func (p *configParser) intOrList(key string, dst *[]int) {
	v, ok := p.get(key)
	if !ok {
		return
	}
	if isNull(v) {
		*dst = nil
		return
	}
	if n, ok := parseInt(v); ok {
		*dst = []int{n}
		return
	}
	var list []json.RawMessage
	if err := json.Unmarshal(v, &list); err != nil {
		p.fail(key, "an integer or a list of integers", v)
		return
	}
	out := make([]int, 0, len(list))
	for _, e := range list {
		n, ok := parseInt(e)
		if !ok {
			p.fail(key, "an integer or a list of integers", v)
			return
		}
		out = append(out, n)
	}
	*dst = out
}

func (p *configParser) strList(key string, dst *[]string) {
	v, ok := p.get(key)
	if !ok || isNull(v) {
		return
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		p.fail(key, "a list of strings", v)
		return
	}
	*dst = list
}

func (p *configParser) number(key string, dst *float64) {
	v, ok := p.get(key)
	if !ok || isNull(v) {
		return
	}
	if err := json.Unmarshal(v, dst); err != nil {
		p.fail(key, "a number", v)
	}
}

func (p *configParser) boolean(key string, dst *bool) {
	v, ok := p.get(key)
	if !ok || isNull(v) {
		return
	}
	if err := json.Unmarshal(v, dst); err != nil {
		p.fail(key, "true or false", v)
	}
}

func (p *configParser) str(key string, dst *string) {
	v, ok := p.get(key)
	if !ok || isNull(v) {
		return
	}
	if err := json.Unmarshal(v, dst); err != nil {
		p.fail(key, "a string", v)
	}
}

func (p *configParser) dtRank(dst *int) {
	const key = "mamba_dt_rank"
	v, ok := p.get(key)
	if !ok || isNull(v) {
		return
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if s != "auto" {
			p.fail(key, `an integer or "auto"`, v)
		}
		return
	}
	n, ok := parseInt(v)
	if !ok {
		p.fail(key, `an integer or "auto"`, v)
		return
	}
	*dst = n
}
