package model

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"github.com/jamba-go/jamba/gguf"
	"github.com/jamba-go/jamba/kernels"
)

// GGUF files of Jamba as llama.cpp's converter writes them (architecture
// "jamba"): the hyper-parameters under "jamba.*", the tensors under
// llama.cpp's names (GGUFName maps ours to theirs), with these transforms:
//
//   - blk.N.ssm_a holds A = −exp(A_log) (float32), used as it is; A_log is
//     recovered as log(−A) for training and saving;
//   - blk.N.ssm_conv1d.weight is squeezed to [Di, Kc];
//   - the experts of a MoE layer are stacked into one 3-D tensor per
//     projection (ffn_{gate,up,down}_exps, expert outermost);
//   - dense layers have ffn_{gate,up,down}, and which layers attend is
//     told by the per-layer attention.head_count_kv (0: a Mamba layer).
//
// Quantized weights (Q8_0, Q4_K, ...) stay in their blocks in the file's
// memory mapping (kernels.Blocks: Q8_0, Q4_0, Q4_K, Q5_K and Q6_K
// multiplied straight from the blocks by fused kernels, the other types
// widened to float32 row by row as they are multiplied); F32, BF16 and F16
// weights are used in place (F16 rows that are no multiple of 8 halves are
// widened to float32 at load, exactly).

// IsGGUF reports whether path names a GGUF file (by its extension).
func IsGGUF(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".gguf") }

// LoadGGUF opens a Jamba GGUF file. opts.Quantize must be empty: the file's
// weights are used in the types it stores them in.
func LoadGGUF(path string, opts Options) (*Model, error) {
	if opts.Quantize != "" {
		return nil, fmt.Errorf("model: %s: --quantize %s applies to float checkpoints; a GGUF file keeps the types it stores its weights in (quantize with `jamba convert --type`, or load a Hugging Face folder)", path, opts.Quantize)
	}
	open := gguf.Open
	if opts.InMemory {
		open = gguf.ReadFile
	}
	f, err := open(path)
	if err != nil {
		return nil, err
	}
	m, err := modelFromGGUF(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	m.Dir = path
	return m, nil
}

func modelFromGGUF(f *gguf.File, opts Options) (*Model, error) {
	cfg, err := ConfigFromGGUF(f)
	if err != nil {
		return nil, err
	}
	if opts.CheckFinite {
		if err := checkGGUFFinite(f); err != nil {
			return nil, err
		}
	}
	m := &Model{Config: cfg, gg: f}
	if cfg.BOSTokenID != nil {
		m.Generation.BOSTokenID = cfg.BOSTokenID
	}
	m.Generation.EOSTokenIDs = ggufEOG(f, cfg)
	if err := m.bindGGUF(f); err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, f.Name())
	}
	switch opts.KVCache {
	case "", "f32":
	case "bf16":
		m.kvBF16 = true
	default:
		return nil, fmt.Errorf("model: unknown KV cache type %q (want f32 or bf16)", opts.KVCache)
	}
	m.prepare()
	return m, nil
}

// GGUF returns the GGUF file the model was loaded from, or nil.
func (m *Model) GGUF() *gguf.File { return m.gg }

// ggufKeyError names the file and key of a bad hyper-parameter.
func ggufKeyError(f *gguf.File, key, msg string) error {
	return fmt.Errorf("model: %s: %s: %s", f.Name(), key, msg)
}

