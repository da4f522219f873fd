package cuda

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
)

// Model is a Jamba model whose weights live on the GPU. Its Forward mirrors
// model.Workspace.Forward: a batch of independent sequences, each continuing
// its own Seq (the hybrid cache, also on the GPU). A Model is not safe for
// concurrent use.
type Model struct {
	Dev    *Device
	Config *model.Config
	EOS    []int // end-of-sequence ids (generation_config.json's when uploaded from a checkpoint)

	embed, head Matrix
	finalNorm   Buf
	layers      []layer
	act         int
	eps         float32
	nAttn       int
	nMamba      int
	allocs      []Buf // every weight allocation, for Close

	ws   workspace
	prof *profiler // stage timing of a measurement, else nil
	// hold, when set, runs in Forward after the metadata upload, before
	// the first launch (queuedSteps: a kernel that holds the stream).
	hold func() error
}

type layer struct {
	mixer          model.MixerKind
	ffn            model.FFNKind
	slot           int // index among the layers of its mixer kind
	inNorm, ffNorm Buf

	qkv, o Matrix

	inProj               Matrix
	inBias, outBias      Buf
	convWT, convB        Buf
	xProj, dtProj        Matrix
	dtNorm, bNorm, cNorm Buf
	dtBias, a, d         Buf
	outProj              Matrix

	gu, down Matrix // dense MLP, gate rows then up rows

	router             Matrix
	expGU, expDown     Matrix // expert 0; the others follow, guStride/downStride elements apart
	guStride, dnStride int64
}

// Seq is one sequence's hybrid cache on the GPU: float32 keys and values of
// up to Cap tokens for attention layers, conv window and SSM state for Mamba
// layers.
type Seq struct {
	Len, Cap int
	k, v     []Buf // per attention layer
	conv     []Buf // per Mamba layer
	ssm      []Buf
	m        *Model
}

// NewSeq returns an empty sequence state with room for capacity tokens.
func (m *Model) NewSeq(capacity int) (*Seq, error) {
	c := m.Config
	s := &Seq{Cap: capacity, m: m}
	kvd := int64(c.NumKeyValueHeads * c.HeadDimension())
	Di, N, Kc := int64(c.InnerSize()), int64(c.MambaDState), int64(c.MambaDConv)
	for range m.nAttn {
		k, err := m.Dev.Alloc(4 * kvd * int64(capacity))
		if err != nil {
			s.Free()
			return nil, err
		}
		s.k = append(s.k, k)
		v, err := m.Dev.Alloc(4 * kvd * int64(capacity))
		if err != nil {
			s.Free()
			return nil, err
		}
		s.v = append(s.v, v)
	}
	for range m.nMamba {
		cv, err := m.Dev.Alloc(4 * max(Kc-1, 1) * Di)
		if err != nil {
			s.Free()
			return nil, err
		}
		s.conv = append(s.conv, cv)
		st, err := m.Dev.Alloc(4 * Di * N)
		if err != nil {
			s.Free()
			return nil, err
		}
		s.ssm = append(s.ssm, st)
	}
	return s, s.Reset()
}

// Reset empties the state (zero conv windows and SSM states, no tokens).
func (s *Seq) Reset() error {
	s.Len = 0
	for i := range s.conv {
		if err := s.m.Dev.Zero(s.conv[i].Ptr, s.conv[i].Bytes); err != nil {
			return err
		}
		if err := s.m.Dev.Zero(s.ssm[i].Ptr, s.ssm[i].Bytes); err != nil {
			return err
		}
	}
	return nil
}

// CopyFrom makes s a copy of src (device-to-device): same tokens consumed.
func (s *Seq) CopyFrom(src *Seq) error {
	if src.Len > s.Cap {
		return fmt.Errorf("cuda: copying a state of %d tokens into one of capacity %d", src.Len, s.Cap)
	}
	kvd := int64(s.m.Config.NumKeyValueHeads * s.m.Config.HeadDimension())
	dev := s.m.Dev
	for i := range s.k {
		if err := dev.Copy(s.k[i].Ptr, src.k[i].Ptr, 4*kvd*int64(src.Len)); err != nil {
			return err
		}
		if err := dev.Copy(s.v[i].Ptr, src.v[i].Ptr, 4*kvd*int64(src.Len)); err != nil {
			return err
		}
	}
	for i := range s.conv {
		if err := dev.Copy(s.conv[i].Ptr, src.conv[i].Ptr, s.conv[i].Bytes); err != nil {
			return err
		}
		if err := dev.Copy(s.ssm[i].Ptr, src.ssm[i].Ptr, s.ssm[i].Bytes); err != nil {
			return err
		}
	}
	s.Len = src.Len
	return nil
}

// Free releases the state's device memory.
func (s *Seq) Free() {
	for _, l := range [][]Buf{s.k, s.v, s.conv, s.ssm} {
		for i := range l {
			s.m.Dev.Free(&l[i])
		}
	}
}

