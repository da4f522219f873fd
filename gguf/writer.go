package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/jamba-go/jamba/internal/atomicfile"
)

// Version is the GGUF version the writer produces.
const Version = 3

// Tensor is a tensor description with its bytes, for Marshal and
// WriteFile.
type Tensor struct {
	TensorInfo
	Data []byte
}

// Writer streams a GGUF v3 file, one tensor at a time, so that a large
// model never needs to be in memory at once. The header is computed from
// the metadata and tensor descriptions given up front; tensors must then be
// written in that order. The layout is ggml's: every tensor starts at a
// multiple of the alignment and is followed by zero padding to the next
// multiple. Errors are sticky: after the first one every call returns it.
type Writer struct {
	path    string // final path; "" for NewWriter
	file    *atomicfile.File
	bw      *bufio.Writer
	tensors []TensorInfo
	align   int64
	next    int
	buf     []byte
	err     error
	done    bool
}

// Create starts a GGUF file at path with the given metadata (written in
// order) and tensors (their Offset and Size are ignored and computed). A
// general.alignment key, if present, must be a u32 power of two of at
// least 8 and sets the alignment (default 32).
//
// The data goes to a temporary file beside path, which Close syncs and
// renames to path once every tensor has been written, so an interrupted
// write never leaves a partial file at path. A symbolic link stays a link
// (its target is written), a device or pipe (/dev/stdout) is written
// through, and a folder or socket is refused, as for every output file of
// the project (package internal/atomicfile).
func Create(path string, kvs []KV, tensors []TensorInfo) (*Writer, error) {
	hdr, infos, align, err := buildHeader(kvs, tensors)
	if err != nil {
		err.File = path
		return nil, err
	}
	f, ferr := atomicfile.Create(path)
	if ferr != nil {
		return nil, &Error{File: path, Err: ferr}
	}
	w := &Writer{path: path, file: f, bw: bufio.NewWriterSize(f, 1<<20), tensors: infos, align: align}
	if _, err := w.bw.Write(hdr); err != nil {
		w.abort(err)
		return nil, w.err
	}
	return w, nil
}

// NewWriter is like Create but streams the file to dst. Close flushes but
// does not close dst.
func NewWriter(dst io.Writer, kvs []KV, tensors []TensorInfo) (*Writer, error) {
	hdr, infos, align, err := buildHeader(kvs, tensors)
	if err != nil {
		return nil, err
	}
	w := &Writer{bw: bufio.NewWriterSize(dst, 1<<16), tensors: infos, align: align}
	if _, err := w.bw.Write(hdr); err != nil {
		return nil, &Error{Err: err}
	}
	return w, nil
}

// abort records err, and for a file writer removes the temporary file.
func (w *Writer) abort(err error) {
	if w.err != nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		err = &Error{File: w.path, Err: err}
	}
	w.err = err
	if w.file != nil {
		w.file.Abort()
		w.file = nil
	}
}

// Abort stops the write: a file writer removes its temporary file and
// leaves path untouched. Later calls return an error.
func (w *Writer) Abort() {
	if !w.done {
		w.abort(&Error{File: w.path, Err: ErrClosed})
	}
}

// Tensors returns the tensors to be written, with their computed offsets
// and sizes.
func (w *Writer) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(w.tensors))
	for i, t := range w.tensors {
		out[i] = t.clone()
	}
	return out
}

func (w *Writer) expect(name string) (TensorInfo, error) {
	if w.err != nil {
		return TensorInfo{}, w.err
	}
	if w.done {
		return TensorInfo{}, &Error{File: w.path, Tensor: name, Err: ErrClosed}
	}
	if w.next >= len(w.tensors) {
		return TensorInfo{}, &Error{File: w.path, Tensor: name, Err: fmt.Errorf("%w: all %d tensors are already written", ErrWriteOrder, len(w.tensors))}
	}
	t := w.tensors[w.next]
	if t.Name != name {
		return TensorInfo{}, &Error{File: w.path, Tensor: name, Err: fmt.Errorf("%w: expected %q next", ErrWriteOrder, t.Name)}
	}
	return t, nil
}

// Write writes the next tensor's raw bytes (blocks or little-endian
// elements of its type).
func (w *Writer) Write(name string, data []byte) error {
	t, err := w.expect(name)
	if err != nil {
		return err
	}
	if int64(len(data)) != t.Size {
		return &Error{File: w.path, Tensor: name, Err: fmt.Errorf("%w: %s %v needs %d bytes, got %d", ErrSize, t.Type, t.Dims, t.Size, len(data))}
	}
	if _, err := w.bw.Write(data); err != nil {
		w.abort(err)
		return w.err
	}
	if pad := alignUp(t.Size, w.align) - t.Size; pad > 0 {
		if _, err := w.bw.Write(make([]byte, pad)); err != nil {
			w.abort(err)
			return w.err
		}
	}
	w.next++
	return nil
}

