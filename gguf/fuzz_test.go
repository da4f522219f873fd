package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"
)

// checkParsed verifies the invariants of a successfully parsed file and
// that writing it again gives a file that parses to the same content.
func checkParsed(t *testing.T, f *File) {
	t.Helper()
	for _, info := range f.Tensors() {
		data, err := f.Data(info.Name)
		if err != nil {
			t.Fatalf("Data(%q) of a valid file: %v", info.Name, err)
		}
		if int64(len(data)) != info.Size || info.Size != info.Type.RowBytes(info.NumElements()) {
			t.Fatalf("%q: %s %v with %d bytes (size %d)", info.Name, info.Type, info.Dims, len(data), info.Size)
		}
		if info.Offset%f.Alignment() != 0 {
			t.Fatalf("%q: offset %d not aligned", info.Name, info.Offset)
		}
		if info.Type.CanDequantize() && info.NumElements() <= 1<<16 {
			v, err := f.Float32(info.Name)
			if err != nil || int64(len(v)) != info.NumElements() {
				t.Fatalf("%q: Float32: %d values, %v", info.Name, len(v), err)
			}
		}
	}
	var tensors []Tensor
	for _, info := range f.Tensors() {
		data, _ := f.Data(info.Name)
		tensors = append(tensors, Tensor{TensorInfo: info, Data: data})
	}
	b, err := Marshal(f.KVs(), tensors)
	if f.Alignment() < 8 {
		// Readable as ggml reads it, but the writer keeps to the format's
		// multiple of 8.
		if !errors.Is(err, ErrValue) {
			t.Fatalf("Marshal with alignment %d: %v", f.Alignment(), err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Marshal of a parsed file: %v", err)
	}
	g, err := OpenBytes("again", b)
	if err != nil {
		t.Fatalf("reading a rewritten file: %v", err)
	}
	sameContent(t, f, g)
}

func sameContent(t *testing.T, f, g *File) {
	t.Helper()
	a, b := f.KVs(), g.KVs()
	if len(a) != len(b) {
		t.Fatalf("%d keys, then %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Key != b[i].Key || !sameValue(a[i].Value.Any(), b[i].Value.Any()) {
			t.Fatalf("key %d: %q = %v, then %q = %v", i, a[i].Key, a[i].Value, b[i].Key, b[i].Value)
		}
	}
	ta, tb := f.Tensors(), g.Tensors()
	if len(ta) != len(tb) {
		t.Fatalf("%d tensors, then %d", len(ta), len(tb))
	}
	for i := range ta {
		if ta[i].Name != tb[i].Name || ta[i].Type != tb[i].Type || !reflect.DeepEqual(ta[i].Dims, tb[i].Dims) {
			t.Fatalf("tensor %d: %+v, then %+v", i, ta[i], tb[i])
		}
		da, _ := f.Data(ta[i].Name)
		db, _ := g.Data(tb[i].Name)
		if !bytes.Equal(da, db) {
			t.Fatalf("%q: data differs", ta[i].Name)
		}
	}
}

// sameValue is reflect.DeepEqual with NaNs compared by bits.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float32:
		y, ok := b.(float32)
		return ok && math.Float32bits(x) == math.Float32bits(y)
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case []float32:
		y, ok := b.([]float32)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				return false
			}
		}
		return true
	case []float64:
		y, ok := b.([]float64)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if math.Float64bits(x[i]) != math.Float64bits(y[i]) {
				return false
			}
		}
		return true
	case []Value:
		y, ok := b.([]Value)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i].Any(), y[i].Any()) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func FuzzOpenBytes(f *testing.F) {
	f.Add([]byte{})
	f.Add(newRaw(3, 0, 0).b)
	f.Add(newRaw(2, 1, 0).tensor("w", F32, 0, 2).data(8).b)
	f.Add(newRaw(3, 2, 0).tensor("a", F32, 0, 16).tensor("b", F32, 32, 16).data(96).b)
	f.Add(newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeArray)).u64(1).u32(uint32(TypeUint8)).u64(2).u8(1).u8(2).b)
	f.Add(newRaw(3, 1, 1).str(AlignmentKey).u32(uint32(TypeUint32)).u32(1).tensor("w", I8, 3, 5).u8(0).u8(1).u8(2).u8(3).u8(4).u8(5).u8(6).u8(7).b)
	// Dimensions whose product overflows before a later zero: no elements.
	f.Add(newRaw(3, 1, 0).tensor("1", F32, 0, 1<<62, 1<<62, 0).data(0).b)
	if b, err := Marshal(allValues(), testTensors()); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := OpenBytes("fuzz", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "fuzz" {
				t.Fatalf("error %T %v is not an *Error naming the file", err, err)
			}
			if bytes.ContainsRune([]byte(err.Error()), '\n') {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		checkParsed(t, file)
	})
}

