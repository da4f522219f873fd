package train

import (
	"fmt"
	"path/filepath"

	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
)

// LoRA is a trainable low-rank adapter over frozen base parameters (see
// package lora): every adapted linear layer computes
//
//	y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ,   s = alpha/r
//
// as PEFT does (dropout on the adapter's input only, kept values scaled by
// 1/(1−p), during training passes only). The base weights get no gradient:
// their weight products in the backward pass are skipped, and only A and B
// are trained.
type LoRA struct {
	Adapter *lora.Adapter
	// Params are the adapter's factors under PEFT's tensor names, viewing
	// Adapter.Data: the optimizer's and the checkpoint's layout.
	Params *Params
}

// NewLoRA wraps an adapter for training on a model of config cfg.
func NewLoRA(cfg *model.Config, ad *lora.Adapter) *LoRA {
	p := &Params{Config: cfg, Data: ad.Data, index: map[string]int{}}
	r := ad.Config.Rank
	for i, m := range ad.Modules {
		ts := []Tensor{
			{Name: m.KeyA(), Shape: []int{r, m.In}, Offset: m.AOff, Size: r * m.In},
			{Name: m.KeyB(), Shape: []int{m.Out, r}, Offset: m.BOff, Size: m.Out * r},
		}
		if ad.SharesA(i) {
			ts = ts[1:] // an expert's up_proj: its A is its gate_proj's
		}
		for _, t := range ts {
			p.index[t.Name] = len(p.Tensors)
			p.Tensors = append(p.Tensors, t)
		}
	}
	return &LoRA{Adapter: ad, Params: p}
}

// loraRun is a Backprop's side of an adapter: its gradient (in the
// adapter's layout), the activations of every adapted layer, and scratch.
type loraRun struct {
	l     *LoRA
	grad  []float32
	sites map[*float32]*loraSite // by the first element of the base weight
	s     scratch
	// train turns dropout on (a pass with a backward); seed picks the
	// masks of the pass.
	train bool
	seed  uint64

	tmp, dys, du, xd, dxd []float32
}

// loraSite is one adapted layer in a Backprop.
type loraSite struct {
	id         uint64
	a, b       []float32 // A [r, in], B [out, r]
	ga, gb     []float32
	out, in, r int
	u          []float32 // [n, r]: drop(x)·Aᵀ of the last forward
	mask       []float32 // [n, in]: 0 or 1/(1−p) per input value (dropout only)
}

// SetLoRA makes the Backprop train l instead of its Params, which are then
// frozen: the backward pass adds only the adapter's gradient, into
// LoRAGrad. It must be called before the first pass.
func (e *Backprop) SetLoRA(l *LoRA) error {
	r := &loraRun{l: l, grad: make([]float32, len(l.Adapter.Data)), sites: map[*float32]*loraSite{}}
	ad := l.Adapter
	for i, m := range ad.Modules {
		t, ok := e.Params.Lookup(m.Weight())
		if !ok {
			return fmt.Errorf("train: the adapter's module %s is not in the model", m.Name)
		}
		if t.Size != m.Out*m.In {
			return fmt.Errorf("train: the adapter's module %s is %d×%d, the model's %v", m.Name, m.Out, m.In, t.Shape)
		}
		rk := ad.Config.Rank
		id := uint64(i + 1)
		if ad.SharesA(i) {
			// An expert's up_proj shares its gate_proj's A, and its input:
			// the same dropout mask, as PEFT's one adapter of gate_up.
			id = uint64(i)
		}
		r.sites[&e.Params.Data[t.Offset]] = &loraSite{id: id,
			a: ad.A(i), b: ad.B(i), ga: r.grad[m.AOff : m.AOff+rk*m.In], gb: r.grad[m.BOff : m.BOff+m.Out*rk],
			out: m.Out, in: m.In, r: rk}
	}
	e.lora = r
	e.s.frozen = true
	return nil
}

// LoRAGrad is the adapter's gradient (nil without an adapter).
func (e *Backprop) LoRAGrad() []float32 {
	if e.lora == nil {
		return nil
	}
	return e.lora.grad
}

// SetDropoutSeed picks the dropout masks of the following passes (one
// seed per micro-batch makes a run reproducible and resumable).
func (e *Backprop) SetDropoutSeed(seed uint64) {
	if e.lora != nil {
		e.lora.seed = seed
	}
}

// trainGrad is the gradient an optimizer step uses: the adapter's, or the
// parameters'.
func (e *Backprop) trainGrad() []float32 {
	if e.lora != nil {
		return e.lora.grad
	}
	return e.Grad
}