// ConfigFromGGUF builds the config of a GGUF file of architecture jamba
// from its metadata and tensor shapes.
func ConfigFromGGUF(f *gguf.File) (*Config, error) {
	arch, err := f.String("general.architecture")
	if err != nil {
		return nil, err
	}
	if arch != "jamba" {
		return nil, ggufKeyError(f, "general.architecture", fmt.Sprintf("%q is not a Jamba model (want jamba)", arch))
	}
	c := DefaultConfig()
	c.UseMambaKernels = false // a folder written from this config runs on any device in transformers
	var ferr error
	geti := func(key string, dst *int, required bool) {
		if ferr != nil {
			return
		}
		if !f.Has(key) {
			if required {
				ferr = ggufKeyError(f, key, "missing")
			}
			return
		}
		v, err := f.Int(key)
		if err != nil {
			ferr = err
			return
		}
		if v <= 0 || v > 1<<31 {
			ferr = ggufKeyError(f, key, fmt.Sprintf("%d is out of range", v))
			return
		}
		*dst = int(v)
	}
	geti("jamba.block_count", &c.NumHiddenLayers, true)
	geti("jamba.context_length", &c.MaxPositionEmbeddings, false)
	geti("jamba.embedding_length", &c.HiddenSize, true)
	geti("jamba.feed_forward_length", &c.IntermediateSize, true)
	geti("jamba.attention.head_count", &c.NumAttentionHeads, true)
	geti("jamba.attention.key_length", &c.HeadDim, false)
	geti("jamba.ssm.conv_kernel", &c.MambaDConv, true)
	geti("jamba.ssm.state_size", &c.MambaDState, true)
	geti("jamba.ssm.time_step_rank", &c.MambaDtRank, true)
	inner := 0
	geti("jamba.ssm.inner_size", &inner, true)
	c.NumExperts, c.NumExpertsPerTok = 1, 1
	geti("jamba.expert_count", &c.NumExperts, false)
	geti("jamba.expert_used_count", &c.NumExpertsPerTok, false)
	if ferr != nil {
		return nil, ferr
	}
	L := c.NumHiddenLayers
	if L > maxLayers {
		return nil, ggufKeyError(f, "jamba.block_count", fmt.Sprintf("%d layers exceed the supported %d", L, maxLayers))
	}
	if c.HeadDim == c.HiddenSize/max(1, c.NumAttentionHeads) {
		c.HeadDim = 0
	}
	if inner%c.HiddenSize != 0 {
		return nil, ggufKeyError(f, "jamba.ssm.inner_size", fmt.Sprintf("%d is not a multiple of embedding_length %d", inner, c.HiddenSize))
	}
	c.MambaExpand = inner / c.HiddenSize
	if f.Has("jamba.attention.layer_norm_rms_epsilon") {
		eps, err := f.Float("jamba.attention.layer_norm_rms_epsilon")
		if err != nil {
			return nil, err
		}
		// Stored as a float32: read back its shortest decimal (1e-06, not
		// 9.99999997e-07), as config.json would hold it.
		c.RMSNormEps, _ = strconv.ParseFloat(strconv.FormatFloat(eps, 'g', -1, 32), 64)
	}

	// Attention layers: the per-layer KV head counts (0 for Mamba).
	key := "jamba.attention.head_count_kv"
	kv, err := f.PerLayer(key, L) // a scalar, or one entry per layer
	if err != nil {
		return nil, err
	}
	var attn []int
	c.NumKeyValueHeads = 0
	for i, n := range kv {
		if n < 0 || n > int64(c.NumAttentionHeads) {
			return nil, ggufKeyError(f, key, fmt.Sprintf("layer %d: %d KV heads", i, n))
		}
		if n == 0 {
			continue
		}
		if c.NumKeyValueHeads != 0 && int64(c.NumKeyValueHeads) != n {
			return nil, ggufKeyError(f, key, fmt.Sprintf("layers differ in KV heads (%d and %d); Jamba has one count", c.NumKeyValueHeads, n))
		}
		c.NumKeyValueHeads = int(n)
		attn = append(attn, i)
	}
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.AttnLayerOffset, c.AttnLayerPeriod, err = periodOf(attn, L); err != nil {
		return nil, ggufKeyError(f, key, "attention layers "+err.Error())
	}
	// MoE layers: those with a router.
	var moe []int
	for i := range L {
		if _, ok := f.Info(fmt.Sprintf("blk.%d.ffn_gate_inp.weight", i)); ok {
			moe = append(moe, i)
		}
	}
	if len(moe) == 0 {
		c.NumExperts, c.NumExpertsPerTok = 1, 1
	} else if c.NumExperts < 2 {
		return nil, ggufKeyError(f, "jamba.expert_count", fmt.Sprintf("%d, but layer %d has a router", c.NumExperts, moe[0]))
	}
	if c.ExpertLayerOffset, c.ExpertLayerPeriod, err = periodOf(moe, L); err != nil {
		return nil, fmt.Errorf("model: %s: MoE layers (blk.N.ffn_gate_inp) %v", f.Name(), err)
	}

	// Shapes and optional tensors.
	emb, ok := f.Info("token_embd.weight")
	if !ok || len(emb.Dims) != 2 {
		return nil, fmt.Errorf("model: %s: tensor token_embd.weight: missing or not 2-D", f.Name())
	}
	c.VocabSize = int(emb.Dims[1])
	_, hasOut := f.Info("output.weight")
	c.TieWordEmbeddings = !hasOut
	c.MambaConvBias, c.MambaProjBias, c.MambaInnerLayernorms = false, false, false
	for i := range L {
		if c.Mixer(i) != Mamba {
			continue
		}
		p := fmt.Sprintf("blk.%d.", i)
		_, c.MambaConvBias = f.Info(p + "ssm_conv1d.bias")
		_, c.MambaProjBias = f.Info(p + "ssm_in.bias")
		_, c.MambaInnerLayernorms = f.Info(p + "ssm_dt_norm.weight")
		break
	}
	c.PadTokenID, c.BOSTokenID, c.EOSTokenIDs = nil, nil, nil
	for _, k := range []string{"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"} {
		if !f.Has(k) {
			continue
		}
		v, err := f.Int(k)
		if err != nil {
			return nil, err
		}
		if v < 0 || v >= int64(c.VocabSize) {
			return nil, ggufKeyError(f, k, fmt.Sprintf("id %d is outside the vocabulary of %d", v, c.VocabSize))
		}
		id := int(v)
		switch {
		case strings.HasSuffix(k, "bos_token_id"):
			c.BOSTokenID = &id
		case strings.HasSuffix(k, "eos_token_id"):
			c.EOSTokenIDs = []int{id}
		default:
			c.PadTokenID = &id
		}
	}
	switch ft, _ := f.Int("general.file_type"); ft {
	case 0:
		c.DType = "float32"
	case 1:
		c.DType = "float16"
	case 32:
		c.DType = "bfloat16"
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("model: %s: %w", f.Name(), err)
	}
	return c, nil
}

