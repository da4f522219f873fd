package cache

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func randomSeq(shape Shape, n int, seed uint64) *Seq {
	r := rand.New(rand.NewPCG(seed, 7))
	s := New(shape, 0)
	for i, k := range shape.Layers {
		if k == AttentionLayer {
			kk := make([]float32, n*shape.KVDim)
			vv := make([]float32, n*shape.KVDim)
			for j := range kk {
				kk[j], vv[j] = r.Float32()-0.5, r.Float32()-0.5
			}
			s.AppendKV(i, kk, vv)
			continue
		}
		for j := range s.Layers[i].Conv {
			s.Layers[i].Conv[j] = r.Float32()
		}
		for j := range s.Layers[i].SSM {
			s.Layers[i].SSM[j] = r.Float32()
		}
	}
	s.Len = n
	return s
}

func TestEncodeDecode(t *testing.T) {
	for _, bf16 := range []bool{false, true} {
		shape := Shape{Layers: []LayerKind{MambaLayer, AttentionLayer, MambaLayer, AttentionLayer}, KVDim: 6, Inner: 5, Conv: 3, State: 4, KVBF16: bf16}
		s := randomSeq(shape, 13, 1)
		var b bytes.Buffer
		if err := s.Encode(&b); err != nil {
			t.Fatal(err)
		}
		if int64(b.Len()) != s.EncodedSize() {
			t.Fatalf("wrote %d bytes, EncodedSize %d", b.Len(), s.EncodedSize())
		}
		got, err := Decode(bytes.NewReader(b.Bytes()), shape, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if got.Len != s.Len || !reflect.DeepEqual(got.Layers, s.Layers) {
			t.Fatalf("bf16=%v: decoded state differs", bf16)
		}
		// Truncated anywhere: an error, never a partial state.
		for _, cut := range []int{0, 5, 8, 20, b.Len() / 2, b.Len() - 1} {
			if _, err := Decode(bytes.NewReader(b.Bytes()[:cut]), shape, 0, 1000); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
				t.Errorf("cut at %d: %v", cut, err)
			}
		}
		other := shape
		other.Layers = []LayerKind{AttentionLayer, AttentionLayer, MambaLayer, AttentionLayer}
		if _, err := Decode(bytes.NewReader(b.Bytes()), other, 0, 1000); !errors.Is(err, ErrShape) {
			t.Errorf("another layout: %v", err)
		}
		if _, err := Decode(bytes.NewReader(b.Bytes()), shape, 0, 12); err == nil || !strings.Contains(err.Error(), "more than the 12 allowed") {
			t.Errorf("too long: %v", err)
		}
	}
}

// FuzzDecode: arbitrary bytes decode to an error or to a state whose
// every layer has the sizes its shape and token count need.
func FuzzDecode(f *testing.F) {
	shape := Shape{Layers: []LayerKind{MambaLayer, AttentionLayer}, KVDim: 2, Inner: 3, Conv: 2, State: 2}
	var b bytes.Buffer
	randomSeq(shape, 3, 2).Encode(&b)
	f.Add(b.Bytes())
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(bytes.NewReader(data), shape, 0, 64)
		if err != nil {
			return
		}
		if len(s.Layers[1].K) != s.Len*2 || len(s.Layers[1].V) != s.Len*2 || len(s.Layers[0].Conv) != 6 || len(s.Layers[0].SSM) != 6 {
			t.Fatalf("decoded sizes do not fit the shape: len %d", s.Len)
		}
	})
}
