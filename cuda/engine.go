package cuda

import (
	"fmt"

	"github.com/jamba-go/jamba/engine"
)

// EngineBackend is m as the serving engine's backend (engine.NewOn): the
// sequences' states (Seq) live in GPU memory, a batch of them is one
// Forward, and copies of states and of their Mamba layers (prefix reuse,
// parallel choices) are device-to-device. The next tokens of requests
// without penalties, logit bias, masks or log-probabilities are chosen on
// the GPU, greedy or sampled (the sampling kernels, from the request's
// seed: not the CPU sampler's random sequence), and only the ids are
// copied back; the others read the step's logits on the host. The engine
// closes the backend, not m.
func EngineBackend(m *Model) engine.Backend { return &backend{m: m} }

type backend struct {
	m    *Model
	in   []SeqInput
	ids  []int
	opts []SampleOptions // each logits row's, for sampleEach
}

// gpuState is a Seq of the engine backend. Its capacity grows as the
// sequence does (the keys and values are copied device-to-device).
type gpuState struct{ s *Seq }

// gpuSnapshot is a copy of a Seq's Mamba layers, in device memory.
type gpuSnapshot struct {
	dev *Device
	b   Buf
}

func (sn *gpuSnapshot) Free() { sn.dev.Free(&sn.b) }

func (b *backend) NewState(capacity int) (engine.State, error) {
	s, err := b.m.NewSeq(max(capacity, 1))
	if err != nil {
		return nil, err
	}
	return &gpuState{s}, nil
}

func (b *backend) Forward(batch []engine.Input) error {
	b.in = b.in[:0]
	for i, x := range batch {
		st, ok := x.State.(*gpuState)
		if !ok {
			return fmt.Errorf("cuda: sequence %d: a %T is not a GPU state", i, x.State)
		}
		if x.Adapter != nil {
			return fmt.Errorf("cuda: sequence %d: LoRA adapters are applied on the CPU only", i)
		}
		if need := st.s.Len + len(x.Tokens); need > st.s.Cap {
			if err := st.s.Grow(max(need, 2*st.s.Cap)); err != nil {
				return err
			}
		}
		b.in = append(b.in, SeqInput{Tokens: x.Tokens, Cache: st.s, NoLogits: x.NoLogits})
	}
	err := b.m.Forward(b.in)
	clear(b.in)
	return err
}

// Logits copies every row of the last Forward to the host at the first
// call after it.
func (b *backend) Logits(i int) ([]float32, error) { return b.m.Logits(i) }

// Choose runs the sampling kernels on the rows of the chosen sequences,
// in one launch: the greedy kernel when every choice is greedy, one row
// sampled with its own launch when it is the step's only row, else the
// kernel that takes each row's parameters, seed and step from a table
// (the rows are sampled side by side on the GPU); then one copy of the
// ids to the host.
func (b *backend) Choose(cs []engine.Choice) ([]int, error) {
	m, w := b.m, &b.m.ws
	if len(cs) != w.nseq || w.nhead == 0 {
		return nil, nil
	}
	if m.Dev.enter() {
		defer m.Dev.leave()
	}
	greedy := true
	b.opts = b.opts[:0]
	for i, c := range cs {
		var o SampleOptions
		if c.Device && c.Params.Temperature > 0 {
			greedy = false
			p := c.Params
			o = SampleOptions{Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP, MinP: p.MinP, Seed: p.Seed, Step: uint64(c.Step)}
		}
		for range w.headOff[i+1] - w.headOff[i] {
			b.opts = append(b.opts, o)
		}
	}
	var err error
	switch {
	case greedy:
		err = m.sampleRows(0, w.nhead, SampleOptions{})
	case w.nhead == 1:
		err = m.sampleRows(0, 1, b.opts[0])
	default:
		err = m.sampleEach(b.opts)
	}
	if err != nil {
		return nil, err
	}
	ids, err := m.downloadIDs()
	if err != nil {
		return nil, err
	}
	// One id per logits row; sequences without logits get -1.
	b.ids = b.ids[:0]
	for i := range w.nseq {
		if w.headOff[i+1] > w.headOff[i] {
			b.ids = append(b.ids, ids[w.headOff[i]])
		} else {
			b.ids = append(b.ids, -1)
		}
	}
	return b.ids, nil
}

func (b *backend) SnapshotBytes() int64 { return b.m.MambaBytes() }
func (b *backend) Close()               {}

func (g *gpuState) Len() int     { return g.s.Len }
func (g *gpuState) Reset() error { return g.s.Reset() }
func (g *gpuState) Free()        { g.s.Free() }

func (g *gpuState) Reserve(capacity int) error {
	if capacity <= g.s.Cap {
		return nil
	}
	return g.s.Grow(capacity)
}