// periodOf returns the offset and period that select exactly the layers in
// idx (ascending) among L layers, as Config.Mixer and Config.FFN read them.
func periodOf(idx []int, L int) (offset, period int, err error) {
	switch len(idx) {
	case 0:
		return L, L + 1, nil // no layer i < L has i%(L+1) == L
	case 1:
		return idx[0], L, nil
	}
	period = idx[1] - idx[0]
	offset = idx[0]
	if offset >= period {
		return 0, 0, fmt.Errorf("%v: the first one, %d, is not below the spacing %d", idx, offset, period)
	}
	n := 0
	for i := range L {
		if i%period == offset {
			if n >= len(idx) || idx[n] != i {
				return 0, 0, fmt.Errorf("%v do not repeat with period %d from layer %d", idx, period, offset)
			}
			n++
		}
	}
	if n != len(idx) {
		return 0, 0, fmt.Errorf("%v do not repeat with period %d from layer %d", idx, period, offset)
	}
	return offset, period, nil
}

// eogNames are token texts llama.cpp treats as ending generation.
var eogNames = map[string]bool{
	"<|eot_id|>": true, "<|im_end|>": true, "<|end|>": true, "<end_of_turn>": true,
	"<|endoftext|>": true, "<|eom_id|>": true, "<EOT>": true, "<|end_of_text|>": true,
}

// ggufEOG returns the ids that end generation: the EOS id, and tokens whose
// text llama.cpp recognises as an end of turn or of text.
func ggufEOG(f *gguf.File, c *Config) []int {
	ids := append([]int(nil), c.EOSTokenIDs...)
	toks, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return ids
	}
	for i, t := range toks {
		if eogNames[t] && !c.IsEOS(i) {
			ids = append(ids, i)
		}
	}
	return ids
}

