package cuda

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"testing"
	"unsafe"

	"github.com/jamba-go/jamba/kernels"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// maxRel is max|got − want| / max|want|.
func maxRel(got, want []float32) float64 {
	var d, m float64
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
		m = max(m, math.Abs(float64(want[i])))
		if got[i] != got[i] {
			return math.Inf(1)
		}
	}
	return d / m
}

func upload(t *testing.T, dev *Device, v []float32) Buf {
	t.Helper()
	b, err := dev.Alloc(4 * int64(len(v)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Free(&b) })
	if err := dev.UploadF32(b, 0, v); err != nil {
		t.Fatal(err)
	}
	return b
}

func poisoned(t *testing.T, dev *Device, n int) Buf {
	t.Helper()
	p := make([]float32, n)
	for i := range p {
		p[i] = float32(math.NaN())
	}
	return upload(t, dev, p)
}

// TestMatMul compares every matrix-product path (matrix-vector kernels up
// to 8 rows, the tensor-core kernel up to 64 with and without column
// splits, cuBLAS beyond; float32 and bfloat16 weights; widths that are and
// are not multiples of 8) with the CPU kernel, on fresh random inputs and
// a NaN-poisoned output.
func TestMatMul(t *testing.T) {
	dev := gpu(t)
	rng := rand.New(rand.NewPCG(1, 2))
	defer func(r, m, b int, d, w bool) {
		dev.gemvRows, dev.mmaRows, dev.mmaBlocks, dev.mmaDeep, dev.mmaWide = r, m, b, d, w
	}(dev.gemvRows, dev.mmaRows, dev.mmaBlocks, dev.mmaDeep, dev.mmaWide)
	for _, set := range [][4]int{{1, 0, 8, 0}, {gemvMax, 0, 8, 0}, {1, mmaMax, 8, 0}, {1, mmaMax, 1000, 0}, {1, mmaMax, 8, 1}, {1, mmaMax, 8, 2}} {
		// both sides of the matrix-vector / tensor-core / cuBLAS
		// boundaries; the tensor-core kernel (4 steps in flight, 8, and
		// 32 rows a warp) with and without column splits
		dev.gemvRows, dev.mmaRows, dev.mmaBlocks, dev.mmaDeep, dev.mmaWide = set[0], set[1], set[2], set[3] == 1, set[3] == 2
		gr := set[0]
		for _, sh := range []struct{ rows, cols int }{{67, 100}, {67, 104}, {1000, 4096}, {5, 3}} {
			for _, dt := range []DType{F32, BF16} {
				for _, n := range []int{1, 2, 3, 5, 8, 9, 33, 300} {
					wv := randVec(rng, sh.rows*sh.cols)
					cw := &kernels.Matrix{Rows: sh.rows, Cols: sh.cols, DType: kernels.F32, F32: wv}
					if dt == BF16 {
						cw = &kernels.Matrix{Rows: sh.rows, Cols: sh.cols, DType: kernels.BF16, BF16: make([]uint16, len(wv))}
						for i, v := range wv {
							cw.BF16[i] = kernels.F32ToBF16(v)
						}
					}
					x := randVec(rng, max(n, gemvMax)*sh.cols)
					want := make([]float32, n*sh.rows)
					kernels.MatMul(want, x[:n*sh.cols], n, cw)

					m := &Model{Dev: dev}
					gw, err := m.matrix("w", cw)
					if err != nil {
						t.Fatal(err)
					}
					xb := upload(t, dev, x)
					yb := poisoned(t, dev, n*sh.rows)
					var sc scratch
					if err := dev.MatMul(yb.Ptr, xb.Ptr, n, &gw, &sc); err != nil {
						t.Fatal(err)
					}
					got := make([]float32, n*sh.rows)
					if err := dev.DownloadF32(got, yb, 0); err != nil {
						t.Fatal(err)
					}
					m.Close()
					dev.Free(&sc.hi)
					dev.Free(&sc.y2)
					// float32 products in another summation order differ by
					// a few ulps of the row's magnitude (≲ 1e-6 relative); the
					// split bf16 paths (cuBLAS and the tensor-core kernel)
					// round x to 16 significant bits (2^-17 relative each), so
					// 1e-4 leaves room for sums of 4096.
					tol := 1e-5
					if dt == BF16 && n > dev.gemvRows {
						tol = 1e-4
					}
					if e := maxRel(got, want); !(e <= tol) {
						t.Errorf("%dx%d %v n=%d: max rel error %.3g > %g", sh.rows, sh.cols, dt.suffix(), n, e, tol)
					} else if sh.cols == 4096 {
						t.Logf("%dx%d %v n=%d gemv≤%d mma≤%d/%d deep=%d: max rel error %.3g", sh.rows, sh.cols, dt.suffix(), n, gr, set[1], set[2], set[3], e)
					}
				}
			}
		}
	}
}

