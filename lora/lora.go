// Package lora reads, writes and applies LoRA adapters in the layout of
// Hugging Face PEFT: a folder with adapter_config.json and
// adapter_model.safetensors, the low-rank factors of each adapted linear
// layer stored as
//
//	base_model.model.<module>.lora_A.weight   [r, in]
//	base_model.model.<module>.lora_B.weight   [out, r]
//
// where <module> is the module path of transformers' JambaForCausalLM
// (model.layers.3.mamba.in_proj, model.layers.4.self_attn.q_proj,
// model.layers.1.feed_forward.router, ...). The adapted weight is
//
//	W' = W + (lora_alpha / r) · B · A
//
// (lora_alpha / √r with use_rslora). An Adapter holds experts one by one,
// under the module paths of transformers 4, whose experts are a list of
// MLPs (model.layers.1.feed_forward.experts.2.gate_proj). transformers 5
// packs each layer's experts into two parameters, which PEFT adapts through
// target_parameters (one factor pair per packed parameter, an expert's gate
// and up rows sharing A): New builds expert adapters in that form, Save
// writes them packed as PEFT does, and Load reads both forms.
package lora

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jamba-go/jamba/internal/atomicfile"
	"github.com/jamba-go/jamba/internal/safefile"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

// File names of an adapter folder.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
	keyPrefix   = "base_model.model."
)

// Targets are the module names an adapter may target: the last part of a
// module path, as PEFT's target_modules matches them, plus "experts" for
// the gate_proj, up_proj and down_proj of every expert.
var Targets = []string{"in_proj", "x_proj", "dt_proj", "out_proj", "q_proj", "k_proj", "v_proj", "o_proj",
	"gate_proj", "up_proj", "down_proj", "router", "experts"}

// Config is the part of PEFT's LoraConfig this package reads and writes.
type Config struct {
	Rank       int      `json:"r"`
	Alpha      float64  `json:"lora_alpha"`
	Dropout    float64  `json:"lora_dropout"`
	Targets    []string `json:"target_modules"`
	UseRSLoRA  bool     `json:"use_rslora"`
	BaseModel  string   `json:"base_model_name_or_path"`
	ConfigPath string   `json:"-"` // where it was read from, for errors
}

// Scale is the factor of B·A in the adapted weight.
func (c *Config) Scale() float64 {
	if c.UseRSLoRA {
		return c.Alpha / math.Sqrt(float64(c.Rank))
	}
	return c.Alpha / float64(c.Rank)
}

// Validate checks the rank, alpha, dropout and targets.
func (c *Config) Validate() error {
	switch {
	case c.Rank < 1 || c.Rank > 1<<16:
		return fmt.Errorf("lora: rank %d: need 1 to 65536", c.Rank)
	case math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0) || c.Alpha <= 0:
		return fmt.Errorf("lora: alpha %v: need a positive number", c.Alpha)
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return fmt.Errorf("lora: dropout %v: need 0 ≤ p < 1", c.Dropout)
	case len(c.Targets) == 0:
		return errors.New("lora: no target modules")
	case c.Dropout > 0 && slices.Contains(c.Targets, "experts"):
		// PEFT adapts transformers 5's packed experts through
		// target_parameters, whose wrapper refuses any dropout: such an
		// adapter could not be loaded by peft.PeftModel.from_pretrained.
		return fmt.Errorf("lora: dropout %v with target experts: PEFT's adapters on the packed experts (target_parameters) take no dropout; use dropout 0 or leave experts out", c.Dropout)
	}
	for _, t := range c.Targets {
		if !slices.Contains(Targets, t) {
			return fmt.Errorf("lora: unknown target module %q (known: %s)", t, strings.Join(Targets, ","))
		}
	}
	return nil
}

// ParseTargets splits a comma-separated list of targets ("all" for every
// one).
func ParseTargets(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return slices.Clone(Targets), nil
	}
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !slices.Contains(Targets, t) {
			return nil, fmt.Errorf("lora: unknown target module %q (known: %s, or all)", t, strings.Join(Targets, ","))
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("lora: no target modules")
	}
	return out, nil
}

