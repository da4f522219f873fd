package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// raw builds GGUF bytes field by field, valid or not.
type raw struct{ b []byte }

func newRaw(version uint32, nTensors, nKV uint64) *raw {
	r := &raw{b: []byte(Magic)}
	return r.u32(version).u64(nTensors).u64(nKV)
}

func (r *raw) u8(v uint8) *raw   { r.b = append(r.b, v); return r }
func (r *raw) u32(v uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, v); return r }
func (r *raw) u64(v uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, v); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }

// tensor appends a tensor info.
func (r *raw) tensor(name string, typ Type, off uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(off)
}

// data pads to 32 and appends n bytes.
func (r *raw) data(n int) *raw {
	for len(r.b)%32 != 0 {
		r.b = append(r.b, 0)
	}
	r.b = append(r.b, make([]byte, n)...)
	return r
}

func TestBadFiles(t *testing.T) {
	long := strings.Repeat("x", 64)
	cases := []struct {
		name string
		data []byte
		err  error
		msg  string
	}{
		{"empty", nil, ErrMagic,
			`gguf: bad.gguf: not a GGUF file: 0 bytes`},
		{"magic", []byte("GGML\x03\x00\x00\x00"), ErrMagic,
			`gguf: bad.gguf: not a GGUF file: magic "GGML", want "GGUF"`},
		{"version 1", newRaw(1, 0, 0).b, ErrVersion,
			`gguf: bad.gguf: unsupported GGUF version: version 1 (counts of 32 bits) is obsolete; convert the file again`},
		{"big-endian", newRaw(0x03000000, 0, 0).b, ErrVersion,
			`gguf: bad.gguf: unsupported GGUF version: version field 0x03000000 looks byte-swapped (a big-endian file); only little-endian files are supported`},
		{"version 4", newRaw(4, 0, 0).b, ErrVersion,
			`gguf: bad.gguf: unsupported GGUF version: version 4 (supported: 2 and 3)`},
		{"truncated counts", newRaw(3, 0, 0).b[:14], ErrTruncated,
			`gguf: bad.gguf: truncated file: tensor count needs 8 bytes at offset 8, file has 14`},
		{"absurd tensor count", newRaw(3, 1<<60, 0).b, ErrCount,
			`gguf: bad.gguf: invalid count: tensor count is 1152921504606846976, but 8 bytes remain (at least 24 bytes each)`},
		{"absurd kv count", newRaw(3, 0, 1<<40).b, ErrCount,
			`gguf: bad.gguf: invalid count: key/value count is 1099511627776, but 0 bytes remain (at least 14 bytes each)`},
		{"absurd key length", newRaw(3, 0, 1).u64(1 << 40).u32(0).u8(0).u8(0).b, ErrString,
			`gguf: bad.gguf: invalid string: key 0 of 1099511627776 bytes (limit 1073741824)`},
		{"key past end", newRaw(3, 0, 1).u64(100).u32(0).u8(0).u8(0).b, ErrTruncated,
			`gguf: bad.gguf: truncated file: key 0 of 100 bytes at offset 32 runs past the end of the file (38 bytes)`},
		{"empty key", newRaw(3, 0, 1).str("").u32(uint32(TypeUint8)).u8(0).u8(0).u8(0).u8(0).b, ErrKey,
			`gguf: bad.gguf: invalid key: key 0 is empty`},
		{"duplicate key", newRaw(3, 0, 2).str("a.b").u32(uint32(TypeUint8)).u8(1).str("a.b").u32(uint32(TypeUint8)).u8(2).b, ErrKey,
			`gguf: bad.gguf: key "a.b": invalid key: duplicate key`},
		{"unknown value type", newRaw(3, 0, 1).str("k").u32(13).u8(0).b, ErrValueType,
			`gguf: bad.gguf: key "k": invalid value type: unknown value type 13`},
		{"bool 2", newRaw(3, 0, 1).str("k").u32(uint32(TypeBool)).u8(2).b, ErrValue,
			`gguf: bad.gguf: key "k": invalid value: bool byte 2 (want 0 or 1)`},
		{"truncated u64 value", newRaw(3, 0, 1).str("k").u32(uint32(TypeUint64)).u32(0).b, ErrTruncated,
			`gguf: bad.gguf: key "k": truncated file: u64 value needs 8 bytes at offset 37, file has 41`},
		{"string value past end", newRaw(3, 0, 1).str("k").u32(uint32(TypeString)).u64(5).u8('a').b, ErrTruncated,
			`gguf: bad.gguf: key "k": truncated file: string value of 5 bytes at offset 45 runs past the end of the file (46 bytes)`},
		{"absurd array length", newRaw(3, 0, 1).str("tokens").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(1 << 62).b, ErrCount,
			`gguf: bad.gguf: key "tokens": invalid count: array length is 4611686018427387904, but 0 bytes remain (at least 8 bytes each)`},
		{"array over the element limit", append(newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint8)).u64(MaxArrayLen+1).b, make([]byte, MaxArrayLen+1)...), ErrCount,
			`gguf: bad.gguf: key "k": invalid count: array of 16777217 elements (limit 16777216)`},
		{"array element past end", newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(2).str("ab").u64(9).b, ErrTruncated,
			`gguf: bad.gguf: key "k": element 1: truncated file: string element of 9 bytes at offset 67 runs past the end of the file (67 bytes)`},
		{"unknown element type", newRaw(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(99).u64(0).b, ErrValueType,
			`gguf: bad.gguf: key "k": invalid value type: unknown array element type 99`},
		{"arrays too deep", func() []byte {
			r := newRaw(3, 0, 1).str("k").u32(uint32(TypeArray))
			for i := 0; i < 9; i++ {
				r.u32(uint32(TypeArray)).u64(1)
			}
			return r.u32(uint32(TypeUint8)).u64(0).b
		}(), ErrValueType,
			`gguf: bad.gguf: key "k": element 0: element 0: element 0: element 0: element 0: element 0: element 0: element 0: invalid value type: arrays nested more than 8 deep`},
		{"alignment u64", newRaw(3, 0, 1).str(AlignmentKey).u32(uint32(TypeUint64)).u64(32).b, ErrValueType,
			`gguf: bad.gguf: key "general.alignment": invalid value type: u64, want u32`},
		{"alignment 48", newRaw(3, 0, 1).str(AlignmentKey).u32(uint32(TypeUint32)).u32(48).b, ErrValue,
			`gguf: bad.gguf: key "general.alignment": invalid value: alignment 48 is not a power of two`},
		{"alignment 0", newRaw(3, 0, 1).str(AlignmentKey).u32(uint32(TypeUint32)).u32(0).b, ErrValue,
			`gguf: bad.gguf: key "general.alignment": invalid value: alignment 0 is not a power of two`},
		{"empty tensor name", newRaw(3, 1, 0).tensor("", F32, 0, 1).data(4).b, ErrTensorName,
			`gguf: bad.gguf: invalid tensor name: tensor 0 has an empty name`},
		{"tensor name too long", newRaw(3, 1, 0).tensor(long, F32, 0, 1).data(4).b, ErrTensorName,
			`gguf: bad.gguf: tensor "` + long + `": invalid tensor name: name of 64 bytes (ggml's limit is 63)`},
		{"duplicate tensor", newRaw(3, 2, 0).tensor("w", F32, 0, 8).tensor("w", F32, 32, 8).data(64).b, ErrTensorName,
			`gguf: bad.gguf: tensor "w": invalid tensor name: duplicate tensor name`},
		{"five dims", newRaw(3, 1, 0).tensor("w", F32, 0, 1, 1, 1, 1, 1).data(4).b, ErrShape,
			`gguf: bad.gguf: tensor "w": invalid shape: 5 dimensions (limit 4)`},
		{"negative dim", newRaw(3, 1, 0).tensor("w", F32, 0, 1<<63).data(4).b, ErrShape,
			`gguf: bad.gguf: tensor "w": invalid shape: dimension 0 is 9223372036854775808`},
		{"element count overflow", newRaw(3, 1, 0).tensor("w", F32, 0, 1<<32, 1<<32).data(4).b, ErrShape,
			`gguf: bad.gguf: tensor "w": invalid shape: [4294967296 4294967296] has more than 2^63 elements`},
		{"byte size overflow", newRaw(3, 1, 0).tensor("w", F32, 0, 1<<31, 1<<31).data(4).b, ErrShape,
			`gguf: bad.gguf: tensor "w": invalid shape: F32 [2147483648 2147483648] is too large`},
		{"removed type id", newRaw(3, 1, 0).tensor("w", Type(4), 0, 32).data(32).b, ErrType,
			`gguf: bad.gguf: tensor "w": unsupported tensor type: unknown ggml type id 4`},
		{"unknown type id", newRaw(3, 1, 0).tensor("w", Type(43), 0, 32).data(32).b, ErrType,
			`gguf: bad.gguf: tensor "w": unsupported tensor type: unknown ggml type id 43`},
		{"row not a block multiple", newRaw(3, 1, 0).tensor("w", Q4_K, 0, 100, 2).data(288).b, ErrShape,
			`gguf: bad.gguf: tensor "w": invalid shape: Q4_K rows of 100 elements are not a multiple of the block size 256`},
		{"misaligned offset", newRaw(3, 1, 0).tensor("w", F32, 4, 1).data(64).b, ErrOffset,
			`gguf: bad.gguf: tensor "w": invalid tensor offset: offset 4 is not a multiple of the alignment 32`},
		{"offset past end", newRaw(3, 1, 0).tensor("w", F32, 1<<40, 1).data(64).b, ErrTruncated,
			`gguf: bad.gguf: tensor "w": truncated file: F32 [1] needs bytes [1099511627776, 1099511627780) of the data section, which has 64 (file of 128 bytes)`},
		{"data truncated", newRaw(3, 1, 0).tensor("w", Q8_0, 0, 32, 4).data(100).b, ErrTruncated,
			`gguf: bad.gguf: tensor "w": truncated file: Q8_0 [32 4] needs bytes [0, 136) of the data section, which has 100 (file of 196 bytes)`},
		{"overlap", newRaw(3, 2, 0).tensor("a", F32, 0, 16).tensor("b", F32, 32, 16).data(96).b, ErrOffset,
			`gguf: bad.gguf: tensor "b": invalid tensor offset: bytes [32, 96) overlap tensor "a" at [0, 64)`},
		{"overlap across an empty tensor", newRaw(3, 3, 0).tensor("a", F32, 0, 64).tensor("z", F32, 32, 0).tensor("b", F32, 64, 8).data(256).b, ErrOffset,
			`gguf: bad.gguf: tensor "b": invalid tensor offset: bytes [64, 96) overlap tensor "a" at [0, 256)`},
		{"header padding past end", newRaw(3, 1, 0).tensor("w", F32, 0, 0).b, ErrTruncated,
			`gguf: bad.gguf: truncated file: data section starts at 64 (aligned to 32), file has 57 bytes`},
	}
	for _, c := range cases {
		f, err := OpenBytes("bad.gguf", c.data)
		if err == nil {
			f.Close()
			t.Errorf("%s: opened without error", c.name)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.File != "bad.gguf" {
			t.Errorf("%s: error %T %v does not name the file", c.name, err, err)
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%s: error %v is not %v", c.name, err, c.err)
		}
		if got := err.Error(); got != c.msg {
			t.Errorf("%s:\n got  %s\n want %s", c.name, got, c.msg)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: message spans lines", c.name)
		}
	}
}

