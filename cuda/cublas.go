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
	return b, nil
}