// FuzzRoundTrip builds metadata and tensors from the input, writes them
// and reads them back.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("general.name"), []byte("jamba"), uint8(3), uint32(256), []byte{1, 2, 3, 4})
	f.Add([]byte("a.b"), []byte{0xff, 0xfe}, uint8(0), uint32(7), []byte{})
	f.Add([]byte(""), []byte("x"), uint8(14), uint32(32), []byte{9})
	f.Fuzz(func(t *testing.T, key, payload []byte, sel uint8, n uint32, fill []byte) {
		kvs := []KV{
			{string(key), payload2value(sel, payload)},
			{"s", ValueOf(string(payload))},
			{"nested", ValueOf([]Value{payload2value(12+sel%4, payload), ValueOf([]Value{})})},
		}
		types := []Type{F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K, I8, IQ2_XXS}
		typ := types[int(sel)%len(types)]
		bs := int64(typ.BlockSize())
		rowLen := (int64(n%512)/bs + 1) * bs
		info := TensorInfo{Name: "t" + string(key[:min(len(key), 8)]), Type: typ, Dims: []int64{rowLen, int64(n % 3)}}
		data := make([]byte, typ.RowBytes(info.NumElements()))
		for i := range data {
			if len(fill) > 0 {
				data[i] = fill[i%len(fill)]
			}
		}
		tensors := []Tensor{{TensorInfo: info, Data: data}, {TensorInfo: TensorInfo{Name: "zz", Type: F32}, Data: make([]byte, 4)}}
		b, err := Marshal(kvs, tensors)
		if err != nil {
			if len(key) == 0 || string(key) == "s" || string(key) == "nested" || len(info.Name) > MaxNameLen || info.Name == "zz" {
				return // rejected input: an empty or duplicate key or name
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			t.Fatalf("Marshal: %v", err)
		}
		file, err := OpenBytes("rt", b)
		if err != nil {
			t.Fatalf("reading what Marshal wrote: %v", err)
		}
		got := file.KVs()
		for i := range kvs {
			if got[i].Key != kvs[i].Key || !sameValue(got[i].Value.Any(), kvs[i].Value.Any()) {
				t.Fatalf("key %d: %q = %v, wrote %q = %v", i, got[i].Key, got[i].Value, kvs[i].Key, kvs[i].Value)
			}
		}
		for _, tt := range tensors {
			d, err := file.Data(tt.Name)
			if err != nil || !bytes.Equal(d, tt.Data) {
				t.Fatalf("%q: data differs (%v)", tt.Name, err)
			}
		}
	})
}

// payload2value makes a value of the type sel selects from payload bytes.
func payload2value(sel uint8, p []byte) Value {
	le := binary.LittleEndian
	get := func(n int) []byte {
		b := make([]byte, n)
		copy(b, p)
		return b
	}
	switch sel % 16 {
	case 0:
		return ValueOf(get(1)[0])
	case 1:
		return ValueOf(int8(get(1)[0]))
	case 2:
		return ValueOf(le.Uint16(get(2)))
	case 3:
		return ValueOf(int16(le.Uint16(get(2))))
	case 4:
		return ValueOf(le.Uint32(get(4)))
	case 5:
		return ValueOf(int32(le.Uint32(get(4))))
	case 6:
		return ValueOf(math.Float32frombits(le.Uint32(get(4))))
	case 7:
		return ValueOf(get(1)[0]&1 == 1)
	case 8:
		return ValueOf(string(p))
	case 9:
		return ValueOf(le.Uint64(get(8)))
	case 10:
		return ValueOf(int64(le.Uint64(get(8))))
	case 11:
		return ValueOf(math.Float64frombits(le.Uint64(get(8))))
	case 12:
		a := make([]float32, len(p)/4)
		for i := range a {
			a[i] = math.Float32frombits(le.Uint32(p[4*i:]))
		}
		return ValueOf(a)
	case 13:
		a := make([]string, len(p))
		for i := range a {
			a[i] = string(p[i:])
		}
		return ValueOf(a)
	case 14:
		return ValueOf(append([]uint8{}, p...))
	}
	a := make([]bool, len(p))
	for i := range a {
		a[i] = p[i]&1 == 1
	}
	return ValueOf(a)
}

// FuzzQuantize quantizes arbitrary float32 bit patterns (NaN, infinities,
// subnormals, huge values) to every type: no panic, the same bytes for the
// whole input as block by block, and blocks that dequantize.
func FuzzQuantize(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x7f, 1, 0, 0, 0, 0, 0, 0xc0, 0x7f})
	f.Add(bytes.Repeat([]byte{0x12, 0x34, 0x56, 0x78}, 300))
	f.Fuzz(func(t *testing.T, data []byte) {
		x := make([]float32, QK_K)
		for i := range x {
			if len(data) >= 4 {
				x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[(4*i)%(len(data)-len(data)%4):]))
			}
		}
		for _, typ := range []Type{F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K} {
			q := make([]byte, typ.RowBytes(QK_K))
			if err := Quantize(typ, x, q); err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			bs, bb := typ.BlockSize(), typ.BlockBytes()
			one := make([]byte, bb)
			for i := 0; i < QK_K/bs; i++ {
				if err := Quantize(typ, x[i*bs:(i+1)*bs], one); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(one, q[i*bb:(i+1)*bb]) {
					t.Fatalf("%s: block %d depends on its neighbours", typ, i)
				}
			}
			y := make([]float32, QK_K)
			if err := Dequantize(typ, q, y); err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
		}
	})
}
