// Package cache holds the per-sequence state of a hybrid Jamba model: keys
// and values for attention layers, and the causal-conv window and SSM state
// for Mamba layers. It does no arithmetic beyond copying (and rounding keys
// and values to bfloat16 when the shape asks for it).
//
// Attention state grows with the sequence; Mamba state has a fixed size, so
// a Jamba sequence needs far less memory than a pure Transformer's.
package cache

import (
	"fmt"
	"slices"

	"github.com/jamba-go/jamba/kernels"
)

// Shape describes the state a model needs per sequence.
type Shape struct {
	Layers []LayerKind // one entry per decoder layer
	KVDim  int         // nKV·head_dim: floats per token for K (and for V)
	Inner  int         // Mamba inner width Di
	Conv   int         // conv window kept: d_conv − 1 previous inputs
	State  int         // SSM state size N
	// KVBF16 stores keys and values in bfloat16 (K16, V16: half the
	// memory) instead of float32 (K, V).
	KVBF16 bool
}

// LayerKind says which state a layer keeps.
type LayerKind uint8

const (
	MambaLayer LayerKind = iota
	AttentionLayer
)

// Layer is the state of one decoder layer of one sequence.
type Layer struct {
	// Attention layers: K and V hold Len tokens of KVDim floats each,
	// token-major ([t][head][dim]); their capacity may exceed Len. With
	// Shape.KVBF16, K16 and V16 hold them instead, rounded to bfloat16.
	K, V     []float32
	K16, V16 []uint16
	// Mamba layers: Conv holds the last Conv raw conv inputs ([j][Di], oldest
	// first, zeros before the sequence start); SSM holds h ([Di][N]).
	Conv, SSM []float32
}

// Seq is the state of one sequence: every layer's cache and the number of
// tokens consumed so far.
type Seq struct {
	shape  Shape
	Len    int // tokens already processed
	Layers []Layer
}

// New returns an empty sequence state for shape, reserving KV room for
// capacity tokens (0: grow on demand). Reserving the whole context up front
// keeps the decode loop free of allocations.
func New(shape Shape, capacity int) *Seq {
	s := &Seq{shape: shape, Layers: make([]Layer, len(shape.Layers))}
	for i, k := range shape.Layers {
		switch k {
		case AttentionLayer:
			if shape.KVBF16 {
				s.Layers[i].K16 = make([]uint16, 0, capacity*shape.KVDim)
				s.Layers[i].V16 = make([]uint16, 0, capacity*shape.KVDim)
			} else {
				s.Layers[i].K = make([]float32, 0, capacity*shape.KVDim)
				s.Layers[i].V = make([]float32, 0, capacity*shape.KVDim)
			}
		case MambaLayer:
			s.Layers[i].Conv = make([]float32, shape.Conv*shape.Inner)
			s.Layers[i].SSM = make([]float32, shape.Inner*shape.State)
		}
	}
	return s
}

// Shape returns the shape the state was made for.
func (s *Seq) Shape() Shape { return s.shape }

// Reset empties the state for reuse by a new sequence, keeping its memory.
func (s *Seq) Reset() {
	s.Len = 0
	for i := range s.Layers {
		l := &s.Layers[i]
		l.K, l.V = l.K[:0], l.V[:0]
		l.K16, l.V16 = l.K16[:0], l.V16[:0]
		clear(l.Conv)
		clear(l.SSM)
	}
}

// Reserve makes room for capacity tokens of keys and values in every
// attention layer, keeping the tokens held, so that appending up to that
// many allocates nothing.
func (s *Seq) Reserve(capacity int) {
	n := capacity * s.shape.KVDim
	for i := range s.Layers {
		l := &s.Layers[i]
		if s.shape.Layers[i] != AttentionLayer {
			continue
		}
		if s.shape.KVBF16 {
			if cap(l.K16) < n || cap(l.V16) < n {
				l.K16 = append(make([]uint16, 0, n), l.K16...)
				l.V16 = append(make([]uint16, 0, n), l.V16...)
			}
			continue
		}
		if cap(l.K) < n || cap(l.V) < n {
			l.K = append(make([]float32, 0, n), l.K...)
			l.V = append(make([]float32, 0, n), l.V...)
		}
	}
}

// AppendKV appends T tokens of keys and values (T·KVDim floats each) to
// attention layer i, growing its storage if needed.
func (s *Seq) AppendKV(i int, k, v []float32) {
	l := &s.Layers[i]
	if s.shape.KVBF16 {
		for _, x := range k {
			l.K16 = append(l.K16, kernels.F32ToBF16(x))
		}
		for _, x := range v {
			l.V16 = append(l.V16, kernels.F32ToBF16(x))
		}
		return
	}
	l.K = append(l.K, k...)
	l.V = append(l.V, v...)
}

// Clone returns a deep copy: a snapshot that can be restored later, since
// Mamba state cannot be rewound.
func (s *Seq) Clone() *Seq {
	c := &Seq{shape: s.shape, Len: s.Len, Layers: make([]Layer, len(s.Layers))}
	for i, l := range s.Layers {
		c.Layers[i] = Layer{
			K: append([]float32(nil), l.K...), V: append([]float32(nil), l.V...),
			K16: slices.Clone(l.K16), V16: slices.Clone(l.V16),
			Conv: append([]float32(nil), l.Conv...), SSM: append([]float32(nil), l.SSM...),
		}
	}
	return c
}

