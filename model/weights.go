package model

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/safetensors"
)

// AttnWeights are the projections of an attention layer.
type AttnWeights struct {
	Q, K, V, O *kernels.Matrix
}

// MambaWeights are the parameters of a Mamba mixer. Vectors are float32;
// A is −exp(A_log), precomputed at load.
type MambaWeights struct {
	InProj               *kernels.Matrix // [2Di, H]: x rows then gate rows
	InBias               []float32       // [2Di] or nil
	ConvW                []float32       // [Di, Kc]: tap Kc−1 multiplies the current token
	ConvB                []float32       // [Di] or nil
	XProj                *kernels.Matrix // [R+2N, Di]: dt, B, C
	DtNorm, BNorm, CNorm []float32       // [R], [N], [N]; nil without inner norms
	DtProj               *kernels.Matrix // [Di, R]
	DtBias               []float32       // [Di]
	A                    []float32       // [Di, N]
	D                    []float32       // [Di]
	OutProj              *kernels.Matrix // [H, Di]
	OutBias              []float32       // [H] or nil
	ALog                 []float32       // [Di, N] as stored (for training and saving)

	// Derived at load: the x and gate halves of InProj (sharing its
	// storage) and the conv weight transposed to [Kc][Di].
	InX, InZ         *kernels.Matrix
	InXBias, InZBias []float32
	ConvWT           []float32
}

// MLPWeights are the projections of a SwiGLU MLP or one expert.
type MLPWeights struct {
	Gate, Up, Down *kernels.Matrix
}

// MoEWeights are a router and its experts.
type MoEWeights struct {
	Router  *kernels.Matrix // [E, H]
	Experts []MLPWeights
}

// Layer is one decoder layer: a mixer (attention or Mamba) and an FFN (dense or MoE).
type Layer struct {
	Mixer     MixerKind
	FFN       FFNKind
	InputNorm []float32 // RMSNorm before the mixer
	PreFFNorm []float32 // RMSNorm before the FFN
	Attn      *AttnWeights
	Mamba     *MambaWeights
	MLP       *MLPWeights
	MoE       *MoEWeights
}

// LoadError reports a checkpoint tensor that is missing, unexpected or of
// the wrong shape or type.
type LoadError struct {
	Tensor string
	Msg    string
}

func (e *LoadError) Error() string { return fmt.Sprintf("model: tensor %s: %s", e.Tensor, e.Msg) }

// ErrUnexpectedTensors is wrapped by the error for tensors the config does not explain.
var ErrUnexpectedTensors = errors.New("unexpected tensors")

// binder takes tensors from a checkpoint by name, checks their shapes
// against the config's Spec and remembers which names were used.
type binder struct {
	set   *safetensors.Set
	cfg   *Config
	specs map[string][]int
	used  map[string]bool
	err   error
}

func newBinder(set *safetensors.Set, cfg *Config) *binder {
	b := &binder{set: set, cfg: cfg, specs: map[string][]int{}, used: map[string]bool{}}
	for _, s := range cfg.Spec() {
		b.specs[s.Name] = s.Shape
	}
	return b
}

