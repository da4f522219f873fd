package cache

import (
	"bytes"
	"slices"
	"testing"
)

func testShape() Shape {
	return Shape{Layers: []LayerKind{MambaLayer, AttentionLayer, MambaLayer}, KVDim: 4, Inner: 6, Conv: 3, State: 2}
}

func TestSeqLifecycle(t *testing.T) {
	s := New(testShape(), 8)
	if got := len(s.Layers[0].Conv); got != 18 {
		t.Fatalf("conv state holds %d floats, want 3·6", got)
	}
	if got := len(s.Layers[2].SSM); got != 12 {
		t.Fatalf("SSM state holds %d floats, want 6·2", got)
	}
	if s.Layers[0].K != nil || s.Layers[1].Conv != nil {
		t.Fatal("layers hold state of the other kind")
	}
	// Values encode their coordinates so that a layout bug shows.
	s.AppendKV(1, []float32{111, 112, 113, 114, 121, 122, 123, 124}, []float32{211, 212, 213, 214, 221, 222, 223, 224})
	s.Layers[0].SSM[5] = 7
	s.Len = 2
	snap := s.Clone()
	s.AppendKV(1, []float32{131, 132, 133, 134}, []float32{231, 232, 233, 234})
	s.Layers[0].SSM[5] = 9
	s.Len = 3
	if len(snap.Layers[1].K) != 8 || snap.Layers[0].SSM[5] != 7 || snap.Len != 2 {
		t.Fatal("clone shares memory with the original")
	}
	if err := s.CopyFrom(snap); err != nil {
		t.Fatal(err)
	}
	if s.Len != 2 || len(s.Layers[1].K) != 8 || s.Layers[1].V[4] != 221 || s.Layers[0].SSM[5] != 7 {
		t.Fatalf("restore: len %d, K %v, SSM %v", s.Len, s.Layers[1].K, s.Layers[0].SSM)
	}
	s.Reset()
	if s.Len != 0 || len(s.Layers[1].K) != 0 || s.Layers[0].SSM[5] != 0 || cap(s.Layers[1].K) < 8 {
		t.Fatal("reset did not empty the state or dropped its memory")
	}
	other := New(Shape{Layers: []LayerKind{MambaLayer}, Inner: 6, Conv: 3, State: 2}, 0)
	if err := s.CopyFrom(other); err == nil {
		t.Error("copy between different shapes succeeded")
	}
}

func TestBytesAt(t *testing.T) {
	// Jamba-v0.1: 4 attention layers with 8 KV heads of 128, 28 Mamba layers
	// with inner 8192, state 16, conv 4: 16 KiB of 16-bit KV per token.
	sh := Shape{KVDim: 8 * 128, Inner: 8192, Conv: 3, State: 16}
	for i := 0; i < 32; i++ {
		k := MambaLayer
		if i%8 == 4 {
			k = AttentionLayer
		}
		sh.Layers = append(sh.Layers, k)
	}
	kv, mamba := sh.BytesAt(262144, 2)
	if kv != 4<<30 {
		t.Errorf("KV at 256K tokens: %d bytes, want 4 GiB", kv)
	}
	if want := int64(28 * (3*8192 + 8192*16) * 4); mamba != want {
		t.Errorf("Mamba state %d bytes, want %d", mamba, want)
	}
}

// TestReserve: Reserve keeps the tokens held and makes room for appends
// without allocating; it leaves Mamba layers and large enough K/V alone.
func TestReserve(t *testing.T) {
	sh := Shape{Layers: []LayerKind{MambaLayer, AttentionLayer}, KVDim: 3, Inner: 2, Conv: 3, State: 4}
	s := New(sh, 1)
	s.AppendKV(1, []float32{1, 2, 3}, []float32{4, 5, 6})
	s.Layers[0].SSM[5] = 7
	s.Reserve(10)
	if got := s.Layers[1]; cap(got.K) < 30 || cap(got.V) < 30 || len(got.K) != 3 || got.K[2] != 3 || got.V[0] != 4 {
		t.Fatalf("after Reserve: K %v (cap %d), V %v (cap %d)", got.K, cap(got.K), got.V, cap(got.V))
	}
	if s.Layers[0].SSM[5] != 7 || len(s.Layers[0].K) != 0 {
		t.Error("Reserve touched a Mamba layer")
	}
	k, v := make([]float32, 3), make([]float32, 3)
	// AllocsPerRun calls the function twice (a warm-up, then the run):
	// 1 + 2×4 tokens fit in the room for 10.
	if a := testing.AllocsPerRun(1, func() {
		for range 4 {
			s.AppendKV(1, k, v)
		}
	}); a != 0 {
		t.Errorf("appending within the reserved room allocated %v times", a)
	}
	before := &s.Layers[1].K[0]
	s.Reserve(5)
	if &s.Layers[1].K[0] != before {
		t.Error("Reserve below the capacity reallocated")
	}
}

// TestRewind: SaveMamba at n tokens and Rewind(n) from a longer state give
// back the state of n tokens: the Mamba layers' saved values and the first n
// tokens of K and V.
func TestRewind(t *testing.T) {
	sh := Shape{Layers: []LayerKind{AttentionLayer, MambaLayer, MambaLayer}, KVDim: 2, Inner: 3, Conv: 2, State: 2}
	s := New(sh, 0)
	fill := func(step int) {
		s.AppendKV(0, []float32{float32(step), -float32(step)}, []float32{float32(10 + step), 1})
		for _, i := range []int{1, 2} {
			for j := range s.Layers[i].Conv {
				s.Layers[i].Conv[j] = float32(100*step + j)
			}
			for j := range s.Layers[i].SSM {
				s.Layers[i].SSM[j] = float32(1000*step + j + i)
			}
		}
		s.Len++
	}
	fill(1)
	fill(2)
	saved := make([]float32, s.MambaFloats())
	if len(saved) != 2*(2*3+3*2) {
		t.Fatalf("MambaFloats = %d", len(saved))
	}
	s.SaveMamba(saved)
	want := s.Clone()
	fill(3)
	fill(4)
	// A view at 2 tokens encodes as the state at 2 tokens did.
	v, err := s.View(2, saved)
	if err != nil {
		t.Fatal(err)
	}
	var gotEnc, wantEnc bytes.Buffer
	if err := v.Encode(&gotEnc); err != nil {
		t.Fatal(err)
	}
	if err := want.Encode(&wantEnc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotEnc.Bytes(), wantEnc.Bytes()) {
		t.Error("the view at 2 tokens encodes otherwise than the state at 2 tokens")
	}
	if _, err := s.View(5, saved); err == nil {
		t.Error("a view past Len was given")
	}
	if err := s.Rewind(2, saved); err != nil {
		t.Fatal(err)
	}
	if s.Len != 2 {
		t.Fatalf("Len %d after Rewind(2)", s.Len)
	}
	for i := range s.Layers {
		a, b := s.Layers[i], want.Layers[i]
		if !slices.Equal(a.K, b.K) || !slices.Equal(a.V, b.V) || !slices.Equal(a.Conv, b.Conv) || !slices.Equal(a.SSM, b.SSM) {
			t.Errorf("layer %d after Rewind: %+v, want %+v", i, a, b)
		}
	}
	if err := s.Rewind(3, saved); err == nil {
		t.Error("rewinding forward was accepted")
	}
	if err := s.Rewind(1, saved[:3]); err == nil {
		t.Error("a short Mamba state was accepted")
	}
}