// Module is one adapted linear layer: W [Out, In] gets scale·B·A.
type Module struct {
	Name    string // module path: model.layers.3.mamba.in_proj
	Out, In int
	AOff    int // offset of A [r, In] in Adapter.Data
	BOff    int // offset of B [Out, r] in Adapter.Data
}

// Weight is the name of the base tensor the module adapts.
func (m *Module) Weight() string { return m.Name + ".weight" }

// KeyA and KeyB are the module's tensor names in adapter_model.safetensors.
func (m *Module) KeyA() string { return keyPrefix + m.Name + ".lora_A.weight" }
func (m *Module) KeyB() string { return keyPrefix + m.Name + ".lora_B.weight" }

// Adapter is a LoRA adapter for one model: its config and the factors of
// every module in one flat slice (A then B for each module, in the base's
// tensor order).
type Adapter struct {
	Config  Config
	Modules []Module
	Data    []float32
	// Experts is the number of experts of each MoE layer of the model.
	Experts int
}

// A returns module i's A [r, In].
func (a *Adapter) A(i int) []float32 {
	m := &a.Modules[i]
	return a.Data[m.AOff : m.AOff+a.Config.Rank*m.In]
}

// B returns module i's B [Out, r].
func (a *Adapter) B(i int) []float32 {
	m := &a.Modules[i]
	return a.Data[m.BOff : m.BOff+m.Out*a.Config.Rank]
}

// Size is the adapter's number of parameters.
func (a *Adapter) Size() int { return len(a.Data) }

// TargetOf returns the target name that the base tensor name falls under
// ("" when none does): the last part of its module path, or "experts".
func TargetOf(name string) string { return target(name) }

func target(name string) string {
	if !strings.HasPrefix(name, "model.layers.") || !strings.HasSuffix(name, ".weight") {
		return ""
	}
	mod := strings.TrimSuffix(name, ".weight")
	parts := strings.Split(mod, ".")
	leaf := parts[len(parts)-1]
	if strings.Contains(mod, ".feed_forward.experts.") {
		switch leaf {
		case "gate_proj", "up_proj", "down_proj":
			return "experts"
		}
		return ""
	}
	switch leaf {
	case "in_proj", "x_proj", "dt_proj", "out_proj":
		if strings.Contains(mod, ".mamba.") {
			return leaf
		}
	case "q_proj", "k_proj", "v_proj", "o_proj":
		if strings.Contains(mod, ".self_attn.") {
			return leaf
		}
	case "gate_proj", "up_proj", "down_proj", "router":
		if strings.Contains(mod, ".feed_forward.") {
			return leaf
		}
	}
	return ""
}

// New returns a zero adapter of c for a model of config cfg: a module for
// every linear layer a target of c names. It fails when no layer of the
// model matches.
//
// Experts are adapted in PEFT's form for transformers 5's packed experts
// (target_parameters experts.gate_up_proj and experts.down_proj): an
// expert's gate_proj and up_proj share one A (the rows of one gate_up
// matrix), each with its own rows of B, and its down_proj has its own A
// and B. WriteWeights then saves them packed, as PEFT does.
func New(cfg *model.Config, c Config) (*Adapter, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	a := &Adapter{Config: c, Experts: cfg.NumExperts}
	for _, s := range cfg.Spec() {
		t := target(s.Name)
		if t == "" || len(s.Shape) != 2 || !slices.Contains(c.Targets, t) {
			continue
		}
		a.Modules = append(a.Modules, Module{Name: strings.TrimSuffix(s.Name, ".weight"), Out: s.Shape[0], In: s.Shape[1]})
	}
	if len(a.Modules) == 0 {
		return nil, fmt.Errorf("lora: no layer of the model matches the target modules %s", strings.Join(c.Targets, ","))
	}
	a.Data = make([]float32, a.layout(func(m *Module) bool { return expertKind(m.Name) == "up_proj" }))
	return a, nil
}

