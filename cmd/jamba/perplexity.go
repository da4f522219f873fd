package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"time"
)

func init() {
	register(&command{name: "perplexity", summary: "measure a model's loss and perplexity on a text file", run: runPerplexity})
}

func runPerplexity(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("perplexity", "[--model DIR] --file F [--context N] [--max-tokens N] [--json]", `
Tokenizes F with the model's tokenizer (no special tokens), cuts the ids into
non-overlapping windows of N tokens from the first one, runs each window from
an empty state and reports the mean cross-entropy of the N-1 next-token
predictions of every window (nats/token) and its exponential, the perplexity.
With --json the last line of stdout is {"loss", "perplexity", "tokens"}.

--windows llama (the default for a .gguf model) measures as llama.cpp's
llama-perplexity does: the text is tokenized with its BOS, cut into chunks of
N tokens, each chunk's first token is replaced by BOS and only the second half
of each chunk is scored; the numbers compare with llama-perplexity -c N.`, stderr)
	mf := addModelFlags(fs, withCache)
	file := fs.String("file", "", "text file to evaluate (required)")
	ctx := fs.Int("context", 256, "window length in tokens")
	maxTokens := fs.Int("max-tokens", 0, "use only the first N tokens of the file (0: all)")
	windows := fs.String("windows", "", `"plain" (every prediction of each window) or "llama" (llama-perplexity's chunks); default: llama for a .gguf model, plain otherwise`)
	chunks := fs.Int("chunks", 0, "--windows llama: use at most N chunks (llama-perplexity's --chunks; 0: all)")
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	device := addDeviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: --file is required", errUsage)
	}
	if *ctx < 2 {
		return fmt.Errorf("%w: --context must be at least 2", errUsage)
	}
	if *windows == "" {
		*windows = "plain"
		if isGGUF(*mf.model) {
			*windows = "llama"
		}
	}
	if *windows != "plain" && *windows != "llama" {
		return fmt.Errorf("%w: --windows must be plain or llama", errUsage)
	}
	if *windows == "llama" && *ctx < 4 {
		return fmt.Errorf("%w: --context must be at least 4 with --windows llama", errUsage)
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := m.Tokenizer()
	if err != nil {
		return err
	}
	if *windows == "llama" {
		return llamaPerplexity(m, tok.Encode, tok.BOS, *file, *ctx, *chunks, *asJSON, stdout, stderr)
	}
	ids, err := encodeFile(tok, *file)
	if err != nil {
		return err
	}
	lossOver := m.LossOverWindows
	gm, err := onDevice(*device, m.Model, mf.options(), stderr)
	if err != nil {
		return err
	}
	if gm != nil {
		defer gm.Close()
		lossOver = gm.LossOverWindows
	}
	start := time.Now()
	progress := newCountProgress(stderr, "window")
	loss, n, err := lossOver(ids, *ctx, *maxTokens, progress.update)
	progress.end()
	if err != nil {
		return err
	}
	ppl := math.Exp(loss)
	if *asJSON {
		b, _ := json.Marshal(map[string]any{"loss": loss, "perplexity": ppl, "tokens": n})
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "loss %.5f nats/token, perplexity %.3f over %d predictions (%d-token windows, %.1fs)\n",
		loss, ppl, n, *ctx, time.Since(start).Seconds())
	return nil
}

// llamaPerplexity is perplexity with llama-perplexity's windows.
func llamaPerplexity(m *loadedModel, encode func(string, bool) []int, bosOf func() (int, bool), file string, ctx, chunks int, asJSON bool, stdout, stderr io.Writer) error {
	text, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ids := encode(string(text), true)
	bos := -1
	if b, ok := bosOf(); ok && len(ids) > 0 && ids[0] == b {
		bos = b // the tokenizer adds BOS: each chunk starts with it
	}
	start := time.Now()
	progress := newCountProgress(stderr, "chunk")
	loss, n, _, err := m.LossLlamaWindows(ids, ctx, chunks, bos, progress.update)
	progress.end()
	if err != nil {
		return err
	}
	ppl := math.Exp(loss)
	if asJSON {
		b, _ := json.Marshal(map[string]any{"loss": loss, "perplexity": ppl, "tokens": n})
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "loss %.5f nats/token, perplexity %.4f over %d predictions (%d chunks of %d tokens, second halves scored, %.1fs)\n",
		loss, ppl, n, n/(ctx-1-ctx/2), ctx, time.Since(start).Seconds())
	return nil
}
