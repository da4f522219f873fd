package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
)

func init() {
	register(&command{name: "bench", summary: "measure prefill and decode speed against this machine's limits", run: runBench})
}

// benchResult is the JSON line bench prints with --json.
type benchResult struct {
	Model                  string  `json:"model"`
	Quantize               string  `json:"quantize"`
	KVCache                string  `json:"kv_cache"`
	Threads                int     `json:"threads"`
	PromptTokens           int     `json:"prompt_tokens"`
	GenTokens              int     `json:"gen_tokens"`
	PrefillSeconds         float64 `json:"prefill_seconds"`
	PrefillTokensPerS      float64 `json:"prefill_tokens_per_s"`
	PrefillGFLOPS          float64 `json:"prefill_gflops"`
	DecodeTokensPerS       float64 `json:"decode_tokens_per_s"`
	DecodeMsPerToken       float64 `json:"decode_ms_per_token"`
	WeightBytesPerToken    int64   `json:"weight_bytes_per_token"`
	ActiveParams           int64   `json:"active_params"`
	BandwidthGBs           float64 `json:"bandwidth_gb_s"`
	DecodeRooflineTokPerS  float64 `json:"decode_roofline_tokens_per_s"`
	DecodeRooflineFraction float64 `json:"decode_roofline_fraction"`
	PeakRSSBytes           int64   `json:"peak_rss_bytes"`
	WeightFileBytes        int64   `json:"weight_file_bytes"`
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "[--model DIR] [--prompt-tokens N] [--gen-tokens M] [--threads T] [--quantize int8] [--json]", `
Measures this machine's memory read bandwidth, then the model's prefill of N
random prompt tokens and M greedy decode steps after it (batch 1). Decode
reads every active weight once per token, so its limit is
bandwidth / weight_bytes_per_token (the roofline); prefill is matrix-matrix
work, reported in GFLOP/s (2 flops per active parameter per token).
With --json the last line of stdout is one JSON object.`, stderr)
	nPrompt := fs.Int("prompt-tokens", 256, "prompt length")
	nGen := fs.Int("gen-tokens", 64, "decode steps to time")
	mf := addModelFlags(fs, withCache)
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the decode steps to this file (for go tool pprof)")
	bwBytes := fs.Int("bandwidth-bytes", 1<<30, "buffer size for the bandwidth measurement")
	seed := fs.Uint64("seed", 1, "seed of the random prompt")
	device := addDeviceFlag(fs)
	config := fs.String("config", "", "with --device cuda: a config.json whose shape gets random bf16 weights made on the GPU (no checkpoint)")
	batches := fs.String("batches", "1,8,32", "with --device cuda: decode batch sizes to time, comma-separated")
	ctxTokens := fs.Int("context", 0, "with --device cuda: also time decode at batch 1 after this many tokens of (random) context")
	stages := fs.Bool("stages", false, "with --device cuda: also split each batch's decode step by stage (device time between CUDA events)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch *device {
	case "cuda":
		return benchCUDA(*mf.model, *config, *nPrompt, *nGen, *batches, *ctxTokens, *seed, *stages, *asJSON, stdout, stderr)
	case "", "cpu":
		if *config != "" {
			return fmt.Errorf("%w: --config needs --device cuda", errUsage)
		}
	default:
		return fmt.Errorf("%w: --device %q (want cpu or cuda)", errUsage, *device)
	}
	if *nPrompt < 1 || *nGen < 1 {
		return fmt.Errorf("%w: --prompt-tokens and --gen-tokens must be positive", errUsage)
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	r := benchResult{Model: *mf.model, Quantize: *mf.quantize, KVCache: *mf.kvCache, Threads: kernels.Threads(), PromptTokens: *nPrompt, GenTokens: *nGen}
	if r.Model == "" {
		r.Model = "demo"
	}
	if m.Dir != "" {
		r.WeightFileBytes = weightFileBytes(m.Dir)
	}
	_, r.ActiveParams = m.Config.ParamCount()
	r.WeightBytesPerToken = m.ActiveWeightBytes()

	rng := rand.New(rand.NewPCG(*seed, 0))
	prompt := make([]int, *nPrompt)
	for i := range prompt {
		prompt[i] = 3 + rng.IntN(m.Config.VocabSize-3)
	}
	// Warm-up: fault the weights in and size the buffers.
	fmt.Fprintf(stderr, "warming up...\n")
	if _, _, err := m.Generate(context.Background(), prompt[:min(16, len(prompt))], model.GenerateOptions{MaxTokens: 2, IgnoreEOS: true}, nil); err != nil {
		return err
	}
	ws := m.NewWorkspace()
	st := m.NewCache(*nPrompt + *nGen + 2)
	fmt.Fprintf(stderr, "prefill of %d tokens...\n", *nPrompt)
	start := time.Now()
	logits, err := m.Prefill(ws, st, prompt, 0)
	if err != nil {
		return err
	}
	r.PrefillSeconds = time.Since(start).Seconds()
	r.PrefillTokensPerS = float64(*nPrompt) / r.PrefillSeconds
	r.PrefillGFLOPS = 2 * float64(r.ActiveParams) * float64(*nPrompt) / r.PrefillSeconds / 1e9

	in := []model.SeqInput{{Tokens: []int{model.Argmax(logits)}, Cache: st}}
	step := func() (float64, error) {
		t0 := time.Now()
		if err := ws.Forward(in); err != nil {
			return 0, err
		}
		in[0].Tokens[0] = model.Argmax(ws.Logits(0))
		return time.Since(t0).Seconds(), nil
	}
	// One untimed step sizes the decode buffers; the peak RSS is read
	// before the bandwidth buffer exists: it is the model's.
	if _, err := step(); err != nil {
		return err
	}
	r.PeakRSSBytes = peakRSS()
	fmt.Fprintf(stderr, "decode of %d tokens, interleaved with read-bandwidth passes (%s, %d threads)...\n",
		*nGen, humanBytes(int64(*bwBytes)), r.Threads)
	meter := kernels.NewReadMeter(*bwBytes, r.Threads)
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	// The bandwidth left to this process changes with what the machine's
	// other tenants do, so the yardstick is measured in the same moments as
	// the decode: a bandwidth pass before every round of decode steps, and
	// the medians of both.
	const stepsPerRound = 8
	steps := make([]float64, 0, *nGen)
	var passes []float64
	for len(steps) < *nGen {
		if len(steps)%stepsPerRound == 0 {
			passes = append(passes, meter.Pass())
		}
		d, err := step()
		if err != nil {
			return err
		}
		steps = append(steps, d)
	}
	passes = append(passes, meter.Pass())
	sort.Float64s(steps)
	med := steps[len(steps)/2]
	r.DecodeMsPerToken = med * 1000
	r.DecodeTokensPerS = 1 / med
	sort.Float64s(passes)
	r.BandwidthGBs = passes[len(passes)/2]

	r.DecodeRooflineTokPerS = r.BandwidthGBs * 1e9 / float64(r.WeightBytesPerToken)
	r.DecodeRooflineFraction = r.DecodeTokensPerS / r.DecodeRooflineTokPerS

	if *asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	w := stdout
	fmt.Fprintf(w, "model %s (%s weights, %s KV cache, %d threads)\n", r.Model, dtypeName(m.Model, r.Quantize), r.KVCache, r.Threads)
	fmt.Fprintf(w, "%-28s %12s\n", "measure", "value")
	fmt.Fprintf(w, "%-28s %12.1f GB/s\n", "read bandwidth", r.BandwidthGBs)
	fmt.Fprintf(w, "%-28s %12s\n", "active weight bytes/token", humanBytes(r.WeightBytesPerToken))
	fmt.Fprintf(w, "%-28s %12.1f tok/s  (%.1f GFLOP/s)\n", fmt.Sprintf("prefill (%d tokens)", *nPrompt), r.PrefillTokensPerS, r.PrefillGFLOPS)
	fmt.Fprintf(w, "%-28s %12.2f tok/s  (%.2f ms/token, median of %d)\n", "decode (batch 1)", r.DecodeTokensPerS, r.DecodeMsPerToken, *nGen)
	fmt.Fprintf(w, "%-28s %12.2f tok/s\n", "decode roofline", r.DecodeRooflineTokPerS)
	fmt.Fprintf(w, "%-28s %12.2f\n", "fraction of roofline", r.DecodeRooflineFraction)
	fmt.Fprintf(w, "%-28s %12s\n", "peak RSS", humanBytes(r.PeakRSSBytes))
	return nil
}

func dtypeName(m *model.Model, quant string) string {
	if quant != "" {
		return quant
	}
	return m.LMHead.TypeName()
}

// peakRSS reads the process's peak resident set size (VmHWM) on Linux; 0 elsewhere.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmHWM:") {
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				kb, _ := strconv.ParseInt(fields[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
