package safetensors

import (
	"errors"
	"strconv"
)

// Sentinel errors describing what was wrong. Errors returned by this package
// are *Error values wrapping one of these (possibly with more detail), so
// callers test the kind with errors.Is.
var (
	// ErrHeaderTooSmall: the file is shorter than the 8-byte header length.
	ErrHeaderTooSmall = errors.New("header too small")
	// ErrHeaderTooLarge: the declared header length exceeds MaxHeaderSize.
	ErrHeaderTooLarge = errors.New("header too large")
	// ErrInvalidHeaderLength: the declared header extends beyond the file.
	ErrInvalidHeaderLength = errors.New("header length beyond end of file")
	// ErrInvalidHeader: the header is not UTF-8, not JSON, not a JSON
	// object, or an entry has the wrong structure.
	ErrInvalidHeader = errors.New("invalid header")
	// ErrDuplicateKey: a JSON object in the header or index repeats a key.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrInvalidMetadata: __metadata__ is not a map of string to string.
	ErrInvalidMetadata = errors.New("invalid __metadata__")
	// ErrUnknownDType: a dtype outside the supported set.
	ErrUnknownDType = errors.New("unknown dtype")
	// ErrInvalidShape: a shape that is not a list of non-negative integers,
	// or whose byte size overflows.
	ErrInvalidShape = errors.New("invalid shape")
	// ErrInvalidOffsets: data_offsets not two non-negative integers with
	// begin <= end, or tensors that do not tile the data section exactly
	// (gap, overlap, not starting at 0, not ending at its end).
	ErrInvalidOffsets = errors.New("invalid data offsets")
	// ErrSizeMismatch: a byte count that does not match the shape and dtype.
	ErrSizeMismatch = errors.New("size does not match shape and dtype")
	// ErrDTypeMismatch: a conversion or write with the wrong dtype.
	ErrDTypeMismatch = errors.New("dtype mismatch")
	// ErrNotFound: no such tensor or file.
	ErrNotFound = errors.New("not found")
	// ErrInvalidIndex: a malformed model.safetensors.index.json.
	ErrInvalidIndex = errors.New("invalid index")
	// ErrInvalidFileName: an index names a shard that is not a plain
	// "*.safetensors" file name in the checkpoint directory.
	ErrInvalidFileName = errors.New("invalid shard file name")
	// ErrMissingTensor: a tensor listed in the index is absent from its shard.
	ErrMissingTensor = errors.New("tensor listed in index but absent from its shard")
	// ErrUnlistedTensor: a shard holds a tensor the index does not list for it.
	ErrUnlistedTensor = errors.New("tensor present in shard but not listed in index")
	// ErrDuplicateTensor: a tensor name appears twice (in two shards, or
	// twice among the tensors given to a writer).
	ErrDuplicateTensor = errors.New("duplicate tensor")
	// ErrWriteOrder: a tensor written out of the declared order, or missing
	// when the writer is closed.
	ErrWriteOrder = errors.New("tensor written out of order")
	// ErrClosed: use of a closed File, Set or Writer.
	ErrClosed = errors.New("closed")
	// ErrNonFinite: a NaN or infinity found by Tensor.CheckFinite.
	ErrNonFinite = errors.New("non-finite value")
	// ErrRange: an integer value that does not fit the target dtype.
	ErrRange = errors.New("value out of range for dtype")
)

// Error is the error type returned by this package. It names the file and,
// where one is involved, the tensor, and wraps a sentinel error such as
// ErrInvalidOffsets (test with errors.Is).
type Error struct {
	File   string // file name as given to Open or OpenBytes; may be empty
	Tensor string // tensor name or header key; may be empty
	Err    error  // the underlying error, wrapping a sentinel
}

// Error returns "safetensors: FILE: tensor "NAME": ERR", leaving out the
// parts that are empty.
func (e *Error) Error() string {
	s := "safetensors: "
	if e.File != "" {
		s += e.File + ": "
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

func newError(file, tensor string, err error) error {
	return &Error{File: file, Tensor: tensor, Err: err}
}
