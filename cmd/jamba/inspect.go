package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/internal/safefile"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

func init() {
	register(&command{name: "inspect", summary: "show a model's layer layout, parameter counts and memory needs", run: runInspect})
}

// inspectReport is what inspect prints, also as JSON with --json.
type inspectReport struct {
	Model            string   `json:"model"`
	Layers           []string `json:"layers"`
	ParamsTotal      int64    `json:"params_total"`
	ParamsActive     int64    `json:"params_active"`
	WeightDType      string   `json:"weight_dtype"`
	LayoutFrom       string   `json:"layout_from"`              // "layer_types" or "attn_layer_period"
	Experts          string   `json:"experts_stored,omitempty"` // "packed" (transformers 5) or "per_expert"; "" without weights
	BytesOnDisk      int64    `json:"bytes_on_disk"`
	Context          int      `json:"context"`
	KVCache16Bytes   int64    `json:"kv_cache_16bit_bytes"`
	KVCacheBytes     int64    `json:"kv_cache_bytes"` // as this engine stores it (float32)
	MambaStateBytes  int64    `json:"mamba_state_bytes"`
	WeightBytes      int64    `json:"weight_bytes"`
	TotalMemoryBytes int64    `json:"total_memory_bytes"`
}

func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("inspect", "[--model DIR | --config FILE] [--context N] [--json]", `
Prints the layer layout (mixer and FFN of every layer), the parameter count
in total and active per token (every weight read for one token except the
embedding table), the bytes of the weight files, and the memory that the
weights plus one sequence's cache need at N tokens of context. The weights
need not be present: a config.json alone is enough for the counts. When
they are, every tensor is scanned for NaN and infinities first
(--check-finite=false skips it).`, stderr)
	dir := fs.String("model", "", modelHelp)
	cfgPath := fs.String("config", "", "a config.json to inspect instead of a checkpoint")
	ctx := fs.Int("context", 0, "context length for the cache estimate (default: max_position_embeddings)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	checkFinite := fs.Bool("check-finite", true, "scan the weights (when present) for NaN and infinities; fails naming the first")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var cfg *model.Config
	var err error
	name := *dir
	var onDisk int64
	var experts string
	switch {
	case *cfgPath != "":
		data, rerr := safefile.ReadFile(*cfgPath, safefile.MaxConfig)
		if rerr != nil {
			return rerr
		}
		cfg, err = model.ParseConfig(data)
		if ce, ok := err.(*model.ConfigError); ok {
			ce.File = *cfgPath
		}
		name = *cfgPath
	case isGGUF(*dir):
		return ggufInspect(*dir, *ctx, *asJSON, stdout)
	case *dir != "":
		cfg, err = model.LoadConfig(*dir)
		if err == nil {
			onDisk = weightFileBytes(*dir)
		}
		if err == nil {
			experts = expertStorage(*dir, cfg)
		}
		if err == nil && onDisk > 0 && *checkFinite {
			n, ferr := model.CheckDirFinite(*dir)
			if ferr != nil {
				return ferr
			}
			fmt.Fprintf(stderr, "weights: %d tensors scanned, all finite\n", n)
		}
	default:
		var m *model.Model
		m, err = demo.Load(model.Options{})
		if err == nil {
			cfg = m.Config
			onDisk = m.WeightBytes()
			name = "demo (embedded)"
		}
	}
	if err != nil {
		return err
	}
	n := *ctx
	if n <= 0 {
		n = cfg.MaxPositionEmbeddings
	}
	r := buildInspect(cfg, name, n, onDisk)
	r.Experts = experts
	if *asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	printInspect(stdout, cfg, r)
	return nil
}

func weightFileBytes(dir string) int64 {
	if isGGUF(dir) {
		if st, err := os.Stat(dir); err == nil {
			return st.Size()
		}
		return 0
	}
	var n int64
	for _, pat := range []string{"*.safetensors"} {
		files, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, f := range files {
			if st, err := os.Stat(f); err == nil {
				n += st.Size()
			}
		}
	}
	return n
}

// expertStorage says how the checkpoint in dir stores its MoE experts:
// "packed" (transformers 5's experts.gate_up_proj and experts.down_proj),
// "per_expert" (experts.N.*, as on the Hub), or "" when it cannot tell.
func expertStorage(dir string, cfg *model.Config) string {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return ""
	}
	defer set.Close()
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		if cfg.FFN(i) != model.MoE {
			continue
		}
		f := fmt.Sprintf("model.layers.%d.feed_forward.", i)
		if _, ok := set.Info(f + model.PackedGateUp); ok {
			return "packed"
		}
		return "per_expert"
	}
	return ""
}

