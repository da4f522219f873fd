package kernels

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// Matrix-vector products read each weight once: their yardstick is the read
// bandwidth. After timing a product, the benchmark alternates 7 times a
// parallel read of a 256 MiB buffer (8 times the L3 cache of the reference
// machine) and the product, and reports the median ratio of their rates as
// "roofline": both then see the same load from the rest of the machine.
var bwBuf []float32

func rooflineFraction(bytes int64, f func()) float64 {
	if bwBuf == nil {
		bwBuf = make([]float32, 256<<20/4)
		for i := range bwBuf {
			bwBuf[i] = 1
		}
	}
	ratios := make([]float64, 7)
	for i := range ratios {
		bw := float64(len(bwBuf)*4) / readPass(bwBuf, Threads()).Seconds()
		n := 0
		start := time.Now()
		for time.Since(start) < 20*time.Millisecond {
			f()
			n++
		}
		mv := float64(bytes) * float64(n) / time.Since(start).Seconds()
		ratios[i] = mv / bw
	}
	slices.Sort(ratios)
	return ratios[len(ratios)/2]
}

func BenchmarkMeasureReadBandwidth(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(MeasureReadBandwidth(256<<20, Threads()), "GB/s")
	}
}

func BenchmarkMatVec(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := []struct{ rows, cols int }{
		{1024, 1024},
		{4096, 1024},
		{1024, 4096},
	}
	for _, dt := range []DType{BF16, F32, I8} {
		all := shapes
		// A 256 MiB matrix, 8 times the L3 cache: like the 0.5 GB that a
		// decode step of jamba-small reads, it comes from memory. (A 64 MiB
		// matrix is still partly served by the L3 cache of the reference
		// machine when it is read over and over.)
		all = append(all, struct{ rows, cols int }{256 << 20 / int(bytesPer(dt)) / 4096, 4096})
		for _, s := range all {
			w := randMatrix(r, dt, s.rows, s.cols, 0)
			x := make([]float32, s.cols)
			dst := make([]float32, s.rows)
			b.Run(fmt.Sprintf("%v/%dx%d", dt, s.rows, s.cols), func(b *testing.B) {
				b.SetBytes(w.Bytes())
				for b.Loop() {
					MatMul(dst, x, 1, w)
				}
				b.ReportMetric(rooflineFraction(w.Bytes(), func() { MatMul(dst, x, 1, w) }), "roofline")
			})
		}
	}
}

// BenchmarkMatVecMemory times decode products as a decode step meets them:
// a jamba-small expert's gate_up (3584×1024) or down (1024×3584)
// projection, in each weight type, through copies that fill 480 MiB, so
// that every product reads its matrix from memory (as the 0.5 GB of a
// jamba-small decode step) and the prefetches matter. "roofline" is the
// read rate over that of the plain sum in the same run (interleaved).
func BenchmarkMatVecMemory(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	types := []struct {
		name string
		make func(rows, cols int) *Matrix
	}{
		{"BF16", func(rows, cols int) *Matrix { return randMatrix(r, BF16, rows, cols, 0) }},
		{"F16", func(rows, cols int) *Matrix {
			w := &Matrix{Rows: rows, Cols: cols, DType: Blocks, Format: f16Format, Q: make([]byte, 2*rows*cols)}
			for j := 1; j < len(w.Q); j += 2 {
				w.Q[j] = byte(r.IntN(0x7c)) // finite halves
			}
			return w
		}},
	}
	for _, f := range dotFormats {
		if f.Name == "Q8_0" || f.Name == "Q4_0" || f.Name == "Q4_K" || f.Name == "Q6_K" {
			types = append(types, struct {
				name string
				make func(rows, cols int) *Matrix
			}{f.Name, func(rows, cols int) *Matrix { return randDotBlocks(r, f, rows, cols) }})
		}
	}
	// Q4_0 and Q8_0 with 8-bit activations too (SetActivationBits).
	for _, f := range dotFormats[:2] {
		types = append(types, struct {
			name string
			make func(rows, cols int) *Matrix
		}{f.Name + "-act8", func(rows, cols int) *Matrix { return randDotBlocks(r, f, rows, cols) }})
	}
	defer SetActivationBits(16)
	for _, ty := range types {
		for _, sh := range []struct{ rows, cols int }{{3584, 1024}, {1024, 3584}} {
			b.Run(fmt.Sprintf("%s/%dx%d", ty.name, sh.rows, sh.cols), func(b *testing.B) {
				bits := 16
				if strings.HasSuffix(ty.name, "-act8") {
					bits = 8
				}
				if err := SetActivationBits(bits); err != nil {
					b.Fatal(err)
				}
				w0 := ty.make(sh.rows, sh.cols)
				ms := []*Matrix{w0}
				for int64(len(ms))*w0.Bytes() < 480<<20 {
					ms = append(ms, ty.make(sh.rows, sh.cols))
				}
				x := make([]float32, sh.cols)
				for i := range x {
					x[i] = float32(r.NormFloat64())
				}
				dst := make([]float32, sh.rows)
				i := 0
				next := func() {
					MatMul(dst, x, 1, ms[i])
					i = (i + 1) % len(ms)
				}
				b.SetBytes(w0.Bytes())
				for b.Loop() {
					next()
				}
				b.ReportMetric(rooflineFraction(w0.Bytes(), next), "roofline")
			})
		}
	}
}