// layout assigns the offsets of a.Modules' factors in order, A then B of
// each module, except that a module for which sharesA holds takes the A of
// the module before it; it returns the total size.
func (a *Adapter) layout(sharesA func(m *Module) bool) int {
	r, off := a.Config.Rank, 0
	for i := range a.Modules {
		m := &a.Modules[i]
		if i > 0 && sharesA(m) && a.Modules[i-1].In == m.In {
			m.AOff = a.Modules[i-1].AOff
		} else {
			m.AOff = off
			off += r * m.In
		}
		m.BOff = off
		off += m.Out * r
	}
	return off
}

// expertKind is "gate_proj", "up_proj" or "down_proj" for a module of an
// expert (feed_forward.experts.N.*), "" otherwise.
func expertKind(name string) string {
	if !strings.Contains(name, ".feed_forward.experts.") {
		return ""
	}
	return name[strings.LastIndex(name, ".")+1:]
}

// SharesA reports whether module i uses the A of module i−1 (an expert's
// up_proj, packed with its gate_proj).
func (a *Adapter) SharesA(i int) bool { return i > 0 && a.Modules[i].AOff == a.Modules[i-1].AOff }

// Init sets every A as PEFT does (kaiming_uniform_ with a = √5: uniform in
// ±1/√in) from a generator seeded with seed, and every B to zero, so that
// the adapter starts as the identity.
func (a *Adapter) Init(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x4c6f5241))
	for i := range a.Modules {
		bound := 1 / math.Sqrt(float64(a.Modules[i].In))
		for j := range a.A(i) {
			a.A(i)[j] = float32((2*rng.Float64() - 1) * bound)
		}
		clear(a.B(i))
	}
}

// Delta adds scale·B·A of module i to w [Out, In] (float64 accumulation).
func (a *Adapter) Delta(i int, w []float32) {
	m := &a.Modules[i]
	r := a.Config.Rank
	A, B := a.A(i), a.B(i)
	s := a.Config.Scale()
	acc := make([]float64, m.In)
	for o := 0; o < m.Out; o++ {
		clear(acc)
		for k := 0; k < r; k++ {
			b := float64(B[o*r+k])
			if b == 0 {
				continue
			}
			for j, v := range A[k*m.In : (k+1)*m.In] {
				acc[j] += b * float64(v)
			}
		}
		row := w[o*m.In : (o+1)*m.In]
		for j, v := range acc {
			row[j] = float32(float64(row[j]) + s*v)
		}
	}
}

// peftConfig is adapter_config.json as PEFT writes it (the keys this
// package reads or writes; others are ignored on reading).
type peftConfig struct {
	PeftType          string          `json:"peft_type"`
	TaskType          string          `json:"task_type"`
	R                 int             `json:"r"`
	LoraAlpha         float64         `json:"lora_alpha"`
	LoraDropout       float64         `json:"lora_dropout"`
	TargetModules     json.RawMessage `json:"target_modules"`
	Bias              string          `json:"bias"`
	FanInFanOut       bool            `json:"fan_in_fan_out"`
	UseRSLoRA         bool            `json:"use_rslora"`
	UseDoRA           bool            `json:"use_dora"`
	BaseModel         string          `json:"base_model_name_or_path"`
	InferenceMode     bool            `json:"inference_mode"`
	InitLoraWeights   bool            `json:"init_lora_weights"`
	ModulesToSave     json.RawMessage `json:"modules_to_save"`
	RankPattern       json.RawMessage `json:"rank_pattern"`
	AlphaPattern      json.RawMessage `json:"alpha_pattern"`
	TargetParameters  json.RawMessage `json:"target_parameters"`
	LayersToTransform json.RawMessage `json:"layers_to_transform"`
	Revision          *string         `json:"revision"`
	// Refused when set (read only): a trained bias on lora_B, QA-LoRA's
	// pooled inputs, activated LoRA, repeated layers, trained token rows.
	LoraBias         bool            `json:"lora_bias,omitempty"`
	UseQALoRA        bool            `json:"use_qalora,omitempty"`
	ALoRATokens      json.RawMessage `json:"alora_invocation_tokens,omitempty"`
	LayerReplication json.RawMessage `json:"layer_replication,omitempty"`
	TrainableTokens  json.RawMessage `json:"trainable_token_indices,omitempty"`
}