// CopyFrom overwrites s with the state of src, which must have the same shape.
func (s *Seq) CopyFrom(src *Seq) error {
	if len(src.Layers) != len(s.Layers) || src.shape.KVDim != s.shape.KVDim || src.shape.Inner != s.shape.Inner || src.shape.KVBF16 != s.shape.KVBF16 {
		return fmt.Errorf("cache: copying between different shapes")
	}
	s.Len = src.Len
	for i := range s.Layers {
		d, o := &s.Layers[i], &src.Layers[i]
		d.K = append(d.K[:0], o.K...)
		d.V = append(d.V[:0], o.V...)
		d.K16 = append(d.K16[:0], o.K16...)
		d.V16 = append(d.V16[:0], o.V16...)
		copy(d.Conv, o.Conv)
		copy(d.SSM, o.SSM)
	}
	return nil
}

// MambaFloats is the size of every Mamba layer's state together (conv
// windows and SSM states), in floats: what SaveMamba writes.
func (s *Seq) MambaFloats() int {
	n := 0
	for i, k := range s.shape.Layers {
		if k == MambaLayer {
			n += len(s.Layers[i].Conv) + len(s.Layers[i].SSM)
		}
	}
	return n
}

// SaveMamba copies every Mamba layer's conv window and SSM state, in layer
// order, into dst (at least MambaFloats long): with the attention layers'
// first Len tokens, that is the whole state at Len tokens, for Rewind.
func (s *Seq) SaveMamba(dst []float32) {
	o := 0
	for i, k := range s.shape.Layers {
		if k == MambaLayer {
			l := &s.Layers[i]
			o += copy(dst[o:], l.Conv)
			o += copy(dst[o:], l.SSM)
		}
	}
}

// Rewind returns the state to its first n tokens (n ≤ Len): the attention
// layers keep the keys and values of n tokens, and the Mamba layers take
// mamba, which SaveMamba wrote when the sequence held those n tokens.
func (s *Seq) Rewind(n int, mamba []float32) error {
	if n < 0 || n > s.Len || len(mamba) < s.MambaFloats() {
		return fmt.Errorf("cache: rewinding %d tokens to %d with %d floats of Mamba state (need %d)", s.Len, n, len(mamba), s.MambaFloats())
	}
	o := 0
	for i, k := range s.shape.Layers {
		l := &s.Layers[i]
		if k == AttentionLayer {
			if s.shape.KVBF16 {
				l.K16, l.V16 = l.K16[:n*s.shape.KVDim], l.V16[:n*s.shape.KVDim]
			} else {
				l.K, l.V = l.K[:n*s.shape.KVDim], l.V[:n*s.shape.KVDim]
			}
			continue
		}
		o += copy(l.Conv, mamba[o:])
		o += copy(l.SSM, mamba[o:])
	}
	s.Len = n
	return nil
}

// Bytes is the memory the state holds now (capacity of K/V included).
func (s *Seq) Bytes() int64 {
	var n int64
	for _, l := range s.Layers {
		n += int64(cap(l.K)+cap(l.V)+len(l.Conv)+len(l.SSM))*4 + int64(cap(l.K16)+cap(l.V16))*2
	}
	return n
}

// BytesAt is the memory of one sequence's state at ctx tokens with kvBytes
// bytes per K/V element and 4-byte (float32) Mamba state.
func (sh Shape) BytesAt(ctx int64, kvBytes int64) (kv, mamba int64) {
	for _, k := range sh.Layers {
		if k == AttentionLayer {
			kv += 2 * ctx * int64(sh.KVDim) * kvBytes
		} else {
			mamba += int64(sh.Conv*sh.Inner+sh.Inner*sh.State) * 4
		}
	}
	return kv, mamba
}

// View returns the state s held at its first n tokens (n ≤ Len) when mamba
// is what SaveMamba wrote then: the attention layers' first n tokens of s
// and Mamba layers backed by mamba. It shares memory with s and mamba, for
// reading (Encode) while neither changes.
func (s *Seq) View(n int, mamba []float32) (*Seq, error) {
	if n < 0 || n > s.Len || len(mamba) < s.MambaFloats() {
		return nil, fmt.Errorf("cache: a view of %d of %d tokens with %d floats of Mamba state (need %d)", n, s.Len, len(mamba), s.MambaFloats())
	}
	v := &Seq{shape: s.shape, Len: n, Layers: make([]Layer, len(s.Layers))}
	o, kv := 0, n*s.shape.KVDim
	for i, k := range s.shape.Layers {
		l := &s.Layers[i]
		if k == AttentionLayer {
			if s.shape.KVBF16 {
				v.Layers[i].K16, v.Layers[i].V16 = l.K16[:kv:kv], l.V16[:kv:kv]
			} else {
				v.Layers[i].K, v.Layers[i].V = l.K[:kv:kv], l.V[:kv:kv]
			}
			continue
		}
		c, h := len(l.Conv), len(l.SSM)
		v.Layers[i].Conv = mamba[o : o+c : o+c]
		v.Layers[i].SSM = mamba[o+c : o+c+h : o+c+h]
		o += c + h
	}
	return v, nil
}
