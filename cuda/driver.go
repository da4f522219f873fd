package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"
)

// ErrUnavailable is wrapped by the error of Open when this machine has no
// usable CUDA driver or cuBLAS library.
var ErrUnavailable = errors.New("cuda: not available")

// Error is a failed CUDA driver or cuBLAS call.
type Error struct {
	Call string // the API function, e.g. "cuMemAlloc"
	Code int32  // CUresult or cublasStatus_t
	Name string // CUDA's name of the code, e.g. "CUDA_ERROR_OUT_OF_MEMORY"
}

func (e *Error) Error() string { return fmt.Sprintf("cuda: %s: %s (%d)", e.Call, e.Name, e.Code) }

// driver holds the entry points of libcuda.so.1 that the backend uses.
type driver struct {
	lib uintptr

	cuInit                   func(flags uint32) int32
	cuGetErrorName           func(code int32, name **byte) int32
	cuDriverGetVersion       func(v *int32) int32
	cuDeviceGetCount         func(n *int32) int32
	cuDeviceGet              func(dev *int32, ordinal int32) int32
	cuDeviceGetName          func(name *byte, n int32, dev int32) int32
	cuDeviceTotalMem         func(bytes *uint64, dev int32) int32
	cuDeviceGetAttribute     func(v *int32, attr int32, dev int32) int32
	cuDevicePrimaryCtxRetain func(ctx *uintptr, dev int32) int32
	cuCtxSetCurrent          func(ctx uintptr) int32
	cuCtxSynchronize         func() int32
	cuMemGetInfo             func(free, total *uint64) int32
	cuMemAlloc               func(p *uint64, n uint64) int32
	cuMemFree                func(p uint64) int32
	cuMemcpyHtoD             func(dst uint64, src unsafe.Pointer, n uint64) int32
	cuMemcpyDtoH             func(dst unsafe.Pointer, src uint64, n uint64) int32
	cuMemcpyDtoDAsync        func(dst, src uint64, n uint64, stream uintptr) int32
	cuMemsetD32Async         func(dst uint64, v uint32, n uint64, stream uintptr) int32
	cuModuleLoadData         func(mod *uintptr, image unsafe.Pointer) int32
	cuModuleGetFunction      func(fn *uintptr, mod uintptr, name string) int32
	cuLaunchKernel           func(fn uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) int32
	// Entry points of the per-token path, called through callArgs
	// (no reflection, no allocation).
	launchSym, ctxSetSym, htodSym, dtohSym, dtodSym, memsetSym uintptr
	cuStreamCreate                                             func(s *uintptr, flags uint32) int32
	cuStreamSynchronize                                        func(s uintptr) int32
	cuEventCreate                                              func(e *uintptr, flags uint32) int32
	cuEventRecord                                              func(e, s uintptr) int32
	cuEventSynchronize                                         func(e uintptr) int32
	cuEventQuery                                               func(e uintptr) int32
	cuEventElapsedTime                                         func(ms *float32, start, end uintptr) int32
	cuEventDestroy                                             func(e uintptr) int32
	cuFuncSetAttribute                                         func(fn uintptr, attrib int32, value int32) int32
	cuOccupancyMaxActiveBlocksPerMultiprocessor                func(n *int32, fn uintptr, threads int32, shared uint64) int32
}

// driverNames are the file names tried for the driver library, in order.
var driverNames = []string{"libcuda.so.1", "libcuda.so"}

var (
	loadOnce sync.Once
	loaded   *driver
	loadErr  error
)

// loadDriver opens libcuda and binds its functions once per process.
func loadDriver() (*driver, error) {
	loadOnce.Do(func() { loaded, loadErr = openDriver(driverNames) })
	return loaded, loadErr
}

