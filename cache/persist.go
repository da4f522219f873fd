package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// ErrShape is matched (errors.Is) when saved state does not fit the shape
// asked for: another model, or another --kv-cache.
var ErrShape = errors.New("state of another shape")

// EncodedSize is the number of bytes Encode writes for s.
func (s *Seq) EncodedSize() int64 {
	n := int64(8 + 4*len(s.Layers))
	for i, l := range s.Layers {
		if s.shape.Layers[i] == AttentionLayer {
			if s.shape.KVBF16 {
				n += 2 * int64(len(l.K16)+len(l.V16))
			} else {
				n += 4 * int64(len(l.K)+len(l.V))
			}
			continue
		}
		n += 4 * int64(len(l.Conv)+len(l.SSM))
	}
	return n
}

// Encode writes the state: the token count, one kind byte (and padding)
// per layer, then each layer's keys and values (Len tokens) or conv window
// and SSM state, little-endian. The shape is not written: Decode is given
// it, and checks what it reads against it.
func (s *Seq) Encode(w io.Writer) error {
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(s.Len))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	kinds := make([]byte, 4*len(s.Layers))
	for i, k := range s.shape.Layers {
		kinds[4*i] = byte(k)
	}
	if _, err := w.Write(kinds); err != nil {
		return err
	}
	buf := make([]byte, 0, 64<<10)
	flush := func() error {
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	put32 := func(v []float32) error {
		for _, x := range v {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			if len(buf) >= 60<<10 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	put16 := func(v []uint16) error {
		for _, x := range v {
			buf = binary.LittleEndian.AppendUint16(buf, x)
			if len(buf) >= 60<<10 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i, l := range s.Layers {
		var err error
		switch {
		case s.shape.Layers[i] == AttentionLayer && s.shape.KVBF16:
			if err = put16(l.K16); err == nil {
				err = put16(l.V16)
			}
		case s.shape.Layers[i] == AttentionLayer:
			if err = put32(l.K); err == nil {
				err = put32(l.V)
			}
		default:
			if err = put32(l.Conv); err == nil {
				err = put32(l.SSM)
			}
		}
		if err != nil {
			return err
		}
	}
	return flush()
}

// Decode reads state written by Encode for a sequence of this shape,
// reserving KV room for capacity tokens (at least the tokens read). It
// checks the layer kinds and that the data is exactly what the shape and
// the token count need; maxLen bounds the token count before anything is
// allocated.
func Decode(r io.Reader, shape Shape, capacity, maxLen int) (*Seq, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("cache state: %w", unexpected(err))
	}
	n := binary.LittleEndian.Uint64(hdr[:])
	if n > uint64(maxLen) {
		return nil, fmt.Errorf("cache state: %d tokens, more than the %d allowed", n, maxLen)
	}
	kinds := make([]byte, 4*len(shape.Layers))
	if _, err := io.ReadFull(r, kinds); err != nil {
		return nil, fmt.Errorf("cache state: %w", unexpected(err))
	}
	for i, k := range shape.Layers {
		if LayerKind(kinds[4*i]) != k {
			return nil, fmt.Errorf("cache state: layer %d is of another kind: %w", i, ErrShape)
		}
	}
	s := New(shape, max(capacity, int(n)))
	s.Len = int(n)
	buf := make([]byte, 64<<10)
	get32 := func(dst []float32) error {
		for len(dst) > 0 {
			k := min(len(dst), len(buf)/4)
			if _, err := io.ReadFull(r, buf[:4*k]); err != nil {
				return unexpected(err)
			}
			for j := range k {
				dst[j] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*j:]))
			}
			dst = dst[k:]
		}
		return nil
	}
	get16 := func(dst []uint16) error {
		for len(dst) > 0 {
			k := min(len(dst), len(buf)/2)
			if _, err := io.ReadFull(r, buf[:2*k]); err != nil {
				return unexpected(err)
			}
			for j := range k {
				dst[j] = binary.LittleEndian.Uint16(buf[2*j:])
			}
			dst = dst[k:]
		}
		return nil
	}
	kv := int(n) * shape.KVDim
	for i := range s.Layers {
		l := &s.Layers[i]
		var err error
		switch {
		case shape.Layers[i] == AttentionLayer && shape.KVBF16:
			l.K16, l.V16 = l.K16[:kv], l.V16[:kv]
			if err = get16(l.K16); err == nil {
				err = get16(l.V16)
			}
		case shape.Layers[i] == AttentionLayer:
			l.K, l.V = l.K[:kv], l.V[:kv]
			if err = get32(l.K); err == nil {
				err = get32(l.V)
			}
		default:
			if err = get32(l.Conv); err == nil {
				err = get32(l.SSM)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("cache state: layer %d: %w", i, err)
		}
	}
	return s, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