// TestMatMulDense compares the dense tensor-core kernels (mmd_bf16_*) with
// the CPU kernel and with the split cuBLAS path they replace, on rows of x
// on both sides of every form's limit (4, 8, 16, 32 rows) and beyond (33
// and 64 take cuBLAS), widths that are not multiples of the kernels' tiles
// (32 weight rows a warp, 128 a block, 256 columns staged at a time), with
// and without column splits.
func TestMatMulDense(t *testing.T) {
	dev := gpu(t)
	rng := rand.New(rand.NewPCG(3, 4))
	defer func(r, s, b int) { dev.mmdRows, dev.mmdSmall, dev.mmdBlocks = r, s, b }(dev.mmdRows, dev.mmdSmall, dev.mmdBlocks)
	dev.mmdSmall = 1 << 30
	for _, sh := range []struct{ rows, cols int }{{67, 104}, {300, 1000}, {4100, 264}, {200, 8200}, {17, 8}} {
		wv := randVec(rng, sh.rows*sh.cols)
		cw := &kernels.Matrix{Rows: sh.rows, Cols: sh.cols, DType: kernels.BF16, BF16: make([]uint16, len(wv))}
		for i, v := range wv {
			cw.BF16[i] = kernels.F32ToBF16(v)
		}
		m := &Model{Dev: dev}
		gw, err := m.matrix("w", cw)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{2, 3, 4, 5, 8, 9, 16, 17, 31, 32, 33, 64} {
			x := randVec(rng, max(n, gemvMax)*sh.cols)
			want := make([]float32, n*sh.rows)
			kernels.MatMul(want, x[:n*sh.cols], n, cw)
			xb := upload(t, dev, x)
			run := func(rows, blocks int) []float32 {
				dev.mmdRows, dev.mmdBlocks = rows, blocks
				yb := poisoned(t, dev, n*sh.rows)
				var sc scratch
				if err := dev.MatMul(yb.Ptr, xb.Ptr, n, &gw, &sc); err != nil {
					t.Fatal(err)
				}
				got := make([]float32, n*sh.rows)
				if err := dev.DownloadF32(got, yb, 0); err != nil {
					t.Fatal(err)
				}
				dev.Free(&sc.hi)
				dev.Free(&sc.y2)
				dev.Free(&yb)
				return got
			}
			lt := dev.lt
			dev.lt = nil
			ref := run(0, 4) // cuBLAS on the split input (cublasGemmEx)
			if dev.lt = lt; lt != nil {
				// cuBLASLt with the algorithm timed fastest for the shape
				if e := maxRel(run(0, 4), ref); !(e <= 1e-4) {
					t.Errorf("%dx%d n=%d: cuBLASLt: max rel difference from cublasGemmEx %.3g > 1e-4", sh.rows, sh.cols, n, e)
				}
			}
			// Both paths round x to 16 significant bits (2^-17 relative
			// each) and sum in float32 in different orders: 1e-4 of the
			// largest output leaves room for sums of 8200 terms, as in
			// TestMatMul.
			for _, b := range []int{0, 1000} { // one wave of blocks, and as many column splits as the columns allow
				got := run(mmdMax, b)
				if e := maxRel(got, want); !(e <= 1e-4) {
					t.Errorf("%dx%d n=%d blocks=%d: max rel error against the CPU %.3g > 1e-4", sh.rows, sh.cols, n, b, e)
				}
				if e := maxRel(got, ref); !(e <= 1e-4) {
					t.Errorf("%dx%d n=%d blocks=%d: max rel difference from cuBLAS %.3g > 1e-4", sh.rows, sh.cols, n, b, e)
				} else if sh.cols >= 1000 && (n == 17 || n == 32) {
					t.Logf("%dx%d n=%d blocks=%d: max rel difference from cuBLAS %.3g", sh.rows, sh.cols, n, b, e)
				}
			}
		}
		m.Close()
	}
	t.Logf("blocks of mmd_bf16_{1,2,4,8} a multiprocessor: %v", dev.mmdFit)
}

