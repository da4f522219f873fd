package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
	"github.com/jamba-go/jamba/train"
)

func init() {
	register(&command{name: "merge", summary: "merge a LoRA adapter into a model's weights and save the result", run: runMerge})
}

func runMerge(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("merge", "[--model DIR|F.gguf] --lora DIR --output DIR [--dtype auto|f32|bf16]", `
Merges a LoRA adapter (a PEFT folder: adapter_config.json and
adapter_model.safetensors, from 'jamba train --lora-rank' or PEFT) into the
model: every adapted weight becomes W + (alpha/r)·B·A, computed in float64
from W as stored, and the whole model is written to --output as a Hugging
Face checkpoint (model.safetensors, config.json, the tokenizer files), each
file written atomically. The result loads anywhere the base does, without
--lora, and computes what the base with --lora computes.

--dtype chooses the weights' type: "auto" (the base's: bfloat16 stays
bfloat16, anything else float32), "f32" or "bf16". A bfloat16 result rounds
the merged weights, so it is close to, not exactly, the adapted model.
The whole model is held in float32 while it is written (4 bytes per
parameter of memory).`, stderr)
	modelRef := fs.String("model", "", modelHelp)
	loraDir := fs.String("lora", "", "LoRA adapter folder (required)")
	output := fs.String("output", "", "folder to write the merged checkpoint to (required)")
	dtype := fs.String("dtype", "auto", `weight type of the result: "auto", "f32" or "bf16"`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *loraDir == "" || *output == "" {
		return fmt.Errorf("%w: --lora and --output are required", errUsage)
	}
	if *modelRef != "" && filepath.Clean(*modelRef) == filepath.Clean(*output) {
		return fmt.Errorf("%w: --output must not be the --model folder", errUsage)
	}
	m, err := openModel(*modelRef, model.Options{})
	if err != nil {
		return err
	}
	defer m.Close()
	ad, err := lora.Load(*loraDir, m.Config)
	if err != nil {
		return fmt.Errorf("--lora %s: %w", *loraDir, err)
	}
	var dt safetensors.DType
	switch *dtype {
	case "auto":
		dt = safetensors.F32
		if m.Config.DType == "bfloat16" {
			dt = safetensors.BF16
		}
	case "f32":
		dt = safetensors.F32
	case "bf16":
		dt = safetensors.BF16
	default:
		return fmt.Errorf("%w: --dtype %q: want auto, f32 or bf16", errUsage, *dtype)
	}
	if err := lora.Merge(m.Model, ad); err != nil {
		return fmt.Errorf("--lora %s: %w", *loraDir, err)
	}
	p, err := train.ParamsFromModel(m.Model)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*output, 0o755); err != nil {
		return err
	}
	if err := p.Save(*output, dt); err != nil {
		return err
	}
	var dirs []string
	tokSrc := ""
	if m.Dir != "" && !isGGUF(m.Dir) {
		dirs = append(dirs, m.Dir)
		if _, err := os.Stat(filepath.Join(m.Dir, "tokenizer.json")); err == nil {
			tokSrc = filepath.Join(m.Dir, "tokenizer.json")
		}
	}
	var files map[string][]byte
	switch {
	case m.Dir != "" && isGGUF(m.Dir):
		files, err = ggufTokenizerFiles(m.Dir) // the GGUF file's tokenizer
	case tokSrc != "" || *modelRef == "":
		files, err = readTokenizerFiles(dirs, tokSrc)
	}
	if err != nil {
		return err
	}
	if files != nil {
		if err := writeTokenizerFiles(files, *output, m.Config); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "merged %s (%s) into %s; wrote %s (%s)\n", *loraDir, ad.Describe(), m.Name, *output, dt)
	return nil
}
