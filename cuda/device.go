package cuda

import (
	_ "embed" // the kernels' fatbin
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"unsafe"
)

//go:generate sh kernels/build.sh

// fatbin holds the kernels compiled by kernels/build.sh.
//
//go:embed kernels/jamba.fatbin
var fatbin []byte

// Device is one CUDA GPU with its context, cuBLAS handle and loaded kernels.
// Work is issued on the legacy default stream, in order; a Device is not safe
// for concurrent use.
type Device struct {
	d *driver
	b *cublas
	// lt: cuBLASLt for the split bf16 products, with an algorithm chosen
	// per shape by timing (nil: cublasGemmEx; ltErr says why, printed
	// once with $JAMBA_CUDA_DEBUG set).
	lt    *cublasLt
	ltErr error
	blas  uintptr
	mod   uintptr
	fns   map[string]uintptr

	Name     string
	Ordinal  int
	TotalMem uint64
	SMs      int
	CC       [2]int // compute capability
	Launches int64  // kernels launched so far

	ctx uintptr
	// gemvRows: products of up to this many rows (≤ 8) use the
	// matrix-vector kernels, more use cuBLAS ($JAMBA_CUDA_GEMV_ROWS, default 1).
	gemvRows int
	// moeRows: MoE layers of up to this many rows (≤ 64) group the routing
	// slots by expert on the device; more group them on the host for
	// cuBLAS ($JAMBA_CUDA_MOE_ROWS).
	moeRows int
	// groupedUnroll: 0 for the grouped-expert kernel with a plain column
	// loop, 1 for the one unrolled twice ($JAMBA_CUDA_GROUPED_UNROLL=2).
	groupedUnroll int
	// moeDenseRows: MoE layers of this many rows up to 64 (bf16 experts)
	// compute every expert over every row with strided-batched cuBLAS
	// ($JAMBA_CUDA_MOE_DENSE_ROWS; above 64 turns it off).
	moeDenseRows int
	// mmaRows: products of more than gemvRows and up to this many rows
	// of x (bf16 weights) use the tensor-core kernel mma_bf16 instead of
	// cuBLAS ($JAMBA_CUDA_MMA_ROWS, ≤ 64).
	mmaRows int
	// moeMMARows: MoE layers of 2 up to this many rows (bf16 experts) run
	// their routed slots through mma_bf16 ($JAMBA_CUDA_MOE_MMA_ROWS, ≤ 64).
	moeMMARows int
	// moeMMAMin: the fewest rows that take that path
	// ($JAMBA_CUDA_MOE_MMA_MIN); fewer use the grouped kernels.
	moeMMAMin int
	// mmaBlocks: mma_bf16 splits its columns until it has this many
	// blocks per multiprocessor ($JAMBA_CUDA_MMA_BLOCKS).
	mmaBlocks int
	// mmaDeep: mma_bf16_deep, 8 steps of weights in flight for
	// experts of up to 8 slots (default; $JAMBA_CUDA_MMA_DEEP=0: 4).
	mmaDeep bool
	// mmaWide: mma_bf16_wide, 32 weight rows a warp ($JAMBA_CUDA_MMA_WIDE=1).
	mmaWide bool
	// mmaWideRows: the MoE's tensor-core path uses mma_bf16_wide from
	// this many rows ($JAMBA_CUDA_MMA_WIDE_ROWS).
	mmaWideRows int
	// mmdRows: products of more than gemvRows and up to this many rows of
	// x (bf16 weights, widths a multiple of 8) whose weights have at most
	// mmdSmall rows or columns use the dense tensor-core kernels
	// mmd_bf16_* instead of cuBLAS ($JAMBA_CUDA_MMD_ROWS ≤ 32,
	// $JAMBA_CUDA_MMD_SMALL).
	mmdRows, mmdSmall int
	// mmdBlocks: mmd_bf16_* split their columns until they have this many
	// blocks per multiprocessor ($JAMBA_CUDA_MMD_BLOCKS; 0: as many as fit
	// at once, mmdFit).
	mmdBlocks int
	// mmdFit[i]: blocks of mmdNames[i] that fit on a multiprocessor (0
	// until its first launch sets up its shared memory).
	mmdFit [4]int
	// fuse: the norms write their output split for the stacked split
	// cuBLAS products after them and add those products' halves
	// themselves ($JAMBA_CUDA_FUSE=0: split and add kernels).
	fuse bool
	// scanChanSeqs: decode steps of at least this many sequences scan
	// with one thread per channel ($JAMBA_CUDA_SCAN_CHAN; default off).
	scanChanSeqs int
	pinned       bool // an outer call holds the context current on this OS thread

	args [32]uint64
	ptrs [32]uintptr
	// sys holds the argument words of sysCall, and one and zero the
	// scalars cuBLAS reads through pointers: on the heap with the Device,
	// so that the per-token calls allocate nothing.
	sys       [24]uintptr
	one, zero float32
}

