package gguf

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/internal/testutil"
)

// allValues holds one key of every value type, arrays of every element
// type, empty arrays and arrays of arrays.
func allValues() []KV {
	return []KV{
		{"u8", ValueOf(uint8(200))},
		{"i8", ValueOf(int8(-100))},
		{"u16", ValueOf(uint16(60000))},
		{"i16", ValueOf(int16(-30000))},
		{"u32", ValueOf(uint32(4000000000))},
		{"i32", ValueOf(int32(-2000000000))},
		{"f32", ValueOf(float32(1e-6))},
		{"bool.true", ValueOf(true)},
		{"bool.false", ValueOf(false)},
		{"string", ValueOf("héllo\x00world")},
		{"string.empty", ValueOf("")},
		{"u64", ValueOf(uint64(math.MaxUint64))},
		{"i64", ValueOf(int64(math.MinInt64))},
		{"f64", ValueOf(math.Pi)},
		{"a.u8", ValueOf([]uint8{0, 1, 255})},
		{"a.i8", ValueOf([]int8{-128, 0, 127})},
		{"a.u16", ValueOf([]uint16{1, 65535})},
		{"a.i16", ValueOf([]int16{-32768, 32767})},
		{"a.u32", ValueOf([]uint32{1, 2, 3})},
		{"a.i32", ValueOf([]int32{0, 0, 0, 0, 2, 0, 0, 0})},
		{"a.f32", ValueOf([]float32{-1000, float32(math.Inf(1)), 0.5})},
		{"a.bool", ValueOf([]bool{true, false, true})},
		{"a.string", ValueOf([]string{"<s>", "", "▁the"})},
		{"a.u64", ValueOf([]uint64{math.MaxUint64})},
		{"a.i64", ValueOf([]int64{-1, 1})},
		{"a.f64", ValueOf([]float64{1.5, -2.25})},
		{"a.empty", ValueOf([]string{})},
		{"a.nested", ValueOf([]Value{ValueOf([]int32{1, 2}), ValueOf([]string{"x"}), ValueOf([]Value{ValueOf([]uint8{7})})})},
	}
}

func testTensors() []Tensor {
	mk := func(name string, typ Type, dims ...int64) Tensor {
		t := Tensor{TensorInfo: TensorInfo{Name: name, Type: typ, Dims: dims}}
		n := t.NumElements()
		t.Data = make([]byte, typ.RowBytes(n))
		for i := range t.Data {
			t.Data[i] = byte(i*7 + len(name))
		}
		return t
	}
	return []Tensor{
		mk("f32", F32, 3, 5),
		mk("f16", F16, 7),
		mk("q4_k", Q4_K, 256, 2),
		mk("q8_0", Q8_0, 64, 3, 2, 1),
		mk("empty", F32, 0, 4),
		mk("scalar", BF16),
	}
}

func TestWriterRoundTrip(t *testing.T) {
	kvs := allValues()
	tensors := testTensors()
	for _, align := range []uint32{0, 8, 64, 4096} {
		k := kvs
		if align != 0 {
			k = append([]KV{{AlignmentKey, ValueOf(align)}}, kvs...)
		}
		b, err := Marshal(k, tensors)
		if err != nil {
			t.Fatal(err)
		}
		f, err := OpenBytes("roundtrip", b)
		if err != nil {
			t.Fatalf("alignment %d: %v", align, err)
		}
		if f.Version() != Version {
			t.Errorf("version %d", f.Version())
		}
		wantAlign := int64(DefaultAlignment)
		if align != 0 {
			wantAlign = int64(align)
		}
		if f.Alignment() != wantAlign || f.DataOffset()%wantAlign != 0 {
			t.Errorf("alignment %d, data offset %d, want alignment %d", f.Alignment(), f.DataOffset(), wantAlign)
		}
		got := f.KVs()
		if len(got) != len(k) {
			t.Fatalf("%d keys, want %d", len(got), len(k))
		}
		for i := range k {
			if got[i].Key != k[i].Key || !reflect.DeepEqual(got[i].Value.Any(), k[i].Value.Any()) {
				t.Errorf("key %d: got %s = %#v, want %s = %#v", i, got[i].Key, got[i].Value.Any(), k[i].Key, k[i].Value.Any())
			}
		}
		for i, info := range f.Tensors() {
			want := tensors[i]
			if info.Name != want.Name || info.Type != want.Type || !reflect.DeepEqual(info.Dims, want.Dims) && len(want.Dims)+len(info.Dims) != 0 {
				t.Errorf("tensor %d: got %+v, want %+v", i, info, want.TensorInfo)
			}
			if info.Offset%wantAlign != 0 {
				t.Errorf("%s: offset %d not aligned to %d", info.Name, info.Offset, wantAlign)
			}
			data, err := f.Data(info.Name)
			if err != nil || !bytes.Equal(data, want.Data) {
				t.Errorf("%s: data differs (%v)", info.Name, err)
			}
		}
		if int64(len(b))%wantAlign != 0 {
			t.Errorf("file of %d bytes is not padded to %d", len(b), wantAlign)
		}
	}
}