// WriteFloat32 converts v to the next tensor's type with Quantize (ggml's
// reference rounding) and writes it.
func (w *Writer) WriteFloat32(name string, v []float32) error {
	t, err := w.expect(name)
	if err != nil {
		return err
	}
	if int64(len(v)) != t.NumElements() {
		return &Error{File: w.path, Tensor: name, Err: fmt.Errorf("%w: %v needs %d values, got %d", ErrSize, t.Dims, t.NumElements(), len(v))}
	}
	if int64(cap(w.buf)) < t.Size {
		w.buf = make([]byte, t.Size)
	}
	buf := w.buf[:t.Size]
	if err := Quantize(t.Type, v, buf); err != nil {
		return &Error{File: w.path, Tensor: name, Err: err}
	}
	return w.Write(name, buf)
}

// Close finishes the file. It fails if a tensor was not written; a file
// writer then removes its temporary file and leaves path untouched.
// Otherwise it flushes, syncs and renames the temporary file to path.
func (w *Writer) Close() error {
	if w.done || w.err != nil {
		return w.err
	}
	if w.next < len(w.tensors) {
		w.abort(&Error{File: w.path, Tensor: w.tensors[w.next].Name, Err: fmt.Errorf("%w: not written before Close (%d of %d written)", ErrWriteOrder, w.next, len(w.tensors))})
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.abort(err)
		return w.err
	}
	if w.file != nil {
		err := w.file.Commit()
		w.file = nil
		if err != nil {
			w.err = &Error{File: w.path, Err: err}
			return w.err
		}
	}
	w.done = true
	return nil
}