func openDriver(names []string) (*driver, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("%w: the CUDA backend runs on Linux only (this is %s)", ErrUnavailable, runtime.GOOS)
	}
	lib, err := dlopenFirst(names)
	if err != nil {
		return nil, fmt.Errorf("%w: the NVIDIA driver library %s could not be loaded (is an NVIDIA driver installed?): %v", ErrUnavailable, names[0], err)
	}
	d := &driver{lib: lib}
	// The _v2 entry points are the 64-bit ones every driver since CUDA 4 exports.
	syms := []struct {
		fn   any
		name string
	}{
		{&d.cuInit, "cuInit"},
		{&d.cuGetErrorName, "cuGetErrorName"},
		{&d.cuDriverGetVersion, "cuDriverGetVersion"},
		{&d.cuDeviceGetCount, "cuDeviceGetCount"},
		{&d.cuDeviceGet, "cuDeviceGet"},
		{&d.cuDeviceGetName, "cuDeviceGetName"},
		{&d.cuDeviceTotalMem, "cuDeviceTotalMem_v2"},
		{&d.cuDeviceGetAttribute, "cuDeviceGetAttribute"},
		{&d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"},
		{&d.cuCtxSetCurrent, "cuCtxSetCurrent"},
		{&d.cuCtxSynchronize, "cuCtxSynchronize"},
		{&d.cuMemGetInfo, "cuMemGetInfo_v2"},
		{&d.cuMemAlloc, "cuMemAlloc_v2"},
		{&d.cuMemFree, "cuMemFree_v2"},
		{&d.cuMemcpyHtoD, "cuMemcpyHtoD_v2"},
		{&d.cuMemcpyDtoH, "cuMemcpyDtoH_v2"},
		{&d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"},
		{&d.cuMemsetD32Async, "cuMemsetD32Async"},
		{&d.cuModuleLoadData, "cuModuleLoadData"},
		{&d.cuModuleGetFunction, "cuModuleGetFunction"},
		{&d.cuLaunchKernel, "cuLaunchKernel"},
		{&d.cuStreamCreate, "cuStreamCreate"},
		{&d.cuStreamSynchronize, "cuStreamSynchronize"},
		{&d.cuEventCreate, "cuEventCreate"},
		{&d.cuEventRecord, "cuEventRecord"},
		{&d.cuEventSynchronize, "cuEventSynchronize"},
		{&d.cuEventQuery, "cuEventQuery"},
		{&d.cuEventElapsedTime, "cuEventElapsedTime"},
		{&d.cuEventDestroy, "cuEventDestroy_v2"},
		{&d.cuFuncSetAttribute, "cuFuncSetAttribute"},
		{&d.cuOccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor"},
	}
	for _, s := range syms {
		if err := bind(lib, s.fn, s.name); err != nil {
			return nil, fmt.Errorf("%w: %s lacks %s (driver too old?)", ErrUnavailable, names[0], s.name)
		}
	}
	for _, s := range []struct {
		sym  *uintptr
		name string
	}{{&d.launchSym, "cuLaunchKernel"}, {&d.ctxSetSym, "cuCtxSetCurrent"}, {&d.htodSym, "cuMemcpyHtoD_v2"},
		{&d.dtohSym, "cuMemcpyDtoH_v2"}, {&d.dtodSym, "cuMemcpyDtoDAsync_v2"}, {&d.memsetSym, "cuMemsetD32Async"}} {
		*s.sym, _ = dlsym(lib, s.name) // present: bound above
	}
	return d, nil
}

// cuResultNames names the CUresult codes most often seen, for when
// cuGetErrorName itself is unavailable.
var cuResultNames = map[int32]string{
	1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY", 3: "CUDA_ERROR_NOT_INITIALIZED",
	100: "CUDA_ERROR_NO_DEVICE", 101: "CUDA_ERROR_INVALID_DEVICE", 200: "CUDA_ERROR_INVALID_IMAGE",
	209: "CUDA_ERROR_NO_BINARY_FOR_GPU", 218: "CUDA_ERROR_INVALID_PTX", 400: "CUDA_ERROR_INVALID_HANDLE",
	500: "CUDA_ERROR_NOT_FOUND", 700: "CUDA_ERROR_ILLEGAL_ADDRESS", 701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
	702: "CUDA_ERROR_LAUNCH_TIMEOUT", 719: "CUDA_ERROR_LAUNCH_FAILED", 999: "CUDA_ERROR_UNKNOWN",
}

// check turns a CUresult into an *Error naming call and the code.
func (d *driver) check(call string, code int32) error {
	if code == 0 {
		return nil
	}
	return &Error{Call: call, Code: code, Name: d.errorName(code)}
}

func (d *driver) errorName(code int32) string {
	if d != nil && d.cuGetErrorName != nil {
		var p *byte
		if d.cuGetErrorName(code, &p) == 0 && p != nil {
			return goString(p)
		}
	}
	if n, ok := cuResultNames[code]; ok {
		return n
	}
	return "CUDA_ERROR_UNKNOWN_CODE"
}

// goString copies the NUL-terminated C string at p.
func goString(p *byte) string {
	var b []byte
	for i := 0; i < 256; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(p), i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// libraryDirs are folders searched for cuBLAS when the dynamic loader's own
// path does not find it: CUDA toolkit installs and the pip wheels that
// PyTorch uses.
func libraryDirs() []string {
	dirs := []string{}
	if d := os.Getenv("CUDA_HOME"); d != "" {
		dirs = append(dirs, filepath.Join(d, "lib64"))
	}
	dirs = append(dirs, "/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu")
	for _, pat := range []string{
		"/usr/local/cuda-*/lib64",
		"/usr/local/lib/python3*/dist-packages/nvidia/cu*/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib",
		"/opt/*/.venv/lib/python3*/site-packages/nvidia/cu*/lib",
		"/opt/*/.venv/lib/python3*/site-packages/nvidia/cublas/lib",
	} {
		m, _ := filepath.Glob(pat)
		dirs = append(dirs, m...)
	}
	return dirs
}
