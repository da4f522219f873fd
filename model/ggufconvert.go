package model

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/jamba-go/jamba/gguf"
	"github.com/jamba-go/jamba/safetensors"
)

// GGUFFileTypes are the output types of ConvertToGGUF, with llama.cpp's
// general.file_type numbers.
var GGUFFileTypes = map[string]int{
	"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
	"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18, "bf16": 32,
}

// GGUFConvertOptions control ConvertToGGUF.
type GGUFConvertOptions struct {
	Type string // a key of GGUFFileTypes
	Name string // general.name (default: the folder's name)
	// Tokenizer holds the tokenizer.* key/values, written after the
	// model's hyper-parameters as llama.cpp's converter orders them.
	Tokenizer []gguf.KV
	// Progress, if set, is called after each tensor with the count done
	// and the total.
	Progress func(done, total int)
}

// ggTensor is one tensor of the GGUF file being written.
type ggTensor struct {
	name    string   // GGUF name
	sources []string // our checkpoint names: one, or the experts to stack
	dims    []int64  // ne, innermost first
	typ     gguf.Type
	layer   int // -1 outside the blocks
}

// ConvertToGGUF writes the Hugging Face checkpoint in dir as a GGUF file
// laid out as llama.cpp's tools write it: with a float type (f32, f16,
// bf16), as convert_hf_to_gguf.py does (its names, key/values, tensor order
// and transforms: ssm_a = −exp(A_log) in float32, conv1d squeezed, experts
// stacked; 1-D tensors, norms, routers, conv1d and tensors not ending in
// ".weight" stay F32); with a quantized type, as that file then passed
// through llama-quantize (no importance matrix): its choice of type per
// tensor (for q4_k_m: Q6_K for the output matrix and, by use_more_bits, for
// some attn_v and ffn_down; a fallback to Q5_0/Q8_0/F16 for rows that are no
// multiple of the block), its tensor order, and ggml's reference quantizers
// on the checkpoint's values. The file is written atomically.
func ConvertToGGUF(dir, out string, o GGUFConvertOptions) error {
	ftype, ok := GGUFFileTypes[o.Type]
	if !ok {
		return fmt.Errorf("model: unknown GGUF type %q (want f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m or q6_k)", o.Type)
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return err
	}
	defer set.Close()
	specs := map[string][]int{}
	for _, s := range cfg.Spec() {
		specs[s.Name] = s.Shape
		if _, ok := set.Info(s.Name); !ok {
			return &LoadError{Tensor: s.Name, Msg: "missing from the checkpoint " + dir}
		}
	}

	// The tensors in the converter's order: the checkpoint's names sorted
	// (as the converter reads each file), experts stacked when the last one
	// of a layer's projection is read.
	names := make([]string, 0, len(specs))
	for n := range specs {
		names = append(names, n)
	}
	sort.Strings(names)
	var list []*ggTensor
	stacks := map[string]*ggTensor{}
	expertsLeft := map[int]int{}
	for _, n := range names {
		gg, e, ok := GGUFName(n)
		if !ok {
			return &LoadError{Tensor: n, Msg: "has no GGUF name"}
		}
		t := &ggTensor{name: gg, layer: -1}
		fmt.Sscanf(gg, "blk.%d.", &t.layer)
		shape := specs[n]
		for i := len(shape) - 1; i >= 0; i-- {
			if shape[i] != 1 || len(shape) == 1 {
				t.dims = append(t.dims, int64(shape[i]))
			}
		}
		if e < 0 {
			t.sources = []string{n}
			list = append(list, t)
			continue
		}
		st := stacks[gg]
		if st == nil {
			st = t
			st.sources = make([]string, cfg.NumExperts)
			st.dims = append(st.dims, int64(cfg.NumExperts))
			stacks[gg] = st
			if _, seen := expertsLeft[t.layer]; !seen {
				expertsLeft[t.layer] = 3 * cfg.NumExperts
			}
		}
		st.sources[e] = n
		expertsLeft[t.layer]--
		if expertsLeft[t.layer] == 0 {
			// The converter emits down, gate, up once all are read.
			for _, p := range []string{"ffn_down_exps", "ffn_gate_exps", "ffn_up_exps"} {
				list = append(list, stacks[fmt.Sprintf("blk.%d.%s.weight", t.layer, p)])
			}
		}
	}

	// Types.
	base := gguf.BF16
	switch o.Type {
	case "f32":
		base = gguf.F32
	case "f16":
		base = gguf.F16
	}
	for _, t := range list {
		t.typ = gguf.F32
		if len(t.dims) >= 2 && strings.HasSuffix(t.name, ".weight") && !strings.Contains(t.name, "_norm.weight") &&
			!strings.Contains(t.name, "ffn_gate_inp") && !strings.Contains(t.name, "ssm_conv1d") {
			t.typ = base
		}
	}
	quantized := ftype != 0 && ftype != 1 && ftype != 32
	if quantized {
		sort.SliceStable(list, func(i, j int) bool {
			a, b := list[i], list[j]
			if a.layer != b.layer {
				return a.layer < b.layer
			}
			return a.name < b.name
		})
		q := quantState{ftype: o.Type, nLayer: cfg.NumHiddenLayers, nExpert: cfg.NumExperts, tied: cfg.TieWordEmbeddings}
		for _, t := range list {
			if strings.Contains(t.name, "attn_v.weight") {
				q.nAttnV++
			}
		}
		for _, t := range list {
			t.typ = q.typeOf(t)
		}
	}

	// Metadata.
	name := o.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(dir))
	}
	kv := func(k string, v any) gguf.KV { return gguf.KV{Key: k, Value: gguf.ValueOf(v)} }
	headsKV := make([]int32, cfg.NumHiddenLayers)
	for i := range headsKV {
		if cfg.Mixer(i) == Attention {
			headsKV[i] = int32(cfg.NumKeyValueHeads)
		}
	}
	kvs := []gguf.KV{
		kv("general.architecture", "jamba"),
		kv("general.type", "model"),
		kv("general.name", name),
		kv("jamba.block_count", uint32(cfg.NumHiddenLayers)),
		kv("jamba.context_length", uint32(cfg.MaxPositionEmbeddings)),
		kv("jamba.embedding_length", uint32(cfg.HiddenSize)),
		kv("jamba.feed_forward_length", uint32(cfg.IntermediateSize)),
		kv("jamba.attention.head_count", uint32(cfg.NumAttentionHeads)),
		kv("jamba.attention.head_count_kv", headsKV),
		kv("jamba.ssm.conv_kernel", uint32(cfg.MambaDConv)),
		kv("jamba.ssm.inner_size", uint32(cfg.InnerSize())),
		kv("jamba.ssm.state_size", uint32(cfg.MambaDState)),
		kv("jamba.ssm.time_step_rank", uint32(cfg.MambaDtRank)),
		kv("jamba.attention.layer_norm_rms_epsilon", float32(cfg.RMSNormEps)),
		kv("jamba.expert_count", uint32(cfg.NumExperts)),
		kv("jamba.expert_used_count", uint32(cfg.NumExpertsPerTok)),
	}
	if cfg.HeadDim > 0 && cfg.HeadDim != cfg.HiddenSize/cfg.NumAttentionHeads {
		kvs = append(kvs, kv("jamba.attention.key_length", uint32(cfg.HeadDim)), kv("jamba.attention.value_length", uint32(cfg.HeadDim)))
	}
	if !quantized {
		kvs = append(kvs, kv("general.file_type", uint32(ftype)), kv("general.quantization_version", uint32(2)))
		kvs = append(kvs, o.Tokenizer...)
	} else {
		kvs = append(kvs, o.Tokenizer...)
		kvs = append(kvs, kv("general.quantization_version", uint32(2)), kv("general.file_type", uint32(ftype)))
	}

	infos := make([]gguf.TensorInfo, len(list))
	for i, t := range list {
		infos[i] = gguf.TensorInfo{Name: t.name, Type: t.typ, Dims: t.dims}
	}
	w, err := gguf.Create(out, kvs, infos)
	if err != nil {
		return err
	}
	var buf []float32
	for i, t := range list {
		buf = buf[:0]
		for _, s := range t.sources {
			st, err := set.Tensor(s)
			if err != nil {
				w.Abort()
				return err
			}
			v, err := st.Float32()
			if err != nil {
				w.Abort()
				return &LoadError{Tensor: s, Msg: err.Error()}
			}
			buf = append(buf, v...)
		}
		if strings.HasSuffix(t.name, ".ssm_a") {
			for j, x := range buf {
				buf[j] = -float32(math.Exp(float64(x)))
			}
		}
		// WriteFloat32 quantizes with gguf.Quantize, which spreads a
		// large tensor over the processors.
		if err := w.WriteFloat32(t.name, buf); err != nil {
			w.Abort()
			return err
		}
		if o.Progress != nil {
			o.Progress(i+1, len(list))
		}
	}
	return w.Close()
}

// quantizable is llama-quantize's tensor_allows_quantization for Jamba.
func quantizable(t *ggTensor) bool {
	return len(t.dims) >= 2 && strings.HasSuffix(t.name, "weight") && !strings.Contains(t.name, "_norm.weight") &&
		!strings.Contains(t.name, "ffn_gate_inp.weight") && !strings.Contains(t.name, "ssm_conv1d")
}

// quantState is the part of llama-quantize's state its type choice reads.
type quantState struct {
	ftype   string
	nLayer  int
	nExpert int
	nAttnV  int
	iAttnV  int
	tied    bool // no output.weight: token_embd gets the output matrix's type
}

// defaultTypes are llama-quantize's default tensor types per file type.
var defaultTypes = map[string]gguf.Type{
	"q4_0": gguf.Q4_0, "q4_1": gguf.Q4_1, "q5_0": gguf.Q5_0, "q5_1": gguf.Q5_1, "q8_0": gguf.Q8_0,
	"q4_k_m": gguf.Q4_K, "q5_k_m": gguf.Q5_K, "q6_k": gguf.Q6_K,
}

func useMoreBits(i, n int) bool { return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2 }

// typeOf is llama_tensor_get_type for the file types above (tensors are
// visited in file order, as llama-quantize does).
func (q *quantState) typeOf(t *ggTensor) gguf.Type {
	if !quantizable(t) {
		return t.typ
	}
	typ := defaultTypes[q.ftype]
	switch {
	case t.name == "output.weight" || q.tied && t.name == "token_embd.weight":
		if t.dims[0]%int64(typ.BlockSize()) != 0 {
			typ = gguf.Q8_0
		} else if typ != gguf.Q8_0 {
			typ = gguf.Q6_K
		}
	case t.name == "token_embd.weight":
	case strings.Contains(t.name, "attn_v.weight"):
		if (q.ftype == "q4_k_m" || q.ftype == "q5_k_m") && useMoreBits(q.iAttnV, q.nAttnV) {
			typ = gguf.Q6_K
		}
		if q.nExpert == 8 {
			typ = gguf.Q8_0
		}
		q.iAttnV++
	case strings.Contains(t.name, "attn_k.weight"):
		if q.nExpert == 8 {
			typ = gguf.Q8_0
		}
	case strings.Contains(t.name, "ffn_down"):
		if (q.ftype == "q4_k_m" || q.ftype == "q5_k_m") && useMoreBits(t.layer, q.nLayer) {
			typ = gguf.Q6_K
		}
	case strings.Contains(t.name, "attn_output.weight"):
		if q.nExpert == 8 && q.ftype == "q4_k_m" {
			typ = gguf.Q5_K
		}
	}
	// tensor_type_fallback: rows that are no multiple of the block.
	if t.dims[0]%int64(typ.BlockSize()) != 0 {
		switch typ {
		case gguf.Q4_K:
			typ = gguf.Q5_0
		case gguf.Q5_K:
			typ = gguf.Q5_1
		case gguf.Q6_K:
			typ = gguf.Q8_0
		}
		if t.dims[0]%int64(typ.BlockSize()) != 0 {
			typ = gguf.F16
		}
	}
	return typ
}
