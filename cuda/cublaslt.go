package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"
)

// cuBLASLt for the split bf16 products: for each shape (weight rows, rows
// of the stacked input, columns) the first product asks cublasLtMatmul's
// heuristic for several algorithms, times each (and cublasGemmEx) on the
// product's own operands, and keeps the fastest for the shape. Without
// libcublasLt the products stay on cublasGemmEx.

// cublasLtNames are the sonames tried, newest first.
var cublasLtNames = []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"}

// cuBLASLt enums (cublasLt.h).
const (
	ltDescTransA       = 3 // CUBLASLT_MATMUL_DESC_TRANSA
	ltDescTransB       = 4 // CUBLASLT_MATMUL_DESC_TRANSB
	ltPrefMaxWorkspace = 1 // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES
)

// ltWorkspace is the device workspace the algorithms may use.
const ltWorkspace = 32 << 20

// ltCandidates is how many of the heuristic's algorithms are timed.
const ltCandidates = 8

// ltMaxN bounds the columns (2 × the rows of x) of the products that get a
// plan: decode batches of up to 64 sequences. Each new shape costs its
// timing once (about 60 products, a few milliseconds); larger products
// (prefill chunks, whose row counts vary) stay on cublasGemmEx.
const ltMaxN = 128

type cublasLt struct {
	lib                uintptr
	handle, desc, pref uintptr
	matmulSym          uintptr
	work               Buf
	start, end         uintptr // events timing the candidates
	plans              map[ltKey]*ltPlan

	create       func(h *uintptr) int32
	descCreate   func(d *uintptr, compute int32, scale int32) int32
	descSet      func(d uintptr, attr int32, buf unsafe.Pointer, size uint64) int32
	layoutCreate func(l *uintptr, typ int32, rows, cols uint64, ld int64) int32
	prefCreate   func(p *uintptr) int32
	prefSet      func(p uintptr, attr int32, buf unsafe.Pointer, size uint64) int32
	heuristic    func(h, op, a, b, c, d, pref uintptr, req int32, res unsafe.Pointer, n *int32) int32
}

// ltKey is a product's shape: C[m][n] (column-major) = op(A) · B, k deep.
type ltKey struct{ m, n, k int32 }

// ltPlan is a shape's choice: an algorithm with its layouts, or gemmEx.
type ltPlan struct {
	useLt   bool
	a, b, c uintptr
	algo    [8]uint64
	ws      uint64
	// us: the measured microseconds of the choice and of cublasGemmEx.
	us, gemmUs float64
}

// ltHeuristic is cublasLtMatmulHeuristicResult_t.
type ltHeuristic struct {
	algo     [8]uint64
	ws       uint64
	state    int32
	waves    float32
	reserved [4]int32
}

