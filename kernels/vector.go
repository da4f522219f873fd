package kernels

// Dot returns Σ a[i]·b[i] over len(a) elements; b must be at least as long.
// The sum is accumulated in float32, in an order that depends on the CPU.
func Dot(a, b []float32) float32 { return dot(a, b[:len(a)]) }

// Axpy computes y[i] += alpha·x[i] over len(x) elements.
func Axpy(alpha float32, x, y []float32) { axpy(alpha, x, y[:len(x)]) }

// Exp sets dst[i] = e^x[i] over len(x) elements; dst may be x. The fast path
// is within 2 ulp of the correctly rounded result (relative error below
// 2.4e-7), returns +Inf above 88.73, 0 below -104, and NaN for NaN; results
// in the subnormal range lose relative precision but not absolute precision.
func Exp(dst, x []float32) { exp(dst[:len(x)], x) }

// RMSNorm sets dst[i] = w[i]·(x[i]·r) with r = 1/sqrt(mean(x²) + eps), the
// mean of squares accumulated in float32; dst may be x.
func RMSNorm(dst, x, w []float32, eps float32) {
	n := len(x)
	if n == 0 {
		return
	}
	dst, w = dst[:n], w[:n]
	scaleMul(dst, x, w, rmsScale(sumSq(x), n, eps))
}

// Softmax replaces x by its softmax, e^(x[i]-max x) / Σ_j e^(x[j]-max x).
// Entries of -Inf become 0 as long as one entry is finite.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	s := expSubSum(x, maxOf(x))
	scale(x, 1/s)
}

// SiLU sets dst[i] = x[i]·σ(x[i]) = x[i]/(1+e^-x[i]) over len(x) elements;
// dst may be x.
func SiLU(dst, x []float32) { silu(dst[:len(x)], x) }

// Softplus sets dst[i] = log(1+e^x[i]) over len(x) elements, and x[i]
// itself where x[i] > 20 (PyTorch's threshold) or x[i] is NaN; dst may be
// x. The assembly is within 4 ulp of the correctly rounded value.
func Softplus(dst, x []float32) { softplus(dst[:len(x)], x) }

// ConvStep advances a causal depthwise convolution of width K over Di
// channels by one token x[:Di], writing y[:Di]:
//
//	y[c] = bias[c] + Σ_{k<K-1} w[k*Di+c]·state[k*Di+c] + w[(K-1)*Di+c]·x[c]
//
// state holds the previous K-1 inputs, oldest first ([K-1][Di]); ConvStep
// then drops the oldest and appends x. w is [K][Di], tap k of channel c at
// w[k*Di+c]: the transpose of a PyTorch Conv1d weight [Di,1,K] (use
// TransposeConvWeight). bias may be nil. y must not overlap x or state.
func ConvStep(y, state, x, w, bias []float32, Di, K int) {
	if Di == 0 {
		return
	}
	y, x = y[:Di], x[:Di]
	if bias != nil {
		copy(y, bias[:Di])
	} else {
		clear(y)
	}
	for k := 0; k < K-1; k++ {
		mulAdd(y, w[k*Di:(k+1)*Di], state[k*Di:(k+1)*Di])
	}
	mulAdd(y, w[(K-1)*Di:K*Di], x)
	shiftConvState(state, x, Di, K)
}

// ConvSeq runs ConvStep over T tokens: x and y are [T][Di].
func ConvSeq(y, state, x, w, bias []float32, T, Di, K int) {
	for t := 0; t < T; t++ {
		ConvStep(y[t*Di:(t+1)*Di], state, x[t*Di:(t+1)*Di], w, bias, Di, K)
	}
}

// TransposeConvWeight converts a depthwise Conv1d weight from the PyTorch
// layout [Di,1,K] (src[c*K+k]) to the [K][Di] layout of ConvStep.
func TransposeConvWeight(dst, src []float32, Di, K int) {
	for c := 0; c < Di; c++ {
		for k := 0; k < K; k++ {
			dst[k*Di+c] = src[c*K+k]
		}
	}
}

// ScanStep advances the Mamba selective-scan state h [Di][N] by one token
// and writes y[:Di]:
//
//	for c < Di, n < N:
//		h[c*N+n] = exp(delta[c]·A[c*N+n])·h[c*N+n] + delta[c]·x[c]·B[n]
//	y[c] = Σ_n h[c*N+n]·C[n] + D[c]·x[c]
//
// A is the negated exponential of the checkpoint's A_log, [Di][N]; delta
// (after softplus), x and D are [Di]; B and C are [N]. The product
// delta[c]·x[c] is rounded once, then multiplied by B[n]. The exponential is
// that of Exp. The fast path vectorises over n when N is a multiple of 8.
func ScanStep(h, A, delta, x, B, C, D, y []float32, Di, N int) {
	scanStep(h, A, delta, x, B, C, D, y, Di, N)
}