func TestRMSNorm(t *testing.T) {
	dev := gpu(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 7, 1003, 4096} {
		rows := 3
		h := randVec(rng, rows*n)
		d := randVec(rng, rows*n)
		w := randVec(rng, n)
		want := make([]float32, rows*n)
		sum := make([]float32, rows*n)
		for i := range h {
			sum[i] = h[i] + d[i]
		}
		for r := 0; r < rows; r++ {
			kernels.RMSNorm(want[r*n:(r+1)*n], sum[r*n:(r+1)*n], w, 1e-6)
		}
		hb, db, wb := upload(t, dev, h), upload(t, dev, d), upload(t, dev, w)
		out := poisoned(t, dev, rows*n)
		if err := dev.RMSNorm(out.Ptr, hb.Ptr, db.Ptr, wb.Ptr, rows, n, 1e-6); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, rows*n)
		if err := dev.DownloadF32(got, out, 0); err != nil {
			t.Fatal(err)
		}
		// float32 sums of squares in another order: a few ulps.
		if e := maxRel(got, want); !(e <= 1e-5) {
			t.Errorf("n=%d: normed rows off by %.3g", n, e)
		}
		if err := dev.DownloadF32(got, hb, 0); err != nil {
			t.Fatal(err)
		}
		if e := maxRel(got, sum); e != 0 {
			t.Errorf("n=%d: residual sum off by %.3g", n, e)
		}
		// The fused form: delta as the two halves of a stacked product
		// (d = d1 + d2, summed first as add_halves does) and the output
		// also split into bf16 hi rows then lo rows. The same float32
		// operations in the same order: bit for bit.
		d2 := make([]float32, 2*rows*n)
		for i := range d {
			d2[rows*n+i] = d[i] * 0x1p-9
			d2[i] = d[i] - d2[rows*n+i]
			sum[i] = h[i] + (d2[i] + d2[rows*n+i])
		}
		for r := 0; r < rows; r++ {
			kernels.RMSNorm(want[r*n:(r+1)*n], sum[r*n:(r+1)*n], w, 1e-6)
		}
		hb2, d2b := upload(t, dev, h), upload(t, dev, d2)
		out2 := poisoned(t, dev, rows*n)
		xsb := poisoned(t, dev, rows*n) // rows·n bf16 pairs
		if err := dev.rmsNorm(out2.Ptr, hb2.Ptr, d2b.Ptr, int64(rows*n), wb.Ptr, rows, n, 1e-6, xsb.Ptr); err != nil {
			t.Fatal(err)
		}
		if err := dev.DownloadF32(got, out2, 0); err != nil {
			t.Fatal(err)
		}
		if e := maxRel(got, want); !(e <= 1e-5) {
			t.Errorf("n=%d: normed rows (delta in halves) off by %.3g", n, e)
		}
		xs := make([]uint16, 2*rows*n)
		if err := dev.Download(unsafe.Pointer(&xs[0]), xsb, 0, int64(4*rows*n)); err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			hi := kernels.F32ToBF16(v)
			lo := kernels.F32ToBF16(v - kernels.BF16ToF32(hi))
			if xs[i] != hi || xs[rows*n+i] != lo {
				t.Fatalf("n=%d: split output %d: %#x %#x, want %#x %#x", n, i, xs[i], xs[rows*n+i], hi, lo)
			}
		}
		if err := dev.DownloadF32(got, hb2, 0); err != nil {
			t.Fatal(err)
		}
		if e := maxRel(got, sum); e != 0 {
			t.Errorf("n=%d: residual sum (delta in halves) off by %.3g", n, e)
		}
	}
}

