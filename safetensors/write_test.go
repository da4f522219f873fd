package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testTensors returns one tensor of every dtype with known values, plus
// rank-0 and zero-length tensors.
func testTensors(t *testing.T) []Tensor {
	t.Helper()
	mk := func(name string, dtype DType, shape []int, data []byte, err error) Tensor {
		if err != nil {
			t.Fatal(err)
		}
		return Tensor{TensorInfo: TensorInfo{Name: name, DType: dtype, Shape: shape}, Data: data}
	}
	f := func(dtype DType, v ...float64) ([]byte, error) { return EncodeFloat64(dtype, v) }
	i := func(dtype DType, v ...int64) ([]byte, error) { return EncodeInt64(dtype, v) }
	var out []Tensor
	add := func(name string, dtype DType, shape []int, data []byte, err error) {
		out = append(out, mk(name, dtype, shape, data, err))
	}
	d, err := f(F64, 1, -2.5, math.Pi, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(-1))
	add("f64", F64, []int{2, 3}, d, err)
	d, err = f(F32, 1, -2.5, 1e-40, math.MaxFloat32)
	add("f32", F32, []int{4}, d, err)
	d, err = f(F16, 1, -2.5, 65504, 1023.0/(1<<24), 5.960464477539063e-08, 0)
	add("f16", F16, []int{3, 2}, d, err)
	d, err = f(BF16, 1, -2.5, 3.140625, 1e38)
	add("bf16", BF16, []int{2, 1, 2}, d, err)
	d, err = i(I64, math.MinInt64, -1, 0, math.MaxInt64)
	add("i64", I64, []int{4}, d, err)
	d, err = i(I32, math.MinInt32, -7, math.MaxInt32)
	add("i32", I32, []int{3}, d, err)
	d, err = i(I16, math.MinInt16, 5, math.MaxInt16)
	add("i16", I16, []int{1, 3}, d, err)
	d, err = i(I8, -128, 0, 127)
	add("i8", I8, []int{3}, d, err)
	d, err = i(U8, 0, 1, 255)
	add("u8", U8, []int{3}, d, err)
	d, err = i(BOOL, 1, 0, 1, 1)
	add("bool", BOOL, []int{2, 2}, d, err)
	d, err = f(F32, 42)
	add("scalar_f32", F32, []int{}, d, err)
	d, err = i(I64, -9)
	add("scalar_i64", I64, nil, d, err)
	d, err = f(BF16, 0.5)
	add("scalar_bf16", BF16, []int{}, d, err)
	add("empty_f32", F32, []int{0}, []byte{}, nil)
	add("empty_bf16", BF16, []int{4, 0, 3}, nil, nil)
	add("empty_i8", I8, []int{0, 0}, nil, nil)
	return out
}