// GGUFName returns llama.cpp's name for one of our checkpoint tensors, and
// for an expert's projection the expert index within the stacked tensor
// (-1 otherwise). ok is false for a name it does not know.
func GGUFName(name string) (gg string, expert int, ok bool) {
	switch name {
	case "model.embed_tokens.weight":
		return "token_embd.weight", -1, true
	case "model.final_layernorm.weight":
		return "output_norm.weight", -1, true
	case "lm_head.weight":
		return "output.weight", -1, true
	}
	var layer int
	var rest string
	if n, _ := fmt.Sscanf(name, "model.layers.%d.", &layer); n != 1 {
		return "", -1, false
	}
	p := fmt.Sprintf("model.layers.%d.", layer)
	if !strings.HasPrefix(name, p) {
		return "", -1, false
	}
	rest = name[len(p):]
	b := fmt.Sprintf("blk.%d.", layer)
	if r, ok := strings.CutPrefix(rest, "feed_forward.experts."); ok {
		var e int
		var proj string
		dot := strings.IndexByte(r, '.')
		if dot < 0 {
			return "", -1, false
		}
		if _, err := fmt.Sscanf(r[:dot], "%d", &e); err != nil {
			return "", -1, false
		}
		proj = r[dot+1:]
		switch proj {
		case "gate_proj.weight":
			return b + "ffn_gate_exps.weight", e, true
		case "up_proj.weight":
			return b + "ffn_up_exps.weight", e, true
		case "down_proj.weight":
			return b + "ffn_down_exps.weight", e, true
		}
		return "", -1, false
	}
	m := map[string]string{
		"input_layernorm.weight":        "attn_norm.weight",
		"pre_ff_layernorm.weight":       "ffn_norm.weight",
		"self_attn.q_proj.weight":       "attn_q.weight",
		"self_attn.k_proj.weight":       "attn_k.weight",
		"self_attn.v_proj.weight":       "attn_v.weight",
		"self_attn.o_proj.weight":       "attn_output.weight",
		"mamba.in_proj.weight":          "ssm_in.weight",
		"mamba.in_proj.bias":            "ssm_in.bias",
		"mamba.conv1d.weight":           "ssm_conv1d.weight",
		"mamba.conv1d.bias":             "ssm_conv1d.bias",
		"mamba.x_proj.weight":           "ssm_x.weight",
		"mamba.dt_layernorm.weight":     "ssm_dt_norm.weight",
		"mamba.b_layernorm.weight":      "ssm_b_norm.weight",
		"mamba.c_layernorm.weight":      "ssm_c_norm.weight",
		"mamba.dt_proj.weight":          "ssm_dt.weight",
		"mamba.dt_proj.bias":            "ssm_dt.bias",
		"mamba.A_log":                   "ssm_a",
		"mamba.D":                       "ssm_d",
		"mamba.out_proj.weight":         "ssm_out.weight",
		"mamba.out_proj.bias":           "ssm_out.bias",
		"feed_forward.gate_proj.weight": "ffn_gate.weight",
		"feed_forward.up_proj.weight":   "ffn_up.weight",
		"feed_forward.down_proj.weight": "ffn_down.weight",
		"feed_forward.router.weight":    "ffn_gate_inp.weight",
	}
	if g, ok := m[rest]; ok {
		return b + g, -1, true
	}
	return "", -1, false
}

// ggBinder takes tensors from a GGUF file by our names, checking their
// shapes against the config's Spec.
type ggBinder struct {
	f     *gguf.File
	specs map[string][]int
	used  map[string]bool
	err   error
}

// formats holds one kernels.BlockFormat per quantized type.
var formats = map[gguf.Type]*kernels.BlockFormat{}