// enter makes the device's context current on this goroutine's OS thread
// and keeps the goroutine there until leave (a CUDA context is current per
// thread, and Go moves goroutines between threads). It reports whether the
// caller must call leave: nested calls find the thread already pinned.
func (dev *Device) enter() bool {
	if dev.pinned {
		return false
	}
	runtime.LockOSThread()
	dev.sys[0] = dev.ctx
	dev.sysCall(dev.d.ctxSetSym, 1)
	dev.pinned = true
	return true
}

func (dev *Device) leave() {
	dev.pinned = false
	runtime.UnlockOSThread()
}

// Open initialises the driver, makes GPU ordinal's primary context current,
// creates a cuBLAS handle and loads the kernels. Without an NVIDIA driver or
// cuBLAS it returns an error wrapping ErrUnavailable that says what is missing.
func Open(ordinal int) (*Device, error) {
	d, err := loadDriver()
	if err != nil {
		return nil, err
	}
	if code := d.cuInit(0); code != 0 {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, d.check("cuInit", code))
	}
	var n int32
	if err := d.check("cuDeviceGetCount", d.cuDeviceGetCount(&n)); err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= int(n) {
		return nil, fmt.Errorf("%w: GPU %d requested, the driver sees %d", ErrUnavailable, ordinal, n)
	}
	dev := &Device{d: d, Ordinal: ordinal, one: 1}
	var h int32
	if err := d.check("cuDeviceGet", d.cuDeviceGet(&h, int32(ordinal))); err != nil {
		return nil, err
	}
	var name [256]byte
	if err := d.check("cuDeviceGetName", d.cuDeviceGetName(&name[0], int32(len(name)), h)); err != nil {
		return nil, err
	}
	dev.Name = goString(&name[0])
	if err := d.check("cuDeviceTotalMem", d.cuDeviceTotalMem(&dev.TotalMem, h)); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		attr int32
		dst  *int
	}{{16, &dev.SMs}, {75, &dev.CC[0]}, {76, &dev.CC[1]}} {
		var v int32
		if err := d.check("cuDeviceGetAttribute", d.cuDeviceGetAttribute(&v, a.attr, h)); err != nil {
			return nil, err
		}
		*a.dst = int(v)
	}
	if err := d.check("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(&dev.ctx, h)); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.check("cuCtxSetCurrent", d.cuCtxSetCurrent(dev.ctx)); err != nil {
		return nil, err
	}
	b, err := openCublas()
	if err != nil {
		return nil, err
	}
	dev.b = b
	if err := cublasCheck("cublasCreate", b.create(&dev.blas)); err != nil {
		return nil, err
	}
	image := fatbin
	if p := os.Getenv("JAMBA_CUDA_KERNELS"); p != "" {
		if image, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("cuda: JAMBA_CUDA_KERNELS: %v", err)
		}
	}
	if len(image) == 0 {
		return nil, fmt.Errorf("%w: this binary was built without the CUDA kernels (run go generate ./cuda where nvcc is installed, or set JAMBA_CUDA_KERNELS to a fatbin)", ErrUnavailable)
	}
	// The driver reads the image during the call only.
	if err := d.check("cuModuleLoadData", d.cuModuleLoadData(&dev.mod, unsafe.Pointer(&image[0]))); err != nil {
		return nil, fmt.Errorf("%w (GPU %s, compute capability %d.%d)", err, dev.Name, dev.CC[0], dev.CC[1])
	}
	dev.fns = map[string]uintptr{}
	// Measured on an H200: cuBLAS on the split input beats the
	// matrix-vector kernels from two rows up (docs/GPU.md).
	dev.gemvRows, dev.moeRows = 1, moeMax
	dev.moeRows = moeMax
	// Measured on an H200 (docs/GPU.md): at 16 rows the grouped kernels
	// were 4% faster, at 32 the all-experts path 27%.
	dev.moeDenseRows = 24
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MOE_DENSE_ROWS")); err == nil && v >= 2 {
		dev.moeDenseRows = v
	}
	// Measured on an H200 (docs/GPU.md): the tensor-core kernel is the
	// fastest for the experts from two rows up, cuBLAS for the other
	// products (the kernel re-reads x from L2 for every 16 weight rows).
	// At 8 rows the grouped kernels were 1-3% faster, at 16 and 32 the
	// tensor-core kernel 3-4%, and at 64 its 32-rows-a-warp form 5-6%
	// faster than the all-experts path (docs/GPU.md).
	dev.mmaRows, dev.moeMMAMin, dev.moeMMARows, dev.mmaBlocks, dev.mmaWideRows = 0, 12, mmaMax, 8, 33
	// One thread per channel was 15% slower than lanes per channel at 32
	// sequences (docs/GPU.md): off unless asked for.
	dev.scanChanSeqs = 1 << 30
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MMA_WIDE_ROWS")); err == nil && v >= 2 {
		dev.mmaWideRows = v
	}
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_SCAN_CHAN")); err == nil && v >= 1 {
		dev.scanChanSeqs = v
	}
	dev.mmaDeep = os.Getenv("JAMBA_CUDA_MMA_DEEP") != "0"
	dev.mmaWide = os.Getenv("JAMBA_CUDA_MMA_WIDE") == "1"
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MMA_ROWS")); err == nil && v >= 0 && v <= mmaMax {
		dev.mmaRows = v
	}
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MOE_MMA_ROWS")); err == nil && v >= 0 && v <= mmaMax {
		dev.moeMMARows = v
	}
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MOE_MMA_MIN")); err == nil && v >= 2 {
		dev.moeMMAMin = v
	}
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MMA_BLOCKS")); err == nil && v >= 1 {
		dev.mmaBlocks = v
	}
	// Measured on an H200 (docs/GPU.md): mmd_bf16_* beat cuBLAS on the
	// split input where the weights are small in one dimension (the Mamba
	// x and dt projections, the router), tie on the Mamba out_proj at 8
	// rows and lose on the larger products at 16 and 32 rows.
	dev.mmdRows, dev.mmdSmall = mmdMax, 1024
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MMD_ROWS")); err == nil && v >= 0 && v <= mmdMax {
		dev.mmdRows = v
	}
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MMD_SMALL")); err == nil && v >= 0 {
		dev.mmdSmall = v
	}
	dev.fuse = os.Getenv("JAMBA_CUDA_FUSE") != "0"
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MMD_BLOCKS")); err == nil && v >= 0 {
		dev.mmdBlocks = v
	}
	if os.Getenv("JAMBA_CUDA_GROUPED_UNROLL") == "2" {
		dev.groupedUnroll = 1
	}
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_MOE_ROWS")); err == nil && v >= 0 && v <= moeMax {
		dev.moeRows = v
	}
	if v, err := strconv.Atoi(os.Getenv("JAMBA_CUDA_GEMV_ROWS")); err == nil && v >= 0 && v <= gemvMax {
		dev.gemvRows = v
	}
	if os.Getenv("JAMBA_CUDA_LT") != "0" {
		if dev.lt, dev.ltErr = dev.openCublasLt(); dev.ltErr != nil && os.Getenv("JAMBA_CUDA_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "cuda: products stay on cublasGemmEx: %v\n", dev.ltErr)
		}
	}
	return dev, nil
}