// TestSample checks greedy ids against the CPU argmax (ties to the lower id),
// −1 for rows with a NaN or infinite logit, and that temperature draws
// follow softmax(logits/T).
func TestSample(t *testing.T) {
	dev := gpu(t)
	rng := rand.New(rand.NewPCG(5, 6))
	V := 1000
	rows := 5
	logits := randVec(rng, rows*V)
	logits[2*V+10], logits[2*V+900] = 50, 50 // a tie: the lower id wins
	logits[3*V+2] = float32(math.Inf(1))     // non-finite rows give −1
	logits[4*V+7] = float32(math.NaN())
	m := &Model{Dev: dev, Config: nil}
	m.ws.logits = upload(t, dev, logits)
	ids := make([]int32, 256)
	m.ws.ids = upload(t, dev, make([]float32, len(ids)))
	m.ws.nhead = rows
	sample := func(o SampleOptions, V int) []int {
		t.Helper()
		if err := dev.launch("sample", [2]int{m.ws.nhead}, 1024, m.ws.ids.Ptr, m.ws.logits.Ptr, ia(V),
			fa(o.Temperature), fa(o.MinP), o.Seed, o.Step); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, m.ws.nhead)
		if err := dev.DownloadF32(got, m.ws.ids, 0); err != nil {
			t.Fatal(err)
		}
		out := make([]int, len(got))
		for i, v := range got {
			out[i] = int(int32(math.Float32bits(v)))
		}
		return out
	}
	got := sample(SampleOptions{}, V)
	for r := 0; r < rows; r++ {
		want := 0
		for i, v := range logits[r*V : (r+1)*V] {
			if v > logits[r*V+want] {
				want = i
			}
		}
		if r >= 3 {
			want = -1
		}
		if got[r] != want {
			t.Errorf("row %d: greedy %d, argmax %d", r, got[r], want)
		}
	}
	// Temperature: 256 rows of the same 4 logits, 40 draws each.
	small := []float32{1, 2, 0, 1.5}
	rowsT := 256
	rep := make([]float32, rowsT*4)
	for i := range rep {
		rep[i] = small[i%4]
	}
	dev.Free(&m.ws.logits)
	m.ws.logits = upload(t, dev, rep)
	m.ws.nhead = rowsT
	count := make([]float64, 4)
	draws := 0
	for step := uint64(0); step < 40; step++ {
		for _, id := range sample(SampleOptions{Temperature: 0.8, Seed: 9, Step: step}, 4) {
			count[id]++
			draws++
		}
	}
	var z float64
	p := make([]float64, 4)
	for i, l := range small {
		p[i] = math.Exp(float64(l) / 0.8)
		z += p[i]
	}
	for i := range p {
		p[i] /= z
		f := count[i] / float64(draws)
		// 10240 draws: the standard error of a frequency is ≤ 0.005; 0.025 is 5 of them.
		if math.Abs(f-p[i]) > 0.025 {
			t.Errorf("token %d drawn with frequency %.4f, softmax gives %.4f", i, f, p[i])
		}
	}
	// min-p 0.5 at T=0.8 keeps tokens within 0.8·ln 2 of the best: ids 1 and 3.
	for _, id := range sample(SampleOptions{Temperature: 0.8, MinP: 0.5, Seed: 3}, 4) {
		if id != 1 && id != 3 {
			t.Fatalf("min-p let token %d through", id)
		}
	}
}