func wantValues(t *testing.T, tensor Tensor) any {
	t.Helper()
	if tensor.DType.IsFloat() {
		v, err := tensor.Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v, err := tensor.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRoundTrip(t *testing.T) {
	tensors := testTensors(t)
	path := filepath.Join(t.TempDir(), "rt.safetensors")
	meta := map[string]string{"note": "<&> \"quoted\" é", "format": "pt"}
	if err := WriteFile(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw)
	if n%8 != 0 || raw[8] != '{' {
		t.Errorf("header length %d not a multiple of 8, or first byte %q", n, raw[8])
	}
	if hdr := raw[8 : 8+n]; hdr[len(hdr)-1] != ' ' && hdr[len(hdr)-1] != '}' {
		t.Errorf("header ends with %q", hdr[len(hdr)-1])
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &hdr); err != nil {
		t.Fatalf("header is not JSON: %v", err)
	}
	if len(hdr) != len(tensors)+1 {
		t.Errorf("header has %d keys, want %d", len(hdr), len(tensors)+1)
	}

	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata(); !mapsEqual(got, meta) {
		t.Errorf("Metadata() = %v, want %v", got, meta)
	}
	var names []string
	for _, want := range tensors {
		names = append(names, want.Name)
		got, err := f.Tensor(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		wantShape := want.Shape
		if wantShape == nil {
			wantShape = []int{}
		}
		if got.DType != want.DType || !slices.Equal(got.Shape, wantShape) {
			t.Errorf("%s: %s%v, want %s%v", want.Name, got.DType, got.Shape, want.DType, wantShape)
		}
		if !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: data %v, want %v", want.Name, got.Data, want.Data)
		}
		if n := got.NumElements(); n*got.DType.Size() != len(got.Data) {
			t.Errorf("%s: %d elements, %d bytes", want.Name, n, len(got.Data))
		}
		gv, wv := wantValues(t, got), wantValues(t, want)
		if !equalValues(gv, wv) {
			t.Errorf("%s: values %v, want %v", want.Name, gv, wv)
		}
	}
	slices.Sort(names)
	if !slices.Equal(f.Names(), names) {
		t.Errorf("Names() = %v, want %v", f.Names(), names)
	}

	// Known values, checked through the typed accessors.
	i64, _ := mustTensor(t, f, "i64").Int64()
	if !slices.Equal(i64, []int64{math.MinInt64, -1, 0, math.MaxInt64}) {
		t.Errorf("i64 = %v", i64)
	}
	bf, _ := mustTensor(t, f, "bf16").Float32()
	if !slices.Equal(bf, []float32{1, -2.5, 3.140625, BF16ToFloat32(Float64ToBF16(1e38))}) {
		t.Errorf("bf16 = %v", bf)
	}
	f16, _ := mustTensor(t, f, "f16").Float64()
	if !slices.Equal(f16, []float64{1, -2.5, 65504, 1023.0 / (1 << 24), 5.960464477539063e-08, 0}) {
		t.Errorf("f16 = %v", f16)
	}
	b, _ := mustTensor(t, f, "bool").Int64()
	if !slices.Equal(b, []int64{1, 0, 1, 1}) {
		t.Errorf("bool = %v", b)
	}
	if v, ok := mustTensor(t, f, "f32").F32View(); !ok || !slices.Equal(v, []float32{1, -2.5, float32(1e-40), math.MaxFloat32}) {
		t.Errorf("f32 view = %v, %v", v, ok)
	}
	if v, ok := mustTensor(t, f, "empty_bf16").BF16View(); !ok || len(v) != 0 {
		t.Errorf("empty bf16 view = %v, %v", v, ok)
	}
}

func mustTensor(t *testing.T, f *File, name string) Tensor {
	t.Helper()
	tensor, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return tensor
}

func equalValues(a, b any) bool {
	switch a := a.(type) {
	case []float64:
		b := b.([]float64)
		return slices.EqualFunc(a, b, func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) })
	case []int64:
		return slices.Equal(a, b.([]int64))
	}
	return false
}

