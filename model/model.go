// Package model implements the Jamba hybrid Transformer–Mamba mixture-of-experts
// language model over Hugging Face checkpoints: the config, weight binding by
// the checkpoint's tensor names, and the forward pass for prefill, chunked
// prefill and decode over a batch of independent sequences, each with its own
// hybrid cache.
//
// The arithmetic is float32 with float32 SSM state; weights stay in their
// file's storage type (f32 or bf16, memory-mapped) or are quantized to int8.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/gguf"
	"github.com/jamba-go/jamba/internal/safefile"
	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/safetensors"
)

// Model is a loaded Jamba model. Its weights alias the checkpoint's memory
// mapping; Close releases it. A Model is safe for concurrent use by several
// Workspaces.
type Model struct {
	Config    *Config
	Embed     *kernels.Matrix // [V, H]
	FinalNorm []float32       // [H]
	LMHead    *kernels.Matrix // [V, H]; the same matrix as Embed when tied
	Layers    []Layer

	// Dir is the checkpoint folder, or the .gguf file ("" for a model
	// loaded with LoadFiles).
	Dir string
	// Generation holds generation_config.json when the checkpoint has one.
	Generation GenerationConfig
	// PackedExperts is set when the checkpoint stores each MoE layer's
	// experts packed, as transformers 5 may save them (PackedGateUp,
	// PackedDown), rather than one by one.
	PackedExperts bool

	set    *safetensors.Set
	gg     *gguf.File         // the mapped GGUF file, for a model loaded from one
	act    kernels.Activation // hidden_act
	kvBF16 bool               // caches keep keys and values in bfloat16 (Options.KVCache)
	// identityExtra names what was merged into the weights after loading
	// (MergedWith), part of Identity.
	identityExtra string
	shared        bool // a ShareWeights copy: Close leaves the mapping alone
}

// GenerationConfig is the subset of generation_config.json the engine uses.
type GenerationConfig struct {
	EOSTokenIDs []int
	BOSTokenID  *int
}

// Options control how a model is loaded.
type Options struct {
	// Quantize is "" (keep the file's dtype), "int8" (linear weights
	// quantized at load with one scale per output row) or "q4" (ggml's
	// Q4_K blocks, 4.5 bits per weight, for matrices whose rows are whole
	// blocks of 256; Q5_0 for whole blocks of 32, as llama.cpp's Q4_K_M
	// does; int8 otherwise); norms, conv, A_log, D and routers stay in
	// float32.
	Quantize string
	// KVCache is "" or "f32" (keys and values kept in float32, exact) or
	// "bf16": the attention layers' keys and values are rounded to
	// bfloat16 as they enter the cache, halving its memory and the bytes
	// attention reads per token.
	KVCache string
	// CheckFinite scans every tensor of the checkpoint for NaN and
	// infinities at load and fails naming the first (llama.cpp's
	// --check-tensors).
	CheckFinite bool
	// InMemory reads a GGUF file's weights into memory the process
	// allocates instead of mapping the file (gguf.ReadFile; llama.cpp's
	// --no-mmap). Hugging Face checkpoints are always mapped.
	InMemory bool
}