// TestMMAExperts compares the tensor-core kernel over per-expert slot
// lists (the MoE path of decode batches) with the CPU product of each
// slot's expert and row: 200 weight rows (not a multiple of 16), 1064
// columns (eight unrolled steps of 128, one of 32, a last of 8), experts
// with 37 slots (two passes), none, 6 and 1, x rows shared by two slots
// (xdiv 2) and one each, with and without column splits.
func TestMMAExperts(t *testing.T) {
	dev := gpu(t)
	defer func(b int, d, w bool) { dev.mmaBlocks, dev.mmaDeep, dev.mmaWide = b, d, w }(dev.mmaBlocks, dev.mmaDeep, dev.mmaWide)
	rng := rand.New(rand.NewPCG(5, 6))
	const E, rows, cols = 4, 200, 1064
	counts := []int{37, 0, 6, 1}
	slots := 0
	for _, c := range counts {
		slots += c
	}
	// A random expert for each slot, with the counts above.
	var expertOf []int
	for e, c := range counts {
		for range c {
			expertOf = append(expertOf, e)
		}
	}
	rng.Shuffle(len(expertOf), func(i, j int) { expertOf[i], expertOf[j] = expertOf[j], expertOf[i] })
	off := make([]int32, E+1)
	var list []int32
	for e := range E {
		off[e] = int32(len(list))
		for s, x := range expertOf {
			if x == e {
				list = append(list, int32(s))
			}
		}
	}
	off[E] = int32(len(list))
	ints := make([]float32, 0, E+1+slots) // int32 bits in a float buffer for upload
	for _, v := range append(off, list...) {
		ints = append(ints, math.Float32frombits(uint32(v)))
	}
	lists := upload(t, dev, ints)

	wv := randVec(rng, E*rows*cols)
	cw := make([]*kernels.Matrix, E)
	all := &kernels.Matrix{Rows: E * rows, Cols: cols, DType: kernels.BF16, BF16: make([]uint16, len(wv))}
	for i, v := range wv {
		all.BF16[i] = kernels.F32ToBF16(v)
	}
	for e := range E {
		cw[e] = &kernels.Matrix{Rows: rows, Cols: cols, DType: kernels.BF16, BF16: all.BF16[e*rows*cols : (e+1)*rows*cols]}
	}
	m := &Model{Dev: dev}
	defer m.Close()
	gw, err := m.matrix("experts", all)
	if err != nil {
		t.Fatal(err)
	}
	for _, xdiv := range []int{2, 1} {
		// no column splits, then the most; 4 steps in flight, 8, and 32 rows a warp
		for _, mb := range []int{0, 1000, -1, -2, -1002} {
			dev.mmaBlocks, dev.mmaDeep, dev.mmaWide = max(mb, 0)+max(-mb-2, 0), mb == -1, mb <= -2
			nx := (slots + xdiv - 1) / xdiv
			x := randVec(rng, nx*cols)
			xb := upload(t, dev, x)
			xs := poisoned(t, dev, nx*cols) // nx·2·cols bf16
			if err := dev.launch("split_rows", [2]int{blocks(int64(nx*cols), 256)}, 256, xs.Ptr, xb.Ptr, ia(cols), la(int64(nx))); err != nil {
				t.Fatal(err)
			}
			yb := poisoned(t, dev, slots*rows)
			var part Buf
			if err := dev.mma(yb.Ptr, gw.Ptr, int64(rows*cols), E, 3, lists.Ptr, lists.Ptr+uint64(4*(E+1)), xs.Ptr, xdiv, rows, cols, 0, int64(slots), &part, dev.mmaWide); err != nil {
				t.Fatal(err)
			}
			got := make([]float32, slots*rows)
			if err := dev.DownloadF32(got, yb, 0); err != nil {
				t.Fatal(err)
			}
			dev.Free(&part)
			want := make([]float32, slots*rows)
			for s, e := range expertOf {
				r := s / xdiv
				kernels.MatMul(want[s*rows:(s+1)*rows], x[r*cols:(r+1)*cols], 1, cw[e])
			}
			// x to 16 significant bits (the split), float32 sums of 1064
			// terms: as TestMatMul's split path.
			if e := maxRel(got, want); !(e <= 1e-4) {
				t.Errorf("xdiv %d, %d blocks/SM, deep %v, wide %v: max rel error %.3g", xdiv, dev.mmaBlocks, dev.mmaDeep, dev.mmaWide, e)
			} else {
				t.Logf("xdiv %d, %d blocks/SM, deep %v, wide %v: max rel error %.3g", xdiv, dev.mmaBlocks, dev.mmaDeep, dev.mmaWide, e)
			}
		}
	}
}

