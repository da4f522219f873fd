package gguf

import (
	"errors"
	"strconv"
)

// Sentinel errors describing what was wrong. Errors returned by this package
// are *Error values wrapping one of these (with detail), so callers test the
// kind with errors.Is.
var (
	// ErrTruncated: the file ends inside the header or a tensor's data.
	ErrTruncated = errors.New("truncated file")
	// ErrMagic: the file does not start with "GGUF".
	ErrMagic = errors.New("not a GGUF file")
	// ErrVersion: a GGUF version other than 2 or 3 (or a big-endian file).
	ErrVersion = errors.New("unsupported GGUF version")
	// ErrCount: a tensor, key/value or array count that cannot fit the file.
	ErrCount = errors.New("invalid count")
	// ErrString: a string whose length is absurd or runs past the end.
	ErrString = errors.New("invalid string")
	// ErrKey: an empty, over-long or duplicate metadata key.
	ErrKey = errors.New("invalid key")
	// ErrValueType: an unknown metadata value type, an array nested too
	// deep, or a value of the wrong type for the key or getter.
	ErrValueType = errors.New("invalid value type")
	// ErrValue: a metadata value outside its allowed range (a bool other
	// than 0 or 1, an alignment that is not a power of two).
	ErrValue = errors.New("invalid value")
	// ErrTensorName: an empty, over-long or duplicate tensor name.
	ErrTensorName = errors.New("invalid tensor name")
	// ErrShape: too many dimensions, a negative dimension, a row length
	// that is not a multiple of the block size, or a size that overflows.
	ErrShape = errors.New("invalid shape")
	// ErrType: an unknown ggml type id, or a type this package cannot
	// convert.
	ErrType = errors.New("unsupported tensor type")
	// ErrOffset: a tensor offset that is misaligned, past the end of the
	// file, or overlapping another tensor.
	ErrOffset = errors.New("invalid tensor offset")
	// ErrSize: a buffer whose length does not match the tensor or blocks.
	ErrSize = errors.New("size mismatch")
	// ErrNotFound: no such tensor or key.
	ErrNotFound = errors.New("not found")
	// ErrWriteOrder: a tensor written out of the declared order, twice, or
	// missing when the writer is closed.
	ErrWriteOrder = errors.New("tensor written out of order")
	// ErrClosed: use of a closed File or Writer.
	ErrClosed = errors.New("closed")
)

// Error is the error type returned by this package. It names the file and,
// where one is involved, the metadata key or tensor, and wraps a sentinel
// error such as ErrOffset (test with errors.Is).
type Error struct {
	File   string // file name as given to Open or OpenBytes; may be empty
	Key    string // metadata key; may be empty
	Tensor string // tensor name; may be empty
	Err    error  // the underlying error, wrapping a sentinel
}

// Error returns `gguf: FILE: key "K": ERR` or `gguf: FILE: tensor "T": ERR`,
// leaving out the parts that are empty.
func (e *Error) Error() string {
	s := "gguf: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Key != "" {
		s += "key " + strconv.Quote(e.Key) + ": "
	}
	if e.Tensor != "" {
		s += "tensor " + strconv.Quote(e.Tensor) + ": "
	}
	if e.Err == nil {
		return s + "unknown error"
	}
	return s + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }
