// Package train trains Jamba models: the backward pass of every layer beside
// its forward, the training loss (mean next-token cross-entropy plus the
// router load-balancing loss), AdamW with a warmup and cosine schedule, data
// loading, checkpoints in the Hugging Face layout and resumable runs.
//
// Parameters, gradients and optimizer moments each live in one flat float32
// slice cut into named views in checkpoint order (Config.Spec), so the
// optimizer is one loop and a checkpoint is one pass over the views.
package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

// Tensor is one named view of a flat parameter slice.
type Tensor struct {
	Name   string
	Shape  []int
	Offset int // first element in the flat slice
	Size   int // number of elements
}

// Params holds every parameter of a model in one float32 slice, laid out in
// the order of Config.Spec (the checkpoint's tensor list). Gradients and
// optimizer moments use the same layout.
type Params struct {
	Config  *model.Config
	Data    []float32
	Tensors []Tensor
	index   map[string]int
}

// NewParams returns zero parameters for cfg.
func NewParams(cfg *model.Config) *Params {
	p := &Params{Config: cfg, index: map[string]int{}}
	off := 0
	for _, s := range cfg.Spec() {
		n := 1
		for _, d := range s.Shape {
			n *= d
		}
		p.index[s.Name] = len(p.Tensors)
		p.Tensors = append(p.Tensors, Tensor{Name: s.Name, Shape: s.Shape, Offset: off, Size: n})
		off += n
	}
	p.Data = make([]float32, off)
	return p
}

// Len is the number of parameters.
func (p *Params) Len() int { return len(p.Data) }

// Lookup returns the tensor called name.
func (p *Params) Lookup(name string) (Tensor, bool) {
	i, ok := p.index[name]
	if !ok {
		return Tensor{}, false
	}
	return p.Tensors[i], true
}

// View returns the part of buf (a slice in this layout: parameters,
// gradients, moments) that holds tensor name. It panics on an unknown name.
func (p *Params) View(buf []float32, name string) []float32 {
	t, ok := p.Lookup(name)
	if !ok {
		panic("train: no tensor " + name)
	}
	return buf[t.Offset : t.Offset+t.Size]
}

// Get returns the view of parameter name.
func (p *Params) Get(name string) []float32 { return p.View(p.Data, name) }

// Clone returns a deep copy of p.
func (p *Params) Clone() *Params {
	q := *p
	q.Data = append([]float32(nil), p.Data...)
	return &q
}

// InitParams returns parameters of cfg initialised as model.WriteInit does
// with the same seed: the same values, tensor by tensor, before any
// rounding to the file's dtype.
func InitParams(cfg *model.Config, seed uint64) *Params {
	p := NewParams(cfg)
	rng := model.InitRNG(seed)
	for _, t := range p.Tensors {
		cfg.InitTensor(model.TensorSpec{Name: t.Name, Shape: t.Shape}, p.Data[t.Offset:t.Offset+t.Size], rng)
	}
	return p
}

// LoadParams reads the checkpoint in dir (any checkpoint model.Load opens:
// one file or shards, F32, BF16, F16 or F64) into float32 parameters.
func LoadParams(dir string) (*Params, error) {
	m, err := model.Load(dir, model.Options{})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return ParamsFromModel(m)
}

// ParamsFromModel copies the weights of a loaded (not quantized) model into
// float32 parameters.
func ParamsFromModel(m *model.Model) (*Params, error) { return paramsFromModel(m, false) }

// FrozenParamsFromModel is ParamsFromModel for a base that stays frozen (a
// LoRA run): int8-quantized weights are taken too, dequantized, so that
// training sees the values the quantized model computes with.
func FrozenParamsFromModel(m *model.Model) (*Params, error) { return paramsFromModel(m, true) }

