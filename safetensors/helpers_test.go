package safetensors

import (
	"io/fs"
	"unsafe"
)

var fsErrNotExist = fs.ErrNotExist

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }
