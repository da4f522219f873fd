// Command _blasbench measures OpenBLAS sgemm on the matrix shapes of the
// engine and, in the same run, kernels.MatMul on the same shapes, and prints
// the GFLOP/s of both and their ratio. It is the yardstick of the prefill
// path; it uses cgo and is its own module, so it never enters the default
// build of the engine.
//
// On Debian:
//
//	apt-get install -y libopenblas-dev
//	cd kernels/_blasbench && go run . -threads 2 -t 256
//
// OpenBLAS computes dst = x·Wᵀ with float32 weights (cblas_sgemm, row-major,
// B transposed); MatMul is timed with bf16 and with f32 weights. Each figure
// is the median of -runs timed calls after one warm-up call.
package main

// #cgo CFLAGS: -I/usr/include/x86_64-linux-gnu/openblas-pthread
// #cgo LDFLAGS: -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas
// #include <cblas.h>
// void openblas_set_num_threads(int);
import "C"

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/jamba-go/jamba/kernels"
)

// shapes are the linear layers of ../shared/bench/jamba-small.json as
// out×in (see kernels/bench_test.go).
var shapes = []struct {
	name       string
	rows, cols int
}{
	{"in_proj", 4096, 1024},
	{"x_proj", 96, 2048},
	{"dt_proj", 2048, 64},
	{"out_proj", 1024, 2048},
	{"q_proj", 1024, 1024},
	{"kv_proj", 256, 1024},
	{"gate_up", 3584, 1024},
	{"down", 1024, 3584},
	{"lm_head", 65536, 1024},
	{"square512", 512, 512},
	{"square2048", 2048, 2048},
}

func main() {
	threads := flag.Int("threads", 2, "threads for both OpenBLAS and MatMul")
	T := flag.Int("t", 256, "tokens (rows of x)")
	runs := flag.Int("runs", 7, "timed calls per measurement")
	flag.Parse()

	C.openblas_set_num_threads(C.int(*threads))
	kernels.SetThreads(*threads)
	fmt.Printf("threads %d, T %d, median of %d; read bandwidth %.1f GB/s\n",
		*threads, *T, *runs, kernels.MeasureReadBandwidth(1<<30, *threads))

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\tout×in\tOpenBLAS sgemm\tMatMul bf16\tMatMul f32\tbf16/OpenBLAS\tf32/OpenBLAS\t")
	var sumB, sumBF, sumF float64
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range shapes {
		x := make([]float32, *T*s.cols)
		for i := range x {
			x[i] = r.Float32()*2 - 1
		}
		wf := &kernels.Matrix{Rows: s.rows, Cols: s.cols, DType: kernels.F32, F32: make([]float32, s.rows*s.cols)}
		wb := &kernels.Matrix{Rows: s.rows, Cols: s.cols, DType: kernels.BF16, BF16: make([]uint16, s.rows*s.cols)}
		for i := range wf.F32 {
			wb.BF16[i] = kernels.F32ToBF16(r.Float32()*2 - 1)
			wf.F32[i] = kernels.BF16ToF32(wb.BF16[i])
		}
		dst := make([]float32, *T*s.rows)
		flops := 2 * float64(*T) * float64(s.rows) * float64(s.cols)
		// MatMul first: OpenBLAS's threads keep spinning for a while after a
		// call (about 0.1 s by default) and would take a core from it.
		bf := gflops(flops, *runs, func() { kernels.MatMul(dst, x, *T, wb) })
		f := gflops(flops, *runs, func() { kernels.MatMul(dst, x, *T, wf) })
		blas := gflops(flops, *runs, func() {
			C.cblas_sgemm(C.CblasRowMajor, C.CblasNoTrans, C.CblasTrans,
				C.blasint(*T), C.blasint(s.rows), C.blasint(s.cols), 1,
				(*C.float)(&x[0]), C.blasint(s.cols),
				(*C.float)(&wf.F32[0]), C.blasint(s.cols), 0,
				(*C.float)(&dst[0]), C.blasint(s.rows))
		})
		time.Sleep(300 * time.Millisecond)
		fmt.Fprintf(tw, "%s\t%d×%d\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t\n", s.name, s.rows, s.cols, blas, bf, f, bf/blas, f/blas)
		sumB += flops / blas
		sumBF += flops / bf
		sumF += flops / f
	}
	// Time-weighted: the ratio of total times over all shapes.
	fmt.Fprintf(tw, "all\t\t\t\t\t%.2f\t%.2f\t\n", sumB/sumBF, sumB/sumF)
	tw.Flush()
}

// gflops returns the median rate of runs calls of f after one warm-up.
func gflops(flops float64, runs int, f func()) float64 {
	f()
	ts := make([]time.Duration, runs)
	for i := range ts {
		t0 := time.Now()
		f()
		ts[i] = time.Since(t0)
	}
	slices.Sort(ts)
	return flops / ts[runs/2].Seconds() / 1e9
}