func init() {
	for _, t := range []gguf.Type{gguf.Q4_0, gguf.Q4_1, gguf.Q5_0, gguf.Q5_1, gguf.Q8_0, gguf.Q2_K, gguf.Q3_K, gguf.Q4_K, gguf.Q5_K, gguf.Q6_K, gguf.Q8_K} {
		t := t
		formats[t] = &kernels.BlockFormat{Name: t.String(), Elems: t.BlockSize(), Bytes: t.BlockBytes(),
			Dequantize: func(dst []float32, src []byte) {
				if err := gguf.Dequantize(t, src, dst); err != nil {
					panic(err) // sizes are checked when the matrix is bound
				}
			}}
	}
	// The kernels' own dequantizers (equal to ggml's, with assembly).
	formats[gguf.Q4_K].Dequantize = kernels.DequantizeQ4K
	formats[gguf.Q6_K].Dequantize = kernels.DequantizeQ6K
	formats[gguf.Q8_0].Dequantize = kernels.DequantizeQ8_0
	formats[gguf.Q4_0].Dequantize = kernels.DequantizeQ4_0
	// Fused products straight from the blocks (activations rounded to
	// 16-bit blocks, or to 8-bit ones as llama.cpp does after
	// kernels.SetActivationBits(8)).
	formats[gguf.Q8_0].Dot = kernels.DotQ8_0
	formats[gguf.Q4_0].Dot = kernels.DotQ4_0
	formats[gguf.Q4_K].Dot = kernels.DotQ4K
	formats[gguf.Q5_K].Dot = kernels.DotQ5K
	formats[gguf.Q6_K].Dot = kernels.DotQ6K
	formats[gguf.Q5_0].Dot = kernels.DotQ5_0
}

// f16Format is the storage of F16 matrices: halves, widened exactly in
// the products (8 per kernel block).
var f16Format = &kernels.BlockFormat{Name: "F16", Elems: 8, Bytes: 16, Dequantize: kernels.DequantizeF16, Dot: kernels.DotF16}

// BlockFormat returns the kernels' block format of a quantized GGUF type,
// or nil when the type cannot be used as matrix storage.
func BlockFormat(t gguf.Type) *kernels.BlockFormat { return formats[t] }

func (b *ggBinder) fail(name, gg, msg string) {
	if b.err == nil {
		b.err = &LoadError{Tensor: gg + " (" + name + ")", Msg: msg}
	}
}

// take returns the data of our tensor name, checking that the GGUF shape
// holds the spec's elements in the same row-major order: the innermost
// dims equal the spec's last dims, and the outer ones multiply to the
// rest (for an expert: the stack's ne2 is the expert count).
func (b *ggBinder) take(name string) (gguf.TensorInfo, []byte, bool) {
	if b.err != nil {
		return gguf.TensorInfo{}, nil, false
	}
	want, ok := b.specs[name]
	if !ok {
		b.err = &LoadError{Tensor: name, Msg: "not part of this config (internal error)"}
		return gguf.TensorInfo{}, nil, false
	}
	gg, e, ok := GGUFName(name)
	if !ok {
		b.err = &LoadError{Tensor: name, Msg: "has no GGUF name (internal error)"}
		return gguf.TensorInfo{}, nil, false
	}
	info, ok := b.f.Info(gg)
	if !ok {
		b.fail(name, gg, "missing from the file")
		return gguf.TensorInfo{}, nil, false
	}
	b.used[gg] = true
	data, err := b.f.Data(gg)
	if err != nil {
		b.err = err
		return gguf.TensorInfo{}, nil, false
	}
	// ne of our tensor, innermost first.
	ne := make([]int64, 0, 4)
	for i := len(want) - 1; i >= 0; i-- {
		if want[i] != 1 || len(want) == 1 { // conv1d's [Di, 1, Kc] is squeezed
			ne = append(ne, int64(want[i]))
		}
	}
	dims := info.Dims
	if e >= 0 {
		if len(dims) != 3 || int(dims[2]) != b.nExperts(name) {
			b.fail(name, gg, fmt.Sprintf("shape %v, want %v stacked over %d experts", dims, ne, b.nExperts(name)))
			return gguf.TensorInfo{}, nil, false
		}
		if e >= int(dims[2]) {
			b.fail(name, gg, "expert index out of range")
			return gguf.TensorInfo{}, nil, false
		}
		dims = dims[:2]
		n := info.Type.RowBytes(dims[0] * dims[1])
		if n < 0 {
			b.fail(name, gg, "bad row size")
			return gguf.TensorInfo{}, nil, false
		}
		data = data[int64(e)*n : int64(e+1)*n]
	}
	if !equalDims(dims, ne) {
		b.fail(name, gg, fmt.Sprintf("shape (ne) %v, the config needs %v", info.Dims, ne))
		return gguf.TensorInfo{}, nil, false
	}
	return info, data, true
}