// Buf is a device allocation.
type Buf struct {
	Ptr   uint64
	Bytes int64
}

// Alloc returns n bytes of device memory (not cleared).
func (dev *Device) Alloc(n int64) (Buf, error) {
	if dev.enter() {
		defer dev.leave()
	}
	if n <= 0 {
		n = 1
	}
	var p uint64
	if code := dev.d.cuMemAlloc(&p, uint64(n)); code != 0 {
		var free, total uint64
		dev.d.cuMemGetInfo(&free, &total)
		return Buf{}, fmt.Errorf("%w (asked %d bytes, %d of %d free)", dev.d.check("cuMemAlloc", code), n, free, total)
	}
	return Buf{Ptr: p, Bytes: n}, nil
}

// Free releases b; freeing a zero Buf does nothing.
func (dev *Device) Free(b *Buf) {
	if dev.enter() {
		defer dev.leave()
	}
	if b.Ptr != 0 {
		dev.d.cuMemFree(b.Ptr)
	}
	*b = Buf{}
}

// MemInfo returns the free and total device memory.
func (dev *Device) MemInfo() (free, total uint64) {
	if dev.enter() {
		defer dev.leave()
	}
	dev.d.cuMemGetInfo(&free, &total)
	return
}

// Upload copies host bytes to b at byte offset off.
func (dev *Device) Upload(b Buf, off int64, src unsafe.Pointer, n int64) error {
	if dev.enter() {
		defer dev.leave()
	}
	if n == 0 {
		return nil
	}
	if off < 0 || off+n > b.Bytes {
		return fmt.Errorf("cuda: upload of %d bytes at %d into a buffer of %d", n, off, b.Bytes)
	}
	dev.sys[0], dev.sys[1], dev.sys[2] = uintptr(b.Ptr+uint64(off)), uintptr(src), uintptr(n)
	code := dev.sysCall(dev.d.htodSym, 3)
	runtime.KeepAlive(src)
	return dev.d.check("cuMemcpyHtoD", code)
}

