package gguf

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/types.gguf from the writer")

// typesFileContent is the content of testdata/types.gguf: metadata of
// every value type (arrays of arrays left out: llama.cpp's reader refuses
// them) and one 512x3 tensor of each type this package quantizes, from
// deterministic inputs with rows of different character.
func typesFileContent() ([]KV, []TensorInfo, [][]float32) {
	var kvs []KV
	for _, kv := range allValues() {
		if kv.Value.ElemType() != TypeArray {
			kvs = append(kvs, kv)
		}
	}
	r := rand.New(rand.NewPCG(13, 13))
	var infos []TensorInfo
	var values [][]float32
	for _, typ := range []Type{F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K} {
		x := make([]float32, 512*3)
		for i := range x {
			switch row := i / 512; {
			case row == 0:
				x[i] = float32(r.NormFloat64() * 0.02)
			case row == 1 && (i/32)%3 == 0:
				x[i] = 0
			case row == 1:
				x[i] = float32(r.NormFloat64()) + 0.5
			default:
				x[i] = float32(r.Float64()*2-1) * float32(math.Pow(10, float64(r.IntN(8)-4)))
			}
		}
		infos = append(infos, TensorInfo{Name: "t." + typ.String(), Type: typ, Dims: []int64{512, 3}})
		values = append(values, x)
	}
	return kvs, infos, values
}

// TestTypesFile checks files of every type against llama.cpp itself:
// testdata/types.gguf was written by this package's writer (regenerated
// by go test -update, and checked here to be what the writer writes
// today), then read by llama.cpp's gguf_init_from_file (gguf.cpp of the
// release bundled in node-llama-cpp 3.22.1) and each tensor converted with
// ggml's to_float for its type (dequantize_row_q8_K for Q8_K, which ggml
// uses for activations only and gives no to_float; F32 copied);
// testdata/types.ggml-f32.bin.gz holds those floats (per tensor in file
// order: u32 count, float32 values).
func TestTypesFile(t *testing.T) {
	kvs, infos, values := typesFileContent()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, kvs, infos)
	if err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		if err := w.WriteFloat32(info.Name, values[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("testdata/types.gguf", buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := os.ReadFile("testdata/types.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, buf.Bytes()) {
		t.Fatalf("the writer no longer writes testdata/types.gguf (%d bytes now, %d stored)", buf.Len(), len(stored))
	}
	f, err := OpenBytes("types.gguf", stored)
	if err != nil {
		t.Fatal(err)
	}
	zf, err := os.Open("testdata/types.ggml-f32.bin.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	zr, err := gzip.NewReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range f.Tensors() {
		n := int(binary.LittleEndian.Uint32(ref))
		want := floatsOf(ref[4 : 4+4*n])
		ref = ref[4+4*n:]
		got, err := f.Float32(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, llama.cpp %d", info.Name, len(got), len(want))
		}
		bad := 0
		for i := range got {
			if !sameFloat(got[i], want[i]) {
				if bad == 0 {
					t.Errorf("%s: element %d = %g, llama.cpp %g", info.Name, i, got[i], want[i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d values differ from llama.cpp's", info.Name, bad, len(got))
		}
	}
	if len(ref) != 0 {
		t.Errorf("%d bytes of reference left over", len(ref))
	}
}
