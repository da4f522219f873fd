package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/jamba-go/jamba/internal/safefile"
	"github.com/jamba-go/jamba/model"
)

func init() {
	register(&command{name: "init", summary: "write a randomly initialised checkpoint for a config", run: runInit})
}

func runInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("init", "--config CONFIG.json --output DIR [--seed N] [--dtype bf16|f32]", `
Writes a checkpoint in the Hugging Face layout (config.json and
model.safetensors) with Hugging Face's initialisation: linear, conv and
embedding weights from N(0, initializer_range^2), biases zero, norms one,
A_log = log(1..N), D = 1. Tensors are generated and written one at a time,
so memory stays at the size of the largest tensor.`, stderr)
	cfgPath := fs.String("config", "", "config.json to initialise (required)")
	out := fs.String("output", "", "folder to write (required)")
	seed := fs.Uint64("seed", 0, "random seed")
	dtype := fs.String("dtype", "", "weight dtype: bf16 or f32 (default: the config's dtype, else f32)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *out == "" {
		return fmt.Errorf("%w: --config and --output are required", errUsage)
	}
	data, err := safefile.ReadFile(*cfgPath, safefile.MaxConfig)
	if err != nil {
		return err
	}
	cfg, err := model.ParseConfig(data)
	if err != nil {
		if ce, ok := err.(*model.ConfigError); ok {
			ce.File = *cfgPath
		}
		return err
	}
	dt := *dtype
	if dt == "" {
		dt = "f32"
		if cfg.DType == "bfloat16" {
			dt = "bf16"
		}
	}
	total, _ := cfg.ParamCount()
	fmt.Fprintf(stderr, "initialising %s parameters (%s) into %s\n", humanCount(total), dt, *out)
	start := time.Now()
	last := start
	err = model.WriteInit(cfg, *out, dt, *seed, func(done, all int64) {
		if now := time.Now(); now.Sub(last) > time.Second || done == all {
			last = now
			fmt.Fprintf(stderr, "\r  %s / %s (%.0f%%)", humanBytes(done), humanBytes(all), 100*float64(done)/float64(all))
		}
	})
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s in %.1fs\n", filepath.Join(*out, "model.safetensors"), time.Since(start).Seconds())
	return nil
}