// UploadF32 copies v to b at float offset off.
func (dev *Device) UploadF32(b Buf, off int, v []float32) error {
	if len(v) == 0 {
		return nil
	}
	return dev.Upload(b, int64(off)*4, unsafe.Pointer(&v[0]), int64(len(v))*4)
}

// Download copies n bytes from b at byte offset off to dst.
func (dev *Device) Download(dst unsafe.Pointer, b Buf, off, n int64) error {
	if dev.enter() {
		defer dev.leave()
	}
	if n == 0 {
		return nil
	}
	if off < 0 || off+n > b.Bytes {
		return fmt.Errorf("cuda: download of %d bytes at %d from a buffer of %d", n, off, b.Bytes)
	}
	dev.sys[0], dev.sys[1], dev.sys[2] = uintptr(dst), uintptr(b.Ptr+uint64(off)), uintptr(n)
	code := dev.sysCall(dev.d.dtohSym, 3)
	runtime.KeepAlive(dst)
	return dev.d.check("cuMemcpyDtoH", code)
}

// DownloadF32 copies len(dst) floats from b at float offset off.
func (dev *Device) DownloadF32(dst []float32, b Buf, off int) error {
	if len(dst) == 0 {
		return nil
	}
	return dev.Download(unsafe.Pointer(&dst[0]), b, int64(off)*4, int64(len(dst))*4)
}

// Copy copies n bytes between device buffers (ordered with kernels).
func (dev *Device) Copy(dst uint64, src uint64, n int64) error {
	if dev.enter() {
		defer dev.leave()
	}
	if n == 0 {
		return nil
	}
	dev.sys[0], dev.sys[1], dev.sys[2], dev.sys[3] = uintptr(dst), uintptr(src), uintptr(n), 0
	return dev.d.check("cuMemcpyDtoDAsync", dev.sysCall(dev.d.dtodSym, 4))
}

// Zero clears n bytes (a multiple of 4) at p.
func (dev *Device) Zero(p uint64, n int64) error {
	if dev.enter() {
		defer dev.leave()
	}
	if n == 0 {
		return nil
	}
	dev.sys[0], dev.sys[1], dev.sys[2], dev.sys[3] = uintptr(p), 0, uintptr(n/4), 0
	return dev.d.check("cuMemsetD32Async", dev.sysCall(dev.d.memsetSym, 4))
}

// Sync waits for all issued work and reports a failure of any of it.
func (dev *Device) Sync() error {
	if dev.enter() {
		defer dev.leave()
	}
	return dev.d.check("cuCtxSynchronize", dev.d.cuCtxSynchronize())
}

// fn returns the kernel called name.
func (dev *Device) fn(name string) (uintptr, error) {
	if f, ok := dev.fns[name]; ok {
		return f, nil
	}
	var f uintptr
	if err := dev.d.check("cuModuleGetFunction("+name+")", dev.d.cuModuleGetFunction(&f, dev.mod, name)); err != nil {
		return 0, err
	}
	dev.fns[name] = f
	return f, nil
}

