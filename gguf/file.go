package gguf

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
)

const maxInt = int(^uint(0) >> 1)

// File is one parsed GGUF file. Its methods may be called from several
// goroutines at once, except Close.
type File struct {
	name   string
	data   []byte // the whole file
	h      *header
	unmap  func() error // releases data; nil for OpenBytes
	closed bool
}

// OpenBytes parses a GGUF file held in memory. The data is not copied:
// tensor bytes returned by the File alias it. name is used in error
// messages.
func OpenBytes(name string, data []byte) (*File, error) {
	h, err := parseHeader(data)
	if err != nil {
		err.File = name
		return nil, err
	}
	return &File{name: name, data: data, h: h}, nil
}

// Open maps the named file read-only (or reads it into memory on platforms
// without mmap) and parses it. Close releases the mapping.
func Open(path string) (*File, error) { return open(path, mapFile) }

// ReadFile reads the named file into memory the process allocates (an
// anonymous mapping where Open would map the file, so tensors keep the
// file's alignment) and parses it: llama.cpp's --no-mmap. Loading takes
// the time of reading the whole file, and the system's page cache may keep
// a second copy until it needs the memory; in exchange the weights no
// longer depend on the page cache (on some virtual machines the process's
// own memory also reads faster). Close frees the memory.
func ReadFile(path string) (*File, error) { return open(path, readFile) }

func open(path string, load func(string) ([]byte, func() error, error)) (*File, error) {
	data, unmap, err := load(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) { // the path is already in the message
			err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
		}
		return nil, &Error{File: path, Err: err}
	}
	f, err := OpenBytes(path, data)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// Close releases the file's memory. Tensor bytes obtained from the file
// must not be used afterwards: with a mapped file, touching them crashes
// the process. Close is idempotent.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if f.unmap != nil {
		err := f.unmap()
		f.unmap = nil
		if err != nil {
			return &Error{File: f.name, Err: err}
		}
	}
	return nil
}

func (f *File) errKey(key string, err error) error { return &Error{File: f.name, Key: key, Err: err} }

func (f *File) errTensor(name string, err error) error {
	return &Error{File: f.name, Tensor: name, Err: err}
}

// Name returns the name the file was opened with.
func (f *File) Name() string { return f.name }

// Version returns the GGUF version (2 or 3).
func (f *File) Version() uint32 { return f.h.version }

// Alignment returns the data alignment (general.alignment, default 32).
func (f *File) Alignment() int64 { return f.h.alignment }

// DataOffset returns the file offset where the data section starts.
func (f *File) DataOffset() int64 { return f.h.dataOffset }

// Size returns the file's size in bytes (0 after Close).
func (f *File) Size() int64 { return int64(len(f.data)) }

// KVs returns the metadata in file order. The values are shared with the
// File: do not modify slices inside them.
func (f *File) KVs() []KV { return slices.Clone(f.h.kvs) }

// Keys returns the metadata keys in file order.
func (f *File) Keys() []string {
	keys := make([]string, len(f.h.kvs))
	for i, kv := range f.h.kvs {
		keys[i] = kv.Key
	}
	return keys
}

// Has reports whether the metadata has key.
func (f *File) Has(key string) bool {
	_, ok := f.h.keys[key]
	return ok
}

// Value returns the value of key and whether it exists.
func (f *File) Value(key string) (Value, bool) {
	i, ok := f.h.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.h.kvs[i].Value, true
}

func (f *File) lookup(key string) (Value, error) {
	v, ok := f.Value(key)
	if !ok {
		return Value{}, f.errKey(key, ErrNotFound)
	}
	return v, nil
}

func (f *File) wrongType(key string, v Value, want string) error {
	return f.errKey(key, fmt.Errorf("%w: %s, want %s", ErrValueType, v.TypeName(), want))
}

// String returns the string value of key.
func (f *File) String(key string) (string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return "", err
	}
	s, ok := v.v.(string)
	if !ok {
		return "", f.wrongType(key, v, "string")
	}
	return s, nil
}

// Int returns the value of key, an integer of any width and signedness.
func (f *File) Int(key string) (int64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	n, ok := v.Int()
	if !ok {
		return 0, f.wrongType(key, v, "an integer below 2^63")
	}
	return n, nil
}

// Uint32 returns the value of key, an integer of any type in [0, 2^32).
func (f *File) Uint32(key string) (uint32, error) {
	n, err := f.Int(key)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > 1<<32-1 {
		return 0, f.errKey(key, fmt.Errorf("%w: %d is outside [0, 2^32)", ErrValue, n))
	}
	return uint32(n), nil
}

