package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jamba-go/jamba/cache"
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
	Activations            string  `json:"activations"` // int8 (default) or int16: the rounding of the activations of block weights
	KVCache                string  `json:"kv_cache"`
	Threads                int     `json:"threads"`
	CPUPath                string  `json:"cpu_path"` // the kernels' path: avx512, avx2 or generic (JAMBA_CPU forces one)
	PromptTokens           int     `json:"prompt_tokens"`
	PrefillChunk           int     `json:"prefill_chunk"`
	Context                int     `json:"context"` // tokens in the cache before the timed decode steps
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
	// What `jamba inspect --context` predicts for the largest cache of the
	// run: the weights as loaded, the attention layers' keys and values in
	// the --kv-cache type, the Mamba layers' state.
	WeightBytes       int64 `json:"weight_bytes"`
	KVCacheBytes      int64 `json:"kv_cache_bytes"`
	MambaStateBytes   int64 `json:"mamba_state_bytes"`
	PredictedRSSBytes int64 `json:"predicted_bytes"`
	// With --baseline-context B: decode after B tokens, its steps
	// alternating with those after --context, and the median over the
	// rounds of each round's speed ratio (the context's ÷ the baseline's).
	BaselineContext          int     `json:"baseline_context,omitempty"`
	BaselineDecodeTokensPerS float64 `json:"baseline_decode_tokens_per_s,omitempty"`
	DecodeRatioToBaseline    float64 `json:"decode_ratio_to_baseline,omitempty"`
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "[--model DIR|F.gguf] [--prompt-tokens N] [--context D] [--gen-tokens M] [--threads T] [--kv-cache f32|bf16] [--quantize int8|q4] [--activations int16|int8] [--baseline-context B] [--json]\n       jamba bench --device cuda [--model DIR | --config C.json] [--prompt-tokens N] [--context D] [--gen-tokens M] [--batches 1,8,32] [--stages] [--json]", `
Measures this machine's memory read bandwidth, then the model's prefill of N
random prompt tokens and M greedy decode steps after it (batch 1). Decode
reads every active weight once per token, so its limit is
bandwidth / weight_bytes_per_token (the roofline); prefill is matrix-matrix
work, reported in GFLOP/s (2 flops per active parameter per token).

--context D times the decode steps after D tokens of (random) context, as
llama-bench's "-p 0 -n M -d D" does; without --prompt-tokens the prompt is
those D tokens, so one run gives the prefill of D tokens and the decode at
depth D (llama-bench's "-p D -n 0" and "-p 0 -n M -d D"). The prompt goes
through the model in chunks of --prefill-chunk tokens, as generation and the
server do; a long prefill reports its progress on stderr.

--baseline-context B also fills a second cache with B tokens and alternates
the timed decode steps between the two (one after B, one after D, and again):
how much slower decode gets from B to D tokens of context, each round's two
steps taken in the same moment, so that the machine's swings of speed cancel
(decode_ratio_to_baseline: the median over the rounds of the speed after D
divided by the speed after B).

The peak RSS is read before the bandwidth buffer exists, and is printed
next to what 'jamba inspect --context' predicts: weights + KV cache (in the
--kv-cache type) + Mamba state.

With --device cuda the model runs on GPU 0 in its file's type (float32 or
bfloat16), or with random bf16 weights in the shape of --config: one prefill
of --prompt-tokens tokens, decode at each of the --batches sizes, and with
--context D also decode at batch 1 after D tokens (the prompt stays
--prompt-tokens). --stages splits each batch's decode step by stage. The
CPU's flags --quantize, --activations, --kv-cache bf16, --lora, --prefill-chunk,
--cpuprofile, --prefill-cpuprofile, --bandwidth-bytes and --no-mmap are refused there,
as --config, --batches and --stages are without it.
With --json the last line of stdout is one JSON object.`, stderr)
	nPrompt := fs.Int("prompt-tokens", 256, "prompt length (on the CPU, default: --context when that is set)")
	nGen := fs.Int("gen-tokens", 64, "decode steps to time")
	mf := addModelFlags(fs, withCache)
	asJSON := fs.Bool("json", false, "print one JSON object on the last line")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the decode steps to this file (for go tool pprof)")
	prefillProfile := fs.String("prefill-cpuprofile", "", "write a CPU profile of the prefill to this file")
	bwBytes := fs.Int("bandwidth-bytes", 1<<30, "buffer size for the bandwidth measurement")
	seed := fs.Uint64("seed", 1, "seed of the random prompt")
	chunk := fs.Int("prefill-chunk", model.PrefillChunk, "prompt tokens per forward call")
	device := addDeviceFlag(fs)
	config := fs.String("config", "", "with --device cuda: a config.json whose shape gets random bf16 weights made on the GPU (no checkpoint)")
	batches := fs.String("batches", "1,8,32", "with --device cuda: decode batch sizes to time, comma-separated")
	ctxTokens := fs.Int("context", 0, "time decode at batch 1 after this many tokens of (random) context")
	baseCtx := fs.Int("baseline-context", 0, "also time decode after this many tokens, its steps alternating with those after --context (reports the speed ratio)")
	stages := fs.Bool("stages", false, "with --device cuda: also split each batch's decode step by stage (device time between CUDA events)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *ctxTokens < 0 || *chunk < 1 {
		return fmt.Errorf("%w: --context must not be negative, --prefill-chunk must be positive", errUsage)
	}
	switch *device {
	case "cuda":
		if *mf.kvCache == "f32" {
			delete(set, "kv-cache") // the GPU's own type
		}
		for _, name := range []string{"quantize", "activations", "kv-cache", "lora", "prefill-chunk", "cpuprofile", "prefill-cpuprofile", "bandwidth-bytes", "baseline-context", "no-mmap"} {
			if set[name] {
				return fmt.Errorf("%w: --%s is CPU-only; bench --device cuda runs the weights in their file's type, float32 or bfloat16 (see jamba bench --help)", errUsage, name)
			}
		}
		if *nGen < 1 || *nPrompt < 0 {
			return fmt.Errorf("%w: --gen-tokens must be positive, --prompt-tokens must not be negative", errUsage)
		}
		if set["model"] && *config != "" {
			return fmt.Errorf("%w: give --model or --config, not both", errUsage)
		}
		return benchCUDA(*mf.model, *config, *nPrompt, *nGen, *batches, *ctxTokens, *seed, *stages, *mf.checkFinite, *asJSON, stdout, stderr)
	case "", "cpu":
		for _, name := range []string{"config", "batches", "stages"} {
			if set[name] {
				return fmt.Errorf("%w: --%s needs --device cuda", errUsage, name)
			}
		}
	default:
		return fmt.Errorf("%w: --device %q (want cpu or cuda)", errUsage, *device)
	}
	if *ctxTokens > 0 && !set["prompt-tokens"] {
		*nPrompt = *ctxTokens
	}
	if *nPrompt < 1 || *nGen < 1 {
		return fmt.Errorf("%w: --prompt-tokens and --gen-tokens must be positive", errUsage)
	}
	if *baseCtx < 0 || set["baseline-context"] && *baseCtx < 1 {
		return fmt.Errorf("%w: --baseline-context must be positive", errUsage)
	}
	depth := *ctxTokens
	if depth == 0 {
		depth = *nPrompt
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	if limit := m.Config.MaxPositionEmbeddings; limit > 0 && max(*nPrompt, depth, *baseCtx)+*nGen+2 > limit {
		return fmt.Errorf("%w: %d tokens of context and %d decode steps exceed the model's max_position_embeddings (%d)", errUsage, max(*nPrompt, depth, *baseCtx), *nGen, limit)
	}
	kvType := *mf.kvCache
	if kvType == "" {
		kvType = "f32"
	}
	r := benchResult{Model: *mf.model, Quantize: *mf.quantize, Activations: *mf.activations, KVCache: kvType, Threads: kernels.Threads(), CPUPath: kernels.CPUPath(),
		PromptTokens: *nPrompt, PrefillChunk: *chunk, Context: depth, GenTokens: *nGen}
	if r.Model == "" {
		r.Model = "demo"
	}
	if m.Dir != "" {
		r.WeightFileBytes = weightFileBytes(m.Dir)
	}
	_, r.ActiveParams = m.Config.ParamCount()
	r.WeightBytesPerToken = m.ActiveWeightBytes()
	r.WeightBytes = m.WeightBytes()
	kvBytes := int64(4)
	if kvType == "bf16" {
		kvBytes = 2
	}
	r.KVCacheBytes, r.MambaStateBytes = m.CacheShape().BytesAt(int64(max(*nPrompt, depth)+*nGen+2), kvBytes)
	if *baseCtx > 0 {
		// The baseline's cache is there too.
		kv, st := m.CacheShape().BytesAt(int64(*baseCtx+*nGen+2), kvBytes)
		r.KVCacheBytes += kv
		r.MambaStateBytes += st
		r.BaselineContext = *baseCtx
	}
	r.PredictedRSSBytes = r.WeightBytes + r.KVCacheBytes + r.MambaStateBytes

	rng := rand.New(rand.NewPCG(*seed, 0))
	randomTokens := func(n int) []int {
		t := make([]int, n)
		for i := range t {
			t[i] = 3 + rng.IntN(m.Config.VocabSize-3)
		}
		return t
	}
	prompt := randomTokens(*nPrompt)
	// Warm-up: fault the weights in and size the buffers.
	fmt.Fprintf(stderr, "warming up...\n")
	if _, _, err := m.Generate(context.Background(), prompt[:min(16, len(prompt))], model.GenerateOptions{MaxTokens: 2, IgnoreEOS: true}, nil); err != nil {
		return err
	}
	ws := m.NewWorkspace()
	st := m.NewCache(max(*nPrompt, depth) + *nGen + 2)
	stopPrefillProfile, err := startCPUProfile(*prefillProfile)
	if err != nil {
		return err
	}
	secs, logits, err := benchPrefill(ws, st, prompt, *chunk, stderr)
	stopPrefillProfile()
	if err != nil {
		return err
	}
	r.PrefillSeconds = secs
	r.PrefillTokensPerS = float64(*nPrompt) / r.PrefillSeconds
	r.PrefillGFLOPS = 2 * float64(r.ActiveParams) * float64(*nPrompt) / r.PrefillSeconds / 1e9
	if depth != *nPrompt {
		// The decode runs after its own context: the prompt's cache is
		// emptied and refilled with depth other tokens.
		st.Reset()
		fmt.Fprintf(stderr, "filling %d tokens of context...\n", depth)
		if _, logits, err = benchPrefill(ws, st, randomTokens(depth), *chunk, stderr); err != nil {
			return err
		}
	}

	in := []model.SeqInput{{Tokens: []int{model.Argmax(logits)}, Cache: st}}
	stepIn := func(in []model.SeqInput) (float64, error) {
		t0 := time.Now()
		if err := ws.Forward(in); err != nil {
			return 0, err
		}
		in[0].Tokens[0] = model.Argmax(ws.Logits(0))
		return time.Since(t0).Seconds(), nil
	}
	step := func() (float64, error) { return stepIn(in) }
	var inBase []model.SeqInput
	if *baseCtx > 0 {
		stBase := m.NewCache(*baseCtx + *nGen + 2)
		fmt.Fprintf(stderr, "filling %d tokens of baseline context...\n", *baseCtx)
		_, lb, err := benchPrefill(ws, stBase, randomTokens(*baseCtx), *chunk, stderr)
		if err != nil {
			return err
		}
		inBase = []model.SeqInput{{Tokens: []int{model.Argmax(lb)}, Cache: stBase}}
		if _, err := stepIn(inBase); err != nil {
			return err
		}
	}
	// One untimed step sizes the decode buffers; the peak RSS is read
	// before the bandwidth buffer exists: it is the model's.
	if _, err := step(); err != nil {
		return err
	}
	r.PeakRSSBytes = peakRSS()
	fmt.Fprintf(stderr, "decode of %d tokens after %d of context, interleaved with read-bandwidth passes (%s, %d threads)...\n",
		*nGen, depth, humanBytes(int64(*bwBytes)), r.Threads)
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
	var baseSteps, ratios []float64
	var passes []float64
	for len(steps) < *nGen {
		if len(steps)%stepsPerRound == 0 {
			passes = append(passes, meter.Pass())
		}
		if inBase != nil {
			b, err := stepIn(inBase)
			if err != nil {
				return err
			}
			baseSteps = append(baseSteps, b)
		}
		d, err := step()
		if err != nil {
			return err
		}
		steps = append(steps, d)
		if inBase != nil {
			ratios = append(ratios, baseSteps[len(baseSteps)-1]/d)
		}
	}
	if inBase != nil {
		sort.Float64s(baseSteps)
		r.BaselineDecodeTokensPerS = 1 / baseSteps[len(baseSteps)/2]
		sort.Float64s(ratios)
		r.DecodeRatioToBaseline = ratios[len(ratios)/2]
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
	fmt.Fprintf(w, "model %s (%s weights, %s activations, %s KV cache, %d threads, %s kernels)\n", r.Model, dtypeName(m.Model, r.Quantize), r.Activations, r.KVCache, r.Threads, r.CPUPath)
	fmt.Fprintf(w, "%-28s %12s\n", "measure", "value")
	fmt.Fprintf(w, "%-28s %12.1f GB/s\n", "read bandwidth", r.BandwidthGBs)
	fmt.Fprintf(w, "%-28s %12s\n", "active weight bytes/token", humanBytes(r.WeightBytesPerToken))
	fmt.Fprintf(w, "%-28s %12.1f tok/s  (%.1f GFLOP/s, %.1f s)\n", fmt.Sprintf("prefill (%d tokens)", *nPrompt), r.PrefillTokensPerS, r.PrefillGFLOPS, r.PrefillSeconds)
	fmt.Fprintf(w, "%-28s %12.2f tok/s  (%.2f ms/token, median of %d)\n", fmt.Sprintf("decode after %d (batch 1)", depth), r.DecodeTokensPerS, r.DecodeMsPerToken, *nGen)
	if r.BaselineContext > 0 {
		fmt.Fprintf(w, "%-28s %12.2f tok/s  (steps alternating with those after %d)\n", fmt.Sprintf("decode after %d (batch 1)", r.BaselineContext), r.BaselineDecodeTokensPerS, depth)
		fmt.Fprintf(w, "%-28s %12.3f  (median over %d rounds of one step each)\n", fmt.Sprintf("decode %d ÷ decode %d", depth, r.BaselineContext), r.DecodeRatioToBaseline, *nGen)
	}
	fmt.Fprintf(w, "%-28s %12.2f tok/s\n", "decode roofline", r.DecodeRooflineTokPerS)
	fmt.Fprintf(w, "%-28s %12.2f\n", "fraction of roofline", r.DecodeRooflineFraction)
	fmt.Fprintf(w, "%-28s %12s  (predicted: weights %s + KV %s (%s) + Mamba state %s = %s; measured %.2fx)\n", "peak RSS",
		humanBytes(r.PeakRSSBytes), humanBytes(r.WeightBytes), humanBytes(r.KVCacheBytes), r.KVCache,
		humanBytes(r.MambaStateBytes), humanBytes(r.PredictedRSSBytes), float64(r.PeakRSSBytes)/float64(r.PredictedRSSBytes))
	return nil
}

// benchPrefill feeds tokens to st chunk by chunk, as Model.Prefill does,
// and reports on stderr how far it got every few seconds (a prefill of 128K
// tokens takes minutes). It returns the seconds taken and the last
// token's logits.
func benchPrefill(ws *model.Workspace, st *cache.Seq, tokens []int, chunk int, stderr io.Writer) (float64, []float32, error) {
	fmt.Fprintf(stderr, "prefill of %d tokens (chunks of %d)...\n", len(tokens), chunk)
	p := newRateProgress(stderr, "prefill", len(tokens))
	start := time.Now()
	var logits []float32
	for i := 0; i < len(tokens); i += chunk {
		end := min(i+chunk, len(tokens))
		rows := model.LastLogits
		if end < len(tokens) {
			rows = model.NoLogits
		}
		if err := ws.Forward([]model.SeqInput{{Tokens: tokens[i:end], Cache: st, Logits: rows}}); err != nil {
			return 0, nil, err
		}
		logits = ws.Logits(0)
		p.update(end)
	}
	secs := time.Since(start).Seconds()
	p.end()
	return secs, logits, nil
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