// openCublasLt loads cuBLASLt next to cuBLAS and sets up the descriptors
// shared by every product (float32 compute and scale, A transposed).
func (dev *Device) openCublasLt() (*cublasLt, error) {
	var tries []string
	if p := os.Getenv("JAMBA_CUBLASLT"); p != "" {
		tries = append(tries, p)
	} else {
		tries = append(tries, cublasLtNames...)
		for _, d := range libraryDirs() {
			for _, n := range cublasLtNames[:3] {
				tries = append(tries, filepath.Join(d, n))
			}
		}
	}
	lib, err := dlopenFirst(tries)
	if err != nil {
		return nil, fmt.Errorf("cuBLASLt (%s) could not be loaded: %v", cublasLtNames[0], err)
	}
	lt := &cublasLt{lib: lib, plans: map[ltKey]*ltPlan{}}
	for _, s := range []struct {
		fn   any
		name string
	}{
		{&lt.create, "cublasLtCreate"},
		{&lt.descCreate, "cublasLtMatmulDescCreate"},
		{&lt.descSet, "cublasLtMatmulDescSetAttribute"},
		{&lt.layoutCreate, "cublasLtMatrixLayoutCreate"},
		{&lt.prefCreate, "cublasLtMatmulPreferenceCreate"},
		{&lt.prefSet, "cublasLtMatmulPreferenceSetAttribute"},
		{&lt.heuristic, "cublasLtMatmulAlgoGetHeuristic"},
	} {
		if err := bind(lib, s.fn, s.name); err != nil {
			return nil, fmt.Errorf("the cuBLASLt library lacks %s", s.name)
		}
	}
	if lt.matmulSym, err = dlsym(lib, "cublasLtMatmul"); err != nil {
		return nil, fmt.Errorf("the cuBLASLt library lacks cublasLtMatmul")
	}
	if err := cublasCheck("cublasLtCreate", lt.create(&lt.handle)); err != nil {
		return nil, err
	}
	if err := cublasCheck("cublasLtMatmulDescCreate", lt.descCreate(&lt.desc, cublasCompute32F, cudaR32F)); err != nil {
		return nil, err
	}
	opT, opN := int32(cublasOpT), int32(cublasOpN)
	if err := cublasCheck("cublasLtMatmulDescSetAttribute", lt.descSet(lt.desc, ltDescTransA, unsafe.Pointer(&opT), 4)); err != nil {
		return nil, err
	}
	if err := cublasCheck("cublasLtMatmulDescSetAttribute", lt.descSet(lt.desc, ltDescTransB, unsafe.Pointer(&opN), 4)); err != nil {
		return nil, err
	}
	if err := cublasCheck("cublasLtMatmulPreferenceCreate", lt.prefCreate(&lt.pref)); err != nil {
		return nil, err
	}
	ws := uint64(ltWorkspace)
	if err := cublasCheck("cublasLtMatmulPreferenceSetAttribute", lt.prefSet(lt.pref, ltPrefMaxWorkspace, unsafe.Pointer(&ws), 8)); err != nil {
		return nil, err
	}
	if lt.work, err = dev.Alloc(ltWorkspace); err != nil {
		return nil, err
	}
	d := dev.d
	if err := d.check("cuEventCreate", d.cuEventCreate(&lt.start, 0)); err != nil {
		return nil, err
	}
	if err := d.check("cuEventCreate", d.cuEventCreate(&lt.end, 0)); err != nil {
		return nil, err
	}
	return lt, nil
}

// gemmSplit computes C[m][n] (column-major, float32) = Aᵀ · B for bf16 A
// (k × m, lda k) and B (k × n, ldb k), through the shape's plan.
func (dev *Device) gemmSplit(m, n, k int32, A, B, C uint64) error {
	lt := dev.lt
	if lt == nil || n > ltMaxN {
		return dev.gemm(cublasOpT, cublasOpN, m, n, k, A, cudaR16BF, k, B, cudaR16BF, k, false, C, cudaR32F, m, cublasCompute32F)
	}
	p := lt.plans[ltKey{m, n, k}]
	if p == nil {
		var err error
		if p, err = dev.ltPlan(m, n, k, A, B, C); err != nil {
			return err
		}
	}
	if !p.useLt {
		return dev.gemm(cublasOpT, cublasOpN, m, n, k, A, cudaR16BF, k, B, cudaR16BF, k, false, C, cudaR32F, m, cublasCompute32F)
	}
	return dev.ltMatmul(p, A, B, C)
}

// ltMatmul runs cublasLtMatmul with p's algorithm, alpha 1, beta 0, D = C.
func (dev *Device) ltMatmul(p *ltPlan, A, B, C uint64) error {
	lt := dev.lt
	a := &dev.sys
	a[0], a[1], a[2], a[3], a[4], a[5] = lt.handle, lt.desc, uintptr(unsafe.Pointer(&dev.one)), uintptr(A), p.a, uintptr(B)
	a[6], a[7], a[8], a[9], a[10], a[11] = p.b, uintptr(unsafe.Pointer(&dev.zero)), uintptr(C), p.c, uintptr(C), p.c
	a[12], a[13], a[14], a[15] = uintptr(unsafe.Pointer(&p.algo)), uintptr(lt.work.Ptr), uintptr(p.ws), 0
	return cublasCheck("cublasLtMatmul", dev.sysCall(lt.matmulSym, 16))
}