// sampleRef is the CPU sampler's filtering (sample.Sampler: temperature,
// top-k, top-p, min-p, in that order, ids ordered by logit descending and
// id ascending) in plain float64: the probability of each id kept.
func sampleRef(l []float32, o SampleOptions) map[int]float64 {
	inv := 1 / o.Temperature
	x := make([]float32, len(l))
	ids := make([]int, len(l))
	for i, v := range l {
		x[i] = v * inv
		ids[i] = i
	}
	sort.Slice(ids, func(a, b int) bool {
		va, vb := x[ids[a]], x[ids[b]]
		return va > vb || va == vb && ids[a] < ids[b]
	})
	if o.TopK > 0 && o.TopK < len(ids) {
		ids = ids[:o.TopK]
	}
	maxv := x[ids[0]]
	p := make(map[int]float64, len(ids))
	sum := 0.0
	for _, id := range ids {
		p[id] = math.Exp(float64(x[id] - maxv))
		sum += p[id]
	}
	if o.TopP > 0 && o.TopP < 1 {
		target, acc := float64(o.TopP)*sum, 0.0
		for n, id := range ids {
			acc += p[id]
			if acc >= target {
				for _, drop := range ids[n+1:] {
					delete(p, drop)
				}
				break
			}
		}
	}
	sum = 0
	for id, v := range p {
		if v < float64(o.MinP) {
			delete(p, id)
			continue
		}
		sum += v
	}
	for id := range p {
		p[id] /= sum
	}
	return p
}

