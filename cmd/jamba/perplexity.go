package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
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
With --json the last line of stdout is {"loss", "perplexity", "tokens"}.`, stderr)
	mf := addModelFlags(fs, withCache)
	file := fs.String("file", "", "text file to evaluate (required)")
	ctx := fs.Int("context", 256, "window length in tokens")
	maxTokens := fs.Int("max-tokens", 0, "use only the first N tokens of the file (0: all)")
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
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := m.Tokenizer()
	if err != nil {
		return err
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
	loss, n, err := lossOver(ids, *ctx, *maxTokens, func(done, total int) {
		fmt.Fprintf(stderr, "\rwindow %d/%d", done, total)
	})
	fmt.Fprintln(stderr)
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