// ltPlan makes the plan of a shape on its first product: the heuristic's
// first ltCandidates algorithms and cublasGemmEx are each run once, then
// timed over 5 runs on the product's operands; the fastest is kept.
func (dev *Device) ltPlan(m, n, k int32, A, B, C uint64) (*ltPlan, error) {
	lt := dev.lt
	p := &ltPlan{}
	lt.plans[ltKey{m, n, k}] = p
	if err := cublasCheck("cublasLtMatrixLayoutCreate", lt.layoutCreate(&p.a, cudaR16BF, uint64(k), uint64(m), int64(k))); err != nil {
		return nil, err
	}
	if err := cublasCheck("cublasLtMatrixLayoutCreate", lt.layoutCreate(&p.b, cudaR16BF, uint64(k), uint64(n), int64(k))); err != nil {
		return nil, err
	}
	if err := cublasCheck("cublasLtMatrixLayoutCreate", lt.layoutCreate(&p.c, cudaR32F, uint64(m), uint64(n), int64(m))); err != nil {
		return nil, err
	}
	var res [ltCandidates]ltHeuristic
	var got int32
	if err := cublasCheck("cublasLtMatmulAlgoGetHeuristic", lt.heuristic(lt.handle, lt.desc, p.a, p.b, p.c, p.c, lt.pref,
		ltCandidates, unsafe.Pointer(&res[0]), &got)); err != nil || got == 0 {
		return p, nil // cublasGemmEx
	}
	d := dev.d
	measure := func(run func() error) (float64, error) {
		if err := run(); err != nil {
			return 0, err
		}
		if err := d.check("cuEventRecord", d.cuEventRecord(lt.start, 0)); err != nil {
			return 0, err
		}
		for i := 0; i < 5; i++ {
			if err := run(); err != nil {
				return 0, err
			}
		}
		if err := d.check("cuEventRecord", d.cuEventRecord(lt.end, 0)); err != nil {
			return 0, err
		}
		if err := d.check("cuEventSynchronize", d.cuEventSynchronize(lt.end)); err != nil {
			return 0, err
		}
		var ms float32
		if err := d.check("cuEventElapsedTime", d.cuEventElapsedTime(&ms, lt.start, lt.end)); err != nil {
			return 0, err
		}
		return float64(ms) * 1e3 / 5, nil
	}
	best, err := measure(func() error {
		return dev.gemm(cublasOpT, cublasOpN, m, n, k, A, cudaR16BF, k, B, cudaR16BF, k, false, C, cudaR32F, m, cublasCompute32F)
	})
	if err != nil {
		return nil, err
	}
	p.gemmUs, p.us = best, best
	for i := 0; i < int(got); i++ {
		if res[i].state != 0 || res[i].ws > ltWorkspace {
			continue
		}
		c := &ltPlan{useLt: true, a: p.a, b: p.b, c: p.c, algo: res[i].algo, ws: res[i].ws}
		us, err := measure(func() error { return dev.ltMatmul(c, A, B, C) })
		if err != nil {
			continue // an algorithm that fails at run time is skipped
		}
		if us < best {
			best = us
			p.useLt, p.algo, p.ws, p.us = true, c.algo, c.ws, us
		}
	}
	if os.Getenv("JAMBA_CUDA_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "cuda: cuBLASLt plan %dx%dx%d: %d algorithms, best %.1f us (cublasGemmEx %.1f us), lt=%v\n", m, n, k, got, p.us, p.gemmUs, p.useLt)
	}
	return p, nil
}