func TestDefaultMetadata(t *testing.T) {
	for _, tt := range []struct {
		in   map[string]string
		want map[string]string
	}{
		{nil, map[string]string{"format": "pt"}},
		{map[string]string{}, map[string]string{"format": "pt"}},
		{map[string]string{"a": "b"}, map[string]string{"a": "b", "format": "pt"}},
		{map[string]string{"format": "mlx"}, map[string]string{"format": "mlx"}},
	} {
		b, err := Marshal(nil, tt.in)
		if err != nil {
			t.Fatal(err)
		}
		f, err := OpenBytes("m", b)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Metadata(); !mapsEqual(got, tt.want) {
			t.Errorf("metadata %v: got %v, want %v", tt.in, got, tt.want)
		}
		if _, added := tt.in["format"]; added && tt.want["format"] == "pt" {
			t.Errorf("input map %v modified", tt.in)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	infos := []TensorInfo{
		{Name: "a", DType: F32, Shape: []int{2}},
		{Name: "b", DType: U8, Shape: []int{3}},
	}
	tests := []struct {
		name  string
		infos []TensorInfo
		steps func(w *Writer) error
		want  error
	}{
		{"duplicate name", []TensorInfo{infos[0], infos[0]}, nil, ErrDuplicateTensor},
		{"reserved name", []TensorInfo{{Name: "__metadata__", DType: U8, Shape: []int{1}}}, nil, ErrInvalidHeader},
		{"unknown dtype", []TensorInfo{{Name: "a", DType: "F8", Shape: []int{1}}}, nil, ErrUnknownDType},
		{"negative dim", []TensorInfo{{Name: "a", DType: F32, Shape: []int{-1}}}, nil, ErrInvalidShape},
		{"overflowing shape", []TensorInfo{{Name: "a", DType: F64, Shape: []int{math.MaxInt / 2, 3}}}, nil, ErrInvalidShape},
		{"out of order", infos, func(w *Writer) error { return w.Write("b", zeros(3)) }, ErrWriteOrder},
		{"unknown tensor", infos, func(w *Writer) error { return w.Write("c", zeros(3)) }, ErrWriteOrder},
		{"short data", infos, func(w *Writer) error { return w.Write("a", zeros(7)) }, ErrSizeMismatch},
		{"long data", infos, func(w *Writer) error { return w.Write("a", zeros(9)) }, ErrSizeMismatch},
		{"missing at Close", infos, func(w *Writer) error {
			if err := w.Write("a", zeros(8)); err != nil {
				return err
			}
			return w.Close()
		}, ErrWriteOrder},
		{"extra write", infos, func(w *Writer) error {
			w.Write("a", zeros(8))
			w.Write("b", zeros(3))
			return w.Write("b", zeros(3))
		}, ErrWriteOrder},
		{"float32 into U8", infos, func(w *Writer) error {
			w.Write("a", zeros(8))
			return w.WriteFloat32("b", []float32{1, 2, 3})
		}, ErrDTypeMismatch},
		{"float32 count", infos, func(w *Writer) error { return w.WriteFloat32("a", []float32{1}) }, ErrSizeMismatch},
		{"sticky", infos, func(w *Writer) error {
			w.Write("b", zeros(3))
			return w.Write("a", zeros(8))
		}, ErrWriteOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "w.safetensors")
			w, err := Create(path, tt.infos, nil)
			if err == nil {
				if tt.steps == nil {
					t.Fatal("Create succeeded")
				}
				err = tt.steps(w)
				if cerr := w.Close(); !errors.Is(cerr, tt.want) {
					t.Errorf("Close after failure: %v, want %v", cerr, tt.want)
				}
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 0 {
				t.Errorf("files left after a failed write: %v", entries)
			}
		})
	}
}

func TestWriteFloat32Chunks(t *testing.T) {
	const n = 40000 // more than one encoding chunk
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)*0.37 - 5000
	}
	infos := []TensorInfo{
		{Name: "f64", DType: F64, Shape: []int{n}},
		{Name: "f32", DType: F32, Shape: []int{200, n / 200}},
		{Name: "bf16", DType: BF16, Shape: []int{n}},
		{Name: "f16", DType: F16, Shape: []int{n}},
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		if err := w.WriteFloat32(info.Name, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := OpenBytes("chunks", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		got, err := mustTensor(t, f, info.Name).Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			want := v[i]
			switch info.DType {
			case BF16:
				want = BF16ToFloat32(Float32ToBF16(v[i]))
			case F16:
				want = F16ToFloat32(Float32ToF16(v[i]))
			}
			if got[i] != want {
				t.Fatalf("%s[%d] = %v, want %v", info.Name, i, got[i], want)
			}
		}
	}
}

func TestCreateReplacesAtomically(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	old := []Tensor{{TensorInfo: TensorInfo{Name: "old", DType: U8, Shape: []int{1}}, Data: []byte{1}}}
	if err := WriteFile(path, old, nil); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path, []TensorInfo{{Name: "new", DType: U8, Shape: []int{1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Until Close, the old file is intact.
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Info("old"); !ok {
		t.Error("old file replaced before Close")
	}
	f.Close()
	if err := w.Write("new", []byte{2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Names(); !slices.Equal(got, []string{"new"}) {
		t.Errorf("after Close: %v", got)
	}
}