func (b *binder) tensor(name string) (safetensors.Tensor, bool) {
	if b.err != nil {
		return safetensors.Tensor{}, false
	}
	want, ok := b.specs[name]
	if !ok {
		b.err = &LoadError{Tensor: name, Msg: "not part of this config (internal error)"}
		return safetensors.Tensor{}, false
	}
	t, err := b.set.Tensor(name)
	if err != nil {
		b.err = &LoadError{Tensor: name, Msg: "missing from the checkpoint: " + err.Error()}
		return safetensors.Tensor{}, false
	}
	b.used[name] = true
	if !equalShape(t.Shape, want) {
		b.err = &LoadError{Tensor: name, Msg: fmt.Sprintf("shape %v in %s, the config needs %v", t.Shape, t.File, want)}
		return safetensors.Tensor{}, false
	}
	switch t.DType {
	case "F32", "BF16", "F16", "F64":
	default:
		b.err = &LoadError{Tensor: name, Msg: fmt.Sprintf("dtype %s in %s is not a float type", t.DType, t.File)}
		return safetensors.Tensor{}, false
	}
	return t, true
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// matrix binds a 2-D weight without copying when the file stores F32 or BF16
// at an aligned address; other dtypes are converted to float32.
func (b *binder) matrix(name string) *kernels.Matrix {
	t, ok := b.tensor(name)
	if !ok {
		return nil
	}
	rows, cols := t.Shape[0], 1
	for _, d := range t.Shape[1:] {
		cols *= d
	}
	m := &kernels.Matrix{Rows: rows, Cols: cols}
	switch t.DType {
	case "F32":
		if v, ok := t.F32View(); ok {
			m.DType, m.F32 = kernels.F32, v
			return m
		}
	case "BF16":
		if v, ok := t.BF16View(); ok {
			m.DType, m.BF16 = kernels.BF16, v
			return m
		}
		// Unaligned bf16: copy the bits, still bf16.
		v := make([]uint16, rows*cols)
		for i := range v {
			v[i] = uint16(t.Data[2*i]) | uint16(t.Data[2*i+1])<<8
		}
		m.DType, m.BF16 = kernels.BF16, v
		return m
	}
	v, err := t.Float32()
	if err != nil {
		b.err = &LoadError{Tensor: name, Msg: err.Error()}
		return nil
	}
	m.DType, m.F32 = kernels.F32, v
	return m
}

// vector binds a small parameter as a float32 slice (copied when not F32).
func (b *binder) vector(name string) []float32 {
	t, ok := b.tensor(name)
	if !ok {
		return nil
	}
	if t.DType == "F32" {
		if v, ok := t.F32View(); ok {
			return v
		}
	}
	v, err := t.Float32()
	if err != nil {
		b.err = &LoadError{Tensor: name, Msg: err.Error()}
		return nil
	}
	return v
}

// unused returns an error naming the checkpoint tensors nothing bound.
func (b *binder) unused() error {
	var extra []string
	for _, n := range b.set.Names() {
		if !b.used[n] {
			extra = append(extra, n)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	more := ""
	if len(extra) > 8 {
		more = fmt.Sprintf(" and %d more", len(extra)-8)
		extra = extra[:8]
	}
	return fmt.Errorf("model: %w in the checkpoint: %s%s (does config.json match the weights?)", ErrUnexpectedTensors, strings.Join(extra, ", "), more)
}

// The names, under a MoE layer's "feed_forward.", of the experts packed as
// transformers 5 holds them in memory and may save them:
// gate_up_proj [E, 2I, H] (each expert's gate rows, then its up rows) and
// down_proj [E, H, I]. Checkpoints on the Hub store each expert apart.
const (
	PackedGateUp = "experts.gate_up_proj"
	PackedDown   = "experts.down_proj"
)

// has reports whether the checkpoint holds a tensor.
func (b *binder) has(name string) bool {
	_, ok := b.set.Info(name)
	return ok
}

// packedExperts binds the experts of one MoE layer from the packed
// tensors, each expert's matrices a view into them (no copy for F32 and
// BF16).
func (b *binder) packedExperts(f string, experts []MLPWeights) {
	c := b.cfg
	E, I, H := c.NumExperts, c.IntermediateSize, c.HiddenSize
	gu, dn := f+PackedGateUp, f+PackedDown
	b.specs[gu] = []int{E, 2 * I, H}
	b.specs[dn] = []int{E, H, I}
	gate, down := b.matrix(gu), b.matrix(dn)
	if gate == nil || down == nil {
		return
	}
	for j := range experts {
		g := j * 2 * I * H // first element of expert j in gate_up_proj
		d := j * H * I
		experts[j] = MLPWeights{
			Gate: subMatrix(gate, g, I, H),
			Up:   subMatrix(gate, g+I*H, I, H),
			Down: subMatrix(down, d, H, I),
		}
	}
}

// subMatrix views rows×cols elements of m's storage from element off.
func subMatrix(m *kernels.Matrix, off, rows, cols int) *kernels.Matrix {
	s := &kernels.Matrix{Rows: rows, Cols: cols, DType: m.DType}
	n := rows * cols
	switch m.DType {
	case kernels.BF16:
		s.BF16 = m.BF16[off : off+n : off+n]
	default:
		s.F32 = m.F32[off : off+n : off+n]
	}
	return s
}

// weightSource is where bindLayers finds a checkpoint's tensors by their
// Hugging Face names: a safetensors set (binder) or a GGUF file (ggBinder).
// Both record the first failure and return nil from then on.
type weightSource interface {
	matrix(name string) *kernels.Matrix
	vector(name string) []float32
	// mambaA returns A and A_log of the Mamba mixer whose names start with
	// q (layer i): one is stored, the other derived.
	mambaA(q string, i int) (a, aLog []float32)
	// experts binds the experts of the MoE block whose names start with f
	// and reports whether they were stored packed (transformers 5).
	experts(f string, out []MLPWeights) (packed bool)
	// done returns the first failure, or an error naming the tensors no
	// layer took.
	done() error
}

// bind builds the layers of m from the checkpoint tensors.
func (m *Model) bind(set *safetensors.Set) error {
	return m.bindLayers(newBinder(set, m.Config))
}

// bindLayers builds the layers of m from src, the one walk over the
// config's layer layout for every checkpoint format.
func (m *Model) bindLayers(b weightSource) error {
	c := m.Config
	m.Embed = b.matrix("model.embed_tokens.weight")
	m.Layers = make([]Layer, c.NumHiddenLayers)
	for i := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		l := &m.Layers[i]
		l.Mixer, l.FFN = c.Mixer(i), c.FFN(i)
		l.InputNorm = b.vector(p + "input_layernorm.weight")
		l.PreFFNorm = b.vector(p + "pre_ff_layernorm.weight")
		switch l.Mixer {
		case Attention:
			a := p + "self_attn."
			l.Attn = &AttnWeights{Q: b.matrix(a + "q_proj.weight"), K: b.matrix(a + "k_proj.weight"),
				V: b.matrix(a + "v_proj.weight"), O: b.matrix(a + "o_proj.weight")}
		case Mamba:
			q := p + "mamba."
			w := &MambaWeights{}
			w.InProj = b.matrix(q + "in_proj.weight")
			if c.MambaProjBias {
				w.InBias = b.vector(q + "in_proj.bias")
				w.OutBias = b.vector(q + "out_proj.bias")
			}
			w.ConvW = b.vector(q + "conv1d.weight")
			if c.MambaConvBias {
				w.ConvB = b.vector(q + "conv1d.bias")
			}
			w.XProj = b.matrix(q + "x_proj.weight")
			if c.MambaInnerLayernorms {
				w.DtNorm = b.vector(q + "dt_layernorm.weight")
				w.BNorm = b.vector(q + "b_layernorm.weight")
				w.CNorm = b.vector(q + "c_layernorm.weight")
			}
			w.DtProj = b.matrix(q + "dt_proj.weight")
			w.DtBias = b.vector(q + "dt_proj.bias")
			w.A, w.ALog = b.mambaA(q, i)
			w.D = b.vector(q + "D")
			w.OutProj = b.matrix(q + "out_proj.weight")
			l.Mamba = w
		}
		f := p + "feed_forward."
		switch l.FFN {
		case Dense:
			l.MLP = &MLPWeights{Gate: b.matrix(f + "gate_proj.weight"), Up: b.matrix(f + "up_proj.weight"), Down: b.matrix(f + "down_proj.weight")}
		case MoE:
			moe := &MoEWeights{Router: b.matrix(f + "router.weight"), Experts: make([]MLPWeights, c.NumExperts)}
			if b.experts(f, moe.Experts) {
				m.PackedExperts = true
			}
			l.MoE = moe
		}
	}
	m.FinalNorm = b.vector("model.final_layernorm.weight")
	if c.TieWordEmbeddings {
		m.LMHead = m.Embed
	} else {
		m.LMHead = b.matrix("lm_head.weight")
	}
	return b.done()
}

// mambaA reads A_log as stored and derives A = -exp(A_log).
func (b *binder) mambaA(q string, _ int) (a, aLog []float32) {
	aLog = b.vector(q + "A_log")
	if aLog != nil {
		a = make([]float32, len(aLog))
		for j, v := range aLog {
			a[j] = -float32(math.Exp(float64(v)))
		}
	}
	return a, aLog
}

// experts binds per-expert tensors, or the packed pair transformers 5 saves.
func (b *binder) experts(f string, out []MLPWeights) bool {
	if b.has(f + PackedGateUp) {
		b.packedExperts(f, out)
		return true
	}
	bindExperts(b, f, out)
	return false
}

func (b *binder) done() error {
	if b.err != nil {
		return b.err
	}
	return b.unused()
}

// bindExperts binds the experts stored one by one under f.
func bindExperts(b weightSource, f string, out []MLPWeights) {
	for j := range out {
		e := fmt.Sprintf("%sexperts.%d.", f, j)
		out[j] = MLPWeights{Gate: b.matrix(e + "gate_proj.weight"), Up: b.matrix(e + "up_proj.weight"), Down: b.matrix(e + "down_proj.weight")}
	}
}

// Matrices calls fn for every linear weight of the model with its checkpoint
// name (the LM head only when untied). Norms, conv, A_log, D and routers are
// not linear weights in this sense and are skipped, except routers when
// withRouters is set.
func (m *Model) Matrices(withRouters bool, fn func(name string, w **kernels.Matrix)) {
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		if a := l.Attn; a != nil {
			fn(p+"self_attn.q_proj.weight", &a.Q)
			fn(p+"self_attn.k_proj.weight", &a.K)
			fn(p+"self_attn.v_proj.weight", &a.V)
			fn(p+"self_attn.o_proj.weight", &a.O)
		}
		if w := l.Mamba; w != nil {
			fn(p+"mamba.in_proj.weight", &w.InProj)
			fn(p+"mamba.x_proj.weight", &w.XProj)
			fn(p+"mamba.dt_proj.weight", &w.DtProj)
			fn(p+"mamba.out_proj.weight", &w.OutProj)
		}
		if f := l.MLP; f != nil {
			fn(p+"feed_forward.gate_proj.weight", &f.Gate)
			fn(p+"feed_forward.up_proj.weight", &f.Up)
			fn(p+"feed_forward.down_proj.weight", &f.Down)
		}
		if moe := l.MoE; moe != nil {
			if withRouters {
				fn(p+"feed_forward.router.weight", &moe.Router)
			}
			for j := range moe.Experts {
				e := &moe.Experts[j]
				q := fmt.Sprintf("%sfeed_forward.experts.%d.", p, j)
				fn(q+"gate_proj.weight", &e.Gate)
				fn(q+"up_proj.weight", &e.Up)
				fn(q+"down_proj.weight", &e.Down)
			}
		}
	}
	if !m.Config.TieWordEmbeddings {
		fn("lm_head.weight", &m.LMHead)
	}
}
