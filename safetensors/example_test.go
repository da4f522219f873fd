package safetensors_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/jamba-go/jamba/safetensors"
)

// Write a tensor to a .safetensors file, open it (memory-mapped) and read
// it back.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.safetensors")

	data, err := safetensors.EncodeFloat32(safetensors.BF16, []float32{1, 0.5, -2, 3})
	if err != nil {
		panic(err)
	}
	w := safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: "w", DType: safetensors.BF16, Shape: []int{2, 2}}, Data: data}
	if err := safetensors.WriteFile(path, []safetensors.Tensor{w}, map[string]string{"format": "pt"}); err != nil {
		panic(err)
	}

	f, err := safetensors.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	t, err := f.Tensor("w")
	if err != nil {
		panic(err)
	}
	v, err := t.Float32()
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Names(), t.DType, t.Shape, v)
	// Output:
	// [w] BF16 [2 2] [1 0.5 -2 3]
}