// TestSampleTop draws with top-k, top-p and min-p on the GPU (Model.Sample)
// and checks every draw against the CPU sampler's kept set and the
// frequencies against its probabilities, on logits with many ties at the
// thresholds (quarter steps), and the kept set alone on a vocabulary of
// 50257 untied logits. The reference filter is checked against
// sample.Sampler's own draws first.
func TestSampleTop(t *testing.T) {
	dev, _ := testDevice() // the CPU half runs without a GPU
	for _, tc := range []struct {
		V, rows, steps int
		ties           bool
		o              SampleOptions
	}{
		{1000, 256, 40, true, SampleOptions{Temperature: 1, TopK: 1}},
		{1000, 256, 40, true, SampleOptions{Temperature: 0.7, TopK: 37}},
		{1000, 256, 40, true, SampleOptions{Temperature: 1.3, TopP: 0.6}},
		{1000, 256, 40, true, SampleOptions{Temperature: 0.9, TopK: 200, TopP: 0.9, MinP: 0.02}},
		{50257, 64, 4, false, SampleOptions{Temperature: 1, TopK: 50, TopP: 0.95}},
		{50257, 64, 4, false, SampleOptions{Temperature: 0.6, TopP: 0.5}},
	} {
		rng := rand.New(rand.NewPCG(uint64(tc.V), uint64(tc.o.TopK)))
		row := randVec(rng, tc.V)
		if tc.ties {
			for i := range row {
				row[i] = float32(math.Round(float64(row[i])*4)) / 4
			}
		}
		ref := sampleRef(row, tc.o)
		cpu := sample.New(sample.Params{Temperature: tc.o.Temperature, TopK: tc.o.TopK, TopP: tc.o.TopP, MinP: tc.o.MinP, Seed: 1}, tc.V)
		for range 50000 / tc.V * 10 {
			if id := cpu.Sample(row); ref[id] == 0 {
				t.Fatalf("%+v: the CPU sampler drew %d, outside the reference's kept set", tc.o, id)
			}
		}
		if dev == nil {
			continue
		}
		rep := make([]float32, tc.rows*tc.V)
		for r := 0; r < tc.rows; r++ {
			copy(rep[r*tc.V:], row)
		}
		m := &Model{Dev: dev, Config: &model.Config{VocabSize: tc.V}}
		m.ws.logits = upload(t, dev, rep)
		m.ws.ids = upload(t, dev, make([]float32, tc.rows))
		m.ws.nhead = tc.rows
		count := map[int]float64{}
		n := 0
		for step := 0; step < tc.steps; step++ {
			o := tc.o
			o.Seed, o.Step = 7, uint64(step)
			ids, err := m.Sample(o)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if ref[id] == 0 {
					t.Fatalf("%+v: drew %d, which the CPU sampler filters out", tc.o, id)
				}
				count[id]++
				n++
			}
		}
		dev.Free(&m.ws.logits)
		dev.Free(&m.ws.ids)
		if !tc.ties {
			t.Logf("V=%d %+v: %d draws, all kept (%d ids kept)", tc.V, tc.o, n, len(ref))
			continue
		}
		worst := 0.0
		for id, p := range ref {
			// 5 standard errors of a frequency over n draws.
			se := math.Sqrt(p * (1 - p) / float64(n))
			d := math.Abs(count[id]/float64(n) - p)
			if d > 5*se+1e-9 {
				t.Errorf("%+v: id %d drawn with frequency %.4f, the CPU sampler's probability %.4f", tc.o, id, count[id]/float64(n), p)
			}
			if se > 0 {
				worst = max(worst, d/se)
			}
		}
		t.Logf("V=%d %+v: %d draws over %d kept ids, largest deviation %.2f standard errors", tc.V, tc.o, n, len(ref), worst)
	}
	if dev == nil {
		gpu(t) // skips, or fails under JAMBA_REQUIRE_GPU
	}
}

