package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/jamba-go/jamba/cuda"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
	"github.com/jamba-go/jamba/textgen"
)

const deviceHelp = `where to compute: "cpu", or "cuda" (GPU 0 through the NVIDIA driver and cuBLAS, found at run time)`

func addDeviceFlag(fs *flag.FlagSet) *string { return fs.String("device", "cpu", deviceHelp) }

// onDevice returns m's weights uploaded to the GPU for --device cuda, and
// nil for cpu.
func onDevice(device string, m *model.Model, opts model.Options, stderr io.Writer) (*cuda.Model, error) {
	switch device {
	case "", "cpu":
		return nil, nil
	case "cuda":
	default:
		return nil, fmt.Errorf("%w: --device %q (want cpu or cuda)", errUsage, device)
	}
	if opts.KVCache == "bf16" {
		return nil, fmt.Errorf("%w: --kv-cache bf16 is CPU-only; the GPU keeps keys and values in float32", errUsage)
	}
	if m.Merges() != "" {
		// The merged matrices are float32 beside the base's bfloat16
		// ones, which the GPU's fused uploads do not mix.
		return nil, fmt.Errorf("%w: --lora is CPU-only; for the GPU, merge the adapter with 'jamba merge --lora DIR --output MERGED' and load MERGED", errUsage)
	}
	dev, err := cuda.Open(0)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "uploading %s of weights to %s...\n", humanBytes(m.WeightBytes()), dev.Name)
	return cuda.Upload(dev, m)
}

// benchCUDA is `jamba bench --device cuda`: the model's weights, or random
// ones made on the GPU for --config, then cuda.Bench.
func benchCUDA(dir, config string, prompt, gen int, batches string, ctxTokens int, seed uint64, stages, checkFinite, asJSON bool, stdout, stderr io.Writer) error {
	var bs []int
	for _, s := range strings.Split(batches, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || b < 1 {
			return fmt.Errorf("%w: --batches %q: want positive integers separated by commas", errUsage, batches)
		}
		bs = append(bs, b)
	}
	dev, err := cuda.Open(0)
	if err != nil {
		return err
	}
	var gm *cuda.Model
	name := dir
	if config != "" {
		data, err := os.ReadFile(config)
		if err != nil {
			return err
		}
		c, err := model.ParseConfig(data)
		if err != nil {
			return fmt.Errorf("%s: %w", config, err)
		}
		total, _ := c.ParamCount()
		fmt.Fprintf(stderr, "random bf16 weights for %s (%s parameters) on %s...\n", config, humanCount(total), dev.Name)
		if gm, err = cuda.NewRandom(dev, c, seed); err != nil {
			return err
		}
		name = config
	} else {
		m, err := openModel(dir, model.Options{CheckFinite: checkFinite})
		if err != nil {
			return err
		}
		defer m.Close()
		if gm, err = onDevice("cuda", m.Model, model.Options{}, stderr); err != nil {
			return err
		}
		if name == "" {
			name = "demo"
		}
	}
	defer gm.Close()
	r, err := cuda.Bench(gm, cuda.BenchOptions{PromptTokens: prompt, GenTokens: gen, Batches: bs, Context: ctxTokens, Seed: seed, Profile: stages, Progress: stderr})
	if err != nil {
		return err
	}
	if asJSON {
		b, _ := json.Marshal(struct {
			Model string `json:"model"`
			*cuda.BenchResult
		}{name, r})
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	w := stdout
	fmt.Fprintf(w, "model %s on %s\n", name, r.Device)
	fmt.Fprintf(w, "%-30s %12.1f GB/s (read + write)\n", "device copy bandwidth", r.CopyBandwidthGBs)
	fmt.Fprintf(w, "%-30s %12s\n", "weights on the GPU", humanBytes(r.WeightBytes))
	fmt.Fprintf(w, "%-30s %12s\n", "active weight bytes/token", humanBytes(r.ActiveBytesPerToken))
	if prompt > 0 {
		fmt.Fprintf(w, "%-30s %12.1f tok/s\n", fmt.Sprintf("prefill (%d tokens)", prompt), r.PrefillTokPerS)
	}
	keys := make([]int, 0, len(r.Decode))
	for k := range r.Decode {
		b, _ := strconv.Atoi(k)
		keys = append(keys, b)
	}
	sort.Ints(keys)
	for _, b := range keys {
		k := strconv.Itoa(b)
		fmt.Fprintf(w, "%-30s %12.1f tok/s (%.2f ms/step)\n", fmt.Sprintf("decode, batch %d", b), r.Decode[k], r.DecodeMsPerStep[k])
		p := r.ProfileMs[k]
		names := make([]string, 0, len(p))
		for s := range p {
			names = append(names, s)
		}
		sort.Slice(names, func(i, j int) bool { return p[names[i]] > p[names[j]] })
		for _, s := range names {
			fmt.Fprintf(w, "    %-26s %12.3f ms\n", s, p[s])
		}
	}
	fmt.Fprintf(w, "%-30s %12.1f tok/s\n", "decode roofline (batch 1)", r.RooflineTokPerS)
	fmt.Fprintf(w, "%-30s %12.2f\n", "fraction of roofline", r.RooflineFraction)
	if r.Context > 0 {
		fmt.Fprintf(w, "%-30s %12.1f tok/s\n", fmt.Sprintf("decode after %d tokens", r.Context), r.ContextDecode)
	}
	return nil
}

// deviceReply generates req on the GPU and writes its text as streamReply
// does for the engine: the same token healing (req.FirstAllowed), stop
// strings and finish reasons, with the GPU's single-sequence loop.
func deviceReply(ctx context.Context, gm *cuda.Model, req engine.Request, vocab int, ts *textgen.Stream, w *bufio.Writer, first func()) (reply, error) {
	var smp model.Sampler = sample.New(req.Sampling, vocab)
	if req.FirstAllowed != nil {
		smp = &firstAllowed{Sampler: smp, allowed: req.FirstAllowed}
	}
	var r reply
	errStopped := errors.New("stop string")
	_, finish, err := gm.Generate(ctx, req.Prompt, model.GenerateOptions{MaxTokens: req.MaxTokens, Sampler: smp, IgnoreEOS: req.IgnoreEOS}, func(id int) error {
		if first != nil && len(r.ids) == 0 {
			first()
		}
		r.ids = append(r.ids, id)
		if ts == nil {
			fmt.Fprintf(w, "%d ", id)
			return w.Flush()
		}
		text, stopped := ts.Add(id)
		w.WriteString(text)
		if err := w.Flush(); err != nil {
			return err
		}
		if stopped {
			return errStopped
		}
		return nil
	})
	r.finish = finish
	switch {
	case errors.Is(err, errStopped):
		r.finish = model.FinishStop
		return r, nil
	case err != nil:
		return r, err
	}
	if ts != nil {
		text, _ := ts.Finish()
		w.WriteString(text)
		err = w.Flush()
	}
	return r, err
}

// firstAllowed restricts the first sampled token to the allowed ids (token
// healing), then samples as its inner sampler.
type firstAllowed struct {
	model.Sampler
	allowed []bool
	done    bool
}

func (s *firstAllowed) Sample(logits []float32) int {
	if !s.done {
		s.done = true
		for i, ok := range s.allowed {
			if !ok && i < len(logits) {
				logits[i] = float32(math.Inf(-1))
			}
		}
	}
	return s.Sampler.Sample(logits)
}