func bytesPer(dt DType) int64 {
	m := Matrix{Rows: 1, Cols: 1, DType: dt}
	return m.Bytes() - map[DType]int64{I8: 4}[dt]
}

// jambaSmall lists the linear layers of ../shared/bench/jamba-small.json
// (hidden 1024, intermediate 3584, 8 heads of 128 with 2 KV heads, Mamba
// expand 2 so d_inner 2048, d_state 16, dt_rank 64, vocab 65536) as out×in.
var jambaSmall = []struct {
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
}

// BenchmarkMatMul times prefill-sized products (T = 256 tokens) and reports
// GFLOP/s, counting 2 flops per weight per token.
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 3))
	const T = 256
	for _, dt := range []DType{BF16, F32, I8} {
		for _, s := range jambaSmall {
			if dt != BF16 && s.name == "lm_head" {
				continue
			}
			w := randMatrix(r, dt, s.rows, s.cols, 0)
			x := make([]float32, T*s.cols)
			for i := range x {
				x[i] = r.Float32()
			}
			dst := make([]float32, T*s.rows)
			b.Run(fmt.Sprintf("%v/T=%d/%s_%dx%d", dt, T, s.name, s.rows, s.cols), func(b *testing.B) {
				for b.Loop() {
					MatMul(dst, x, T, w)
				}
				flops := 2 * float64(T) * float64(s.rows) * float64(s.cols) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkMatMulSmallT covers MoE experts, which see a few tokens each,
// against one token.
func BenchmarkMatMulSmallT(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 4))
	w := randMatrix(r, BF16, 3584, 1024, 0)
	for _, T := range []int{1, 2, 4, 8, 16, 32} {
		x := make([]float32, T*1024)
		dst := make([]float32, T*3584)
		b.Run(fmt.Sprintf("bf16/T=%d", T), func(b *testing.B) {
			b.SetBytes(w.Bytes())
			for b.Loop() {
				MatMul(dst, x, T, w)
			}
			flops := 2 * float64(T) * 3584 * 1024 * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkVector(b *testing.B) {
	const n = 4096
	r := rand.New(rand.NewPCG(1, 5))
	x, y, w := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], w[i] = r.Float32()*2-1, r.Float32()
	}
	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(4 * n)
			for b.Loop() {
				f()
			}
		})
	}
	run("Dot", func() { Dot(x, w) })
	run("Axpy", func() { Axpy(0.5, x, y) })
	run("Exp", func() { Exp(y, x) })
	run("RMSNorm", func() { RMSNorm(y, x, w, 1e-6) })
	run("Softmax", func() { copy(y, x); Softmax(y) })
	run("SiLU", func() { SiLU(y, x) })
}

// BenchmarkScan times the selective scan of one Mamba layer of jamba-small
// (d_inner 2048, d_state 16) for one token and for a 256-token prompt.
func BenchmarkScan(b *testing.B) {
	const Di, N, T = 2048, 16, 256
	r := rand.New(rand.NewPCG(1, 6))
	h, A, _, _, _, _, D := scanInputs(r, Di, N, 0)
	delta, x, y := make([]float32, T*Di), make([]float32, T*Di), make([]float32, T*Di)
	B, C := make([]float32, T*N), make([]float32, T*N)
	for i := range delta {
		delta[i], x[i] = r.Float32()/4, r.Float32()*2-1
	}
	for i := range B {
		B[i], C[i] = r.Float32()*2-1, r.Float32()*2-1
	}
	b.Run("Step", func(b *testing.B) {
		for b.Loop() {
			ScanStep(h, A, delta, x, B, C, D, y, Di, N)
		}
	})
	b.Run("Seq256", func(b *testing.B) {
		for b.Loop() {
			ScanSeq(h, A, delta, x, B, C, D, y, T, Di, N)
		}
	})
}

// BenchmarkAttention times Attention on jamba-small's heads (8 query heads,
// 2 key-value heads of 128): a decode step at 8K tokens of context and a
// 512-token prefill chunk after 3584 tokens. GFLOP/s count the score and
// the weighted-sum multiply-adds (4·hd flops per visible key and head).
func BenchmarkAttention(b *testing.B) {
	const nH, nKV, hd = 8, 2, 128
	for _, c := range []struct{ T, past int }{{1, 8191}, {512, 3584}} {
		b.Run(fmt.Sprintf("T=%d/past=%d", c.T, c.past), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			n := c.past + c.T
			rnd := func(k int) []float32 {
				v := make([]float32, k)
				for i := range v {
					v[i] = r.Float32()*2 - 1
				}
				return v
			}
			q, K, V := rnd(c.T*nH*hd), rnd(n*nKV*hd), rnd(n*nKV*hd)
			out := make([]float32, c.T*nH*hd)
			keys := float64(c.T*c.past + c.T*(c.T+1)/2)
			for b.Loop() {
				Attention(out, q, K, V, c.T, c.past, nH, nKV, hd, 0.09, n)
			}
			b.ReportMetric(4*hd*nH*keys*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkAttentionContext compares the tiled attention ("tiled") with
// the one-(query, head)-at-a-time path ("rows") on jamba-small's heads at
// 1K, 8K and 32K tokens of context, float32 and bfloat16 keys and values:
// a prefill chunk of 64 queries ending at the context length, and a decode
// step at it. The two run alternately within each count, so a neighbour's
// load hits both; compare medians over -count runs. GFLOP/s as in
// BenchmarkAttention.
func BenchmarkAttentionContext(b *testing.B) {
	const nH, nKV, hd = 8, 2, 128
	defer func(v bool) { attnTiled = v }(attnTiled)
	for _, ctx := range []int{1024, 8192, 32768} {
		r := rand.New(rand.NewPCG(1, 2))
		rnd := func(k int) []float32 {
			v := make([]float32, k)
			for i := range v {
				v[i] = r.Float32()*2 - 1
			}
			return v
		}
		q, K, V := rnd(64*nH*hd), rnd(ctx*nKV*hd), rnd(ctx*nKV*hd)
		K16, _ := toBF16(K)
		V16, _ := toBF16(V)
		out := make([]float32, 64*nH*hd)
		for _, kv := range []string{"f32", "bf16"} {
			for _, T := range []int{64, 1} {
				phase := "prefill"
				if T == 1 {
					phase = "decode"
				}
				past := ctx - T
				keys := float64(T*past + T*(T+1)/2)
				for _, tiled := range []bool{false, true} {
					name := map[bool]string{false: "rows", true: "tiled"}[tiled]
					b.Run(fmt.Sprintf("ctx=%d/kv=%s/%s/%s", ctx, kv, phase, name), func(b *testing.B) {
						attnTiled = tiled
						for b.Loop() {
							if kv == "bf16" {
								AttentionBF16(out, q, K16, V16, T, past, nH, nKV, hd, 0.09, ctx)
							} else {
								Attention(out, q, K, V, T, past, nH, nKV, hd, 0.09, ctx)
							}
						}
						b.ReportMetric(4*hd*nH*keys*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
					})
				}
			}
		}
	}
}

// BenchmarkAttentionDecodeOneKV: a decode step on jamba-3b's heads (20
// query heads over 1 key-value head of 128) at 8K and 32K tokens, bf16 keys
// and values: the one-query path ("rows"), the tiled path with the group as
// one unit ("tiled", one thread), and the split step ("split", every
// thread), alternating.
func BenchmarkAttentionDecodeOneKV(b *testing.B) {
	const nH, nKV, hd = 20, 1, 128
	defer func(t, s bool) { attnTiled, attnSplit = t, s }(attnTiled, attnSplit)
	for _, ctx := range []int{8192, 32768} {
		r := rand.New(rand.NewPCG(1, 2))
		rnd := func(k int) []float32 {
			v := make([]float32, k)
			for i := range v {
				v[i] = r.Float32()*2 - 1
			}
			return v
		}
		q := rnd(nH * hd)
		K16, _ := toBF16(rnd(ctx * nKV * hd))
		V16, _ := toBF16(rnd(ctx * nKV * hd))
		out := make([]float32, nH*hd)
		for _, mode := range []string{"rows", "tiled", "split"} {
			b.Run(fmt.Sprintf("ctx=%d/%s", ctx, mode), func(b *testing.B) {
				attnTiled, attnSplit = mode != "rows", mode == "split"
				for b.Loop() {
					AttentionBF16(out, q, K16, V16, 1, ctx-1, nH, nKV, hd, 0.09, ctx)
				}
				b.ReportMetric(4*hd*nH*float64(ctx)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkMatMulFused times the fused block kernels (and F16) on an
// expert's up-projection shape (3584×1024) for one token (decode), 4 and
// 256 (prefill), in GFLOP/s and GB/s of weights, beside bf16.
func BenchmarkMatMulFused(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 4))
	const R, C = 3584, 1024
	for _, f := range append([]*BlockFormat{nil, f16Format}, dotFormats...) {
		var w *Matrix
		name := "BF16"
		if f == nil {
			w = randMatrix(r, BF16, R, C, 0)
		} else {
			w = randDotBlocks(r, f, R, C)
			name = f.Name
		}
		if f == f16Format {
			for i := 0; i < len(w.Q); i += 2 { // normal halves of magnitude about 2^-7
				binary.LittleEndian.PutUint16(w.Q[i:], uint16(0x2000+r.IntN(0x400))|uint16(r.IntN(2))<<15)
			}
		}
		for _, T := range []int{1, 4, 256} {
			x := make([]float32, T*C)
			for i := range x {
				x[i] = r.Float32()*2 - 1
			}
			dst := make([]float32, T*R)
			b.Run(fmt.Sprintf("%s/T=%d", name, T), func(b *testing.B) {
				for b.Loop() {
					MatMul(dst, x, T, w)
				}
				flops := 2 * float64(T) * R * C * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				b.ReportMetric(float64(w.Bytes())*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}

// BenchmarkMatMulAct8 compares the 16-bit (default) and 8-bit activation
// routes of the fused block kernels (SetActivationBits) on a 2048×4096
// matrix (jamba-small's width) for 1, 4 and 64 tokens.
func BenchmarkMatMulAct8(b *testing.B) {
	defer SetActivationBits(16)
	r := rand.New(rand.NewPCG(1, 5))
	const R, C = 2048, 4096
	for _, f := range dotFormats {
		w := randDotBlocks(r, f, R, C)
		for _, T := range []int{1, 4, 64} {
			benchActBits(b, r, f.Name, w, T)
		}
	}
}

// BenchmarkQuantizeAct8 times the rounding of 64 rows of 4096 activations
// for the fused block products: 16-bit blocks (xQ8) and 8-bit blocks of
// 32 and 256 (xAct8).
func BenchmarkQuantizeAct8(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 6))
	const T, C = 64, 4096
	x := make([]float32, T*C)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	b.Run("int16", func(b *testing.B) {
		var a xQ8
		for b.Loop() {
			a.quantize(x, T, C)
		}
	})
	for _, e := range []int{32, 256} {
		b.Run(fmt.Sprintf("int8/%d", e), func(b *testing.B) {
			var a xAct8
			for b.Loop() {
				a.quantize(x, T, C, e)
			}
		})
	}
}

// BenchmarkMatMulQ4_0 times Q4_0 beside Q8_0 on an expert's up-projection
// shape (3584×1024) for decode (T = 1) and prefill (T = 256), with 16- and
// 8-bit activations, in GFLOP/s.
func BenchmarkMatMulQ4_0(b *testing.B) {
	defer SetActivationBits(16)
	r := rand.New(rand.NewPCG(1, 7))
	const R, C = 3584, 1024
	for _, f := range dotFormats[:2] {
		w := randDotBlocks(r, f, R, C)
		for _, T := range []int{1, 256} {
			benchActBits(b, r, f.Name, w, T)
		}
	}
}

// BenchmarkDot8Kernel times the 8-bit kernels alone on one group of 8
// tokens, and on one token, over 64 rows of 1024 columns (the rows in the L2 cache), in
// nanoseconds per pair of rows and block of 32 weights ("ns/pairblock").
func BenchmarkDot8Kernel(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 8))
	const R, C, T = 64, 1024, 8
	for _, f := range dotFormats {
		w := randDotBlocks(r, f, R, C)
		x := make([]float32, T*C)
		for i := range x {
			x[i] = r.Float32()*2 - 1
		}
		var a xAct8
		a.quantize(x, T, C, f.Elems)
		a.group(T, C, act8MaxTokens(f.Dot, R))
		g := a.groups[0]
		y := make([]float32, R*T)
		b.Run(f.Name, func(b *testing.B) {
			for b.Loop() {
				if f.Dot == DotQ4_0 {
					blockDot8Lanes(y, R, w.Q, f.rowBytes(C), R, g.nt, g.nt, g.q, g.d, g.k8)
				} else {
					blockDot8Rows(y[:R*g.nt], f.Dot, w.Q, f.rowBytes(C), g.nt, g.q, g.d, g.s, g.nc(f.Dot))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(R/2*C/32), "ns/pairblock")
		})
		if f.Dot == DotQ4_0 {
			continue
		}
		// One token, as decoding multiplies (xAct8's own layout).
		nb, nd := C/32, C/f.Elems
		b.Run(f.Name+"/1", func(b *testing.B) {
			for b.Loop() {
				blockDot8Rows(y[:R], f.Dot, w.Q, f.rowBytes(C), 1, a.q[:C], a.d[:nd], a.s[:nb], a.tokenAux(f.Dot, 0, C))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(R/2*C/32), "ns/pairblock")
		})
	}
}

// benchActBits runs MatMul of w with T random tokens under 16- and 8-bit
// activations, in GFLOP/s.
func benchActBits(b *testing.B, r *rand.Rand, name string, w *Matrix, T int) {
	R, C := w.Rows, w.Cols
	x := make([]float32, T*C)
	for i := range x {
		x[i] = r.Float32()*2 - 1
	}
	dst := make([]float32, T*R)
	for _, bits := range []int{16, 8} {
		b.Run(fmt.Sprintf("%s/T=%d/bits=%d", name, T, bits), func(b *testing.B) {
			if err := SetActivationBits(bits); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				MatMul(dst, x, T, w)
			}
			flops := 2 * float64(T) * float64(R) * float64(C) * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
