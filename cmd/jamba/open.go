package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
)

// modelHelp documents --model wherever a command takes one.
const modelHelp = "checkpoint folder or .gguf file (default: the embedded demo model)"

// activationsHelp documents the --activations flag.
const activationsHelp = `rounding of the activations that multiply block-quantized weights (GGUF Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, and --quantize q4): "int8" (the default, as llama.cpp rounds them: within 1/254 of each block's largest value, the faster products) or "int16" (within 1/65534: logits within 0.001% of the dequantized weights' float32 product; see docs/KERNELS.md)`

// kvCacheHelp documents the --kv-cache flag.
const kvCacheHelp = `keys and values of the attention layers' cache: "f32" (exact) or "bf16" (half the memory and half the reads at long context; the loss moves by about 0.001%)`

// modelFlags are the flags every command that loads a model shares:
// which model, how to hold its weights and cache, and how many threads the
// kernels use.
type modelFlags struct {
	model       *string
	quantize    *string // nil for commands that need the weights as stored
	activations *string // nil with quantize
	kvCache     *string // nil for commands that keep no cache
	threads     *int
	checkFinite *bool
	noMmap      *bool
	// lora are the --lora values: adapter folders merged into the model
	// at load, and for serve name=DIR adapters served beside it.
	lora       pathList
	namedLoRA  bool // the command serves name=DIR adapters (serve)
	loraMerged string
}

// modelFlagSet chooses the optional flags of addModelFlags.
type modelFlagSet int

const (
	// weightsOnly: --model and --threads (training, gradients).
	weightsOnly modelFlagSet = iota
	// withQuantize adds --quantize and --activations (one forward pass,
	// no cache).
	withQuantize
	// withCache adds those and --kv-cache (generation and evaluation).
	withCache
)

// addModelFlags defines the shared model flags on fs: --model, --threads
// and --check-finite, and the optional ones which asks for.
func addModelFlags(fs *flag.FlagSet, which modelFlagSet) *modelFlags {
	f := &modelFlags{model: fs.String("model", "", modelHelp)}
	if which >= withQuantize {
		f.quantize = fs.String("quantize", "", `quantize linear weights at load: "int8" (one scale per row) or "q4" (4.5-bit Q4_K blocks, as llama.cpp's Q4_K_M)`)
		f.activations = fs.String("activations", "int8", activationsHelp)
	}
	if which >= withCache {
		f.kvCache = fs.String("kv-cache", "f32", kvCacheHelp)
	}
	if which >= withQuantize {
		fs.Var(&f.lora, "lora", "LoRA adapter folder (PEFT's adapter_config.json and adapter_model.safetensors, from 'jamba train --lora-rank' or PEFT) merged into the model's weights at load")
	}
	f.threads = fs.Int("threads", 0, "threads for the kernels (default: all cores)")
	f.checkFinite = fs.Bool("check-finite", false, "scan every weight for NaN and infinities at load (non-finite logits are an error either way)")
	f.noMmap = fs.Bool("no-mmap", false, "read a GGUF file's weights into memory instead of mapping the file, as llama.cpp's --no-mmap: loading first reads the whole file, and the weights no longer depend on the page cache (on some virtual machines decode runs a few percent faster)")
	return f
}

// options are the model load options the flags give.
func (f *modelFlags) options() model.Options {
	o := model.Options{CheckFinite: *f.checkFinite, InMemory: *f.noMmap}
	if f.quantize != nil {
		o.Quantize = *f.quantize
	}
	if f.kvCache != nil {
		o.KVCache = *f.kvCache
	}
	return o
}

// activationBits is the kernels' activation width for an --activations
// value.
func activationBits(v string) (int, error) {
	switch v {
	case "int8", "":
		return 8, nil
	case "int16":
		return 16, nil
	}
	return 0, fmt.Errorf("%w: --activations %q (want int16 or int8)", errUsage, v)
}

// applyThreads sets the kernels' thread count when --threads was given,
// and their activation width (--activations).
func (f *modelFlags) applyThreads() error {
	if f.activations != nil {
		bits, err := activationBits(*f.activations)
		if err != nil {
			return err
		}
		if err := kernels.SetActivationBits(bits); err != nil {
			return err
		}
	}
	switch n := *f.threads; {
	case n < 0:
		return fmt.Errorf("%w: --threads must not be negative", errUsage)
	case n > 0:
		runtime.GOMAXPROCS(n)
		kernels.SetThreads(n)
	}
	return nil
}

