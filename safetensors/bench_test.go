package safetensors

import (
	"fmt"
	"testing"
)

func BenchmarkOpenBytes(b *testing.B) {
	var tensors []Tensor
	for i := range 1000 {
		tensors = append(tensors, Tensor{TensorInfo: TensorInfo{Name: fmt.Sprintf("model.layers.%d.weight", i), DType: F32, Shape: []int{4, 4}}, Data: make([]byte, 64)})
	}
	data, err := Marshal(tensors, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := OpenBytes("bench", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBF16Float32(b *testing.B) {
	v := make([]float32, 1<<20)
	for i := range v {
		v[i] = float32(i) * 1e-3
	}
	data, _ := EncodeFloat32(BF16, v)
	t := Tensor{TensorInfo: TensorInfo{Name: "w", DType: BF16, Shape: []int{len(v)}}, Data: data}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := t.Float32(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBF16(b *testing.B) {
	v := make([]float32, 1<<20)
	for i := range v {
		v[i] = float32(i) * 1e-3
	}
	b.ReportAllocs()
	b.SetBytes(int64(4 * len(v)))
	for b.Loop() {
		if _, err := EncodeFloat32(BF16, v); err != nil {
			b.Fatal(err)
		}
	}
}
