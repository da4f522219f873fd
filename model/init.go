package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/internal/buf"
	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/safetensors"
)

// InitRNG is the random stream of an initialisation with this seed:
// WriteInit and train.InitParams draw the tensors from it in checkpoint
// order, so the same seed gives the same values.
func InitRNG(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x6a616d6261)) // "jamba"
}

// InitTensor fills v (the tensor spec s of config c) with Hugging Face's
// initialisation for JambaForCausalLM: linear, conv and embedding weights
// from N(0, initializer_range²) (the padding row of the embedding zero),
// biases zero, every RMSNorm weight one, A_log[c, n] = log(n+1), D = 1.
func (c *Config) InitTensor(s TensorSpec, v []float32, rng *rand.Rand) {
	std := c.InitializerRange
	name := s.Name
	switch {
	case strings.HasSuffix(name, "layernorm.weight"):
		fill(v, 1)
	case strings.HasSuffix(name, ".bias"):
		fill(v, 0)
	case strings.HasSuffix(name, "mamba.A_log"):
		N := s.Shape[1]
		for i := range v {
			v[i] = float32(math.Log(float64(i%N + 1)))
		}
	case strings.HasSuffix(name, "mamba.D"):
		fill(v, 1)
	default:
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
		if name == "model.embed_tokens.weight" && c.PadTokenID != nil {
			H := s.Shape[1]
			clear(v[*c.PadTokenID*H : (*c.PadTokenID+1)*H])
		}
	}
}

func fill(v []float32, x float32) {
	for i := range v {
		v[i] = x
	}
}

// WriteInit writes a randomly initialised checkpoint of config c to dir in
// the Hugging Face layout (config.json, model.safetensors), tensor by tensor,
// so memory use stays at the size of the largest tensor. dtype is "f32" or
// "bf16". progress, if not nil, is called after each tensor with the bytes
// written so far and the total.
func WriteInit(c *Config, dir, dtype string, seed uint64, progress func(done, total int64)) error {
	var st safetensors.DType
	switch dtype {
	case "f32":
		st = safetensors.F32
	case "bf16":
		st = safetensors.BF16
	default:
		return fmt.Errorf("model: unknown dtype %q (want f32 or bf16)", dtype)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	specs := c.Spec()
	infos := make([]safetensors.TensorInfo, len(specs))
	var total int64
	for i, s := range specs {
		infos[i] = safetensors.TensorInfo{Name: s.Name, DType: st, Shape: s.Shape}
		total += infos[i].ByteSize()
	}
	w, err := safetensors.Create(filepath.Join(dir, "model.safetensors"), infos, nil)
	if err != nil {
		return err
	}
	rng := InitRNG(seed)
	var vals []float32
	var raw []byte
	var done int64
	for i, s := range specs {
		n := infos[i].NumElements()
		vals = buf.Grow(&vals, n)
		c.InitTensor(s, vals, rng)
		raw = encodeInto(raw, st, vals)
		if err := w.Write(s.Name, raw); err != nil {
			return err
		}
		done += int64(len(raw))
		if progress != nil {
			progress(done, total)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	saved := *c
	switch dtype {
	case "f32":
		saved.DType = "float32"
	case "bf16":
		saved.DType = "bfloat16"
	}
	return writeJSON(filepath.Join(dir, "config.json"), &saved)
}

func encodeInto(dst []byte, dt safetensors.DType, v []float32) []byte {
	n := len(v) * dt.Size()
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	switch dt {
	case safetensors.BF16:
		for i, x := range v {
			b := kernels.F32ToBF16(x)
			dst[2*i], dst[2*i+1] = byte(b), byte(b>>8)
		}
	default:
		for i, x := range v {
			b := math.Float32bits(x)
			dst[4*i], dst[4*i+1], dst[4*i+2], dst[4*i+3] = byte(b), byte(b>>8), byte(b>>16), byte(b>>24)
		}
	}
	return dst
}

// writeJSON writes v as indented JSON to path through a temporary file.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'))
}