// Load opens the Hugging Face checkpoint in dir: config.json, and
// model.safetensors or model.safetensors.index.json with its shards, which
// are memory-mapped.
func Load(dir string, opts Options) (*Model, error) {
	if opts.InMemory {
		return nil, fmt.Errorf("model: %s: reading the weights into memory (--no-mmap) applies to GGUF files; a Hugging Face checkpoint's safetensors are mapped", dir)
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	var gen []byte
	genPath := filepath.Join(dir, "generation_config.json")
	if data, err := safefile.ReadFile(genPath, safefile.MaxConfig); err == nil {
		gen = data
	} else if !errors.Is(err, os.ErrNotExist) {
		set.Close()
		return nil, fmt.Errorf("model: %w", err)
	}
	m, err := newModel(cfg, set, gen, genPath, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (checkpoint %s)", err, dir)
	}
	m.Dir = dir
	return m, nil
}

// Files is a checkpoint held in memory, such as a model embedded in a
// binary: it returns the bytes of the named file (config.json,
// model.safetensors, ...) and whether the checkpoint has it. The bytes must
// stay valid and unchanged while the model is in use: the weights alias
// them.
type Files func(name string) ([]byte, bool)

// LoadFiles loads a checkpoint from files, with the same layout as a
// folder for Load: config.json, generation_config.json when present, and
// model.safetensors or model.safetensors.index.json with its shards. name
// names the checkpoint in errors.
func LoadFiles(name string, files Files, opts Options) (*Model, error) {
	data, ok := files("config.json")
	if !ok {
		return nil, fmt.Errorf("model: %s has no config.json", name)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	index, _ := files(safetensors.IndexFileName)
	set, err := safetensors.NewSet(index, func(file string) (*safetensors.File, error) {
		b, ok := files(file)
		if !ok {
			return nil, fmt.Errorf("%s has no file %s", name, file)
		}
		return safetensors.OpenBytes(file, b)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	gen, _ := files("generation_config.json")
	m, err := newModel(cfg, set, gen, "generation_config.json", opts)
	if err != nil {
		return nil, fmt.Errorf("%w (checkpoint %s)", err, name)
	}
	return m, nil
}

// newModel binds the weights of set, and the generation config gen (nil
// when the checkpoint has none; genName names it in errors). On error it
// closes set.
func newModel(cfg *Config, set *safetensors.Set, gen []byte, genName string, opts Options) (*Model, error) {
	m := &Model{Config: cfg, set: set}
	if gen != nil {
		if err := m.Generation.parse(gen); err != nil {
			set.Close()
			return nil, fmt.Errorf("model: %s: %w", genName, err)
		}
	}
	if opts.CheckFinite {
		if err := m.CheckWeightsFinite(); err != nil {
			set.Close()
			return nil, err
		}
	}
	if err := m.finish(opts); err != nil {
		set.Close()
		return nil, err
	}
	return m, nil
}

func (g *GenerationConfig) parse(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("not a JSON object: %v", err)
	}
	p := &configParser{raw: raw}
	p.intOrList("eos_token_id", &g.EOSTokenIDs)
	p.optInt("bos_token_id", &g.BOSTokenID)
	return p.err
}

func (m *Model) finish(opts Options) error {
	if err := m.bind(m.set); err != nil {
		return err
	}
	switch opts.KVCache {
	case "", "f32":
	case "bf16":
		m.kvBF16 = true
	default:
		return fmt.Errorf("model: unknown KV cache type %q (want f32 or bf16)", opts.KVCache)
	}
	switch opts.Quantize {
	case "":
	case "int8", "q4":
		type job struct {
			name string
			w    **kernels.Matrix
		}
		var jobs []job
		m.Matrices(false, func(name string, w **kernels.Matrix) {
			if (*w).DType != kernels.I8 {
				jobs = append(jobs, job{name, w})
			}
		})
		// Matrices are independent: quantize them on every core.
		var wg sync.WaitGroup
		next := make(chan job)
		for range runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				for j := range next {
					if opts.Quantize == "q4" {
						*j.w = quantizeQ4(*j.w)
					} else {
						*j.w = kernels.QuantizeI8(*j.w)
					}
					// The file's copy is no longer read: let its pages go so
					// resident memory holds the int8 copy only.
					m.set.Release(j.name)
				}
			})
		}
		for _, j := range jobs {
			next <- j
		}
		close(next)
		wg.Wait()
		if m.Config.TieWordEmbeddings {
			// The tied LM head stays in the file's dtype: the embedding rows are
			// looked up exactly, and quantizing the head separately would double memory.
			m.LMHead = m.Embed
		}
	default:
		return fmt.Errorf("model: unknown quantization %q (want int8 or q4)", opts.Quantize)
	}
	m.prepare()
	return nil
}

// prepare computes the derived views the forward pass uses. It must run
// again whenever a weight matrix is replaced.
func (m *Model) prepare() {
	c := m.Config
	m.act, _ = kernels.LookupActivation(c.HiddenAct) // Validate checked it
	Di, Kc := c.InnerSize(), c.MambaDConv
	for i := range m.Layers {
		w := m.Layers[i].Mamba
		if w == nil {
			continue
		}
		w.InX, w.InZ = w.InProj.Slice(0, Di), w.InProj.Slice(Di, 2*Di)
		if w.InBias != nil {
			w.InXBias, w.InZBias = w.InBias[:Di], w.InBias[Di:]
		}
		w.ConvWT = make([]float32, Di*Kc)
		kernels.TransposeConvWeight(w.ConvWT, w.ConvW, Di, Kc)
	}
}

// Close releases the checkpoint mapping. The model must not be used after.
func (m *Model) Close() error {
	if m.shared {
		return nil
	}
	if m.gg != nil {
		err := m.gg.Close()
		m.gg = nil
		return err
	}
	if m.set == nil {
		return nil
	}
	err := m.set.Close()
	m.set = nil
	return err
}

// EOS returns the end-of-sequence ids: generation_config.json's when present,
// else config.json's.
func (m *Model) EOS() []int {
	if len(m.Generation.EOSTokenIDs) > 0 {
		return m.Generation.EOSTokenIDs
	}
	return m.Config.EOSTokenIDs
}

// IsEOS reports whether id ends generation.
func (m *Model) IsEOS(id int) bool {
	for _, e := range m.EOS() {
		if e == id {
			return true
		}
	}
	return false
}

// CacheShape is the per-sequence state this model needs.
func (m *Model) CacheShape() cache.Shape {
	c := m.Config
	sh := cache.Shape{
		Layers: make([]cache.LayerKind, c.NumHiddenLayers),
		KVDim:  c.NumKeyValueHeads * c.HeadDimension(),
		KVBF16: m.kvBF16,
		Inner:  c.InnerSize(),
		Conv:   c.MambaDConv - 1,
		State:  c.MambaDState,
	}
	for i := range sh.Layers {
		if c.Mixer(i) == Attention {
			sh.Layers[i] = cache.AttentionLayer
		}
	}
	return sh
}

// NewCache returns an empty sequence state with KV room for capacity tokens.
func (m *Model) NewCache(capacity int) *cache.Seq { return cache.New(m.CacheShape(), capacity) }

// WeightBytes is the storage size of all weights as loaded (the tied LM head
// counted once).
func (m *Model) WeightBytes() int64 {
	var n int64
	m.Matrices(true, func(_ string, w **kernels.Matrix) { n += (*w).Bytes() })
	n += m.Embed.Bytes()
	return n
}

// ErrTokenRange is wrapped by errors for token ids outside the vocabulary.
var ErrTokenRange = errors.New("token id out of range")