// Close releases the model's device memory.
func (m *Model) Close() {
	m.ws.free(m.Dev)
	for i := range m.allocs {
		m.Dev.Free(&m.allocs[i])
	}
	m.allocs = nil
}

func newModel(dev *Device, c *model.Config) (*Model, error) {
	if err := checkShape(c); err != nil {
		return nil, err
	}
	act, err := actCode(c.HiddenAct)
	if err != nil {
		return nil, err
	}
	m := &Model{Dev: dev, Config: c, act: act, eps: float32(c.RMSNormEps)}
	m.layers = make([]layer, c.NumHiddenLayers)
	for i := range m.layers {
		l := &m.layers[i]
		l.mixer, l.ffn = c.Mixer(i), c.FFN(i)
		if l.mixer == model.Attention {
			l.slot = m.nAttn
			m.nAttn++
		} else {
			l.slot = m.nMamba
			m.nMamba++
		}
	}
	return m, nil
}

// checkShape rejects configs outside what the kernels handle.
func checkShape(c *model.Config) error {
	switch {
	case c.HeadDimension() > 256:
		return fmt.Errorf("cuda: head_dim %d: the attention kernel takes at most 256", c.HeadDimension())
	case c.NumExperts > 256:
		return fmt.Errorf("cuda: num_experts %d: the router kernel takes at most 256", c.NumExperts)
	case c.MambaDState > 32:
		return fmt.Errorf("cuda: mamba_d_state %d: the scan kernel takes at most 32", c.MambaDState)
	case c.MambaDConv > 9:
		return fmt.Errorf("cuda: mamba_d_conv %d: the conv kernel takes at most 9", c.MambaDConv)
	}
	return nil
}

func (m *Model) alloc(n int64) (Buf, error) {
	b, err := m.Dev.Alloc(n)
	if err == nil {
		m.allocs = append(m.allocs, b)
	}
	return b, err
}

// Upload copies the weights of a loaded CPU model to the GPU once: matrices
// keep their storage type (float32 or bfloat16), vectors are float32.
func Upload(dev *Device, cm *model.Model) (*Model, error) {
	if dev.enter() {
		defer dev.leave()
	}
	m, err := newModel(dev, cm.Config)
	if err != nil {
		return nil, err
	}
	if err := m.upload(cm); err != nil {
		m.Close()
		return nil, err
	}
	m.EOS = cm.EOS()
	return m, nil
}

// matrix uploads the row-wise concatenation of parts.
func (m *Model) matrix(name string, parts ...*kernels.Matrix) (Matrix, error) {
	dt := F32
	switch parts[0].DType {
	case kernels.BF16:
		dt = BF16
	case kernels.F32:
	default:
		return Matrix{}, fmt.Errorf("cuda: %s: %v weights have no GPU kernels (float32 and bfloat16 only: load without --quantize; a quantized GGUF file can be turned into a folder with jamba convert --model F.gguf --output DIR)", name, parts[0].DType)
	}
	rows := 0
	for _, p := range parts {
		if p.DType != parts[0].DType || p.Cols != parts[0].Cols {
			return Matrix{}, fmt.Errorf("cuda: %s: parts differ in type or width", name)
		}
		rows += p.Rows
	}
	mat := Matrix{Rows: rows, Cols: parts[0].Cols, DType: dt}
	b, err := m.alloc(mat.Bytes())
	if err != nil {
		return Matrix{}, fmt.Errorf("%w (uploading %s)", err, name)
	}
	mat.Ptr = b.Ptr
	var off int64
	for _, p := range parts {
		var src unsafe.Pointer
		n := int64(p.Rows) * int64(p.Cols) * dt.size()
		if dt == BF16 {
			src = unsafe.Pointer(&p.BF16[0])
		} else {
			src = unsafe.Pointer(&p.F32[0])
		}
		if err := m.Dev.Upload(b, off, src, n); err != nil {
			return Matrix{}, err
		}
		off += n
	}
	return mat, nil
}

func (m *Model) vector(v []float32) (Buf, error) {
	if v == nil {
		return Buf{}, nil
	}
	b, err := m.alloc(4 * int64(len(v)))
	if err != nil {
		return Buf{}, err
	}
	return b, m.Dev.UploadF32(b, 0, v)
}