// open applies --threads, opens the --model with openModel and merges the
// --lora adapter (one without a name) into it.
func (f *modelFlags) open() (*loadedModel, error) {
	if err := f.applyThreads(); err != nil {
		return nil, err
	}
	var merge []string
	for _, v := range f.lora {
		if name, _, ok := strings.Cut(v, "="); ok && f.namedLoRA && name != "" && !strings.ContainsAny(name, `/\`) {
			continue
		}
		merge = append(merge, v)
	}
	if len(merge) > 1 {
		return nil, fmt.Errorf("%w: --lora: one adapter to merge (got %d)", errUsage, len(merge))
	}
	m, err := openModel(*f.model, f.options())
	if err != nil {
		return nil, err
	}
	if len(merge) == 1 {
		ad, err := lora.Load(merge[0], m.Config)
		if err == nil {
			err = lora.Merge(m.Model, ad)
		}
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("--lora %s: %w", merge[0], err)
		}
		f.loraMerged = merge[0]
	}
	return m, nil
}

// loadedModel is a model opened from a --model value, with its tokenizer.
type loadedModel struct {
	*model.Model
	// Name names the model to people and in /v1/models: the folder's
	// name, or the demo model's.
	Name string
	// Dir is the folder holding the checkpoint's other files
	// (tokenizer_config.json and the like); "" for the embedded demo model.
	Dir string

	tok    *tokenizer.Tokenizer
	tokErr error
}

// Tokenizer returns the model's tokenizer, or the error of loading it (one
// naming the folder when the checkpoint has no tokenizer.json).
func (l *loadedModel) Tokenizer() (*tokenizer.Tokenizer, error) {
	return l.tok, l.tokErr
}

// openModel is where a --model value becomes a loaded model and its
// tokenizer: "" is the embedded demo model, anything else a Hugging Face
// checkpoint folder. Every command that loads a model calls it.
func openModel(ref string, opts model.Options) (*loadedModel, error) {
	if ref == "" {
		m, err := demo.Load(opts)
		if err != nil {
			return nil, err
		}
		l := &loadedModel{Model: m, Name: modelName(ref)}
		l.tok, l.tokErr = demo.Tokenizer()
		if l.tokErr != nil {
			m.Close()
			return nil, l.tokErr
		}
		return l, nil
	}
	if isGGUF(ref) {
		return openGGUF(ref, opts)
	}
	m, err := model.Load(ref, opts)
	if err != nil {
		return nil, err
	}
	// A missing or broken tokenizer is an error only for what needs it:
	// token ids work without one.
	l := &loadedModel{Model: m, Name: modelName(ref), Dir: ref}
	l.tok, l.tokErr = loadTokenizer(ref)
	return l, nil
}

// modelName is the name of the model a --model value opens, known before
// it is loaded: the demo model's name, or the folder's.
func modelName(ref string) string {
	if ref == "" {
		return demo.Name
	}
	return filepath.Base(filepath.Clean(ref))
}

// errNoTokenizer marks a checkpoint folder without a tokenizer.json.
var errNoTokenizer = errors.New("no tokenizer.json")

// loadTokenizer loads the tokenizer of the checkpoint folder dir
// (tokenizer.json, with tokenizer_config.json when present), or the demo
// model's when dir is empty. A folder without tokenizer.json gives an
// error that wraps errNoTokenizer.
func loadTokenizer(dir string) (*tokenizer.Tokenizer, error) {
	if dir == "" {
		return demo.Tokenizer()
	}
	if src := ggufTokenizerSource(dir, ""); src != "" {
		return ggufTokenizer(src) // a .gguf file, or a folder converted from one
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		return nil, fmt.Errorf("%s has %w: give the command a tokenizer (--tokenizer, where it has one) or token ids (--ids)", dir, errNoTokenizer)
	}
	return openTokenizer(dir)
}

// openTokenizer loads a tokenizer.json (or the one inside a folder), or the
// embedded demo model's tokenizer when path is empty.
func openTokenizer(path string) (*tokenizer.Tokenizer, error) {
	if path == "" {
		return demo.Tokenizer()
	}
	if isGGUF(path) {
		return ggufTokenizer(path)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "tokenizer.json")
	}
	return tokenizer.Load(path)
}

// encodeFile reads a text file and encodes it, without special tokens.
func encodeFile(tok *tokenizer.Tokenizer, file string) ([]int, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return tok.Encode(string(text), false), nil
}
