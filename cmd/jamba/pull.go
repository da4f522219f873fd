package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"

	"github.com/jamba-go/jamba/hub"
)

func init() {
	register(&command{name: "pull", summary: "download a model from the Hugging Face Hub into the shared cache", run: runPull})
}

const pullHelp = `
Downloads the files a model needs (config, safetensors weights or one GGUF
file, tokenizer, chat template) from the Hugging Face Hub into the cache
that huggingface_hub, transformers and llama.cpp share, and prints the
local path. A model already there costs one request (which commit the
revision is at) and no download; an interrupted download resumes.

  jamba pull ai21labs/AI21-Jamba-Mini-1.7           the main branch
  jamba pull org/name@v1.0                          a branch, tag or commit
  jamba pull org/name-GGUF:Q4_K_M                   one quantization of a GGUF repository
  jamba pull org/name-GGUF --file name-Q8_0.gguf    one GGUF file by name

Every command's --model takes the same names, downloading on first use.

Environment, as huggingface_hub reads it:
  HF_TOKEN        access token for gated and private repositories (else the
                  token 'huggingface-cli login' saved)
  HF_ENDPOINT     the Hub's address, for a mirror (default https://huggingface.co)
  HF_HUB_CACHE    the cache (default $HF_HOME/hub, ~/.cache/huggingface/hub)
  HF_HUB_OFFLINE  1: use the cache only, never the network`

func runPull(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pull", "[flags] ORG/NAME[@REVISION][:QUANT]", pullHelp, stderr)
	token := fs.String("token", "", "access token for gated or private repositories (default: $HF_TOKEN)")
	file := fs.String("file", "", "the GGUF file to download from a repository of GGUF files (default: the Q4_K_M one, else the first)")
	workers := fs.Int("workers", 4, "files downloaded at once")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: give one model name, e.g. jamba pull ai21labs/AI21-Jamba-Mini-1.7", errUsage)
	}
	ref, err := hub.ParseRef(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *file != "" {
		ref.File, ref.Quant = *file, ""
	}
	c := hubClient(stderr)
	if *token != "" {
		c.Token = *token
	}
	c.Workers = *workers
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	snap, err := c.Pull(ctx, ref)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, snap.Path())
	return nil
}

// hubClient is a Hub client configured from the environment, reporting
// progress on stderr.
func hubClient(stderr io.Writer) *hub.Client {
	c := hub.FromEnv()
	c.Progress = stderr
	return c
}

var (
	resolvedMu sync.Mutex
	resolved   = map[string]string{}
)

// resolveModelPath turns a model argument into a local path: an existing
// file or folder is returned as it is; a Hugging Face name
// (org/name[@revision][:QUANT]) is pulled into the cache, or found there,
// and its snapshot folder (or GGUF file) returned. Anything else is
// returned unchanged for the loader to report. Each name is resolved once
// per process.
func resolveModelPath(s string, stderr io.Writer) (string, error) {
	if s == "" {
		return "", nil
	}
	if _, err := os.Stat(s); err == nil {
		return s, nil
	}
	ref, err := hub.ParseRef(s)
	if err != nil {
		return s, nil
	}
	resolvedMu.Lock()
	defer resolvedMu.Unlock()
	if p, ok := resolved[s]; ok {
		return p, nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := hubClient(stderr)
	snap, err := c.Pull(ctx, ref)
	if err != nil {
		var he *hub.HTTPError
		if !errors.As(err, &he) && !errors.Is(err, hub.ErrNotCached) && ctx.Err() == nil {
			// Most likely no network: say that a local folder was looked for too.
			return "", fmt.Errorf("%s is no local folder, and fetching it from %s failed: %w", s, c.Endpoint, err)
		}
		return "", err
	}
	resolved[s] = snap.Path()
	return snap.Path(), nil
}

// resolveModelFlag resolves a command's --model flag in place (see
// resolveModelPath). loadtest's --model names a model of a running server,
// not a checkpoint, and is left alone.
func resolveModelFlag(fs *flag.FlagSet) error {
	if fs.Name() == "jamba loadtest" {
		return nil
	}
	f := fs.Lookup("model")
	if f == nil {
		return nil
	}
	p, err := resolveModelPath(f.Value.String(), fs.Output())
	if err != nil {
		return err
	}
	return f.Value.Set(p)
}

// modelFlagNote is added to the --help of commands with a --model flag.
const modelFlagNote = "--model also takes a Hugging Face model name, org/name[@revision][:QUANT], downloaded into the shared cache on first use (see 'jamba pull --help')."