func (m *Model) upload(cm *model.Model) error {
	var err error
	if m.embed, err = m.matrix("model.embed_tokens.weight", cm.Embed); err != nil {
		return err
	}
	if cm.LMHead == cm.Embed {
		m.head = m.embed
	} else if m.head, err = m.matrix("lm_head.weight", cm.LMHead); err != nil {
		return err
	}
	if m.finalNorm, err = m.vector(cm.FinalNorm); err != nil {
		return err
	}
	for i := range m.layers {
		l, src := &m.layers[i], &cm.Layers[i]
		name := fmt.Sprintf("model.layers.%d", i)
		vec := func(dst *Buf, v []float32) {
			if err == nil {
				*dst, err = m.vector(v)
			}
		}
		mat := func(dst *Matrix, what string, parts ...*kernels.Matrix) {
			if err == nil {
				*dst, err = m.matrix(name+"."+what, parts...)
			}
		}
		vec(&l.inNorm, src.InputNorm)
		vec(&l.ffNorm, src.PreFFNorm)
		if a := src.Attn; a != nil {
			mat(&l.qkv, "self_attn.qkv", a.Q, a.K, a.V)
			mat(&l.o, "self_attn.o_proj", a.O)
		}
		if w := src.Mamba; w != nil {
			mat(&l.inProj, "mamba.in_proj", w.InProj)
			vec(&l.inBias, w.InBias)
			vec(&l.convWT, w.ConvWT)
			vec(&l.convB, w.ConvB)
			mat(&l.xProj, "mamba.x_proj", w.XProj)
			vec(&l.dtNorm, w.DtNorm)
			vec(&l.bNorm, w.BNorm)
			vec(&l.cNorm, w.CNorm)
			mat(&l.dtProj, "mamba.dt_proj", w.DtProj)
			vec(&l.dtBias, w.DtBias)
			vec(&l.a, w.A)
			vec(&l.d, w.D)
			mat(&l.outProj, "mamba.out_proj", w.OutProj)
			vec(&l.outBias, w.OutBias)
		}
		if f := src.MLP; f != nil {
			mat(&l.gu, "feed_forward.gate_up", f.Gate, f.Up)
			mat(&l.down, "feed_forward.down_proj", f.Down)
		}
		if e := src.MoE; e != nil {
			mat(&l.router, "feed_forward.router", e.Router)
			var gu, dn []*kernels.Matrix
			for j := range e.Experts {
				gu = append(gu, e.Experts[j].Gate, e.Experts[j].Up)
				dn = append(dn, e.Experts[j].Down)
			}
			mat(&l.expGU, "feed_forward.experts.gate_up", gu...)
			mat(&l.expDown, "feed_forward.experts.down_proj", dn...)
			l.expGU.Rows /= len(e.Experts)
			l.expDown.Rows /= len(e.Experts)
			l.guStride = int64(l.expGU.Rows) * int64(l.expGU.Cols)
			l.dnStride = int64(l.expDown.Rows) * int64(l.expDown.Cols)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// expert returns expert j's matrix of a stacked expert matrix.
func expert(w Matrix, stride int64, j int) *Matrix {
	w.Ptr += uint64(int64(j) * stride * w.DType.size())
	return &w
}

// ActiveWeightBytes is the weight storage one token reads: everything but
// the embedding table, k of the E experts of MoE layers.
func (m *Model) ActiveWeightBytes() int64 {
	c := m.Config
	var n int64
	vecs := func(bs ...Buf) {
		for _, b := range bs {
			n += b.Bytes
		}
	}
	for i := range m.layers {
		l := &m.layers[i]
		vecs(l.inNorm, l.ffNorm)
		if l.mixer == model.Attention {
			n += l.qkv.Bytes() + l.o.Bytes()
		} else {
			n += l.inProj.Bytes() + l.xProj.Bytes() + l.dtProj.Bytes() + l.outProj.Bytes()
			vecs(l.inBias, l.convWT, l.convB, l.dtNorm, l.bNorm, l.cNorm, l.dtBias, l.a, l.d, l.outBias)
		}
		if l.ffn == model.Dense {
			n += l.gu.Bytes() + l.down.Bytes()
		} else {
			n += l.router.Bytes() + int64(c.NumExpertsPerTok)*(l.expGU.Bytes()+l.expDown.Bytes())
		}
	}
	return n + m.finalNorm.Bytes + m.head.Bytes()
}

// WeightBytes is the device memory the weights take.
func (m *Model) WeightBytes() int64 {
	var n int64
	for _, b := range m.allocs {
		n += b.Bytes
	}
	return n
}

// le is the byte order of kernel-visible host buffers.
var le = binary.LittleEndian

// fillRandom makes s stand for a sequence of n tokens already consumed:
// random keys, values and Mamba states, for measuring decode after long
// contexts without prefilling them.
func (s *Seq) fillRandom(n int, seed uint64) error {
	if n > s.Cap {
		return fmt.Errorf("cuda: %d tokens exceed the capacity %d", n, s.Cap)
	}
	dev := s.m.Dev
	fill := func(b Buf, elems int64, a float32) error {
		seed++
		return dev.launch("fill_f32", [2]int{4 * dev.SMs}, 256, b.Ptr, la(elems), seed, fa(a), fa(0))
	}
	kvd := int64(s.m.Config.NumKeyValueHeads * s.m.Config.HeadDimension())
	for i := range s.k {
		if err := fill(s.k[i], kvd*int64(n), 1); err != nil {
			return err
		}
		if err := fill(s.v[i], kvd*int64(n), 1); err != nil {
			return err
		}
	}
	for i := range s.conv {
		if err := fill(s.conv[i], s.conv[i].Bytes/4, 0.1); err != nil {
			return err
		}
		if err := fill(s.ssm[i], s.ssm[i].Bytes/4, 0.1); err != nil {
			return err
		}
	}
	s.Len = n
	return nil
}