func (b *ggBinder) nExperts(name string) int {
	var layer int
	fmt.Sscanf(name, "model.layers.%d.", &layer)
	return len(b.specsExperts(layer))
}

func (b *ggBinder) specsExperts(layer int) []int {
	var out []int
	for e := 0; ; e++ {
		if _, ok := b.specs[fmt.Sprintf("model.layers.%d.feed_forward.experts.%d.gate_proj.weight", layer, e)]; !ok {
			return out
		}
		out = append(out, e)
	}
}

func equalDims(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// matrix binds a 2-D weight: F32 and BF16 in place (when aligned), F16
// in place when its rows are whole groups of 8 (else widened to float32),
// quantized types as blocks in place.
func (b *ggBinder) matrix(name string) *kernels.Matrix {
	info, data, ok := b.take(name)
	if !ok {
		return nil
	}
	want := b.specs[name]
	rows, cols := want[0], 1
	for _, d := range want[1:] {
		cols *= d
	}
	m := &kernels.Matrix{Rows: rows, Cols: cols}
	switch info.Type {
	case gguf.F32:
		if v, ok := viewF32(data); ok {
			m.DType, m.F32 = kernels.F32, v
			return m
		}
	case gguf.BF16:
		if v, ok := viewU16(data); ok {
			m.DType, m.BF16 = kernels.BF16, v
			return m
		}
		v := make([]uint16, rows*cols)
		for i := range v {
			v[i] = uint16(data[2*i]) | uint16(data[2*i+1])<<8
		}
		m.DType, m.BF16 = kernels.BF16, v
		return m
	case gguf.F16:
		// Kept in the mapping when whole groups of 8 halves make the rows
		// (the assembly widens 8 at a time); multiplied bit for bit as the
		// float32 matrix of the same values.
		if cols%f16Format.Elems == 0 {
			m.DType, m.Q, m.Format = kernels.Blocks, data, f16Format
			if err := m.Validate(); err != nil {
				b.fail(name, info.Name, err.Error())
				return nil
			}
			return m
		}
	default:
		if f := formats[info.Type]; f != nil {
			m.DType, m.Q, m.Format = kernels.Blocks, data, f
			if err := m.Validate(); err != nil {
				b.fail(name, info.Name, err.Error())
				return nil
			}
			return m
		}
	}
	v, err := b.floats(info, data)
	if err != nil {
		b.fail(name, info.Name, err.Error())
		return nil
	}
	m.DType, m.F32 = kernels.F32, v
	return m
}

// floats converts tensor data to a new float32 slice.
func (b *ggBinder) floats(info gguf.TensorInfo, data []byte) ([]float32, error) {
	if !info.Type.CanDequantize() {
		return nil, fmt.Errorf("type %s is not supported", info.Type)
	}
	bs := int64(info.Type.BlockSize())
	bb := int64(info.Type.BlockBytes())
	n := int64(len(data)) / bb * bs
	v := make([]float32, n)
	if err := gguf.Dequantize(info.Type, data, v); err != nil {
		return nil, err
	}
	return v, nil
}

// vector binds a small parameter as float32 (in place when F32 and aligned).
func (b *ggBinder) vector(name string) []float32 {
	info, data, ok := b.take(name)
	if !ok {
		return nil
	}
	if info.Type == gguf.F32 {
		if v, ok := viewF32(data); ok {
			return v
		}
	}
	v, err := b.floats(info, data)
	if err != nil {
		b.fail(name, info.Name, err.Error())
		return nil
	}
	return v
}

var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

func viewF32(b []byte) ([]float32, bool) {
	if len(b) == 0 {
		return []float32{}, true
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if !littleEndian || uintptr(p)%4 != 0 || len(b)%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(p), len(b)/4), true
}

func viewU16(b []byte) ([]uint16, bool) {
	if len(b) == 0 {
		return []uint16{}, true
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if !littleEndian || uintptr(p)%2 != 0 || len(b)%2 != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint16)(p), len(b)/2), true
}

