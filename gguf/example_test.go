package gguf_test

import (
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"

	"github.com/jamba-go/jamba/gguf"
)

// Write a small file with one Q8_0 matrix, then read it back.
func Example() {
	dir, err := os.MkdirTemp("", "gguf-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.gguf")

	w, err := gguf.Create(path, []gguf.KV{
		{Key: "general.architecture", Value: gguf.ValueOf("tiny")},
		{Key: "tiny.block_count", Value: gguf.ValueOf(uint32(1))},
		{Key: "tokenizer.ggml.tokens", Value: gguf.ValueOf([]string{"<s>", "a", "b"})},
	}, []gguf.TensorInfo{
		{Name: "w.weight", Type: gguf.Q8_0, Dims: []int64{32, 2}}, // 2 rows of 32
	})
	if err != nil {
		log.Fatal(err)
	}
	x := make([]float32, 64)
	for i := range x {
		x[i] = float32(i-32) / 8
	}
	if err := w.WriteFloat32("w.weight", x); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	f, err := gguf.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	arch, _ := f.String("general.architecture")
	n, _ := f.Int("tiny.block_count")
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	info, _ := f.Info("w.weight")
	y, _ := f.Float32("w.weight")
	fmt.Println(arch, n, toks)
	fmt.Println(info.Name, info.Type, info.Dims, info.Shape(), info.Size, "bytes")
	// Q8_0 keeps each value within half a step (the block's largest
	// magnitude / 127) of the input, plus what rounding the step to f16
	// moves the largest level (127 steps × 2^-11 relative).
	within := true
	for i := range x {
		step := float32(4.0 / 127)
		if i >= 32 {
			step = float32(3.875 / 127)
		}
		within = within && math.Abs(float64(y[i]-x[i])) <= float64(step)*(0.5+127.0/2048)
	}
	fmt.Println("within the error bound:", within)
	// Output:
	// tiny 1 [<s> a b]
	// w.weight Q8_0 [32 2] [2 32] 68 bytes
	// within the error bound: true
}