// TestGoodEdgeFiles opens valid files at the edges of the rules.
func TestGoodEdgeFiles(t *testing.T) {
	cases := []struct {
		name string
		data []byte
	}{
		{"no tensors, no keys", newRaw(3, 0, 0).b},
		{"version 2", newRaw(2, 1, 0).tensor("w", F32, 0, 2).data(8).b},
		{"zero-element tensors share an offset", newRaw(3, 3, 0).tensor("a", F32, 0, 0).tensor("b", Q4_K, 0, 256, 0).tensor("c", F32, 0, 1).data(4).b},
		{"offsets out of order with a gap", newRaw(3, 2, 0).tensor("a", F32, 64, 8).tensor("b", F32, 0, 8).data(96).b},
		{"63-byte name", newRaw(3, 1, 0).tensor(strings.Repeat("n", 63), F32, 0, 1).data(4).b},
		{"IQ type is read", newRaw(3, 1, 0).tensor("w", IQ4_XS, 0, 256).data(136).b},
		{"trailing bytes after the data", newRaw(3, 1, 0).tensor("w", F32, 0, 1).data(100).b},
		{"huge dimensions before a zero", newRaw(3, 1, 0).tensor("w", F32, 0, 1<<62, 1<<62, 0).data(0).b},
		{"alignment 1", newRaw(3, 1, 1).str(AlignmentKey).u32(uint32(TypeUint32)).u32(1).tensor("w", I8, 3, 5).u8(0).u8(1).u8(2).u8(3).u8(4).u8(5).u8(6).u8(7).b},
	}
	for _, c := range cases {
		f, err := OpenBytes(c.name, c.data)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for _, info := range f.Tensors() {
			data, err := f.Data(info.Name)
			if err != nil || int64(len(data)) != info.Size {
				t.Errorf("%s: %s: %d bytes, %v", c.name, info.Name, len(data), err)
			}
		}
		// What the reader accepts, the writer writes back.
		t.Run(c.name, func(t *testing.T) { checkParsed(t, f) })
	}
}