func (g *gpuState) CopyFrom(src engine.State) error {
	o, ok := src.(*gpuState)
	if !ok {
		return fmt.Errorf("cuda: copying a %T into a GPU state", src)
	}
	if o.s.Len > g.s.Cap {
		if err := g.s.Grow(o.s.Cap); err != nil {
			return err
		}
	}
	return g.s.CopyFrom(o.s)
}

func (g *gpuState) NewSnapshot() (engine.Snapshot, error) {
	b, err := g.s.m.Dev.Alloc(g.s.m.MambaBytes())
	if err != nil {
		return nil, err
	}
	return &gpuSnapshot{dev: g.s.m.Dev, b: b}, nil
}

func (g *gpuState) SaveMamba(dst engine.Snapshot) error {
	sn, ok := dst.(*gpuSnapshot)
	if !ok {
		return fmt.Errorf("cuda: saving the Mamba state into a %T", dst)
	}
	return g.s.SaveMamba(sn.b)
}

func (g *gpuState) Rewind(n int, src engine.Snapshot) error {
	sn, ok := src.(*gpuSnapshot)
	if !ok {
		return fmt.Errorf("cuda: rewinding to a %T", src)
	}
	return g.s.Rewind(n, sn.b)
}

// MambaBytes is the size of every Mamba layer's state of one sequence
// together (conv windows and SSM states): what SaveMamba writes.
func (m *Model) MambaBytes() int64 {
	c := m.Config
	Di, N, Kc := int64(c.InnerSize()), int64(c.MambaDState), int64(c.MambaDConv)
	return int64(m.nMamba) * 4 * (max(Kc-1, 1)*Di + Di*N)
}

// Grow gives s room for capacity tokens, keeping those it holds: new key
// and value buffers, the held rows copied device-to-device.
func (s *Seq) Grow(capacity int) error {
	if capacity <= s.Cap {
		return nil
	}
	kvd := int64(s.m.Config.NumKeyValueHeads * s.m.Config.HeadDimension())
	dev := s.m.Dev
	k := make([]Buf, len(s.k))
	v := make([]Buf, len(s.v))
	undo := func() {
		for i := range k {
			dev.Free(&k[i])
			dev.Free(&v[i])
		}
	}
	for i := range k {
		var err error
		if k[i], err = dev.Alloc(4 * kvd * int64(capacity)); err == nil {
			v[i], err = dev.Alloc(4 * kvd * int64(capacity))
		}
		if err == nil {
			err = dev.Copy(k[i].Ptr, s.k[i].Ptr, 4*kvd*int64(s.Len))
		}
		if err == nil {
			err = dev.Copy(v[i].Ptr, s.v[i].Ptr, 4*kvd*int64(s.Len))
		}
		if err != nil {
			undo()
			return fmt.Errorf("%w (growing a sequence's state to %d tokens)", err, capacity)
		}
	}
	for i := range s.k {
		dev.Free(&s.k[i])
		dev.Free(&s.v[i])
	}
	s.k, s.v, s.Cap = k, v, capacity
	return nil
}

// SaveMamba copies every Mamba layer's conv window and SSM state, in layer
// order, into dst (at least MambaBytes), device-to-device: with the
// attention layers' first Len tokens, the whole state at Len, for Rewind.
func (s *Seq) SaveMamba(dst Buf) error {
	if dst.Bytes < s.m.MambaBytes() {
		return fmt.Errorf("cuda: saving %d bytes of Mamba state into %d", s.m.MambaBytes(), dst.Bytes)
	}
	var off int64
	for i := range s.conv {
		if err := s.m.Dev.Copy(dst.Ptr+uint64(off), s.conv[i].Ptr, s.conv[i].Bytes); err != nil {
			return err
		}
		off += s.conv[i].Bytes
		if err := s.m.Dev.Copy(dst.Ptr+uint64(off), s.ssm[i].Ptr, s.ssm[i].Bytes); err != nil {
			return err
		}
		off += s.ssm[i].Bytes
	}
	return nil
}

// Rewind returns s to its first n tokens (n ≤ Len): the attention layers
// keep the keys and values of n tokens, and the Mamba layers take src,
// which SaveMamba wrote when s held those n tokens.
func (s *Seq) Rewind(n int, src Buf) error {
	if n < 0 || n > s.Len || src.Bytes < s.m.MambaBytes() {
		return fmt.Errorf("cuda: rewinding %d tokens to %d with %d bytes of Mamba state (need %d)", s.Len, n, src.Bytes, s.m.MambaBytes())
	}
	var off int64
	for i := range s.conv {
		if err := s.m.Dev.Copy(s.conv[i].Ptr, src.Ptr+uint64(off), s.conv[i].Bytes); err != nil {
			return err
		}
		off += s.conv[i].Bytes
		if err := s.m.Dev.Copy(s.ssm[i].Ptr, src.Ptr+uint64(off), s.ssm[i].Bytes); err != nil {
			return err
		}
		off += s.ssm[i].Bytes
	}
	s.Len = n
	return nil
}
