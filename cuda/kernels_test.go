package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/jamba-go/jamba/kernels"
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
// to 8 rows, cuBLAS beyond; float32 and bfloat16 weights; widths that are
// and are not multiples of 8) with the CPU kernel, on fresh random inputs
// and a NaN-poisoned output.
func TestMatMul(t *testing.T) {
	dev := gpu(t)
	rng := rand.New(rand.NewPCG(1, 2))
	defer func(r int) { dev.gemvRows = r }(dev.gemvRows)
	for _, gr := range []int{1, gemvMax} {
		dev.gemvRows = gr // both sides of the matrix-vector / cuBLAS boundary
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
					// split bf16 path rounds x to 16 significant bits (2^-17
					// relative each), so 1e-4 leaves room for sums of 4096.
					tol := 1e-5
					if dt == BF16 && n > dev.gemvRows {
						tol = 1e-4
					}
					if e := maxRel(got, want); !(e <= tol) {
						t.Errorf("%dx%d %v n=%d: max rel error %.3g > %g", sh.rows, sh.cols, dt.suffix(), n, e, tol)
					} else if sh.cols == 4096 {
						t.Logf("%dx%d %v n=%d gemv≤%d: max rel error %.3g", sh.rows, sh.cols, dt.suffix(), n, gr, e)
					}
				}
			}
		}
	}
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
