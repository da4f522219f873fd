// Package safetensors reads and writes the safetensors checkpoint format:
// an 8-byte little-endian header length N, N bytes of JSON header mapping
// tensor names to dtype, shape and data offsets (plus an optional
// "__metadata__" map of strings), then the tensor bytes.
//
// Files are untrusted input. Open and OpenBytes validate the whole header
// before anything is sliced: sizes, offsets, duplicate keys, dtypes and the
// exact tiling of the data section by the tensors. Errors are *Error values
// wrapping a sentinel such as ErrInvalidOffsets.
//
// Open maps the file read-only where the platform allows it, so tensor data
// is not copied and pages are loaded on first use. The mapping stays valid
// until Close. If the file is truncated or rewritten while mapped, reading
// the affected pages kills the process (SIGBUS); replace checkpoint files by
// writing a new file and renaming it over the old one, as Writer does.
//
// A Set groups the files of one checkpoint: a single model.safetensors, or
// the shards listed by model.safetensors.index.json.
package safetensors

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
)

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are the tensor's byte offsets within the data section
	// (which starts after the header), End exclusive.
	Begin, End int64
}

// NumElements returns the number of elements, the product of Shape (1 for
// a rank-0 scalar). It returns -1 if a dimension is negative or the product
// overflows; infos read by this package never do.
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return -1
		}
		if n != 0 && d > maxInt/n {
			return -1
		}
		n *= d
	}
	return n
}

// ByteSize returns NumElements times the dtype size, or -1 if that
// overflows or the dtype or shape is invalid.
func (t TensorInfo) ByteSize() int64 {
	n, ok := byteSize(t.DType, t.Shape)
	if !ok {
		return -1
	}
	return n
}

const maxInt = int(^uint(0) >> 1)

func (t TensorInfo) clone() TensorInfo {
	t.Shape = slices.Clone(t.Shape)
	if t.Shape == nil {
		t.Shape = []int{}
	}
	return t
}

// File is one parsed safetensors file. Its methods may be called from
// several goroutines at once, except Close.
type File struct {
	name   string
	data   []byte // the whole file
	body   []byte // the data section
	hdr    *header
	unmap  func() error // releases data; nil for OpenBytes
	closed bool
}

// OpenBytes parses a safetensors file held in memory. The data is not
// copied: tensors returned by the File alias it, and the caller must not
// modify it while they are in use. name is used in error messages.
func OpenBytes(name string, data []byte) (*File, error) {
	h, body, err := parseFile(name, data)
	if err != nil {
		return nil, err
	}
	return &File{name: name, data: data, body: body, hdr: h}, nil
}

// Open maps the named file read-only (or reads it into memory on platforms
// without mmap) and parses it. Close releases the mapping.
func Open(path string) (*File, error) {
	data, unmap, err := mapFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) { // the path is already in the message
			err = fmt.Errorf("%s: %w", pe.Op, pe.Err)
		}
		return nil, newError(path, "", err)
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

// Close releases the file's memory. Tensor data obtained from the file must
// not be used afterwards: with a mapped file, touching it crashes the
// process. Close is idempotent.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.data, f.body = nil, nil
	if f.unmap != nil {
		err := f.unmap()
		f.unmap = nil
		if err != nil {
			return newError(f.name, "", err)
		}
	}
	return nil
}

// Name returns the name the file was opened with.
func (f *File) Name() string { return f.name }

// Names returns the tensor names, sorted. The caller may modify the slice.
func (f *File) Names() []string { return slices.Clone(f.hdr.names) }

// Len returns the number of tensors.
func (f *File) Len() int { return len(f.hdr.names) }

// Info returns the description of the named tensor and whether it exists.
func (f *File) Info(name string) (TensorInfo, bool) {
	t, ok := f.hdr.tensors[name]
	if !ok {
		return TensorInfo{}, false
	}
	return t.clone(), true
}

// Metadata returns a copy of the file's "__metadata__" map, or nil if the
// file has none.
func (f *File) Metadata() map[string]string { return maps.Clone(f.hdr.metadata) }

// DataSize returns the size of the data section in bytes.
func (f *File) DataSize() int64 {
	n := int64(0)
	for _, t := range f.hdr.tensors {
		n = max(n, t.End)
	}
	return n
}

// Tensor returns the named tensor. Its Data aliases the file's memory
// (read-only for a mapped file) and stays valid until Close.
func (f *File) Tensor(name string) (Tensor, error) {
	if f.closed {
		return Tensor{}, newError(f.name, name, ErrClosed)
	}
	t, ok := f.hdr.tensors[name]
	if !ok {
		return Tensor{}, newError(f.name, name, ErrNotFound)
	}
	// Offsets were checked against len(f.body) when the file was parsed.
	if t.Begin < 0 || t.End > int64(len(f.body)) || t.Begin > t.End {
		return Tensor{}, newError(f.name, name, fmt.Errorf("%w: [%d, %d]", ErrInvalidOffsets, t.Begin, t.End))
	}
	return Tensor{TensorInfo: t.clone(), File: f.name, Data: f.body[t.Begin:t.End:t.End]}, nil
}