// ScanSeq runs ScanStep over T tokens: delta, x and y are [T][Di], B and C
// are [T][N]; h carries the state in and out. The channels are split
// among the worker threads (see SetThreads).
func ScanSeq(h, A, delta, x, B, C, D, y []float32, T, Di, N int) {
	if T == 0 || Di == 0 {
		return
	}
	_, _, _ = delta[T*Di-1], x[T*Di-1], y[T*Di-1]
	_, _ = B[T*N-1], C[T*N-1]
	_, _, _ = h[Di*N-1], A[Di*N-1], D[Di-1]
	p := lockPool()
	defer p.mu.Unlock()
	t := &p.scan
	*t = scanTask{h: h, A: A, delta: delta, x: x, B: B, C: C, D: D, y: y, T: T, Di: Di, N: N}
	// Chunks of 64 channels (8 KiB of state for N = 16) keep the work
	// balanced without splitting cache lines between threads.
	t.chunk = 64
	t.nchunks = (Di + t.chunk - 1) / t.chunk
	p.run(t, t.nchunks, T*Di*N)
	*t = scanTask{}
}

// scanTask is ScanSeq split by channel.
type scanTask struct {
	taskCounter
	h, A, delta, x, B, C, D, y []float32
	T, Di, N, chunk, nchunks   int
}

func (s *scanTask) do(int) {
	for {
		i := s.next(s.nchunks)
		if i < 0 {
			return
		}
		c0 := i * s.chunk
		c1 := min(c0+s.chunk, s.Di)
		Di, N := s.Di, s.N
		for t := 0; t < s.T; t++ {
			o := t*Di + c0
			scanStep(s.h[c0*N:c1*N], s.A[c0*N:c1*N], s.delta[o:], s.x[o:], s.B[t*N:(t+1)*N], s.C[t*N:(t+1)*N], s.D[c0:c1], s.y[o:], c1-c0, N)
		}
	}
}

// ScanBackStep is one token of the selective scan's backward pass over nc
// channels of state size N, for the trainer: s holds (dy, Δ, x) per channel
// ([nc][3]); dh, cur (h_t), prev (h_{t−1}), av (exp(Δ·A)), A and gA are
// [nc][N]; B, C, dB, dC are [N]. It updates dh (to the gradient for h_{t−1}),
// gA, dB and dC, and writes (Σ_q u, Σ_q sb) per channel to out ([nc][2]):
//
//	dC[q] += dy·cur;  dhq := dh + dy·C[q];  u := dhq·av·prev·A
//	gA += u·Δ;  dB[q] += dhq·Δ·x;  dh = dhq·av;  Σu, Σsb += u, dhq·B[q]
//
// The assembly (N = 16) fuses the multiply-adds and sums in 8 lanes, so
// its results differ from the plain Go loop's in the last bits.
func ScanBackStep(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out []float32, nc, N int) {
	if nc == 0 {
		return
	}
	n := nc * N
	_, _, _, _, _, _ = dh[n-1], cur[n-1], prev[n-1], av[n-1], A[n-1], gA[n-1]
	_, _, _, _, _, _ = B[N-1], C[N-1], dB[N-1], dC[N-1], s[3*nc-1], out[2*nc-1]
	scanBack(dh, cur, prev, av, A, gA, B, C, dB, dC, s, out, nc, N)
}

// TransposeCols writes columns c0..c1 of src [rows, cols] into rows c0..c1
// of dst [cols, rows] (dst[c*rows+r] = src[r*cols+c]). The assembly moves
// 8×8 tiles; the edges are copied one element at a time.
func TransposeCols(dst, src []float32, rows, cols, c0, c1 int) {
	if rows == 0 || c1 <= c0 {
		return
	}
	_, _ = src[(rows-1)*cols+c1-1], dst[(c1-1)*rows+rows-1]
	transposeCols(dst, src, rows, cols, c0, c1)
}

// transposeColsGeneric is TransposeCols in plain Go, for the columns c0..c1
// and the rows r0..rows.
func transposeColsGeneric(dst, src []float32, rows, cols, c0, c1, r0 int) {
	for c := c0; c < c1; c++ {
		d := dst[c*rows : (c+1)*rows]
		for r := r0; r < rows; r++ {
			d[r] = src[r*cols+c]
		}
	}
}