func buildInspect(cfg *model.Config, name string, ctx int, onDisk int64) inspectReport {
	total, active := cfg.ParamCount()
	r := inspectReport{Model: name, ParamsTotal: total, ParamsActive: active, BytesOnDisk: onDisk, Context: ctx, LayoutFrom: "attn_layer_period"}
	if cfg.LayerTypes != nil {
		r.LayoutFrom = "layer_types"
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		r.Layers = append(r.Layers, cfg.Mixer(i).String()+"+"+cfg.FFN(i).String())
	}
	r.WeightDType = cfg.DType
	bytesPer := int64(4)
	switch cfg.DType {
	case "bfloat16", "float16":
		bytesPer = 2
	}
	r.WeightBytes = total * bytesPer
	if onDisk > 0 {
		r.WeightBytes = onDisk
	}
	sh := (&model.Model{Config: cfg}).CacheShape()
	r.KVCache16Bytes, r.MambaStateBytes = sh.BytesAt(int64(ctx), 2)
	r.KVCacheBytes, _ = sh.BytesAt(int64(ctx), 4)
	r.TotalMemoryBytes = r.WeightBytes + r.KVCacheBytes + r.MambaStateBytes
	return r
}

func printInspect(w io.Writer, cfg *model.Config, r inspectReport) {
	fmt.Fprintf(w, "model: %s\n", r.Model)
	fmt.Fprintf(w, "hidden %d, intermediate %d, %d layers, %d heads / %d KV heads (head dim %d), vocab %d\n",
		cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDimension(), cfg.VocabSize)
	fmt.Fprintf(w, "mamba: inner %d, state %d, conv %d, dt rank %d; experts %d (top-%d)\n\n",
		cfg.InnerSize(), cfg.MambaDState, cfg.MambaDConv, cfg.MambaDtRank, cfg.NumExperts, cfg.NumExpertsPerTok)
	switch r.Experts {
	case "packed":
		fmt.Fprintf(w, "experts stored packed, as transformers 5 saves them (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I])\n")
	case "per_expert":
		fmt.Fprintf(w, "experts stored one by one (experts.N.gate_proj / up_proj / down_proj)\n")
	}
	if r.LayoutFrom == "layer_types" {
		fmt.Fprintf(w, "layer layout from layer_types\n")
	}
	if r.Experts != "" || r.LayoutFrom == "layer_types" {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "layer  mixer      ffn\n")
	var nAttn, nMoE int
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		mx, ff := cfg.Mixer(i), cfg.FFN(i)
		if mx == model.Attention {
			nAttn++
		}
		if ff == model.MoE {
			nMoE++
		}
		fmt.Fprintf(w, "%5d  %-9s  %s\n", i, mx, ff)
	}
	fmt.Fprintf(w, "\n%d attention + %d Mamba layers; %d MoE + %d dense MLP\n\n", nAttn, cfg.NumHiddenLayers-nAttn, nMoE, cfg.NumHiddenLayers-nMoE)
	fmt.Fprintf(w, "parameters: %s total, %s active per token (%d / %d)\n", humanCount(r.ParamsTotal), humanCount(r.ParamsActive), r.ParamsTotal, r.ParamsActive)
	if r.BytesOnDisk > 0 {
		fmt.Fprintf(w, "weights on disk: %s\n", humanBytes(r.BytesOnDisk))
	} else {
		fmt.Fprintf(w, "weights on disk: none found; %s in %s\n", humanBytes(r.WeightBytes), strings.TrimSpace(r.WeightDType+" (config dtype)"))
	}
	fmt.Fprintf(w, "\nper sequence at %d tokens of context:\n", r.Context)
	fmt.Fprintf(w, "  KV cache, 16-bit:        %s (--kv-cache bf16)\n", humanBytes(r.KVCache16Bytes))
	fmt.Fprintf(w, "  KV cache, f32:           %s (--kv-cache f32, the default)\n", humanBytes(r.KVCacheBytes))
	fmt.Fprintf(w, "  Mamba conv + SSM state:  %s\n", humanBytes(r.MambaStateBytes))
	fmt.Fprintf(w, "memory for weights + one sequence: %s\n", humanBytes(r.TotalMemoryBytes))
}