// Float returns the value of key, an f32 or f64 (as float64; an f32
// converts exactly).
func (f *File) Float(key string) (float64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	x, ok := v.Float()
	if !ok {
		return 0, f.wrongType(key, v, "f32 or f64")
	}
	return x, nil
}

// Bool returns the bool value of key.
func (f *File) Bool(key string) (bool, error) {
	v, err := f.lookup(key)
	if err != nil {
		return false, err
	}
	b, ok := v.v.(bool)
	if !ok {
		return false, f.wrongType(key, v, "bool")
	}
	return b, nil
}

// Strings returns the array of strings of key. The slice is shared with
// the File: do not modify it.
func (f *File) Strings(key string) ([]string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	a, ok := v.v.([]string)
	if !ok {
		return nil, f.wrongType(key, v, "array[string]")
	}
	return a, nil
}

// Ints returns the array of integers (of any width) of key as a new slice.
func (f *File) Ints(key string) ([]int64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	a, ok := v.Ints()
	if !ok {
		return nil, f.wrongType(key, v, "array of integers")
	}
	return a, nil
}

// PerLayer returns the value of a per-layer key for n layers, as
// llama.cpp's loader reads such keys (get_key_or_arr): an integer scalar
// applies to every layer, an array of integers must have exactly n
// elements.
func (f *File) PerLayer(key string, n int) ([]int64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	if x, ok := v.Int(); ok {
		out := make([]int64, n)
		for i := range out {
			out[i] = x
		}
		return out, nil
	}
	a, ok := v.Ints()
	if !ok {
		return nil, f.wrongType(key, v, "an integer or an array of integers")
	}
	if len(a) != n {
		return nil, f.errKey(key, fmt.Errorf("%w: %d elements for %d layers", ErrValue, len(a), n))
	}
	return a, nil
}

// Float32s returns the array of key as a new []float32: f32 elements as
// they are, f64 elements rounded to nearest.
func (f *File) Float32s(key string) ([]float32, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	switch a := v.v.(type) {
	case []float32:
		return slices.Clone(a), nil
	case []float64:
		out := make([]float32, len(a))
		for i, x := range a {
			out[i] = float32(x)
		}
		return out, nil
	}
	return nil, f.wrongType(key, v, "array[f32] or array[f64]")
}

// Len returns the number of tensors.
func (f *File) Len() int { return len(f.h.tensors) }

// Tensors returns the tensor infos in file order.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.h.tensors))
	for i, t := range f.h.tensors {
		out[i] = t.clone()
	}
	return out
}

// Names returns the tensor names in file order.
func (f *File) Names() []string {
	out := make([]string, len(f.h.tensors))
	for i, t := range f.h.tensors {
		out[i] = t.Name
	}
	return out
}

// Info returns the description of the named tensor and whether it exists.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.h.names[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.h.tensors[i].clone(), true
}

// Data returns the raw bytes of the named tensor (blocks for a quantized
// type, little-endian elements otherwise). They alias the file's memory
// (read-only for a mapped file) and stay valid until Close.
func (f *File) Data(name string) ([]byte, error) {
	if f.closed {
		return nil, f.errTensor(name, ErrClosed)
	}
	i, ok := f.h.names[name]
	if !ok {
		return nil, f.errTensor(name, ErrNotFound)
	}
	t := f.h.tensors[i]
	begin, end := f.h.dataOffset+t.Offset, f.h.dataOffset+t.Offset+t.Size
	// Checked against len(f.data) when the file was parsed.
	if begin < 0 || end > int64(len(f.data)) || begin > end {
		return nil, f.errTensor(name, fmt.Errorf("%w: [%d, %d)", ErrOffset, begin, end))
	}
	return f.data[begin:end:end], nil
}

// Float32 returns the named tensor converted to a new []float32 of
// NumElements values (dequantized with ggml's reference dequantizers for
// the quantized types).
func (f *File) Float32(name string) ([]float32, error) {
	i, ok := f.h.names[name]
	if !ok {
		return nil, f.errTensor(name, ErrNotFound)
	}
	t := f.h.tensors[i]
	if !t.Type.CanDequantize() {
		return nil, f.errTensor(name, fmt.Errorf("%w: cannot convert %s to float32", ErrType, t.Type))
	}
	data, err := f.Data(name)
	if err != nil {
		return nil, err
	}
	n := t.NumElements()
	if n > int64(maxInt) {
		return nil, f.errTensor(name, fmt.Errorf("%w: %d elements", ErrShape, n))
	}
	out := make([]float32, n)
	if err := Dequantize(t.Type, data, out); err != nil {
		return nil, f.errTensor(name, err)
	}
	return out, nil
}
