package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"
)

// cuBLAS enums (cublas_api.h, library_types.h).
const (
	cublasOpN = 0
	cublasOpT = 1

	cudaR32F  = 0
	cudaR16BF = 14

	cublasCompute32F  = 68
	cublasGemmDefault = -1
)

// cublasNames are the sonames tried, newest first.
var cublasNames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}

// cublas holds the cuBLAS entry points the backend uses.
type cublas struct {
	lib uintptr
	// gemmSym, gemmBatchedSym: cublasGemmEx and cublasGemmStridedBatchedEx
	// for the per-token path (Device.gemm, Device.gemmBatched).
	gemmSym, gemmBatchedSym uintptr

	create    func(h *uintptr) int32
	setStream func(h uintptr, s uintptr) int32
	gemmEx    func(h uintptr, transa, transb int32, m, n, k int32, alpha unsafe.Pointer,
		A uint64, Atype int32, lda int32, B uint64, Btype int32, ldb int32, beta unsafe.Pointer,
		C uint64, Ctype int32, ldc int32, compute int32, algo int32) int32
	gemmStridedBatchedEx func(h uintptr, transa, transb int32, m, n, k int32, alpha unsafe.Pointer,
		A uint64, Atype int32, lda int32, strideA int64, B uint64, Btype int32, ldb int32, strideB int64, beta unsafe.Pointer,
		C uint64, Ctype int32, ldc int32, strideC int64, batch int32, compute int32, algo int32) int32
}

var cublasStatusNames = map[int32]string{
	1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
	8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR",
}

func cublasCheck(call string, code int32) error {
	if code == 0 {
		return nil
	}
	name, ok := cublasStatusNames[code]
	if !ok {
		name = "CUBLAS_STATUS_UNKNOWN"
	}
	return &Error{Call: call, Code: code, Name: name}
}

// openCublas loads cuBLAS: $JAMBA_CUBLAS when set (a file), else the
// dynamic loader's search path, else the usual CUDA and pip install folders.
func openCublas() (*cublas, error) {
	var tries []string
	if p := os.Getenv("JAMBA_CUBLAS"); p != "" {
		tries = append(tries, p)
	} else {
		tries = append(tries, cublasNames...)
		for _, d := range libraryDirs() {
			for _, n := range cublasNames[:3] {
				tries = append(tries, filepath.Join(d, n))
			}
		}
	}
	lib, err := dlopenFirst(tries)
	if err != nil {
		return nil, fmt.Errorf("%w: cuBLAS (%s) could not be loaded; install the CUDA toolkit's cuBLAS or set JAMBA_CUBLAS to the library file: %v",
			ErrUnavailable, cublasNames[0], err)
	}
	b := &cublas{lib: lib}
	for _, s := range []struct {
		fn   any
		name string
	}{
		{&b.create, "cublasCreate_v2"},
		{&b.setStream, "cublasSetStream_v2"},
		{&b.gemmEx, "cublasGemmEx"},
		{&b.gemmStridedBatchedEx, "cublasGemmStridedBatchedEx"},
	} {
		if err := bind(lib, s.fn, s.name); err != nil {
			return nil, fmt.Errorf("%w: the cuBLAS library lacks %s", ErrUnavailable, s.name)
		}
	}
	b.gemmSym, _ = dlsym(lib, "cublasGemmEx")
	b.gemmBatchedSym, _ = dlsym(lib, "cublasGemmStridedBatchedEx")
	return b, nil
}

// sysCall calls the C function fn with the first n words of dev.sys as its
// arguments and returns its int result (a CUresult or cublasStatus_t).
func (dev *Device) sysCall(fn uintptr, n int) int32 { return int32(callArgs(fn, dev.sys[:n])) }

// i32 is an int argument word of sysCall (the callee reads the low 32 bits).
func i32(v int32) uintptr { return uintptr(uint32(v)) }

// gemm is cublasGemmEx (column-major C = alpha·op(A)·op(B) + beta·C) with
// float32 alpha 1 and beta 0 or 1, without allocating.
func (dev *Device) gemm(transa, transb, m, n, k int32, A uint64, Atype, lda int32, B uint64, Btype, ldb int32, accumulate bool,
	C uint64, Ctype, ldc int32, compute int32) error {
	beta := &dev.zero
	if accumulate {
		beta = &dev.one
	}
	a := &dev.sys
	a[0], a[1], a[2], a[3], a[4], a[5] = dev.blas, i32(transa), i32(transb), i32(m), i32(n), i32(k)
	a[6], a[7], a[8], a[9] = uintptr(unsafe.Pointer(&dev.one)), uintptr(A), i32(Atype), i32(lda)
	a[10], a[11], a[12], a[13] = uintptr(B), i32(Btype), i32(ldb), uintptr(unsafe.Pointer(beta))
	a[14], a[15], a[16], a[17], a[18] = uintptr(C), i32(Ctype), i32(ldc), i32(compute), i32(cublasGemmDefault)
	return cublasCheck("cublasGemmEx", dev.sysCall(dev.b.gemmSym, 19))
}

// gemmBatched is cublasGemmStridedBatchedEx with alpha 1 and beta 0.
func (dev *Device) gemmBatched(transa, transb, m, n, k int32, A uint64, Atype, lda int32, strideA int64, B uint64, Btype, ldb int32,
	strideB int64, C uint64, Ctype, ldc int32, strideC int64, batch, compute int32) error {
	a := &dev.sys
	a[0], a[1], a[2], a[3], a[4], a[5] = dev.blas, i32(transa), i32(transb), i32(m), i32(n), i32(k)
	a[6], a[7], a[8], a[9], a[10] = uintptr(unsafe.Pointer(&dev.one)), uintptr(A), i32(Atype), i32(lda), uintptr(strideA)
	a[11], a[12], a[13], a[14], a[15] = uintptr(B), i32(Btype), i32(ldb), uintptr(strideB), uintptr(unsafe.Pointer(&dev.zero))
	a[16], a[17], a[18], a[19], a[20], a[21], a[22] = uintptr(C), i32(Ctype), i32(ldc), uintptr(strideC), i32(batch), i32(compute), i32(cublasGemmDefault)
	return cublasCheck("cublasGemmStridedBatchedEx", dev.sysCall(dev.b.gemmBatchedSym, 23))
}