// Save writes the adapter as a PEFT folder in dir: adapter_config.json and
// adapter_model.safetensors (float32), each written atomically.
func (a *Adapter) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := a.WriteWeights(filepath.Join(dir, WeightsFile), nil); err != nil {
		return err
	}
	return a.WriteConfig(dir)
}

// WriteConfig writes dir/adapter_config.json (atomically).
func (a *Adapter) WriteConfig(dir string) error {
	data, err := a.ConfigJSON()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ConfigFile), data)
}

// ConfigJSON is the adapter's adapter_config.json.
func (a *Adapter) ConfigJSON() ([]byte, error) {
	tm, _ := json.Marshal(a.Config.Targets)
	pc := peftConfig{PeftType: "LORA", TaskType: "CAUSAL_LM", R: a.Config.Rank, LoraAlpha: a.Config.Alpha,
		LoraDropout: a.Config.Dropout, TargetModules: tm, Bias: "none", UseRSLoRA: a.Config.UseRSLoRA,
		BaseModel: a.Config.BaseModel, InferenceMode: true, InitLoraWeights: true,
		ModulesToSave: json.RawMessage("null"), RankPattern: json.RawMessage("{}"), AlphaPattern: json.RawMessage("{}"),
		TargetParameters: json.RawMessage("null"), LayersToTransform: json.RawMessage("null")}
	// target_modules as PEFT matches it. Experts written packed are
	// PEFT's target_parameters; written one by one (an adapter read from
	// transformers 4's layout) they are modules named gate_proj, up_proj
	// and down_proj under feed_forward.experts.N.
	var tmods []string
	for _, t := range a.Config.Targets {
		if t == "experts" {
			continue
		}
		tmods = append(tmods, t)
	}
	packed, single := false, false
	for _, ok := range a.packedLayers() {
		packed = packed || ok
		single = single || !ok
	}
	if single {
		for _, t := range []string{"gate_proj", "up_proj", "down_proj"} {
			if !slices.Contains(tmods, t) {
				tmods = append(tmods, t)
			}
		}
	}
	if packed {
		pc.TargetParameters = json.RawMessage(`["experts.gate_up_proj", "experts.down_proj"]`)
	}
	pc.TargetModules, _ = json.Marshal(tmods)
	if len(tmods) == 0 {
		pc.TargetModules = json.RawMessage("null")
	}
	data, err := json.MarshalIndent(pc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Infos lists the adapter's tensors as WriteWeights writes them.
func (a *Adapter) Infos() []safetensors.TensorInfo {
	var infos []safetensors.TensorInfo
	for _, t := range a.tensors(false) {
		infos = append(infos, safetensors.TensorInfo{Name: t.name, DType: safetensors.F32, Shape: t.shape})
	}
	return infos
}

// outTensor is one tensor of adapter_model.safetensors.
type outTensor struct {
	name  string
	shape []int
	data  []float32
}

// tensors lists the tensors of adapter_model.safetensors in order (with
// their values when data is set): lora_A and lora_B of each module, except
// that the experts of a MoE layer whose every expert has gate_proj, up_proj
// sharing A, and down_proj are written packed, as PEFT writes adapters of
// transformers 5's experts.gate_up_proj [E, 2I, H] and experts.down_proj
// [E, H, I] (target_parameters): under feed_forward.experts.base_layer
// (gate_up) and feed_forward.experts (down), lora_A [r·E, in] with expert
// e's rows at e·r…(e+1)·r and lora_B [out, r·E] with its columns at e,
// E+e, 2E+e, … (Load reads them back).
func (a *Adapter) tensors(data bool) []outTensor {
	var out []outTensor
	r, E := a.Config.Rank, a.Experts
	packed := a.packedLayers()
	for i := 0; i < len(a.Modules); i++ {
		m := &a.Modules[i]
		if layer, ok := expertLayer(m.Name); ok && packed[layer] {
			// The layer's 3E modules, gate, up, down per expert in order.
			n := 3 * E
			mods := a.Modules[i : i+n]
			H, I := mods[2].Out, mods[2].In
			gu := []outTensor{{name: keyPrefix + layer + ".feed_forward.experts.base_layer.lora_A.weight", shape: []int{r * E, H}},
				{name: keyPrefix + layer + ".feed_forward.experts.base_layer.lora_B.weight", shape: []int{2 * I, r * E}}}
			dn := []outTensor{{name: keyPrefix + layer + ".feed_forward.experts.lora_A.weight", shape: []int{r * E, I}},
				{name: keyPrefix + layer + ".feed_forward.experts.lora_B.weight", shape: []int{H, r * E}}}
			if data {
				gu[0].data, gu[1].data = make([]float32, r*E*H), make([]float32, 2*I*r*E)
				dn[0].data, dn[1].data = make([]float32, r*E*I), make([]float32, H*r*E)
				for e := range E {
					g, u, d := i+3*e, i+3*e+1, i+3*e+2
					copy(gu[0].data[e*r*H:], a.A(g))
					copy(dn[0].data[e*r*I:], a.A(d))
					for k := range r {
						col := k*E + e
						for o := range I {
							gu[1].data[o*r*E+col] = a.B(g)[o*r+k]
							gu[1].data[(I+o)*r*E+col] = a.B(u)[o*r+k]
						}
						for o := range H {
							dn[1].data[o*r*E+col] = a.B(d)[o*r+k]
						}
					}
				}
			}
			out = append(out, gu...)
			out = append(out, dn...)
			i += n - 1
			continue
		}
		ta := outTensor{name: m.KeyA(), shape: []int{r, m.In}}
		tb := outTensor{name: m.KeyB(), shape: []int{m.Out, r}}
		if data {
			ta.data, tb.data = a.A(i), a.B(i)
		}
		out = append(out, ta, tb)
	}
	return out
}

// expertLayer returns "model.layers.N" for a module of an expert.
func expertLayer(name string) (string, bool) {
	i := strings.Index(name, ".feed_forward.experts.")
	if i < 0 {
		return "", false
	}
	return name[:i], true
}

// packedLayers returns the MoE layers whose experts the adapter holds in
// PEFT's packed form: for every expert e of the layer, in order, the
// modules experts.e.gate_proj, up_proj (sharing gate_proj's A) and
// down_proj, one after the other.
func (a *Adapter) packedLayers() map[string]bool {
	out := map[string]bool{}
	E := a.Experts
	if E < 1 {
		return out
	}
	for i := 0; i < len(a.Modules); i++ {
		layer, ok := expertLayer(a.Modules[i].Name)
		if !ok {
			continue
		}
		good := i+3*E <= len(a.Modules)
		for e := 0; good && e < E; e++ {
			q := fmt.Sprintf("%s.feed_forward.experts.%d.", layer, e)
			g, u, d := i+3*e, i+3*e+1, i+3*e+2
			good = a.Modules[g].Name == q+"gate_proj" && a.Modules[u].Name == q+"up_proj" && a.Modules[d].Name == q+"down_proj" &&
				a.SharesA(u)
		}
		out[layer] = good
		// Skip the layer's expert modules.
		for i+1 < len(a.Modules) {
			if l, ok := expertLayer(a.Modules[i+1].Name); !ok || l != layer {
				break
			}
			i++
		}
	}
	return out
}

// WriteWeights writes the factors to path (atomically) as a float32
// safetensors file under PEFT's names, with metadata (may be nil).
func (a *Adapter) WriteWeights(path string, metadata map[string]string) error {
	md := map[string]string{"format": "pt"}
	for k, v := range metadata {
		md[k] = v
	}
	w, err := safetensors.Create(path, a.Infos(), md)
	if err != nil {
		return err
	}
	for _, t := range a.tensors(true) {
		if err := w.WriteFloat32(t.name, t.data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// ReadConfig reads and checks dir/adapter_config.json. It refuses what this
// package does not implement, naming the key: other PEFT types, DoRA,
// trained biases, fan_in_fan_out, per-module ranks or alphas, extra saved
// modules, target_parameters and regular-expression targets.
func ReadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := safefile.ReadFile(path, safefile.MaxConfig)
	if err != nil {
		return Config{}, fmt.Errorf("lora: %w", err)
	}
	return ParseConfig(data, path)
}

// ParseConfig is ReadConfig of the bytes of an adapter_config.json; path
// names it in errors.
func ParseConfig(data []byte, path string) (Config, error) {
	var pc peftConfig
	if err := json.Unmarshal(data, &pc); err != nil {
		return Config{}, fmt.Errorf("lora: %s: %v", path, err)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("lora: %s: %s", path, fmt.Sprintf(format, a...))
	}
	empty := func(raw json.RawMessage) bool {
		s := strings.TrimSpace(string(raw))
		return s == "" || s == "null" || s == "{}" || s == "[]"
	}
	switch {
	case pc.PeftType != "LORA":
		return Config{}, bad("peft_type %q: only LORA adapters are supported", pc.PeftType)
	case pc.UseDoRA:
		return Config{}, bad("use_dora: DoRA adapters are not supported")
	case pc.Bias != "" && pc.Bias != "none":
		return Config{}, bad("bias %q: adapters that train biases are not supported (only \"none\")", pc.Bias)
	case pc.FanInFanOut:
		return Config{}, bad("fan_in_fan_out: true is for Conv1D layers (GPT-2); Jamba's layers are Linear")
	case !empty(pc.ModulesToSave):
		return Config{}, bad("modules_to_save: adapters that save whole modules are not supported")
	case !empty(pc.RankPattern) || !empty(pc.AlphaPattern):
		return Config{}, bad("rank_pattern / alpha_pattern: per-module ranks and alphas are not supported")
	case !empty(pc.LayersToTransform):
		return Config{}, bad("layers_to_transform is not supported")
	case pc.LoraBias:
		return Config{}, bad("lora_bias: adapters with a trained lora_B bias are not supported")
	case pc.UseQALoRA:
		return Config{}, bad("use_qalora: QA-LoRA adapters are not supported")
	case !empty(pc.ALoRATokens):
		return Config{}, bad("alora_invocation_tokens: activated LoRA is not supported")
	case !empty(pc.LayerReplication):
		return Config{}, bad("layer_replication is not supported")
	case !empty(pc.TrainableTokens):
		return Config{}, bad("trainable_token_indices: adapters that train embedding rows are not supported")
	}
	if !empty(pc.TargetParameters) {
		var tp []string
		if err := json.Unmarshal(pc.TargetParameters, &tp); err != nil {
			return Config{}, bad("target_parameters: want a list of parameter names")
		}
		for _, p := range tp {
			if p != "experts.gate_up_proj" && p != "experts.down_proj" {
				return Config{}, bad("target_parameters %q: only the packed experts' experts.gate_up_proj and experts.down_proj are supported", p)
			}
		}
	}
	c := Config{Rank: pc.R, Alpha: pc.LoraAlpha, Dropout: pc.LoraDropout, UseRSLoRA: pc.UseRSLoRA,
		BaseModel: pc.BaseModel, ConfigPath: path}
	var list []string
	if err := json.Unmarshal(pc.TargetModules, &list); err != nil {
		var s string
		if json.Unmarshal(pc.TargetModules, &s) == nil {
			return Config{}, bad("target_modules %q: a regular expression; give a list of module names", s)
		}
		return Config{}, bad("target_modules: want a list of module names")
	}
	c.Targets = list
	if c.Rank < 1 || c.Rank > 1<<16 {
		return Config{}, bad("r %d: need 1 to 65536", c.Rank)
	}
	if math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0) || c.Alpha == 0 {
		return Config{}, bad("lora_alpha %v: need a non-zero number", c.Alpha)
	}
	return c, nil
}

// Load reads the PEFT adapter in dir for a model of config cfg. Every
// lora_A must have its lora_B and both must fit the base tensor they adapt;
// tensors may be F32, BF16, F16 or F64. The adapter's modules are those of
// its weights file (a target_modules entry that matches nothing in the file
// adapts nothing, as in PEFT).
//
// Adapters of transformers 5's packed experts (PEFT's target_parameters
// experts.gate_up_proj and experts.down_proj: one lora_A [r·E, in] and
// lora_B [out, r·E] per parameter, under feed_forward.experts and, when
// both are adapted, feed_forward.experts.base_layer) are read as the
// per-expert adapters they amount to: expert e's factors are rows
// e·r…(e+1)·r of lora_A and columns e, E+e, 2E+e, … of lora_B (the layout
// PEFT 0.21's fixture shows: testdata/lora/peft-tiny-moe-experts), and its
// gate_up delta splits into the gate rows, then the up rows.
func Load(dir string, cfg *model.Config) (*Adapter, error) {
	c, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, WeightsFile)
	f, err := safetensors.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("lora: %s: no %s (a .bin adapter? convert it to safetensors)", dir, WeightsFile)
		}
		return nil, fmt.Errorf("lora: %w", err)
	}
	defer f.Close()
	return load(c, f, path, cfg)
}

// LoadBytes is Load of an adapter held in memory: the bytes of its
// adapter_config.json and adapter_model.safetensors; name names it in
// errors.
func LoadBytes(name string, config, weights []byte, cfg *model.Config) (*Adapter, error) {
	c, err := ParseConfig(config, filepath.Join(name, ConfigFile))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(name, WeightsFile)
	f, err := safetensors.OpenBytes(path, weights)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	defer f.Close()
	return load(c, f, path, cfg)
}

// load reads the factors of an adapter of config c from f (at path).
func load(c Config, f *safetensors.File, path string, cfg *model.Config) (*Adapter, error) {
	shapes := map[string][]int{}
	order := map[string]int{}
	for i, s := range cfg.Spec() {
		shapes[s.Name] = s.Shape
		order[s.Name] = i
	}
	type pair struct{ a, b string }
	mods := map[string]*pair{}
	for _, name := range f.Names() {
		rest, ok := strings.CutPrefix(name, keyPrefix)
		var mod, which string
		if ok {
			switch {
			case strings.HasSuffix(rest, ".lora_A.weight"):
				mod, which = strings.TrimSuffix(rest, ".lora_A.weight"), "A"
			case strings.HasSuffix(rest, ".lora_B.weight"):
				mod, which = strings.TrimSuffix(rest, ".lora_B.weight"), "B"
			}
		}
		if which == "" {
			return nil, fmt.Errorf("lora: %s: tensor %s is not a LoRA factor (want base_model.model.<module>.lora_A.weight or lora_B.weight)", path, name)
		}
		if !packedExperts(mod) {
			if target(mod+".weight") == "" {
				return nil, fmt.Errorf("lora: %s: tensor %s: %s is not an adaptable linear layer of a Jamba model", path, name, mod)
			}
			if _, ok := shapes[mod+".weight"]; !ok {
				return nil, fmt.Errorf("lora: %s: tensor %s: the model has no %s.weight (an adapter for another model?)", path, name, mod)
			}
		}
		p := mods[mod]
		if p == nil {
			p = &pair{}
			mods[mod] = p
		}
		if which == "A" {
			p.a = name
		} else {
			p.b = name
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("lora: %s holds no LoRA factors", path)
	}
	r := c.Rank
	// read returns a tensor of the file as float32, checking its shape.
	read := func(key string, shape []int, what string) ([]float32, error) {
		info, _ := f.Info(key)
		if !slices.Equal(info.Shape, shape) {
			return nil, fmt.Errorf("lora: %s: tensor %s has shape %v, want %v (%s)", path, key, info.Shape, shape, what)
		}
		t, err := f.Tensor(key)
		if err != nil {
			return nil, fmt.Errorf("lora: %w", err)
		}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("lora: %s: tensor %s: %w", path, key, err)
		}
		for j, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("lora: %s: tensor %s: element %d is %v", path, key, j, x)
			}
		}
		return v, nil
	}
	type loaded struct {
		name    string
		out, in int
		a, b    []float32
		shared  bool // an expert's up_proj sharing its gate_proj's A (packed)
	}
	var all []loaded
	for mod, p := range mods {
		if p.a == "" || p.b == "" {
			return nil, fmt.Errorf("lora: %s: module %s has only one of lora_A and lora_B", path, mod)
		}
		if !packedExperts(mod) {
			sh := shapes[mod+".weight"]
			what := fmt.Sprintf("r = %d, base %s.weight %v", r, mod, sh)
			a, err := read(p.a, []int{r, sh[1]}, what)
			if err != nil {
				return nil, err
			}
			b, err := read(p.b, []int{sh[0], r}, what)
			if err != nil {
				return nil, err
			}
			all = append(all, loaded{mod, sh[0], sh[1], a, b, false})
			continue
		}
		// Packed experts: which parameter is told by the shapes
		// (gate_up_proj [E, 2I, H], down_proj [E, H, I]).
		layer := mod[:strings.Index(mod, ".feed_forward.experts")]
		E, I, H := cfg.NumExperts, cfg.IntermediateSize, cfg.HiddenSize
		if _, ok := shapes[layer+".feed_forward.router.weight"]; !ok {
			return nil, fmt.Errorf("lora: %s: tensor %s: %s has no experts in this model", path, p.a, layer)
		}
		ia, _ := f.Info(p.a)
		if len(ia.Shape) != 2 {
			return nil, fmt.Errorf("lora: %s: tensor %s has shape %v, want [r·E, in]", path, p.a, ia.Shape)
		}
		in, out := ia.Shape[1], 2*I
		if in == I {
			out = H
		} else if in != H {
			return nil, fmt.Errorf("lora: %s: tensor %s has %d columns: neither gate_up_proj's %d nor down_proj's %d", path, p.a, in, H, I)
		}
		what := fmt.Sprintf("r = %d, %d experts", r, E)
		a, err := read(p.a, []int{r * E, in}, what)
		if err != nil {
			return nil, err
		}
		b, err := read(p.b, []int{out, r * E}, what)
		if err != nil {
			return nil, err
		}
		for e := range E {
			ae := make([]float32, r*in)
			be := make([]float32, out*r)
			for k := range r {
				row := e*r + k // A: expert e's r rows one after the other
				copy(ae[k*in:(k+1)*in], a[row*in:(row+1)*in])
				col := k*E + e // B: its columns interleaved with the other experts'
				for o := range out {
					be[o*r+k] = b[o*r*E+col]
				}
			}
			q := fmt.Sprintf("%s.feed_forward.experts.%d.", layer, e)
			if out == H {
				all = append(all, loaded{q + "down_proj", H, I, ae, be, false})
			} else {
				all = append(all, loaded{q + "gate_proj", I, H, ae, be[:I*r], false}, loaded{q + "up_proj", I, H, ae, be[I*r:], true})
			}
		}
	}
	for _, l := range all {
		if _, ok := order[l.name+".weight"]; !ok {
			return nil, fmt.Errorf("lora: %s: the model has no %s.weight", path, l.name)
		}
	}
	sort.Slice(all, func(i, j int) bool { return order[all[i].name+".weight"] < order[all[j].name+".weight"] })
	a := &Adapter{Config: c, Experts: cfg.NumExperts}
	shared := map[string]bool{}
	for _, l := range all {
		a.Modules = append(a.Modules, Module{Name: l.name, Out: l.out, In: l.in})
		shared[l.name] = l.shared
	}
	a.Data = make([]float32, a.layout(func(m *Module) bool { return shared[m.Name] }))
	for i, l := range all {
		copy(a.A(i), l.a)
		copy(a.B(i), l.b)
	}
	return a, nil
}

// packedExperts reports whether a module path is PEFT's wrapper of
// transformers 5's packed expert parameters.
func packedExperts(mod string) bool {
	return strings.HasSuffix(mod, ".feed_forward.experts") || strings.HasSuffix(mod, ".feed_forward.experts.base_layer")
}

// Describe summarises an adapter for logs: rank, alpha, modules, size.
func (a *Adapter) Describe() string {
	return "rank " + strconv.Itoa(a.Config.Rank) + ", alpha " + strconv.FormatFloat(a.Config.Alpha, 'g', -1, 64) +
		", " + strconv.Itoa(len(a.Modules)) + " modules, " + strconv.Itoa(a.Size()) + " parameters"
}