func TestOpenErrors(t *testing.T) {
	for _, open := range []struct {
		name string
		f    func(string) (*File, error)
	}{{"Open", Open}, {"ReadFile", ReadFile}} {
		t.Run(open.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := open.f(dir + "/missing.gguf")
			if err == nil || err.Error() != "gguf: "+dir+"/missing.gguf: open: no such file or directory" || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file: %v", err)
			}
			if _, err := open.f(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("directory: %v", err)
			}
			// A file cut inside its data section is refused when mapped or read, too.
			b := newRaw(3, 1, 0).tensor("w", F32, 0, 64).data(256).b
			if err := os.WriteFile(dir+"/cut.gguf", b[:len(b)-10], 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := open.f(dir + "/cut.gguf"); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), `cut.gguf: tensor "w": truncated file`) {
				t.Errorf("cut file: %v", err)
			}
			if err := os.WriteFile(dir+"/empty.gguf", nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := open.f(dir + "/empty.gguf"); err == nil || !strings.Contains(err.Error(), "empty.gguf") {
				t.Errorf("empty file: %v", err)
			}
		})
	}
}

// TestReadFile checks that a file read into memory parses as the mapped
// one does: the same tensors with the same bytes, at the same alignment.
func TestReadFile(t *testing.T) {
	path := filepath.Join("testdata", "types.gguf")
	mapped, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer mapped.Close()
	read, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(mapped.Tensors(), read.Tensors()) || len(mapped.Tensors()) == 0 {
		t.Fatalf("tensors differ: %v and %v", mapped.Tensors(), read.Tensors())
	}
	for _, ti := range read.Tensors() {
		a, err1 := mapped.Data(ti.Name)
		b, err2 := read.Data(ti.Name)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v, %v", ti.Name, err1, err2)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: the bytes read differ from the mapped ones", ti.Name)
		}
		if len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%32 != uintptr(unsafe.Pointer(&a[0]))%32 {
			t.Errorf("%s: read at another alignment than mapped", ti.Name)
		}
	}
	if err := read.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := read.Data(read.Tensors()[0].Name); err == nil {
		t.Error("Data after Close: no error")
	}
}