// TestRewriteFixtures writes every fixture GGUF again from what the reader
// returns and expects the same bytes: the writer lays files out exactly as
// llama.cpp's gguf.cpp (the quantized files) and gguf-py (the bf16 file)
// do.
func TestRewriteFixtures(t *testing.T) {
	for _, file := range []string{"gostd-13m-bf16.gguf", "gostd-13m-q8_0.gguf", "gostd-13m-q4_0.gguf", "gostd-13m-q4_k_m.gguf"} {
		path := testutil.Shared(t, filepath.Join("gguf", file))
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := OpenBytes(file, orig)
		if err != nil {
			t.Fatal(err)
		}
		var tensors []Tensor
		for _, info := range f.Tensors() {
			data, err := f.Data(info.Name)
			if err != nil {
				t.Fatal(err)
			}
			tensors = append(tensors, Tensor{TensorInfo: info, Data: data})
		}
		out := filepath.Join(t.TempDir(), file)
		if err := WriteFile(out, f.KVs(), tensors); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, orig) {
			i := 0
			for i < len(got) && i < len(orig) && got[i] == orig[i] {
				i++
			}
			t.Errorf("%s: rewritten file differs at byte %d (%d bytes, original %d)", file, i, len(got), len(orig))
		}
	}
}

func TestWriterAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	tensors := testTensors()
	infos := make([]TensorInfo, len(tensors))
	for i := range tensors {
		infos[i] = tensors[i].TensorInfo
	}
	w, err := Create(path, allValues(), infos)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(tensors[0].Name, tensors[0].Data); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(tensors[2].Name, tensors[2].Data); !errors.Is(err, ErrWriteOrder) {
		t.Errorf("out-of-order write: %v", err)
	}
	if err := w.Write(tensors[1].Name, tensors[1].Data[1:]); !errors.Is(err, ErrSize) {
		t.Errorf("short write: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrWriteOrder) {
		t.Errorf("Close with missing tensors: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("failed write replaced the file: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary file left behind: %v", ents)
	}

	w, err = Create(path, allValues(), infos)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tensors {
		if err := w.Write(tt.Name, tt.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Len() != len(tensors) {
		t.Errorf("%d tensors", f.Len())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary file left behind: %v", ents)
	}
}

func TestWriteFloat32Quantizes(t *testing.T) {
	x := make([]float32, 512)
	for i := range x {
		x[i] = float32(math.Sin(float64(i))) * 3
	}
	for _, typ := range []Type{F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, nil, []TensorInfo{{Name: "w", Type: typ, Dims: []int64{256, 2}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFloat32("w", x); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f, err := OpenBytes("w", buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, typ.RowBytes(512))
		if err := Quantize(typ, x, want); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.Data("w"); !bytes.Equal(got, want) {
			t.Errorf("%s: written blocks differ from Quantize", typ)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	deep := ValueOf([]uint8{1})
	for i := 0; i < 9; i++ {
		deep = ValueOf([]Value{deep})
	}
	long := strings.Repeat("x", 64)
	ok := []TensorInfo{{Name: "w", Type: F32, Dims: []int64{4}}}
	cases := []struct {
		name    string
		kvs     []KV
		tensors []TensorInfo
		err     error
		msg     string
	}{
		{"empty key", []KV{{"", ValueOf(1)}}, ok, ErrKey, `gguf: invalid key: empty key`},
		{"duplicate key", []KV{{"a", ValueOf(uint8(1))}, {"a", ValueOf(uint8(2))}}, ok, ErrKey, `gguf: key "a": invalid key: duplicate key`},
		{"Go int", []KV{{"n", ValueOf(7)}}, ok, ErrValueType, `gguf: key "n": invalid value type: Go type int`},
		{"alignment type", []KV{{AlignmentKey, ValueOf(uint64(32))}}, ok, ErrValueType, `gguf: key "general.alignment": invalid value type: u64, want u32`},
		{"alignment 24", []KV{{AlignmentKey, ValueOf(uint32(24))}}, ok, ErrValue, `gguf: key "general.alignment": invalid value: alignment 24 is not a power of two of at least 8 (the format asks for a multiple of 8)`},
		{"alignment 4", []KV{{AlignmentKey, ValueOf(uint32(4))}}, ok, ErrValue, `gguf: key "general.alignment": invalid value: alignment 4 is not a power of two of at least 8 (the format asks for a multiple of 8)`},
		{"scalar in array of arrays", []KV{{"a", ValueOf([]Value{ValueOf(uint8(1))})}}, ok, ErrValueType, `gguf: key "a": invalid value type: element 0 of an array of arrays is a u8`},
		{"arrays too deep", []KV{{"a", deep}}, ok, ErrValueType, `gguf: key "a": element 0: element 0: element 0: element 0: element 0: element 0: element 0: element 0: invalid value type: arrays nested more than 8 deep`},
		{"empty name", nil, []TensorInfo{{Type: F32}}, ErrTensorName, `gguf: invalid tensor name: tensor 0 has an empty name`},
		{"long name", nil, []TensorInfo{{Name: long, Type: F32}}, ErrTensorName, `gguf: tensor "` + long + `": invalid tensor name: name of 64 bytes (ggml's limit is 63)`},
		{"duplicate name", nil, []TensorInfo{{Name: "w", Type: F32}, {Name: "w", Type: F16}}, ErrTensorName, `gguf: tensor "w": invalid tensor name: duplicate tensor name`},
		{"unknown type", nil, []TensorInfo{{Name: "w", Type: Type(5)}}, ErrType, `gguf: tensor "w": unsupported tensor type: unknown ggml type id 5`},
		{"five dims", nil, []TensorInfo{{Name: "w", Type: F32, Dims: []int64{1, 1, 1, 1, 1}}}, ErrShape, `gguf: tensor "w": invalid shape: 5 dimensions (limit 4)`},
		{"negative dim", nil, []TensorInfo{{Name: "w", Type: F32, Dims: []int64{2, -1}}}, ErrShape, `gguf: tensor "w": invalid shape: negative dimension in [2 -1]`},
		{"partial block", nil, []TensorInfo{{Name: "w", Type: Q6_K, Dims: []int64{16, 512}}}, ErrShape, `gguf: tensor "w": invalid shape: Q6_K rows of 16 elements are not a multiple of the block size 256`},
	}
	for _, c := range cases {
		_, err := NewWriter(io.Discard, c.kvs, c.tensors)
		if !errors.Is(err, c.err) || err.Error() != c.msg {
			t.Errorf("%s:\n got  %v\n want %s", c.name, err, c.msg)
		}
	}
	w, err := NewWriter(io.Discard, nil, []TensorInfo{{Name: "w", Type: Q8_0, Dims: []int64{32, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("w", make([]float32, 63)); !errors.Is(err, ErrSize) || err.Error() != `gguf: tensor "w": size mismatch: [32 2] needs 64 values, got 63` {
		t.Errorf("short WriteFloat32: %v", err)
	}
	if err := w.Write("x", nil); !errors.Is(err, ErrWriteOrder) || err.Error() != `gguf: tensor "x": tensor written out of order: expected "w" next` {
		t.Errorf("wrong name: %v", err)
	}
	if err := w.WriteFloat32("w", make([]float32, 64)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("w", make([]byte, 68)); !errors.Is(err, ErrWriteOrder) {
		t.Errorf("second write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("w", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
}

// TestWriterKeepsLink: writing through a symbolic link writes its target
// and leaves the link a link; a folder as the path is refused.
func TestWriterKeepsLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.gguf")
	link := filepath.Join(dir, "link.gguf")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	tensors := testTensors()
	if err := WriteFile(link, allValues(), tensors); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v, %v", fi, err)
	}
	f, err := Open(target)
	if err != nil {
		t.Fatalf("the link's target is not the written file: %v", err)
	}
	f.Close()
	if err := WriteFile(dir, allValues(), tensors); err == nil {
		t.Errorf("writing to a folder succeeded")
	}
}