// site returns the adapter of the layer whose weight is w, or nil.
func (r *loraRun) site(w []float32) *loraSite {
	if r == nil || len(w) == 0 {
		return nil
	}
	return r.sites[&w[0]]
}

// grow is buf.Grow with room to spare: an expert's adapter sees a number
// of rows that changes with the routing from pass to pass, so its buffers
// grow to half again what a pass needs and stop reallocating soon.
func grow(b *[]float32, n int) []float32 {
	if cap(*b) < n {
		*b = make([]float32, n, n+n/2)
	}
	*b = (*b)[:n]
	return *b
}

// mix64 is splitmix64's finaliser.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// loraForward adds the adapter of weight w (if any) to y = x·Wᵀ for n
// rows: y += s·(drop(x)·Aᵀ)·Bᵀ, keeping drop(x)·Aᵀ (and the mask) for the
// backward pass.
func (e *Backprop) loraForward(w, y, x []float32, n int) {
	st := e.lora.site(w)
	if st == nil || n == 0 {
		return
	}
	r := e.lora
	r.s.pool = e.s.pool
	cfg := &r.l.Adapter.Config
	xin := x[:n*st.in]
	st.mask = st.mask[:0]
	if p := cfg.Dropout; p > 0 && r.train {
		st.mask = grow(&st.mask, n*st.in)
		keep := float32(1 / (1 - p))
		// A value is dropped when its hash, as a fraction of 2⁶⁴, is
		// below p: a function of (seed, layer, row, column), so that a
		// recomputed forward draws the same mask.
		thr := uint64(p * (1 << 63) * 2)
		base := mix64(r.seed ^ mix64(st.id))
		for t := 0; t < n; t++ {
			row := mix64(base + uint64(t))
			for i := range st.in {
				if mix64(row+uint64(i)) < thr {
					st.mask[t*st.in+i] = 0
				} else {
					st.mask[t*st.in+i] = keep
				}
			}
		}
		xd := grow(&r.xd, n*st.in)
		for i, v := range xin {
			xd[i] = v * st.mask[i]
		}
		xin = xd
	}
	st.u = grow(&st.u, n*st.r)
	r.s.linear(st.u, xin, n, st.a, st.r, st.in)
	tmp := grow(&r.tmp, n*st.out)
	r.s.linear(tmp, st.u, n, st.b, st.out, st.r)
	s := float32(cfg.Scale())
	for i, v := range tmp {
		y[i] += s * v
	}
}

// loraBackward is the backward of loraForward given dy [n, out]: it adds
// the gradients of A and B and adds the input's gradient into dx (when not
// nil):
//
//	gB += s·dyᵀ·u,  du = s·dy·B,  gA += duᵀ·drop(x),  dx += drop'(du·A)
func (e *Backprop) loraBackward(w, dx, dy, x []float32, n int) {
	st := e.lora.site(w)
	if st == nil || n == 0 {
		return
	}
	r := e.lora
	r.s.pool = e.s.pool
	s := float32(r.l.Adapter.Config.Scale())
	dys := grow(&r.dys, n*st.out)
	for i, v := range dy[:n*st.out] {
		dys[i] = s * v
	}
	du := grow(&r.du, n*st.r)
	clear(du)
	r.s.linearBackward(du, st.gb, nil, dys, st.u, st.b, n, st.out, st.r)
	xin := x[:n*st.in]
	if len(st.mask) > 0 {
		xd := grow(&r.xd, n*st.in)
		for i, v := range xin {
			xd[i] = v * st.mask[i]
		}
		xin = xd
	}
	if dx == nil || len(st.mask) == 0 {
		r.s.linearBackward(dx, st.ga, nil, du, xin, st.a, n, st.r, st.in)
		return
	}
	dxd := grow(&r.dxd, n*st.in)
	clear(dxd)
	r.s.linearBackward(dxd, st.ga, nil, du, xin, st.a, n, st.r, st.in)
	for i, v := range dxd {
		dx[i] += v * st.mask[i]
	}
}

// writeAdapter writes the run's adapter into dir as a PEFT folder, with
// metadata in its weights file.
func (t *Trainer) writeAdapter(dir string, metadata map[string]string) error {
	ad := t.LoRA.Adapter
	if err := ad.WriteWeights(filepath.Join(dir, lora.WeightsFile), metadata); err != nil {
		return err
	}
	return ad.WriteConfig(dir)
}