// WriteFile writes a whole GGUF file atomically (see Create).
func WriteFile(path string, kvs []KV, tensors []Tensor) error {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.TensorInfo
	}
	w, err := Create(path, kvs, infos)
	if err != nil {
		return err
	}
	for _, t := range tensors {
		if err := w.Write(t.Name, t.Data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// Marshal returns a whole GGUF file in memory.
func Marshal(kvs []KV, tensors []Tensor) ([]byte, error) {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		infos[i] = t.TensorInfo
	}
	var b bytes.Buffer
	w, err := NewWriter(&b, kvs, infos)
	if err != nil {
		return nil, err
	}
	for _, t := range tensors {
		if err := w.Write(t.Name, t.Data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// encoder appends little-endian values.
type encoder struct{ b []byte }

func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.b = append(e.b, s...)
}

// buildHeader validates the metadata and tensors, computes the offsets
// and returns the header padded to the alignment.
func buildHeader(kvs []KV, tensors []TensorInfo) ([]byte, []TensorInfo, int64, *Error) {
	e := &encoder{}
	e.b = append(e.b, Magic...)
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	align := int64(DefaultAlignment)
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		switch {
		case kv.Key == "":
			return nil, nil, 0, &Error{Err: fmt.Errorf("%w: empty key", ErrKey)}
		case len(kv.Key) > MaxKeyLen:
			return nil, nil, 0, &Error{Key: kv.Key[:64] + "...", Err: fmt.Errorf("%w: key of %d bytes (limit %d)", ErrKey, len(kv.Key), MaxKeyLen)}
		case seen[kv.Key]:
			return nil, nil, 0, &Error{Key: kv.Key, Err: fmt.Errorf("%w: duplicate key", ErrKey)}
		}
		seen[kv.Key] = true
		if kv.Key == AlignmentKey {
			a, ok := kv.Value.v.(uint32)
			if !ok {
				return nil, nil, 0, &Error{Key: kv.Key, Err: fmt.Errorf("%w: %s, want u32", ErrValueType, kv.Value.TypeName())}
			}
			if a < 8 || a&(a-1) != 0 {
				return nil, nil, 0, &Error{Key: kv.Key, Err: fmt.Errorf("%w: alignment %d is not a power of two of at least 8 (the format asks for a multiple of 8)", ErrValue, a)}
			}
			align = int64(a)
		}
		e.str(kv.Key)
		if err := e.value(kv.Value, 0, true); err != nil {
			return nil, nil, 0, &Error{Key: kv.Key, Err: err}
		}
	}
	infos := make([]TensorInfo, len(tensors))
	names := make(map[string]bool, len(tensors))
	offset := int64(0)
	for i, t := range tensors {
		t = t.clone()
		fail := func(err error) ([]byte, []TensorInfo, int64, *Error) {
			return nil, nil, 0, &Error{Tensor: t.Name, Err: err}
		}
		switch {
		case t.Name == "":
			return fail(fmt.Errorf("%w: tensor %d has an empty name", ErrTensorName, i))
		case len(t.Name) > MaxNameLen:
			return fail(fmt.Errorf("%w: name of %d bytes (ggml's limit is %d)", ErrTensorName, len(t.Name), MaxNameLen))
		case names[t.Name]:
			return fail(fmt.Errorf("%w: duplicate tensor name", ErrTensorName))
		case !t.Type.Known():
			return fail(fmt.Errorf("%w: unknown ggml type id %d", ErrType, uint32(t.Type)))
		case len(t.Dims) > MaxDims:
			return fail(fmt.Errorf("%w: %d dimensions (limit %d)", ErrShape, len(t.Dims), MaxDims))
		}
		names[t.Name] = true
		if slices.IndexFunc(t.Dims, func(d int64) bool { return d < 0 }) >= 0 {
			return fail(fmt.Errorf("%w: negative dimension in %v", ErrShape, t.Dims))
		}
		n, ok := elements(t.Dims)
		if !ok {
			return fail(fmt.Errorf("%w: %v has more than 2^63 elements", ErrShape, t.Dims))
		}
		if t.RowLen()%int64(t.Type.BlockSize()) != 0 {
			return fail(fmt.Errorf("%w: %s rows of %d elements are not a multiple of the block size %d", ErrShape, t.Type, t.RowLen(), t.Type.BlockSize()))
		}
		t.Size = t.Type.RowBytes(n)
		if t.Size < 0 || t.Size > math.MaxInt64-offset-align {
			return fail(fmt.Errorf("%w: %s %v is too large", ErrShape, t.Type, t.Dims))
		}
		t.Offset = offset
		offset += alignUp(t.Size, align)
		infos[i] = t
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(uint64(d))
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(t.Offset))
	}
	// ggml pads the header to the alignment even when no tensor follows.
	if pad := alignUp(int64(len(e.b)), align) - int64(len(e.b)); pad > 0 {
		e.b = append(e.b, make([]byte, pad)...)
	}
	return e.b, infos, align, nil
}

// value appends v; withType says whether to write its type first (not for
// the elements of a typed array).
func (e *encoder) value(v Value, depth int, withType bool) error {
	t := v.Type()
	if t.size() < 0 {
		return fmt.Errorf("%w: Go type %T", ErrValueType, v.v)
	}
	if withType {
		e.u32(uint32(t))
	}
	le := binary.LittleEndian
	switch x := v.v.(type) {
	case uint8:
		e.b = append(e.b, x)
	case int8:
		e.b = append(e.b, byte(x))
	case uint16:
		e.b = le.AppendUint16(e.b, x)
	case int16:
		e.b = le.AppendUint16(e.b, uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case bool:
		if x {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
	case string:
		if len(x) > maxStringLen {
			return fmt.Errorf("%w: string of %d bytes (limit %d)", ErrString, len(x), maxStringLen)
		}
		e.str(x)
	default:
		if depth >= maxArrayDepth {
			return fmt.Errorf("%w: arrays nested more than %d deep", ErrValueType, maxArrayDepth)
		}
		if v.Len() > MaxArrayLen {
			return fmt.Errorf("%w: array of %d elements (limit %d)", ErrCount, v.Len(), MaxArrayLen)
		}
		e.u32(uint32(v.ElemType()))
		e.u64(uint64(v.Len()))
		switch a := v.v.(type) {
		case []uint8:
			e.b = append(e.b, a...)
		case []int8:
			for _, y := range a {
				e.b = append(e.b, byte(y))
			}
		case []uint16:
			for _, y := range a {
				e.b = le.AppendUint16(e.b, y)
			}
		case []int16:
			for _, y := range a {
				e.b = le.AppendUint16(e.b, uint16(y))
			}
		case []uint32:
			for _, y := range a {
				e.u32(y)
			}
		case []int32:
			for _, y := range a {
				e.u32(uint32(y))
			}
		case []float32:
			for _, y := range a {
				e.u32(math.Float32bits(y))
			}
		case []uint64:
			for _, y := range a {
				e.u64(y)
			}
		case []int64:
			for _, y := range a {
				e.u64(uint64(y))
			}
		case []float64:
			for _, y := range a {
				e.u64(math.Float64bits(y))
			}
		case []bool:
			for _, y := range a {
				if y {
					e.b = append(e.b, 1)
				} else {
					e.b = append(e.b, 0)
				}
			}
		case []string:
			for i, y := range a {
				if len(y) > maxStringLen {
					return fmt.Errorf("%w: element %d: string of %d bytes (limit %d)", ErrString, i, len(y), maxStringLen)
				}
				e.str(y)
			}
		case []Value:
			for i, y := range a {
				if y.Type() != TypeArray {
					return fmt.Errorf("%w: element %d of an array of arrays is a %s", ErrValueType, i, y.TypeName())
				}
				if err := e.value(y, depth+1, false); err != nil {
					return fmt.Errorf("element %d: %w", i, err)
				}
			}
		}
	}
	return nil
}