// sharedSetup lets kernel name use shared bytes of dynamic shared memory
// and returns how many of its blocks of threads fit on a multiprocessor.
func (dev *Device) sharedSetup(name string, threads, shared int) (int, error) {
	f, err := dev.fn(name)
	if err != nil {
		return 0, err
	}
	const maxDynamicShared = 8 // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
	if err := dev.d.check("cuFuncSetAttribute("+name+")", dev.d.cuFuncSetAttribute(f, maxDynamicShared, int32(shared))); err != nil {
		return 0, err
	}
	var nb int32
	if err := dev.d.check("cuOccupancyMaxActiveBlocksPerMultiprocessor("+name+")",
		dev.d.cuOccupancyMaxActiveBlocksPerMultiprocessor(&nb, f, int32(threads), uint64(shared))); err != nil {
		return 0, err
	}
	if nb < 1 {
		return 0, fmt.Errorf("cuda: kernel %s does not fit a multiprocessor with %d bytes of shared memory", name, shared)
	}
	return int(nb), nil
}

// Kernel arguments travel as 8-byte slots: the driver reads as many bytes
// of each as the kernel's parameter has (little-endian, so 4-byte ints and
// floats sit in the low half).
func ia(v int) uint64     { return uint64(uint32(int32(v))) }
func la(v int64) uint64   { return uint64(v) }
func fa(v float32) uint64 { return uint64(math.Float32bits(v)) }

// launch runs kernel name on a grid of blocks of threads.
func (dev *Device) launch(name string, grid [2]int, threads int, args ...uint64) error {
	return dev.launch3(name, [3]int{grid[0], grid[1], 1}, threads, args...)
}

// launch3 runs kernel name on a 3-D grid.
func (dev *Device) launch3(name string, grid [3]int, threads int, args ...uint64) error {
	return dev.launchShared(name, grid, threads, 0, args...)
}

// launchShared runs kernel name on a 3-D grid with shared bytes of dynamic
// shared memory (set up with sharedSetup when over 48 KiB).
func (dev *Device) launchShared(name string, grid [3]int, threads, shared int, args ...uint64) error {
	if dev.enter() {
		defer dev.leave()
	}
	f, err := dev.fn(name)
	if err != nil {
		return err
	}
	for i, a := range args {
		dev.args[i] = a
		dev.ptrs[i] = uintptr(unsafe.Pointer(&dev.args[i]))
	}
	gy, gz := max(grid[1], 1), max(grid[2], 1)
	if grid[0] == 0 {
		return nil
	}
	dev.Launches++
	a := &dev.sys
	a[0], a[1], a[2], a[3], a[4], a[5] = f, uintptr(grid[0]), uintptr(gy), uintptr(gz), uintptr(threads), 1
	a[6], a[7], a[8], a[9], a[10] = 1, uintptr(shared), 0, uintptr(unsafe.Pointer(&dev.ptrs[0])), 0
	if code := dev.sysCall(dev.d.launchSym, 11); code != 0 {
		return dev.d.check("cuLaunchKernel("+name+")", code)
	}
	return nil
}

// blocks is the number of blocks of t threads covering n items.
func blocks(n int64, t int) int { return int((n + int64(t) - 1) / int64(t)) }

// Timer measures device time between two points of the stream.
type Timer struct {
	dev        *Device
	start, end uintptr
}

// NewTimer creates the events of a timer.
func (dev *Device) NewTimer() (*Timer, error) {
	if dev.enter() {
		defer dev.leave()
	}
	t := &Timer{dev: dev}
	if err := dev.d.check("cuEventCreate", dev.d.cuEventCreate(&t.start, 0)); err != nil {
		return nil, err
	}
	if err := dev.d.check("cuEventCreate", dev.d.cuEventCreate(&t.end, 0)); err != nil {
		return nil, err
	}
	return t, nil
}

// Start records the start event.
func (t *Timer) Start() error {
	return t.dev.d.check("cuEventRecord", t.dev.d.cuEventRecord(t.start, 0))
}

// Stop records the end event, waits for it and returns the seconds between.
func (t *Timer) Stop() (float64, error) {
	if t.dev.enter() {
		defer t.dev.leave()
	}
	d := t.dev.d
	if err := d.check("cuEventRecord", d.cuEventRecord(t.end, 0)); err != nil {
		return 0, err
	}
	if err := d.check("cuEventSynchronize", d.cuEventSynchronize(t.end)); err != nil {
		return 0, err
	}
	var ms float32
	if err := d.check("cuEventElapsedTime", d.cuEventElapsedTime(&ms, t.start, t.end)); err != nil {
		return 0, err
	}
	return float64(ms) / 1e3, nil
}
