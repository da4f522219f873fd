package safetensors

import (
	"path/filepath"
	"testing"
)

// TestRelease checks that released tensors still read their values.
func TestRelease(t *testing.T) {
	v := make([]float32, 5000) // spans pages
	for i := range v {
		v[i] = float32(i) * 0.5
	}
	data, _ := EncodeFloat32(F32, v)
	path := filepath.Join(t.TempDir(), SingleFileName)
	if err := WriteFile(path, []Tensor{{TensorInfo: TensorInfo{Name: "w", DType: F32, Shape: []int{5000}}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Release("w")
	s.Release("absent")
	tt, _ := s.Tensor("w")
	got, _ := tt.Float32()
	for i := range v {
		if got[i] != v[i] {
			t.Fatalf("value %d after release: %v, want %v", i, got[i], v[i])
		}
	}
}