func paramsFromModel(m *model.Model, quantized bool) (*Params, error) {
	p := NewParams(m.Config)
	src := modelTensors(m)
	for _, t := range p.Tensors {
		s, ok := src[t.Name]
		if !ok {
			return nil, fmt.Errorf("train: model has no tensor %s", t.Name)
		}
		dst := p.Data[t.Offset : t.Offset+t.Size]
		switch {
		case s.mat != nil:
			w := s.mat
			if w.DType == kernels.I8 && !quantized {
				return nil, fmt.Errorf("train: tensor %s is int8-quantized; load the model without quantization", t.Name)
			}
			if w.Rows*w.Cols != t.Size {
				return nil, fmt.Errorf("train: tensor %s has %d×%d weights, want %v", t.Name, w.Rows, w.Cols, t.Shape)
			}
			for r := 0; r < w.Rows; r++ {
				w.Row(dst[r*w.Cols:(r+1)*w.Cols], r)
			}
		default:
			if len(s.vec) != t.Size {
				return nil, fmt.Errorf("train: tensor %s has %d values, want %v", t.Name, len(s.vec), t.Shape)
			}
			copy(dst, s.vec)
		}
	}
	return p, nil
}

// source is one model tensor: a matrix or a vector.
type source struct {
	mat *kernels.Matrix
	vec []float32
}

// modelTensors maps the checkpoint names of a model's tensors to its storage.
func modelTensors(m *model.Model) map[string]source {
	out := map[string]source{
		"model.embed_tokens.weight":    {mat: m.Embed},
		"model.final_layernorm.weight": {vec: m.FinalNorm},
	}
	if !m.Config.TieWordEmbeddings {
		out["lm_head.weight"] = source{mat: m.LMHead}
	}
	m.Matrices(true, func(name string, w **kernels.Matrix) { out[name] = source{mat: *w} })
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		out[p+"input_layernorm.weight"] = source{vec: l.InputNorm}
		out[p+"pre_ff_layernorm.weight"] = source{vec: l.PreFFNorm}
		if w := l.Mamba; w != nil {
			q := p + "mamba."
			vecs := map[string][]float32{
				"in_proj.bias": w.InBias, "out_proj.bias": w.OutBias,
				"conv1d.weight": w.ConvW, "conv1d.bias": w.ConvB,
				"dt_layernorm.weight": w.DtNorm, "b_layernorm.weight": w.BNorm, "c_layernorm.weight": w.CNorm,
				"dt_proj.bias": w.DtBias, "A_log": w.ALog, "D": w.D,
			}
			for k, v := range vecs {
				if v != nil {
					out[q+k] = source{vec: v}
				}
			}
		}
	}
	return out
}

// WriteTensors writes buf (in p's layout) to path as a safetensors file with
// one tensor per view, under the checkpoint names, in dtype "F32" or "BF16".
func (p *Params) WriteTensors(path string, buf []float32, dtype safetensors.DType, metadata map[string]string) error {
	infos := make([]safetensors.TensorInfo, len(p.Tensors))
	for i, t := range p.Tensors {
		infos[i] = safetensors.TensorInfo{Name: t.Name, DType: dtype, Shape: t.Shape}
	}
	w, err := safetensors.Create(path, infos, metadata)
	if err != nil {
		return err
	}
	for _, t := range p.Tensors {
		if err := w.WriteFloat32(t.Name, buf[t.Offset:t.Offset+t.Size]); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// Save writes the parameters as a Hugging Face checkpoint in dir:
// model.safetensors (dtype "F32" or "BF16") and config.json.
func (p *Params) Save(dir string, dtype safetensors.DType) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := p.WriteTensors(filepath.Join(dir, "model.safetensors"), p.Data, dtype, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return p.writeConfig(dir, dtype)
}

// writeConfig writes dir/config.json for the parameters saved in dtype.
func (p *Params) writeConfig(dir string, dtype safetensors.DType) error {
	cfg := *p.Config
	cfg.DType = "float32"
	if dtype == safetensors.BF16 {
		cfg.DType = "bfloat16"
	}
	data, err := cfg.MarshalJSON()
	if err != nil {
		return err
	}
	if !cfg.MambaInnerLayernorms {
		// MarshalJSON leaves out this legacy key (every released Jamba has
		// the norms); without it the checkpoint would not load back.
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		m["mamba_inner_layernorms"] = false
		if data, err = json.MarshalIndent(m, "", "  "); err != nil {
			return err
		}
	}
	return writeFileAtomic(filepath.Join(dir, "config.json"), append(data, '\n'))
}

// writeFileAtomic writes data to path through a synced temporary file and a
// rename.
func writeFileAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data)
}
