package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/jamba-go/jamba/model"
)

func init() {
	register(&command{name: "perplexity", summary: "measure a model's loss and perplexity on a text file", run: runPerplexity})
}

func runPerplexity(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("perplexity", "--model DIR --file F [--ctx N] [--max-tokens N] [--json]", `
Tokenizes F with the model's tokenizer (no special tokens), cuts the ids into
non-overlapping windows of N tokens from the first one, runs each window from
an empty state and reports the mean cross-entropy of the N-1 next-token
predictions of every window (nats/token) and its exponential, the perplexity.
With --json the last line of stdout is {"loss", "perplexity", "tokens"}.`, stderr)
	dir := fs.String("model", "", "checkpoint folder (default: the embedded demo model)")
	file := fs.String("file", "", "text file to evaluate (required)")
	ctx := fs.Int("ctx", 256, "window length in tokens")
	maxTokens := fs.Int("max-tokens", 0, "use only the first N tokens of the file (0: all)")
	quant := fs.String("quantize", "", `quantize linear weights at load: "int8"`)
	kvCache := fs.String("kv-cache", "f32", kvCacheHelp)
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	device := addDeviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: --file is required", errUsage)
	}
	if *ctx < 2 {
		return fmt.Errorf("%w: --ctx must be at least 2", errUsage)
	}
	ids, err := encodeFile(*dir, *file)
	if err != nil {
		return err
	}
	m, err := loadModel(*dir, model.Options{Quantize: *quant, KVCache: *kvCache}, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	lossOver := m.LossOverWindows
	gm, err := onDevice(*device, m, model.Options{Quantize: *quant, KVCache: *kvCache}, stderr)
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