// bindGGUF builds the layers of m from the file's tensors.
func (m *Model) bindGGUF(f *gguf.File) error {
	b := &ggBinder{f: f, specs: map[string][]int{}, used: map[string]bool{}}
	for _, s := range m.Config.Spec() {
		b.specs[s.Name] = s.Shape
	}
	return m.bindLayers(b)
}

// mambaA reads A as llama.cpp stores it (ssm_a = -exp(A_log)) and derives
// A_log for training and saving.
func (b *ggBinder) mambaA(q string, i int) (a, aLog []float32) {
	a = b.vector(q + "A_log") // ssm_a: A itself
	if a == nil {
		return nil, nil
	}
	aLog = make([]float32, len(a))
	for j, v := range a {
		if !(v < 0) {
			b.fail(q+"A_log", fmt.Sprintf("blk.%d.ssm_a", i), fmt.Sprintf("A[%d] = %v; ssm_a holds −exp(A_log), which is negative", j, v))
			break
		}
		aLog[j] = float32(math.Log(-float64(v)))
	}
	return a, aLog
}

// experts binds the experts of one layer; a GGUF file stacks each
// projection of all experts in one tensor, which matrix slices.
func (b *ggBinder) experts(f string, out []MLPWeights) bool {
	bindExperts(b, f, out)
	return false
}

func (b *ggBinder) done() error {
	if b.err != nil {
		return b.err
	}
	var extra []string
	for _, t := range b.f.Tensors() {
		if !b.used[t.Name] {
			extra = append(extra, t.Name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		more := ""
		if len(extra) > 8 {
			more = fmt.Sprintf(" and %d more", len(extra)-8)
			extra = extra[:8]
		}
		return fmt.Errorf("model: %w in the file: %s%s", ErrUnexpectedTensors, strings.Join(extra, ", "), more)
	}
	return nil
}

// checkGGUFFinite scans every tensor of f, dequantized, for NaN and
// infinities, and names the first offending tensor and element.
func checkGGUFFinite(f *gguf.File) error {
	var buf []float32
	for _, t := range f.Tensors() {
		if !t.Type.CanDequantize() {
			continue
		}
		data, err := f.Data(t.Name)
		if err != nil {
			return err
		}
		bs, bb := t.Type.BlockSize(), t.Type.BlockBytes()
		nb := len(data) / bb
		step := max(1, (1<<16)/bs)
		for b0 := 0; b0 < nb; b0 += step {
			n := min(step, nb-b0)
			if cap(buf) < n*bs {
				buf = make([]float32, n*bs)
			}
			v := buf[:n*bs]
			if err := gguf.Dequantize(t.Type, data[b0*bb:(b0+n)*bb], v); err != nil {
				return err
			}
			if !Finite(v) {
				for i, x := range v {
					if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
						return fmt.Errorf("model: %s: tensor %s: element %d is %v", f.Name(), t.Name, b0*bs+i, x)
					}
				}
			}
		}
	}
	return nil
}

// quantizeQ4 quantizes w to Q4_K blocks with ggml's reference quantizer
// (the blocks llama-quantize writes without an importance matrix), or to
// Q5_0 when its rows are whole blocks of 32 but not of 256, or to int8.
func quantizeQ4(w *kernels.Matrix) *kernels.Matrix {
	t := gguf.Q4_K
	switch {
	case w.Cols%256 == 0:
	case w.Cols%32 == 0:
		t = gguf.Q5_0
	default:
		return kernels.QuantizeI8(w)
	}
	f := formats[t]
	rb := w.Cols / f.Elems * f.Bytes
	q := &kernels.Matrix{Rows: w.Rows, Cols: w.Cols, DType: kernels.Blocks, Format: f, Q: make([]byte, w.Rows*rb)}
	row := make([]float32, w.Cols)
	for r := range w.Rows {
		if err := gguf.Quantize(t, w.Row(row, r), q.Q[r*rb:(r+1)*rb]); err != nil {
			panic(err) // the sizes are whole blocks by construction
		}
	}
	return q
}