// TestSampleEach: one launch of sample_rows over rows with different
// options (greedy, temperature, min-p, top-k, top-p, both, a non-finite
// row) draws, row by row, exactly the ids of each row's own launch of
// sample or sample_top with the same seed and step (what the engine did
// before it batched its requests' draws).
func TestSampleEach(t *testing.T) {
	dev := gpu(t)
	opts := []SampleOptions{
		{},
		{Temperature: 1, Seed: 3, Step: 1},
		{Temperature: 0.8, MinP: 0.1, Seed: 4, Step: 9},
		{Temperature: 0.7, TopK: 37, Seed: 5, Step: 2},
		{Temperature: 1.3, TopP: 0.6, Seed: 6, Step: 3},
		{Temperature: 0.9, TopK: 200, TopP: 0.9, MinP: 0.02, Seed: 7, Step: 4},
		{Temperature: 1, TopK: 1, Seed: 8},
		{Temperature: 1, TopK: 40, TopP: 0.95, Seed: 9, Step: 1 << 40},
		{Temperature: 0.5, TopP: 0.95, Seed: 10, Step: 5},
		{Temperature: 1, TopK: 40, Seed: 11}, // a non-finite row
	}
	for _, V := range []int{1000, 50257} {
		rng := rand.New(rand.NewPCG(uint64(V), 17))
		rows := len(opts)
		logits := randVec(rng, rows*V)
		for i := range logits {
			logits[i] = float32(math.Round(float64(logits[i])*4)) / 4 // ties
		}
		logits[(rows-1)*V+V/2] = float32(math.NaN())
		m := &Model{Dev: dev, Config: &model.Config{VocabSize: V}}
		m.ws.logits = upload(t, dev, logits)
		m.ws.ids = upload(t, dev, make([]float32, rows))
		m.ws.nhead = rows
		if err := m.sampleEach(opts); err != nil {
			t.Fatal(err)
		}
		all, err := m.downloadIDs()
		if err != nil {
			t.Fatal(err)
		}
		all = slices.Clone(all)
		for r, o := range opts {
			if err := m.sampleRows(r, 1, o); err != nil {
				t.Fatal(err)
			}
			one, err := m.downloadIDs()
			if err != nil {
				t.Fatal(err)
			}
			if all[r] != one[r] {
				t.Errorf("V=%d row %d %+v: %d in one launch for every row, %d in its own", V, r, o, all[r], one[r])
			}
		}
		if all[rows-1] != -1 {
			t.Errorf("V=%d: the row with a NaN drew %d, want -1", V, all[rows-1])
		}
		if err := m.sampleEach(opts[:2]); err == nil {
			t.Errorf("V=%d: two options for %d rows: no error", V, rows)
		}
		t.Logf("V=%d: %v in one launch, the same ids row by row", V, all)
		dev.Free(&m.ws.logits)
		dev.Free(&m.ws.ids)
		dev.Free(&m.ws.rowTab)
	}
}

// TestSampleSpeed times the sampling kernels on 65536 logits when
// JAMBA_BENCH_SAMPLE is set: one row in a launch of its own, and 32 rows
// in one sample_rows launch (the upload of their table included); the
// median of 21 launches each. It checks nothing about speed.
func TestSampleSpeed(t *testing.T) {
	if os.Getenv("JAMBA_BENCH_SAMPLE") == "" {
		t.Skip("JAMBA_BENCH_SAMPLE not set")
	}
	dev := gpu(t)
	const V, rows = 65536, 32
	rng := rand.New(rand.NewPCG(1, 2))
	logits := randVec(rng, rows*V)
	for i := range logits {
		logits[i] *= 2
	}
	m := &Model{Dev: dev, Config: &model.Config{VocabSize: V}}
	m.ws.logits = upload(t, dev, logits)
	m.ws.ids = upload(t, dev, make([]float32, rows))
	defer dev.Free(&m.ws.logits)
	defer dev.Free(&m.ws.ids)
	defer dev.Free(&m.ws.rowTab)
	timer, err := dev.NewTimer()
	if err != nil {
		t.Fatal(err)
	}
	med := func(f func() error) float64 {
		var ts []float64
		for range 21 {
			if err := timer.Start(); err != nil {
				t.Fatal(err)
			}
			if err := f(); err != nil {
				t.Fatal(err)
			}
			s, err := timer.Stop()
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, s*1e6)
		}
		return median(ts)
	}
	for _, o := range []SampleOptions{
		{},
		{Temperature: 1},
		{Temperature: 0.8, TopK: 40},
		{Temperature: 0.8, TopK: 40, TopP: 0.95},
		{Temperature: 0.8, TopP: 0.95},
		{Temperature: 0.8, TopP: 0.95, MinP: 0.05},
	} {
		o.Seed = 1
		m.ws.nhead = 1
		one := med(func() error { return m.sampleRows(0, 1, o) })
		m.ws.nhead = rows
		opts := make([]SampleOptions, rows)
		for i := range opts {
			opts[i] = o
			opts[i].Seed = uint64(i)
		}
		all := math.NaN()
		if _, err := dev.fn("sample_rows"); err == nil {
			all = med(func() error { return m.sampleEach(opts) })
		}
		t.Logf("%+v: one row %.1f µs, %d rows in one launch %.1f µs", o, one, rows, all)
	}
}
