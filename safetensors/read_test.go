package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// raw builds a file from a header string (written as is, with its length
// prefix) and a data section.
func raw(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// rawLen builds a file whose length prefix is n, whatever follows.
func rawLen(n uint64, rest string) []byte {
	b := make([]byte, 8, 8+len(rest))
	binary.LittleEndian.PutUint64(b, n)
	return append(b, rest...)
}

func zeros(n int) []byte { return make([]byte, n) }

// f4 is the start of a valid one-element F32 entry.
const f4 = `"dtype":"F32","shape":[1]`

// badFiles has one case per bad-input row of the checkpoint checklist
// (docs/reliability.md section 1.1), with the error kind expected.
var badFiles = []struct {
	name   string
	file   []byte
	want   error
	tensor string // tensor the error must name, if any
}{
	// File shorter than 8 bytes.
	{"empty file", nil, ErrHeaderTooSmall, ""},
	{"7 bytes", []byte("{}     "), ErrHeaderTooSmall, ""},
	// Header length too large, overflowing or beyond the file.
	{"header length over limit", rawLen(MaxHeaderSize+1, "{}"), ErrHeaderTooLarge, ""},
	{"header length max uint64", rawLen(math.MaxUint64, "{}"), ErrHeaderTooLarge, ""},
	{"header length 8+N overflows int64", rawLen(1<<63, "{}"), ErrHeaderTooLarge, ""},
	{"header beyond file", rawLen(100, "{}"), ErrInvalidHeaderLength, ""},
	{"header one byte beyond file", rawLen(3, "{}"), ErrInvalidHeaderLength, ""},
	// Header not UTF-8, not JSON, not an object, first byte not '{'.
	{"empty header", raw("", nil), ErrInvalidHeader, ""},
	{"not UTF-8", raw("{\"a\xff\":{}}", nil), ErrInvalidHeader, ""},
	{"not JSON", raw("{not json}", nil), ErrInvalidHeader, ""},
	{"unterminated", raw(`{"a":{`+f4+`,"data_offsets":[0,4]}`, zeros(4)), ErrInvalidHeader, ""},
	{"array not object", raw("[]", nil), ErrInvalidHeader, ""},
	{"string not object", raw(`"{}"`, nil), ErrInvalidHeader, ""},
	{"leading space", raw(" {}", nil), ErrInvalidHeader, ""},
	{"trailing garbage", raw("{}x", nil), ErrInvalidHeader, ""},
	{"two objects", raw("{} {}", nil), ErrInvalidHeader, ""},
	{"NUL padding", raw("{}\x00\x00", nil), ErrInvalidHeader, ""},
	{"trailing comma", raw(`{"a":{`+f4+`,"data_offsets":[0,4]},}`, zeros(4)), ErrInvalidHeader, ""},
	{"entry not object", raw(`{"a":[1]}`, nil), ErrInvalidHeader, "a"},
	{"entry null", raw(`{"a":null}`, nil), ErrInvalidHeader, "a"},
	// Repeated keys, at top level or inside one entry.
	{"duplicate tensor", raw(`{"a":{`+f4+`,"data_offsets":[0,4]},"a":{`+f4+`,"data_offsets":[4,8]}}`, zeros(8)), ErrDuplicateKey, "a"},
	{"duplicate dtype", raw(`{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, zeros(4)), ErrDuplicateKey, "a"},
	{"duplicate shape", raw(`{"a":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}`, zeros(4)), ErrDuplicateKey, "a"},
	{"duplicate offsets", raw(`{"a":{`+f4+`,"data_offsets":[0,4],"data_offsets":[0,4]}}`, zeros(4)), ErrDuplicateKey, "a"},
	{"duplicate __metadata__", raw(`{"__metadata__":{},"__metadata__":{}}`, nil), ErrDuplicateKey, "__metadata__"},
	{"duplicate metadata key", raw(`{"__metadata__":{"k":"1","k":"2"}}`, nil), ErrDuplicateKey, "__metadata__"},
	{"duplicate in unknown field", raw(`{"a":{`+f4+`,"data_offsets":[0,4],"x":{"y":1,"y":2}}}`, zeros(4)), ErrDuplicateKey, "a"},
	// __metadata__ not a map of string to string.
	{"metadata array", raw(`{"__metadata__":["a"]}`, nil), ErrInvalidMetadata, "__metadata__"},
	{"metadata string", raw(`{"__metadata__":"pt"}`, nil), ErrInvalidMetadata, "__metadata__"},
	{"metadata number value", raw(`{"__metadata__":{"format":1}}`, nil), ErrInvalidMetadata, "__metadata__"},
	{"metadata object value", raw(`{"__metadata__":{"format":{}}}`, nil), ErrInvalidMetadata, "__metadata__"},
	{"metadata as tensor entry", raw(`{"__metadata__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidMetadata, "__metadata__"},
	// Unknown dtype, or outside the supported set.
	{"dtype F8", raw(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, zeros(1)), ErrUnknownDType, "a"},
	{"dtype U32", raw(`{"a":{"dtype":"U32","shape":[1],"data_offsets":[0,4]}}`, zeros(4)), ErrUnknownDType, "a"},
	{"dtype lowercase", raw(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, zeros(4)), ErrUnknownDType, "a"},
	{"dtype empty", raw(`{"a":{"dtype":"","shape":[0],"data_offsets":[0,0]}}`, nil), ErrUnknownDType, "a"},
	{"dtype number", raw(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidHeader, "a"},
	{"dtype missing", raw(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidHeader, "a"},
	// Shape not a list of non-negative ints.
	{"shape negative", raw(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape negative pair", raw(`{"a":{"dtype":"F32","shape":[-1,-4],"data_offsets":[0,16]}}`, zeros(16)), ErrInvalidShape, "a"},
	{"shape float", raw(`{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape exponent", raw(`{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape string", raw(`{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape null element", raw(`{"a":{"dtype":"F32","shape":[null],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape nested", raw(`{"a":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape not list", raw(`{"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape beyond uint64", raw(`{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape beyond int", raw(`{"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	{"shape missing", raw(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, zeros(4)), ErrInvalidShape, "a"},
	// data_offsets not exactly two non-negative ints, or begin > end.
	{"offsets one value", raw(`{"a":{`+f4+`,"data_offsets":[4]}}`, zeros(4)), ErrInvalidOffsets, "a"},
	{"offsets three values", raw(`{"a":{`+f4+`,"data_offsets":[0,4,4]}}`, zeros(4)), ErrInvalidOffsets, "a"},
	{"offsets negative", raw(`{"a":{`+f4+`,"data_offsets":[-4,0]}}`, zeros(4)), ErrInvalidOffsets, "a"},
	{"offsets float", raw(`{"a":{`+f4+`,"data_offsets":[0,4.0]}}`, zeros(4)), ErrInvalidOffsets, "a"},
	{"offsets string", raw(`{"a":{`+f4+`,"data_offsets":["0","4"]}}`, zeros(4)), ErrInvalidOffsets, "a"},
	{"offsets beyond int64", raw(`{"a":{`+f4+`,"data_offsets":[0,9223372036854775808]}}`, zeros(4)), ErrInvalidOffsets, "a"},
	{"offsets begin > end", raw(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, zeros(4)), ErrInvalidOffsets, "a"},
	{"offsets missing", raw(`{"a":{`+f4+`}}`, zeros(4)), ErrInvalidOffsets, "a"},
	// Gap, overlap, not starting at 0, last end != data length.
	{"gap", raw(`{"a":{`+f4+`,"data_offsets":[0,4]},"b":{`+f4+`,"data_offsets":[8,12]}}`, zeros(12)), ErrInvalidOffsets, "b"},
	{"overlap", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{`+f4+`,"data_offsets":[4,8]}}`, zeros(8)), ErrInvalidOffsets, "b"},
	{"same range twice", raw(`{"a":{`+f4+`,"data_offsets":[0,4]},"b":{`+f4+`,"data_offsets":[0,4]}}`, zeros(4)), ErrInvalidOffsets, "b"},
	{"not starting at 0", raw(`{"a":{`+f4+`,"data_offsets":[4,8]}}`, zeros(8)), ErrInvalidOffsets, "a"},
	{"data longer than tensors", raw(`{"a":{`+f4+`,"data_offsets":[0,4]}}`, zeros(5)), ErrInvalidOffsets, ""},
	{"data but no tensors", raw(`{}`, zeros(4)), ErrInvalidOffsets, ""},
	{"end beyond data (truncated)", raw(`{"a":{`+f4+`,"data_offsets":[0,4]}}`, zeros(3)), ErrInvalidOffsets, "a"},
	{"end far beyond data", raw(`{"a":{"dtype":"U8","shape":[1073741824],"data_offsets":[0,1073741824]}}`, zeros(4)), ErrInvalidOffsets, "a"},
	// product(shape) * size overflowing, or != end - begin.
	{"element count overflows", raw(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), ErrInvalidShape, "a"},
	{"byte size overflows", raw(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}}`, nil), ErrInvalidShape, "a"},
	{"overflow before a zero dim", raw(`{"a":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}`, nil), ErrInvalidShape, "a"},
	{"size too small", raw(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, zeros(4)), ErrSizeMismatch, "a"},
	{"size too large", raw(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, zeros(8)), ErrSizeMismatch, "a"},
	{"product wraps to small", raw(`{"a":{"dtype":"U8","shape":[2,9223372036854775807,2],"data_offsets":[0,0]}}`, nil), ErrInvalidShape, "a"},
}

// TestOpenBytesBad checks that every bad file fails with its error kind,
// as an *Error naming the file and, where one is involved, the tensor.
func TestOpenBytesBad(t *testing.T) {
	for _, tt := range badFiles {
		t.Run(tt.name, func(t *testing.T) {
			f, err := OpenBytes("bad.safetensors", tt.file)
			if err == nil {
				f.Close()
				t.Fatalf("OpenBytes succeeded, want %v", tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %q, want kind %q", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if e.File != "bad.safetensors" || !strings.Contains(err.Error(), "bad.safetensors") {
				t.Errorf("error %q does not name the file", err)
			}
			if tt.tensor != "" && e.Tensor != tt.tensor {
				t.Errorf("error names tensor %q, want %q (%v)", e.Tensor, tt.tensor, err)
			}
		})
	}
}

// TestOpenBytesGood covers inputs the format allows: padding, empty files,
// zero-length dimensions, rank-0 scalars, unknown fields, any key order.
func TestOpenBytesGood(t *testing.T) {
	one := binary.LittleEndian.AppendUint32(nil, math.Float32bits(1.5))
	tests := []struct {
		name  string
		file  []byte
		infos []TensorInfo
		meta  map[string]string
	}{
		{"no tensors", raw(`{}`, nil), nil, nil},
		{"space padding", raw(`{}      `, nil), nil, nil},
		{"whitespace padding", raw("{} \t\r\n", nil), nil, nil},
		{"metadata only", raw(`{"__metadata__":{"format":"pt","k":""}}`, nil), nil, map[string]string{"format": "pt", "k": ""}},
		{"null metadata", raw(`{"__metadata__":null}`, nil), nil, nil},
		{"rank 0", raw(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, one),
			[]TensorInfo{{Name: "s", DType: F32, Shape: []int{}, Begin: 0, End: 4}}, nil},
		{"zero-length dim", raw(`{"z":{"dtype":"F32","shape":[3,0,2],"data_offsets":[0,0]}}`, nil),
			[]TensorInfo{{Name: "z", DType: F32, Shape: []int{3, 0, 2}}}, nil},
		{"zero-length among others", raw(`{"b":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"z":{"dtype":"I64","shape":[0],"data_offsets":[4,4]},"y":{"dtype":"BF16","shape":[0,5],"data_offsets":[0,0]}}`, one),
			[]TensorInfo{{Name: "b", DType: F32, Shape: []int{}, End: 4}, {Name: "y", DType: BF16, Shape: []int{0, 5}}, {Name: "z", DType: I64, Shape: []int{0}, Begin: 4, End: 4}}, nil},
		{"offsets out of key order", raw(`{"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"a":{"data_offsets":[0,2],"shape":[1,2],"dtype":"I8"}}`, zeros(4)),
			[]TensorInfo{{Name: "a", DType: I8, Shape: []int{1, 2}, End: 2}, {Name: "b", DType: U8, Shape: []int{2}, Begin: 2, End: 4}}, nil},
		{"unknown field skipped", raw(`{"a":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1],"extra":{"x":[1,{"y":null}]}}}`, zeros(1)),
			[]TensorInfo{{Name: "a", DType: BOOL, Shape: []int{1}, End: 1}}, nil},
		{"escaped names", raw(`{"a\"b\u00e9":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}`, zeros(1)),
			[]TensorInfo{{Name: "", DType: U8, Shape: []int{0}, Begin: 1, End: 1}, {Name: "a\"bé", DType: U8, Shape: []int{1}, End: 1}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := OpenBytes("good", tt.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var names []string
			for _, info := range tt.infos {
				names = append(names, info.Name)
				got, ok := f.Info(info.Name)
				if !ok {
					t.Fatalf("Info(%q) missing", info.Name)
				}
				if got.Name != info.Name || got.DType != info.DType || !slices.Equal(got.Shape, info.Shape) || got.Begin != info.Begin || got.End != info.End {
					t.Errorf("Info(%q) = %+v, want %+v", info.Name, got, info)
				}
				tensor, err := f.Tensor(info.Name)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(tensor.Data)) != info.End-info.Begin {
					t.Errorf("%q: %d data bytes, want %d", info.Name, len(tensor.Data), info.End-info.Begin)
				}
			}
			if got := f.Names(); !slices.Equal(got, names) {
				t.Errorf("Names() = %q, want %q", got, names)
			}
			if got := f.Metadata(); !mapsEqual(got, tt.meta) {
				t.Errorf("Metadata() = %v, want %v", got, tt.meta)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestScalarValue(t *testing.T) {
	data := binary.LittleEndian.AppendUint32(nil, math.Float32bits(1.5))
	f, err := OpenBytes("s", raw(`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, data))
	if err != nil {
		t.Fatal(err)
	}
	tensor, err := f.Tensor("s")
	if err != nil {
		t.Fatal(err)
	}
	if n := tensor.NumElements(); n != 1 {
		t.Errorf("NumElements() = %d, want 1", n)
	}
	v, err := tensor.Float64()
	if err != nil || len(v) != 1 || v[0] != 1.5 {
		t.Errorf("Float64() = %v, %v; want [1.5]", v, err)
	}
}

// TestUnaligned checks that tensor bytes at an address not aligned to the
// dtype are never reinterpreted, but converted correctly.
func TestUnaligned(t *testing.T) {
	vals := []float32{1, -2.5, 3e-3, float32(math.Inf(1))}
	f32, _ := EncodeFloat32(F32, vals)
	bf, _ := EncodeFloat32(BF16, vals)
	// A 7-byte header makes the data section start at offset 15 of an
	// aligned buffer; shifting the buffer by one more byte covers offset 16+1.
	for _, shift := range []int{0, 1} {
		hdr := `{"b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},"f":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}`
		file := raw(hdr, append(slices.Clone(bf), f32...))
		buf := make([]byte, len(file)+8)
		file = buf[shift : shift+len(file)]
		copy(file, raw(hdr, append(slices.Clone(bf), f32...)))
		fl, err := OpenBytes("u", file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"f", "b"} {
			tensor, err := fl.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			addr := uintptr(unsafePointer(tensor.Data))
			if name == "f" {
				if _, ok := tensor.F32View(); ok != (addr%4 == 0) {
					t.Errorf("shift %d: F32View ok = %v at address %% 4 = %d", shift, ok, addr%4)
				}
			} else {
				if _, ok := tensor.BF16View(); ok != (addr%2 == 0) {
					t.Errorf("shift %d: BF16View ok = %v at address %% 2 = %d", shift, ok, addr%2)
				}
			}
			got, err := tensor.Float32()
			if err != nil {
				t.Fatal(err)
			}
			want := vals
			if name == "b" {
				want = []float32{1, -2.5, BF16ToFloat32(Float32ToBF16(3e-3)), float32(math.Inf(1))}
			}
			if !slices.Equal(got, want) {
				t.Errorf("shift %d: %s Float32() = %v, want %v", shift, name, got, want)
			}
		}
	}
}

func TestTensorConversionErrors(t *testing.T) {
	tests := []struct {
		name   string
		tensor Tensor
		conv   string
		want   error
	}{
		{"Float32 of I64", Tensor{TensorInfo: TensorInfo{Name: "x", DType: I64, Shape: []int{1}}, Data: zeros(8)}, "f32", ErrDTypeMismatch},
		{"Int64 of F32", Tensor{TensorInfo: TensorInfo{Name: "x", DType: F32, Shape: []int{1}}, Data: zeros(4)}, "i64", ErrDTypeMismatch},
		{"Float64 of U8", Tensor{TensorInfo: TensorInfo{Name: "x", DType: U8, Shape: []int{1}}, Data: zeros(1)}, "f64", ErrDTypeMismatch},
		{"short data", Tensor{TensorInfo: TensorInfo{Name: "x", DType: F32, Shape: []int{2}}, Data: zeros(4)}, "f32", ErrSizeMismatch},
		{"long data", Tensor{TensorInfo: TensorInfo{Name: "x", DType: I32, Shape: []int{2}}, Data: zeros(12)}, "i64", ErrSizeMismatch},
		{"negative dim", Tensor{TensorInfo: TensorInfo{Name: "x", DType: F64, Shape: []int{-1}}, Data: zeros(8)}, "f64", ErrInvalidShape},
		{"overflowing shape", Tensor{TensorInfo: TensorInfo{Name: "x", DType: F64, Shape: []int{math.MaxInt / 2, 3}}, Data: zeros(8)}, "f64", ErrInvalidShape},
		{"unknown dtype", Tensor{TensorInfo: TensorInfo{Name: "x", DType: "Q4", Shape: []int{1}}, Data: zeros(1)}, "i64", ErrDTypeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			switch tt.conv {
			case "f32":
				_, err = tt.tensor.Float32()
			case "f64":
				_, err = tt.tensor.Float64()
			case "i64":
				_, err = tt.tensor.Int64()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if _, ok := tt.tensor.F32View(); ok && tt.tensor.DType == F32 && tt.want != ErrDTypeMismatch {
				t.Error("F32View succeeded on a bad tensor")
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	f, err := OpenBytes("m.safetensors", raw(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Tensor("nope")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `m.safetensors: tensor "nope"`) {
		t.Errorf("missing tensor: %v", err)
	}
	if _, ok := f.Info("nope"); ok {
		t.Error("Info of a missing tensor succeeded")
	}
	f.Close()
	if _, err := f.Tensor("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Tensor after Close: %v, want ErrClosed", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenMissingFile(t *testing.T) {
	_, err := Open(t.TempDir() + "/missing.safetensors")
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, fsErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("Open of a directory succeeded")
	}
}

func TestCheckFinite(t *testing.T) {
	tests := []struct {
		dtype DType
		vals  []float64
		bad   int // index of the first non-finite value, or -1
	}{
		{F64, []float64{1, -2, math.MaxFloat64}, -1},
		{F64, []float64{1, math.NaN(), math.Inf(1)}, 1},
		{F32, []float64{0, math.MaxFloat32, math.SmallestNonzeroFloat32}, -1},
		{F32, []float64{0, 1, math.Inf(-1)}, 2},
		{F16, []float64{65504, -65504}, -1},
		{F16, []float64{70000}, 0},
		{BF16, []float64{1e38, 0}, -1},
		{BF16, []float64{0, 0, 0, math.NaN()}, 3},
	}
	for _, tt := range tests {
		data, err := EncodeFloat64(tt.dtype, tt.vals)
		if err != nil {
			t.Fatal(err)
		}
		tensor := Tensor{TensorInfo: TensorInfo{Name: "w", DType: tt.dtype, Shape: []int{len(tt.vals)}}, File: "f", Data: data}
		err = tensor.CheckFinite()
		if tt.bad < 0 {
			if err != nil {
				t.Errorf("%s %v: %v", tt.dtype, tt.vals, err)
			}
			continue
		}
		if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), fmt.Sprintf("element %d ", tt.bad)) {
			t.Errorf("%s %v: %v, want ErrNonFinite at element %d", tt.dtype, tt.vals, err, tt.bad)
		}
	}
	ints := Tensor{TensorInfo: TensorInfo{Name: "i", DType: I32, Shape: []int{1}}, Data: []byte{0xff, 0xff, 0x80, 0x7f}}
	if err := ints.CheckFinite(); err != nil {
		t.Errorf("I32: %v", err)
	}
}

func TestOpenEmptyAndTruncatedFile(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.safetensors")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(empty); !errors.Is(err, ErrHeaderTooSmall) || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty file: %v", err)
	}
	b, err := Marshal(testTensors(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc.safetensors")
	if err := os.WriteFile(trunc, b[:len(b)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(trunc); !errors.Is(err, ErrInvalidOffsets) {
		t.Errorf("truncated file: %v", err)
	}
}
