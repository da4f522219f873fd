package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/gguf"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
	"github.com/jamba-go/jamba/train"
)

func init() {
	register(&command{name: "convert", summary: "convert a Hugging Face checkpoint to GGUF (llama.cpp) and back", run: runConvert})
}

func runConvert(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("convert", "--model DIR --output F.gguf --type TYPE | --model F.gguf --output DIR [--dtype bf16|f32]", `
With a checkpoint folder as --model, writes a GGUF file that llama.cpp and
ollama run, laid out as llama.cpp's convert_hf_to_gguf.py writes it (tensor
names, key/values, the tokenizer, the transforms) and, for a quantized
--type, as llama-quantize then writes it: its choice of type per tensor
(q4_k_m keeps the output matrix and some attn_v and ffn_down in Q6_K) and
ggml's reference quantizers, without an importance matrix. The weights are
quantized from the checkpoint's values directly.

With a .gguf file as --model, writes a Hugging Face folder: config.json,
model.safetensors (dequantized to --dtype), generation_config.json, the
chat template in tokenizer_config.json when the file has one, and the
tokenizer as tokenizer.gguf (the file's tokenizer metadata alone, which
jamba reads exactly; llama.cpp's vocabularies do not map exactly onto a
tokenizer.json).`, stderr)
	src := fs.String("model", "", "checkpoint folder, or .gguf file (required)")
	out := fs.String("output", "", "the .gguf file, or the folder, to write (required)")
	typ := fs.String("type", "", "GGUF type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m or q6_k")
	dtype := fs.String("dtype", "bf16", "GGUF to folder: the safetensors dtype, bf16 or f32")
	name := fs.String("name", "", "general.name of the GGUF file (default: the folder's name)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *src == "" || *out == "" {
		return fmt.Errorf("%w: --model and --output are required", errUsage)
	}
	start := time.Now()
	if isGGUF(*src) {
		if *typ != "" {
			return fmt.Errorf("%w: --type applies to a checkpoint folder; a .gguf --model converts to a folder (--dtype)", errUsage)
		}
		if err := ggufToFolder(*src, *out, *dtype); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s (%.1fs)\n", *out, time.Since(start).Seconds())
		return nil
	}
	if *typ == "" {
		return fmt.Errorf("%w: --type is required to write a GGUF file", errUsage)
	}
	if !isGGUF(*out) {
		return fmt.Errorf("%w: --output %s: a GGUF file's name ends in .gguf", errUsage, *out)
	}
	if _, ok := model.GGUFFileTypes[*typ]; !ok {
		return fmt.Errorf("%w: --type %q: want f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m or q6_k", errUsage, *typ)
	}
	kvs, err := tokenizerKVs(*src)
	if err != nil {
		return err
	}
	progress := newCountProgress(stderr, "tensor")
	err = model.ConvertToGGUF(*src, *out, model.GGUFConvertOptions{Type: *typ, Name: *name, Tokenizer: kvs,
		Progress: progress.update})
	progress.end()
	if err != nil {
		return err
	}
	st, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s: %s, %s (%.1fs)\n", *out, strings.ToUpper(*typ), humanBytes(st.Size()), time.Since(start).Seconds())
	return nil
}

// tokenizerKVs returns the tokenizer.* key/values llama.cpp's converter
// writes for the checkpoint in dir (Jamba's: add_space_prefix false), with
// the chat template of tokenizer_config.json.
func tokenizerKVs(dir string) ([]gguf.KV, error) {
	if src := ggufTokenizerSource(dir, ""); src != "" {
		// A folder converted from a GGUF file: its tokenizer metadata as it was.
		f, err := gguf.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		var kvs []gguf.KV
		for _, kv := range f.KVs() {
			if strings.HasPrefix(kv.Key, "tokenizer.") {
				kvs = append(kvs, kv)
			}
		}
		return kvs, nil
	}
	if !fileExists(filepath.Join(dir, "tokenizer.json")) {
		// No tokenizer (a `jamba init` checkpoint): llama.cpp's converter
		// writes the model "none" and the vocabulary size.
		cfg, err := model.LoadConfig(dir)
		if err != nil {
			return nil, err
		}
		return []gguf.KV{
			{Key: "jamba.vocab_size", Value: gguf.ValueOf(uint32(cfg.VocabSize))},
			{Key: "tokenizer.ggml.model", Value: gguf.ValueOf("none")},
		}, nil
	}
	tok, err := loadTokenizer(dir)
	if err != nil {
		return nil, err
	}
	v, err := tok.ToGGUF()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	if cfg.PadTokenID != nil && *cfg.PadTokenID < len(v.Tokens) {
		v.PAD = *cfg.PadTokenID
	}
	v.UNK = -1 // the converter's special vocabulary for this model leaves it out
	if v.Model == "llama" {
		f := false
		v.AddSpacePrefix = &f
	}
	kvs := v.KVs()
	tmpl, _, err := chat.FromTokenizerConfig(filepath.Join(dir, "tokenizer_config.json"))
	switch {
	case err == nil:
		kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_template", Value: gguf.ValueOf(tmpl.Source())})
	case errors.Is(err, chat.ErrNoTemplate) || errors.Is(err, os.ErrNotExist):
	default:
		return nil, err
	}
	return kvs, nil
}

// ggufToFolder writes a GGUF file as a Hugging Face checkpoint folder.
func ggufToFolder(path, dir, dtype string) error {
	var st safetensors.DType
	switch dtype {
	case "bf16":
		st = safetensors.BF16
	case "f32":
		st = safetensors.F32
	default:
		return fmt.Errorf("%w: --dtype %q: want bf16 or f32", errUsage, dtype)
	}
	m, err := model.LoadGGUF(path, model.Options{})
	if err != nil {
		return err
	}
	defer m.Close()
	p, err := train.ParamsFromModel(m)
	if err != nil {
		return err
	}
	if err := p.Save(dir, st); err != nil {
		return err
	}
	files, err := ggufTokenizerFiles(path)
	if err != nil {
		return err
	}
	return writeTokenizerFiles(files, dir, m.Config)
}

// tokenizerGGUF is the file a checkpoint folder made from a GGUF file keeps
// its tokenizer in.
const tokenizerGGUF = "tokenizer.gguf"
