// Kernels of the CUDA backend. Every kernel is extern "C" so that the Go side
// finds it by name in the fatbin (cuModuleGetFunction). Arithmetic is float32;
// weights are float32 or bfloat16 (widened exactly on load).
//
// Build: cuda/kernels/build.sh (nvcc, sm_90 machine code + compute_90 PTX).

#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ld(const float *p, long i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16 *p, long i) { return __bfloat162float(p[i]); }

// Activation codes: 0 silu, 1 relu, 2 gelu (erf), 3 gelu (tanh).
__device__ __forceinline__ float act(float x, int code) {
    switch (code) {
    case 1: return fmaxf(x, 0.f);
    case 2: return (float)(0.5 * (double)x * (1.0 + erf((double)x * 0.70710678118654752440)));
    case 3: {
        double v = x;
        return (float)(0.5 * v * (1.0 + tanh(0.79788456080286535588 * (v + 0.044715 * v * v * v))));
    }
    default: return x / (1.f + expf(-x));
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// block_sum returns the sum of v over the block (blockDim.x a multiple of 32,
// at most 1024) to every thread. red must hold 32 floats.
__device__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float s = 0.f;
    for (int i = 0; i < nw; i++) s += red[i];
    return s;
}

// ---------------------------------------------------------------------------
// Embedding gather: h[r] = E[tok[r]], widened to float32.

template <typename T>
__device__ void embed_impl(float *h, const T *E, const int *tok, int H) {
    int r = blockIdx.x;
    const T *row = E + (long)tok[r] * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) h[(long)r * H + i] = ld(row, i);
}
extern "C" __global__ void embed_f32(float *h, const float *E, const int *tok, int H) { embed_impl(h, E, tok, H); }
extern "C" __global__ void embed_bf16(float *h, const bf16 *E, const int *tok, int H) { embed_impl(h, E, tok, H); }

// ---------------------------------------------------------------------------
// RMSNorm of each row of n floats; with delta != 0, h += delta first (the
// residual add), written back; with dhalf != 0 too, delta is the two halves
// of a stacked split product (h += delta[i] + delta[dhalf + i], as
// add_halves would have summed them). With xs != 0 the output is also
// written split into bf16 halves, hi rows then lo rows (xs[r][i],
// xs[rows + r][i], rows = gridDim.x): the stacked input of the split
// cuBLAS product, as split_bf16 would write it. One block per row. Rows of
// up to NORM_VALS·blockDim.x floats stay in registers, every load issued
// before the first store (the norm of a decode step is latency-bound);
// longer rows take the loops at the end.
#define NORM_VALS 16
__device__ __forceinline__ void norm_out(float *out, bf16 *xs, long r, long rows, int n, int i, float o) {
    out[r * n + i] = o;
    if (xs) {
        bf16 hv = __float2bfloat16_rn(o);
        xs[r * n + i] = hv;
        xs[(rows + r) * n + i] = __float2bfloat16_rn(o - __bfloat162float(hv));
    }
}
extern "C" __global__ void rmsnorm(float *out, float *h, const float *delta, long dhalf, const float *w, int n, float eps, bf16 *xs) {
    __shared__ float red[32];
    long r = blockIdx.x, rows = gridDim.x;
    float *x = h + r * n;
    if (n <= NORM_VALS * (int)blockDim.x) {
        float v[NORM_VALS], d[NORM_VALS];
#pragma unroll
        for (int j = 0; j < NORM_VALS; j++) {
            int i = threadIdx.x + j * blockDim.x;
            v[j] = i < n ? x[i] : 0.f;
            d[j] = delta && i < n ? (dhalf ? delta[r * n + i] + delta[dhalf + r * n + i] : delta[r * n + i]) : 0.f;
        }
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < NORM_VALS; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (delta && i < n) {
                v[j] += d[j];
                x[i] = v[j];
            }
            ss += v[j] * v[j];
        }
        ss = block_sum(ss, red);
        float s = (float)(1.0 / sqrt((double)(ss / (float)n + eps)));
#pragma unroll
        for (int j = 0; j < NORM_VALS; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (i < n) norm_out(out, xs, r, rows, n, i, w[i] * (v[j] * s));
        }
        return;
    }
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = x[i];
        if (delta) {
            v += dhalf ? delta[r * n + i] + delta[dhalf + r * n + i] : delta[r * n + i];
            x[i] = v;
        }
        ss += v * v;
    }
    ss = block_sum(ss, red);
    float s = (float)(1.0 / sqrt((double)(ss / (float)n + eps)));
    for (int i = threadIdx.x; i < n; i += blockDim.x) norm_out(out, xs, r, rows, n, i, w[i] * (x[i] * s));
}

// ---------------------------------------------------------------------------
// Matrix-vector products for up to NT rows of x: y[t][r] = Σ_c W[r][c]·x[t][c].
// Each warp computes R consecutive weight rows (R = 1 for one row of x, so
// that there are many warps; R = 4 for several, so that every load of x
// serves 4 weight rows); the weight rows are read once for all NT rows of x.
// Used where the product is memory-bound (decode). The vector path needs
// cols % 8 == 0 and 16-byte aligned rows (8 bf16 or 2×4 f32 per lane and
// step); other widths take a scalar path. xr[t] points at row t of x (rows
// past nt repeat the last).

#define GEMV_WARPS 8

__device__ __forceinline__ void load8(float (&f)[8], const bf16 *w, int v) {
    uint4 q = __ldg((const uint4 *)w + v);
    const bf16 *qb = (const bf16 *)&q;
#pragma unroll
    for (int j = 0; j < 8; j++) f[j] = __bfloat162float(qb[j]);
}

__device__ __forceinline__ void load8(float (&f)[8], const float *w, int v) {
    float4 a = __ldg((const float4 *)w + 2 * v), b = __ldg((const float4 *)w + 2 * v + 1);
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
    f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

// gemv_step accumulates the 8 columns v·8 .. v·8+7 of R weight rows.
template <int R, int NT, typename T>
__device__ __forceinline__ void gemv_step(float (&acc)[R][NT], const T *w0, int nrows, int cols, const float *const (&xr)[NT], int v) {
    float wf[R][8];
#pragma unroll
    for (int i = 0; i < R; i++) {
        if (i < nrows)
            load8(wf[i], w0 + (long)i * cols, v);
        else
#pragma unroll
            for (int j = 0; j < 8; j++) wf[i][j] = 0.f;
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float4 *x4 = (const float4 *)(xr[t] + v * 8);
        float4 a = x4[0], b = x4[1];
#pragma unroll
        for (int i = 0; i < R; i++)
            acc[i][t] += wf[i][0] * a.x + wf[i][1] * a.y + wf[i][2] * a.z + wf[i][3] * a.w +
                         wf[i][4] * b.x + wf[i][5] * b.y + wf[i][6] * b.z + wf[i][7] * b.w;
    }
}

template <int R, int NT, typename T, int U = 1>
__device__ __forceinline__ void gemv_core(float (&acc)[R][NT], const T *w0, int nrows, int cols, const float *const (&xr)[NT], int lane) {
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[i][t] = 0.f;
    bool vec = (cols & 7) == 0 && (((uintptr_t)w0) & 15) == 0;
    if (vec) {
        int nv = cols >> 3;
        if constexpr (R == 1) {
#pragma unroll 4
            for (int v = lane; v < nv; v += 32) gemv_step<R, NT, T>(acc, w0, nrows, cols, xr, v);
        } else if constexpr (U == 2) {
#pragma unroll 2
            for (int v = lane; v < nv; v += 32) gemv_step<R, NT, T>(acc, w0, nrows, cols, xr, v);
        } else {
            for (int v = lane; v < nv; v += 32) gemv_step<R, NT, T>(acc, w0, nrows, cols, xr, v);
        }
    } else {
        for (int c = lane; c < cols; c += 32) {
#pragma unroll
            for (int i = 0; i < R; i++) {
                float wv = i < nrows ? ld(w0 + (long)i * cols, c) : 0.f;
#pragma unroll
                for (int t = 0; t < NT; t++) acc[i][t] += wv * xr[t][c];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[i][t] = warp_sum(acc[i][t]);
}

template <int NT, typename T>
__device__ void gemv_impl(float *y, const T *W, const float *x, int rows, int cols, int nt) {
    constexpr int R = NT == 1 ? 1 : 4;
    int lane = threadIdx.x & 31;
    long r0 = ((long)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5)) * R;
    if (r0 >= rows) return; // whole warps leave together
    int nrows = min((long)R, rows - r0);
    const float *xr[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) xr[t] = x + (long)min(t, nt - 1) * cols;
    float acc[R][NT];
    gemv_core<R, NT, T>(acc, W + r0 * cols, nrows, cols, xr, lane);
    if (lane == 0)
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (i < nrows && t < nt) y[(long)t * rows + r0 + i] = acc[i][t];
}

#define GEMV(NT)                                                                                        \
    extern "C" __global__ void gemv##NT##_bf16(float *y, const bf16 *W, const float *x, int rows, int cols, int nt) { \
        gemv_impl<NT, bf16>(y, W, x, rows, cols, nt);                                                   \
    }                                                                                                   \
    extern "C" __global__ void gemv##NT##_f32(float *y, const float *W, const float *x, int rows, int cols, int nt) { \
        gemv_impl<NT, float>(y, W, x, rows, cols, nt);                                                  \
    }
GEMV(1)
GEMV(2)
GEMV(4)
GEMV(8)

// Expert products for one token (decode at batch 1): slot s (its expert
// e = idx[s]) computes y[s] = W_e · x[s / xdiv], one weight row per warp.
template <typename T>
__device__ void gemv_moe_impl(float *y, const T *W, long estride, const int *idx, const float *x, int xdiv,
                              int rows, int cols) {
    int lane = threadIdx.x & 31;
    long r = (long)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    int s = blockIdx.y;
    if (r >= rows) return;
    const float *xr[1] = {x + (long)(s / xdiv) * cols};
    float acc[1][1];
    gemv_core<1, 1, T>(acc, W + (long)idx[s] * estride + r * cols, 1, cols, xr, lane);
    if (lane == 0) y[(long)s * rows + r] = acc[0][0];
}
extern "C" __global__ void gemv_moe_bf16(float *y, const bf16 *W, long estride, const int *idx, const float *x, int xdiv, int rows, int cols) {
    gemv_moe_impl(y, W, estride, idx, x, xdiv, rows, cols);
}
extern "C" __global__ void gemv_moe_f32(float *y, const float *W, long estride, const int *idx, const float *x, int xdiv, int rows, int cols) {
    gemv_moe_impl(y, W, estride, idx, x, xdiv, rows, cols);
}

// Expert products for a few tokens, without a trip to the host. moe_lists
// (one warp) sorts the n·k routing slots by expert: list[off[e] ..
// off[e+1]) are expert e's slots in increasing order; work[0 .. nwork) are
// (expert, first slot) pairs of chunks of up to 8 slots (nwork = work[-1]:
// the entry before work). gemv_grouped (grid x: row groups, y: chunks) then
// computes y[s] = W_e · x[s / xdiv] for the slots s of its chunk, so each
// expert's weights are read once per eight slots, and a popular expert's
// chunks run side by side: xdiv = k reads the token's row, xdiv = 1 the
// slot's own row.
extern "C" __global__ void moe_lists(int *off, int *list, int *work, const int *idx, int E, int slots) {
    // One warp: lane e counts and lists the slots of experts e, e+32, ...
    // (E ≤ 256); lane 0 lays the experts out in order between the passes.
    __shared__ int cnt[256], start[257], wstart[257];
    int lane = threadIdx.x;
    if (lane >= 32) return;
    for (int e = lane; e < E; e += 32) {
        int n = 0;
        for (int s = 0; s < slots; s++) n += idx[s] == e;
        cnt[e] = n;
    }
    __syncwarp();
    if (lane == 0) {
        int o = 0, w = 0;
        for (int e = 0; e < E; e++) {
            start[e] = o;
            wstart[e] = w;
            o += cnt[e];
            w += (cnt[e] + 7) / 8;
        }
        off[E] = o;
        work[-1] = w;
    }
    __syncwarp();
    for (int e = lane; e < E; e += 32) {
        int o = start[e], w = wstart[e];
        off[e] = o;
        for (int s = 0; s < slots; s++)
            if (idx[s] == e) list[o++] = s;
        for (int j = start[e]; j < o; j += 8) {
            work[2 * w] = e;
            work[2 * w + 1] = j;
            w++;
        }
    }
}

template <int NT, typename T, int U>
__device__ __forceinline__ void grouped_chunk(float *y, const T *w0, int nrows, long r0, int rows, int cols,
                                              const int *sl, int nt, const float *x, int xdiv, int lane) {
    const float *xr[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) xr[t] = x + (long)(sl[min(t, nt - 1)] / xdiv) * cols;
    float acc[4][NT];
    gemv_core<4, NT, T, U>(acc, w0, nrows, cols, xr, lane);
    if (lane == 0)
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (i < nrows && t < nt) y[(long)sl[t] * rows + r0 + i] = acc[i][t];
}

#define GROUP_WARPS 4 // warps of a gemv_grouped block, 4 weight rows each

template <typename T, int U>
__device__ void gemv_grouped_impl(float *y, const T *W, long estride, const int *off, const int *list, const int *work,
                                  const float *x, int xdiv, int rows, int cols) {
    if ((int)blockIdx.y >= work[-1]) return;
    int e = work[2 * blockIdx.y], j = work[2 * blockIdx.y + 1];
    int lane = threadIdx.x & 31;
    long r0 = ((long)blockIdx.x * GROUP_WARPS + (threadIdx.x >> 5)) * 4;
    if (r0 >= rows) return;
    int nrows = min((long)4, rows - r0);
    const T *w0 = W + (long)e * estride + r0 * cols;
    int nt = min(8, off[e + 1] - j);
    if (nt == 1)
        grouped_chunk<1, T, U>(y, w0, nrows, r0, rows, cols, list + j, nt, x, xdiv, lane);
    else if (nt == 2)
        grouped_chunk<2, T, U>(y, w0, nrows, r0, rows, cols, list + j, nt, x, xdiv, lane);
    else if (nt <= 4)
        grouped_chunk<4, T, U>(y, w0, nrows, r0, rows, cols, list + j, nt, x, xdiv, lane);
    else
        grouped_chunk<8, T, U>(y, w0, nrows, r0, rows, cols, list + j, nt, x, xdiv, lane);
}
// U = 2 unrolls the column loop twice (twice the loads in flight).
#define GROUPED(U, SUF)                                                                                  \
    extern "C" __global__ void gemv_grouped##SUF##_bf16(float *y, const bf16 *W, long estride, const int *off, \
                                                        const int *list, const int *work, const float *x, int xdiv, int rows, int cols) { \
        gemv_grouped_impl<bf16, U>(y, W, estride, off, list, work, x, xdiv, rows, cols);                  \
    }                                                                                                    \
    extern "C" __global__ void gemv_grouped##SUF##_f32(float *y, const float *W, long estride, const int *off, \
                                                       const int *list, const int *work, const float *x, int xdiv, int rows, int cols) { \
        gemv_grouped_impl<float, U>(y, W, estride, off, list, work, x, xdiv, rows, cols);                 \
    }
GROUPED(1, )
GROUPED(2, _u2)

// Splits float32 x into bfloat16 hi = bf16(x) and lo = bf16(x − hi), so that
// W·x = W·hi + W·lo with two bf16 matrix products to about 2^-16 relative.
extern "C" __global__ void split_bf16(bf16 *hi, bf16 *lo, const float *x, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    bf16 h = __float2bfloat16_rn(v);
    hi[i] = h;
    lo[i] = __float2bfloat16_rn(v - __bfloat162float(h));
}

// y[r][c] += b[c] for rows of n.
extern "C" __global__ void add_bias(float *y, const float *b, int n, long total) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) y[i] += b[i % n];
}

// ---------------------------------------------------------------------------
// SwiGLU: out[r][i] = act(gu[r][i]) · gu[r][I + i].
extern "C" __global__ void swiglu(float *out, const float *gu, int I, long rows, int code) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * I) return;
    long r = i / I, c = i % I;
    const float *g = gu + r * 2 * I;
    out[i] = act(g[c], code) * g[I + c];
}

// SwiGLU of a stacked split product: gu holds the two halves of the gate-up
// product (gu[i] + gu[ghalf + i], as add_halves would sum them); the result
// goes to out and, split into bf16 halves (hi rows then lo rows, as
// split_bf16 writes them), to xs for the down product.
extern "C" __global__ void swiglu_halves(float *out, bf16 *xs, const float *gu, long ghalf, int I, long rows, int code) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * I) return;
    long r = i / I, c = i % I;
    const float *g = gu + r * 2 * I;
    float a = act(g[c] + g[ghalf + c], code) * (g[I + c] + g[ghalf + I + c]);
    out[i] = a;
    bf16 h = __float2bfloat16_rn(a);
    xs[i] = h;
    xs[rows * I + i] = __float2bfloat16_rn(a - __bfloat162float(h));
}

// ---------------------------------------------------------------------------
// Router: softmax over E logits (float32, as the CPU), top-k (ties: lower
// index), one thread per token. idx/wt get k entries per token.
extern "C" __global__ void route(int *idx, float *wt, const float *logits, int E, int k, int n) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    const float *l = logits + (long)t * E;
    float mx = -INFINITY;
    for (int j = 0; j < E; j++) mx = fmaxf(mx, l[j]);
    float sum = 0.f;
    for (int j = 0; j < E; j++) sum += (float)exp((double)(l[j] - mx));
    float inv = 1.f / sum;
    unsigned long long taken[4] = {0, 0, 0, 0}; // E ≤ 256
    for (int q = 0; q < k; q++) {
        int best = -1;
        float bv = 0.f;
        for (int j = 0; j < E; j++) {
            if (taken[j >> 6] >> (j & 63) & 1) continue;
            float v = (float)exp((double)(l[j] - mx)) * inv;
            if (best < 0 || v > bv) {
                best = j;
                bv = v;
            }
        }
        taken[best >> 6] |= 1ull << (best & 63);
        idx[t * k + q] = best;
        wt[t * k + q] = bv;
    }
}

// out[t] = Σ_j wt[t*k+j] · eo[t*k+j] for rows of H.
extern "C" __global__ void moe_combine(float *out, const float *eo, const float *wt, int k, int H, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * H) return;
    long t = i / H, c = i % H;
    float s = 0.f;
    for (int j = 0; j < k; j++) s += wt[t * k + j] * eo[(t * k + j) * H + c];
    out[i] = s;
}

// dst[i] = src[rows[i]] for n rows of cols floats.
extern "C" __global__ void gather_rows(float *dst, const float *src, const int *rows, int cols, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols) return;
    long r = i / cols, c = i % cols;
    dst[i] = src[(long)rows[r] * cols + c];
}

// out[rows[i]] += wt[i] · src[i] for n rows of cols floats (rows distinct).
extern "C" __global__ void scatter_add(float *out, const float *src, const int *rows, const float *wt, int cols, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols) return;
    long r = i / cols, c = i % cols;
    out[(long)rows[r] * cols + c] += wt[r] * src[i];
}

// ---------------------------------------------------------------------------
// Mamba. Per-call metadata: for each row r of the batch, rseq[r] (its
// sequence) and rpos[r] (its absolute position); for each sequence s,
// sstart[s] (its first row) and its state pointers.

// Causal depthwise conv over the batch, continuing each sequence's window:
// xc[r][c] = act(bias[c] + Σ_k wT[k][c] · in(pos − (K−1) + k, c)), where in()
// is the row's own sequence: a new row (x, row stride ldx) or the conv state
// (conv[s] holds the K−1 previous inputs, oldest first).
extern "C" __global__ void conv_fwd(float *xc, const float *x, long ldx, long xhalf, const float *wT, const float *bias,
                                    float *const *conv, const int *rseq, const int *rpos, const int *sstart,
                                    int Di, int K, long rows, int code) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * Di) return;
    long r = i / Di;
    int c = i % Di;
    int s = rseq[r], r0 = sstart[s];
    int p = rpos[r], P = rpos[r0];
    float acc = bias ? bias[c] : 0.f;
    for (int k = 0; k < K; k++) {
        int q = p - (K - 1) + k;
        float v;
        if (q >= P) {
            long j = (long)(r0 + q - P) * ldx + c;
            v = xhalf ? x[j] + x[xhalf + j] : x[j];
        } else
            v = conv[s][(long)(q - P + K - 1) * Di + c];
        acc += wT[(long)k * Di + c] * v;
    }
    xc[i] = act(acc, code);
}

// After conv_fwd: each sequence's window becomes its last K−1 inputs. With
// xhalf ≠ 0 (here and in conv_fwd), x is the two halves of a stacked split
// product, x[i] + x[xhalf + i].
extern "C" __global__ void conv_state(float *const *conv, const float *x, long ldx, long xhalf, const int *sstart,
                                      const int *rpos, int Di, int K, int nseq) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)nseq * Di || K < 2) return;
    int s = i / Di, c = i % Di;
    int r0 = sstart[s], n = sstart[s + 1] - r0;
    float *st = conv[s];
    float v[8]; // K ≤ 9
    for (int j = 0; j < K - 1; j++) {
        // position of window slot j after the call: n new inputs appended.
        int q = n + j - (K - 1); // index into the new inputs, < 0 means old state
        long xi = (long)(r0 + q) * ldx + c;
        v[j] = q >= 0 ? (xhalf ? x[xi] + x[xhalf + xi] : x[xi]) : st[(long)(q + K - 1) * Di + c];
    }
    for (int j = 0; j < K - 1; j++) st[(long)j * Di + c] = v[j];
    (void)rpos;
}

// RMSNorms of dt (R), B (N) and C (N) in each row of dbc (stride R+2N):
// dt goes to dtn [rows][R]; B and C are normalised in place. One block per row.
extern "C" __global__ void dbc_norm(float *dtn, float *dbc, const float *wdt, const float *wb, const float *wc,
                                    int R, int N, float eps) {
    __shared__ float red[32];
    long r = blockIdx.x;
    int P = R + 2 * N;
    float *row = dbc + r * P;
    float *outp[3] = {dtn + r * R, row + R, row + R + N};
    const float *in[3] = {row, row + R, row + R + N};
    const float *w[3] = {wdt, wb, wc};
    int len[3] = {R, N, N};
    for (int part = 0; part < 3; part++) {
        float ss = 0.f;
        for (int i = threadIdx.x; i < len[part]; i += blockDim.x) ss += in[part][i] * in[part][i];
        ss = block_sum(ss, red);
        float s = (float)(1.0 / sqrt((double)(ss / (float)len[part] + eps)));
        __syncthreads();
        float v[4];
        int m = 0;
        for (int i = threadIdx.x; i < len[part]; i += blockDim.x) v[m++ & 3] = w[part][i] * (in[part][i] * s);
        __syncthreads(); // all reads of this part happen before the in-place writes
        m = 0;
        for (int i = threadIdx.x; i < len[part]; i += blockDim.x) outp[part][i] = v[m++ & 3];
        __syncthreads();
    }
}

// Copies dt into dtn unnormalised (models without inner norms).
extern "C" __global__ void dt_copy(float *dtn, const float *dbc, int R, int P, long rows) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * R) return;
    dtn[i] = dbc[(i / R) * P + i % R];
}

// Selective scan with fused softplus(dt + dt_bias), D skip and SiLU gate:
//   d = softplus(draw[r][c] + dtb[c]);  h[n] = exp(d·A[c][n])·h[n] + d·x·B[r][n]
//   y[r][c] = (Σ_n h[n]·C[r][n] + D[c]·x) · silu(z[r][c])
// With zhalf ≠ 0, z is the two halves of a stacked split product (z[i] +
// z[zhalf + i], as add_halves would sum them); with ys ≠ 0, y is also
// written split into bf16 halves (ys[i] hi, ys[ylo + i] lo: the stacked
// input of out_proj). lpc lanes (a power of two ≥ N, ≤ 32) share one channel; each sequence's
// rows run in order from its SSM state ssm[s] ([Di][N]), written back at the end.
__device__ __forceinline__ void scan_out(float *y, bf16 *ys, long ylo, long i, float v) {
    y[i] = v;
    if (ys) {
        bf16 h = __float2bfloat16_rn(v);
        ys[i] = h;
        ys[ylo + i] = __float2bfloat16_rn(v - __bfloat162float(h));
    }
}

extern "C" __global__ void scan_fwd(float *y, const float *draw, const float *dtb, const float *x,
                                    const float *z, long ldz, long zhalf, const float *bc, int P, int R,
                                    const float *A, const float *D, float *const *ssm, const int *sstart,
                                    int Di, int N, int lpc, int nseq, bf16 *ys, long ylo) {
    // 32-bit index arithmetic (nseq·Di·lpc < 2^31, checked by the caller):
    // the decode step of a batch runs this once per row, and 64-bit
    // divisions would dominate it.
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    int ch = g / lpc;
    int n = g & (lpc - 1);
    if (ch >= nseq * Di) return; // whole groups leave together: lpc divides 32
    int lane = threadIdx.x & 31;
    unsigned mask = lpc == 32 ? 0xffffffffu : ((1u << lpc) - 1) << (lane & ~(lpc - 1));
    int s = ch / Di, c = ch - s * Di;
    bool on = n < N;
    float *h = ssm[s] + (long)c * N;
    float hn = on ? h[n] : 0.f;
    float a = on ? A[(long)c * N + n] : 0.f;
    float bias = dtb[c], dd = D[c];
    int r0 = sstart[s], r1 = sstart[s + 1];
    for (int r = r0; r < r1; r++) {
        float raw = draw[(long)r * Di + c] + bias;
        float d = raw > 20.f ? raw : log1pf(expf(raw));
        float xv = x[(long)r * Di + c];
        float bn = on ? bc[(long)r * P + R + n] : 0.f;
        float cn = on ? bc[(long)r * P + R + N + n] : 0.f;
        hn = on ? expf(d * a) * hn + (d * xv) * bn : 0.f;
        float v = hn * cn;
        for (int o = lpc >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
        if (n == 0) {
            long zi = (long)r * ldz + c;
            float zv = zhalf ? z[zi] + z[zhalf + zi] : z[zi];
            scan_out(y, ys, ylo, (long)r * Di + c, (v + dd * xv) * (zv / (1.f + expf(-zv))));
        }
    }
    if (on) h[n] = hn;
}

// The same scan with one thread per (sequence, channel) and the N ≤ 16
// states in registers, for decode batches: scan_fwd's lanes per channel
// would each repeat the softplus, the gate and the index arithmetic, which
// makes it compute-bound there (measured: 8% of the memory bandwidth at 32
// sequences). The sum over the states runs in order.
extern "C" __global__ void scan_chan(float *y, const float *draw, const float *dtb, const float *x,
                                     const float *z, long ldz, long zhalf, const float *bc, int P, int R,
                                     const float *A, const float *D, float *const *ssm, const int *sstart,
                                     int Di, int N, int nseq, bf16 *ys, long ylo) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= nseq * Di) return;
    int s = g / Di, c = g - s * Di;
    float h[16], a[16];
    float *hp = ssm[s] + (long)c * N;
#pragma unroll
    for (int n = 0; n < 16; n++) {
        h[n] = n < N ? hp[n] : 0.f;
        a[n] = n < N ? A[(long)c * N + n] : 0.f;
    }
    float bias = dtb[c], dd = D[c];
    int r0 = sstart[s], r1 = sstart[s + 1];
    for (int r = r0; r < r1; r++) {
        float raw = draw[(long)r * Di + c] + bias;
        float d = raw > 20.f ? raw : log1pf(expf(raw));
        float xv = x[(long)r * Di + c];
        const float *B = bc + (long)r * P + R, *C = B + N;
        float v = 0.f;
#pragma unroll
        for (int n = 0; n < 16; n++) {
            if (n < N) {
                h[n] = expf(d * a[n]) * h[n] + (d * xv) * B[n];
                v += h[n] * C[n];
            }
        }
        long zi = (long)r * ldz + c;
        float zv = zhalf ? z[zi] + z[zhalf + zi] : z[zi];
        scan_out(y, ys, ylo, (long)r * Di + c, (v + dd * xv) * (zv / (1.f + expf(-zv))));
    }
#pragma unroll
    for (int n = 0; n < 16; n++)
        if (n < N) hp[n] = h[n];
}

// ---------------------------------------------------------------------------
// Attention. kv_append copies each row's k and v (from the fused qkv rows,
// stride ld, k at column qd, v at qd + kvd) into its sequence's cache at the
// row's position.
extern "C" __global__ void kv_append(float *const *Kc, float *const *Vc, const float *qkv, long ld, int qd, int kvd,
                                     const int *rseq, const int *rpos, long rows) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * kvd) return;
    long r = i / kvd;
    int c = i % kvd;
    int s = rseq[r];
    long p = rpos[r];
    Kc[s][p * kvd + c] = qkv[r * ld + qd + c];
    Vc[s][p * kvd + c] = qkv[r * ld + qd + kvd + c];
}

// Causal grouped-query attention for row r and head h (grid x = rows, y =
// heads, z = splits of the keys): keys 0..rpos[r] of the row's sequence.
// 8 warps split a block's keys; each keeps an online softmax (max, sum and
// hd ≤ 256 accumulators in registers) and the warps merge at the end. With
// one split the block writes out (row stride nH·hd); with several (long
// contexts, few rows: flash-decoding) each writes its partial max, sum and
// accumulators to part[(r·nH + h)·splits + z][hd + 2] for attn_merge.
#define ATT_WARPS 8
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32)
attention(float *out, float *part, const float *qkv, long ld, float *const *Kc, float *const *Vc, const int *rseq,
          const int *rpos, int nH, int nKV, int hd, float scale) {
    __shared__ float sm_m[ATT_WARPS], sm_l[ATT_WARPS];
    __shared__ float sm_acc[ATT_WARPS][256];
    long r = blockIdx.x;
    int h = blockIdx.y, z = blockIdx.z, splits = gridDim.z;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int kvd = nKV * hd, kh = h / (nH / nKV);
    const float *q = qkv + r * ld + (long)h * hd;
    int s = rseq[r];
    int nk = rpos[r] + 1;
    int chunk = (nk + splits - 1) / splits;
    int j0 = z * chunk, j1 = min(nk, j0 + chunk);
    const float *K = Kc[s] + (long)kh * hd;
    const float *V = Vc[s] + (long)kh * hd;
    float qr[8], acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int d = lane + 32 * i;
        qr[i] = d < hd ? q[d] : 0.f;
        acc[i] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int j = j0 + w; j < j1; j += ATT_WARPS) {
        const float *kr = K + (long)j * kvd;
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int d = lane + 32 * i;
            if (d < hd) dot += qr[i] * kr[d];
        }
        dot = warp_sum(dot) * scale;
        float mn = fmaxf(m, dot);
        float corr = expf(m - mn), p = expf(dot - mn);
        l = l * corr + p;
        const float *vr = V + (long)j * kvd;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int d = lane + 32 * i;
            acc[i] = acc[i] * corr + (d < hd ? p * vr[d] : 0.f);
        }
        m = mn;
    }
    if (lane == 0) {
        sm_m[w] = m;
        sm_l[w] = l;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) sm_acc[w][lane + 32 * i] = acc[i];
    __syncthreads();
    float M = -INFINITY;
    for (int i = 0; i < ATT_WARPS; i++) M = fmaxf(M, sm_m[i]);
    float L = 0.f;
    for (int i = 0; i < ATT_WARPS; i++)
        if (sm_m[i] != -INFINITY) L += sm_l[i] * expf(sm_m[i] - M);
    if (splits == 1) {
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            float o = 0.f;
            for (int i = 0; i < ATT_WARPS; i++)
                if (sm_m[i] != -INFINITY) o += sm_acc[i][d] * expf(sm_m[i] - M);
            out[r * (long)nH * hd + (long)h * hd + d] = o / L;
        }
        return;
    }
    float *pp = part + ((r * nH + h) * (long)splits + z) * (hd + 2);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.f;
        for (int i = 0; i < ATT_WARPS; i++)
            if (sm_m[i] != -INFINITY) o += sm_acc[i][d] * expf(sm_m[i] - M);
        pp[2 + d] = o;
    }
    if (threadIdx.x == 0) {
        pp[0] = M; // -inf when the split had no keys
        pp[1] = L;
    }
}

// Merges the splits of attention: one block per (row, head).
extern "C" __global__ void attn_merge(float *out, const float *part, int nH, int hd, int splits) {
    long rh = blockIdx.x;
    const float *p = part + rh * splits * (long)(hd + 2);
    float M = -INFINITY;
    for (int z = 0; z < splits; z++) M = fmaxf(M, p[z * (long)(hd + 2)]);
    float L = 0.f;
    for (int z = 0; z < splits; z++) {
        float mz = p[z * (long)(hd + 2)];
        if (mz != -INFINITY) L += p[z * (long)(hd + 2) + 1] * expf(mz - M);
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.f;
        for (int z = 0; z < splits; z++) {
            float mz = p[z * (long)(hd + 2)];
            if (mz != -INFINITY) o += p[z * (long)(hd + 2) + 2 + d] * expf(mz - M);
        }
        out[rh * hd + d] = o / L;
    }
}

// ---------------------------------------------------------------------------
// Sampling, one block per row of V logits: ids[r] = argmax over the row of
// logit/T + Gumbel noise (an exact draw from softmax(logit/T)), among tokens
// whose probability is at least minp times the largest (minp 0: all).
// temp 0 is greedy. Ties go to the lower id. A row with a NaN or infinite
// logit gets id −1.

__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__device__ void argmax_merge(float &bv, int &bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

__device__ void block_argmax(float &bv, int &bi, float *sv, int *si) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        argmax_merge(bv, bi, ov, oi);
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
        sv[w] = bv;
        si[w] = bi;
    }
    __syncthreads();
    bv = sv[0];
    bi = si[0];
    for (int i = 1; i < (int)(blockDim.x >> 5); i++) argmax_merge(bv, bi, sv[i], si[i]);
}

// sample_one chooses the id of one row l (written to *id); r varies the
// draw between the rows of one launch.
__device__ void sample_one(int *id, const float *l, int V, float temp, float minp, unsigned long long seed,
                           unsigned long long step, long r) {
    __shared__ float sv[32];
    __shared__ int si[32];
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    int bad = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = l[i];
        bad |= !isfinite(v);
        argmax_merge(bv, bi, v, i);
    }
    if (__syncthreads_or(bad)) { // NaN or infinite logits: no token, id −1
        if (threadIdx.x == 0) *id = -1;
        return;
    }
    block_argmax(bv, bi, sv, si);
    if (temp <= 0.f) {
        if (threadIdx.x == 0) *id = bi;
        return;
    }
    float mx = bv;
    float floor = minp > 0.f ? mx + temp * logf(minp) : -INFINITY;
    bv = -INFINITY;
    bi = 0x7fffffff;
    unsigned long long base = mix64(seed ^ mix64(step * 0x9e3779b97f4a7c15ull + r));
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = l[i];
        if (v < floor) continue;
        unsigned long long b = mix64(base + (unsigned long long)i);
        float u = ((float)(b >> 40) + 0.5f) * (1.f / 16777216.f); // (0, 1)
        argmax_merge(bv, bi, v / temp - logf(-logf(u)), i);
    }
    block_argmax(bv, bi, sv, si);
    if (threadIdx.x == 0) *id = bi;
}

extern "C" __global__ void sample(int *ids, const float *logits, int V, float temp, float minp,
                                  unsigned long long seed, unsigned long long step) {
    long r = blockIdx.x;
    sample_one(ids + r, logits + r * V, V, temp, minp, seed, step, r);
}

// ---------------------------------------------------------------------------
// Random weights for benchmarks: uniform in [-a, a] from a counter hash, or a
// constant when a == 0 (with value c).
extern "C" __global__ void fill_bf16(bf16 *p, long n, unsigned long long seed, float a, float c) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long)gridDim.x * blockDim.x) {
        float v = c;
        if (a != 0.f) {
            unsigned long long b = mix64(seed + (unsigned long long)i * 0x9e3779b97f4a7c15ull);
            v = a * (((float)(b >> 40) * (1.f / 8388608.f)) - 1.f);
        }
        p[i] = __float2bfloat16_rn(v);
    }
}

extern "C" __global__ void fill_f32(float *p, long n, unsigned long long seed, float a, float c) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long)gridDim.x * blockDim.x) {
        float v = c;
        if (a != 0.f) {
            unsigned long long b = mix64(seed + (unsigned long long)i * 0x9e3779b97f4a7c15ull);
            v = a * (((float)(b >> 40) * (1.f / 8388608.f)) - 1.f);
        }
        p[i] = v;
    }
}

// y[i] = y2[i] + y2[n + i]: the two halves of a stacked split product.
extern "C" __global__ void add_halves(float *y, const float *y2, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = y2[i] + y2[n + i];
}

// Every expert over every token (decode batches where nearly all experts are
// routed to anyway: each expert's weights are read once by cuBLAS at full
// bandwidth, the unused products cost only arithmetic). gu2 holds, per
// expert, the gate-up products of the stacked split input: rows 0..n−1 from
// the hi half, n..2n−1 from the lo half. moe_dense_act adds the halves,
// applies SwiGLU and splits the result again into bf16 hi (rows t) and lo
// (rows n + t) of act2 [E][2n][I] for the down products.
extern "C" __global__ void moe_dense_act(bf16 *act2, const float *gu2, int I, int n, int E, int code) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)E * n * I) return;
    long e = i / ((long)n * I);
    int t = (i / I) % n, c = i % I;
    const float *g0 = gu2 + (e * 2 * n + t) * 2 * (long)I, *g1 = gu2 + (e * 2 * n + n + t) * 2 * (long)I;
    float a = act(g0[c] + g1[c], code) * (g0[I + c] + g1[I + c]);
    bf16 h = __float2bfloat16_rn(a);
    act2[(e * 2 * n + t) * I + c] = h;
    act2[(e * 2 * n + n + t) * I + c] = __float2bfloat16_rn(a - __bfloat162float(h));
}

// out[t] = Σ_j wt[t·k+j] · (eo2[e][t] + eo2[e][n+t]) with e = idx[t·k+j], rows of H.
extern "C" __global__ void moe_dense_combine(float *out, const float *eo2, const int *idx, const float *wt, int k, int H, int n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n * H) return;
    int t = i / H, c = i % H;
    float s = 0.f;
    for (int j = 0; j < k; j++) {
        long e = idx[t * k + j];
        s += wt[t * k + j] * (eo2[(e * 2 * n + t) * H + c] + eo2[(e * 2 * n + n + t) * H + c]);
    }
    out[i] = s;
}

// ---------------------------------------------------------------------------
// Tensor-core products for a few rows of x (decode batches), weights read
// once: y[s][r] = W_e[r] · x[s / xdiv] for every slot s of expert e. With
// off ≠ null the slots of expert e = blockIdx.y are list[off[e] ..
// off[e+1]) (moe_lists); with off = null there is one matrix and the slots
// are 0 .. n−1. x arrives split into bfloat16 halves, xs[row][2][cols]
// (hi = bf16(x), then lo = bf16(x − hi), split_rows), so the product keeps x
// to about 16 significant bits as the split cuBLAS path does.
//
// Each warp computes 16 weight rows with mma.m16n8k16 (bf16 in, float32
// accumulation): the 8 columns of the B tile are 4 slots × (hi, lo), and
// the two halves of a slot are added at the end. Inside each step of 32
// columns the k order is permuted alike in both operands, so that every
// thread loads 8 consecutive columns of a weight row (and of x) with one
// 16-byte load: thread (g, c) of the warp holds columns 8c .. 8c+7 of rows
// g and g+8, the first four feeding the first mma and the last four the
// second. cols must be a multiple of 8 (16-byte rows). The columns may be
// split over gridDim.z blocks (kchunk each, a multiple of 32) that write
// partial sums to part[z][total][rows], added in order by sum_parts.
#define MMA_WARPS 4

__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// mma_step multiplies one 32-column step: a (row g) and b (row g+8) of the
// weights, xv[j] the x columns of tile j.
template <int NT>
__device__ __forceinline__ void mma_step(float (&acc)[NT][4], uint4 a, uint4 b, const uint4 (&xv)[NT]) {
#pragma unroll
    for (int j = 0; j < NT; j++) {
        mma16816(acc[j], a.x, b.x, a.y, b.y, xv[j].x, xv[j].y);
        mma16816(acc[j], a.z, b.z, a.w, b.w, xv[j].z, xv[j].w);
    }
}

// mma_pass computes slots p .. p+min(4·NT, m−p)−1 of the list (sl, or the
// identity) for the warp's 16·MT rows from r0, columns k0 .. k1, into out
// (row stride rows), loading U steps of 32 columns of weights at once. With
// MT = 2 each load of x serves two tiles of 16 weight rows.
template <int NT, int U, int MT>
__device__ __forceinline__ void mma_pass(float *out, const bf16 *W, int rows, int cols, long r0, const bf16 *xs,
                                         const int *sl, int p, int m, int xdiv, int k0, int k1, int lane) {
    int g = lane >> 2, c = lane & 3;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    const uint4 *xb[NT];
    bool xok[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) {
        int t = p + j * 4 + (g >> 1);
        xok[j] = t < m;
        int s = sl ? sl[min(t, m - 1)] : min(t, m - 1);
        xb[j] = (const uint4 *)(xs + ((long)(s / xdiv) * 2 + (g & 1)) * cols + 8 * c);
    }
    long ra[MT], rb[MT];
    bool oka[MT], okb[MT];
    const uint4 *wa[MT], *wb[MT];
#pragma unroll
    for (int t = 0; t < MT; t++) {
        ra[t] = r0 + 16 * t + g;
        rb[t] = ra[t] + 8;
        oka[t] = ra[t] < rows;
        okb[t] = rb[t] < rows;
        wa[t] = (const uint4 *)(W + min(ra[t], (long)rows - 1) * cols + 8 * c);
        wb[t] = (const uint4 *)(W + min(rb[t], (long)rows - 1) * cols + 8 * c);
    }
    float acc[MT][NT][4];
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[t][j][0] = acc[t][j][1] = acc[t][j][2] = acc[t][j][3] = 0.f;
    int k = k0;
    for (; k + 32 * U <= k1; k += 32 * U) {
        uint4 a[MT][U], b[MT][U];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int t = 0; t < MT; t++) {
                int v = (k + 32 * u) >> 3;
                a[t][u] = oka[t] ? __ldg(wa[t] + v) : zero;
                b[t][u] = okb[t] ? __ldg(wb[t] + v) : zero;
            }
#pragma unroll
        for (int u = 0; u < U; u++) {
            int v = (k + 32 * u) >> 3;
            uint4 xv[NT];
#pragma unroll
            for (int j = 0; j < NT; j++) xv[j] = xok[j] ? xb[j][v] : zero;
#pragma unroll
            for (int t = 0; t < MT; t++) mma_step<NT>(acc[t], a[t][u], b[t][u], xv);
        }
    }
    for (; k < k1; k += 32) {
        bool in = k + 8 * c < k1; // k1 is a multiple of 8: a thread's 8 columns are all in or all out
        int v = k >> 3;
        uint4 xv[NT];
#pragma unroll
        for (int j = 0; j < NT; j++) xv[j] = xok[j] && in ? xb[j][v] : zero;
#pragma unroll
        for (int t = 0; t < MT; t++) {
            uint4 a = oka[t] && in ? __ldg(wa[t] + v) : zero;
            uint4 b = okb[t] && in ? __ldg(wb[t] + v) : zero;
            mma_step<NT>(acc[t], a, b, xv);
        }
    }
    // Thread (g, c) holds columns 2c (hi) and 2c+1 (lo) of slot p + 4j + c, rows g and g+8 of each tile.
#pragma unroll
    for (int j = 0; j < NT; j++) {
        int q = p + j * 4 + c;
        if (q >= m) continue;
        long s = sl ? sl[q] : q;
#pragma unroll
        for (int t = 0; t < MT; t++) {
            if (oka[t]) out[s * rows + ra[t]] = acc[t][j][0] + acc[t][j][1];
            if (okb[t]) out[s * rows + rb[t]] = acc[t][j][2] + acc[t][j][3];
        }
    }
}

// U1: the weight steps in flight for up to 8 slots (2 tiles of x); 4 for
// more. MT: 16-row tiles per warp.
template <int U1, int MT>
__device__ void mma_impl(float *y, float *part, const bf16 *W, long estride, const int *off, const int *list, const bf16 *xs, int xdiv,
                         int rows, int cols, int n, long total, int kchunk) {
    int lane = threadIdx.x & 31;
    long r0 = ((long)blockIdx.x * MMA_WARPS + (threadIdx.x >> 5)) * 16 * MT;
    if (r0 >= rows) return;
    const int *sl = nullptr;
    int m = n;
    if (off) {
        int e = blockIdx.y;
        sl = list + off[e];
        m = off[e + 1] - off[e];
        W += (long)e * estride;
    }
    int k0 = blockIdx.z * kchunk, k1 = min(cols, k0 + kchunk);
    float *out = gridDim.z > 1 ? part + (long)blockIdx.z * total * rows : y;
    constexpr int U2 = MT > 1 ? 2 : 4;
    for (int p = 0; p < m; p += 32) {
        int rem = m - p;
        if (rem > 16)
            mma_pass<8, U2, MT>(out, W, rows, cols, r0, xs, sl, p, m, xdiv, k0, k1, lane);
        else if (rem > 8)
            mma_pass<4, U2, MT>(out, W, rows, cols, r0, xs, sl, p, m, xdiv, k0, k1, lane);
        else if (rem > 4)
            mma_pass<2, U1, MT>(out, W, rows, cols, r0, xs, sl, p, m, xdiv, k0, k1, lane);
        else
            mma_pass<1, U1, MT>(out, W, rows, cols, r0, xs, sl, p, m, xdiv, k0, k1, lane);
    }
}

#define MMA_KERNEL(NAME, U1, MT)                                                                                 \
    extern "C" __global__ void __launch_bounds__(MMA_WARPS * 32)                                                \
    NAME(float *y, float *part, const bf16 *W, long estride, const int *off, const int *list, const bf16 *xs,    \
         int xdiv, int rows, int cols, int n, long total, int kchunk) {                                         \
        mma_impl<U1, MT>(y, part, W, estride, off, list, xs, xdiv, rows, cols, n, total, kchunk);               \
    }
MMA_KERNEL(mma_bf16, 4, 1)      // 16 rows a warp, 4 steps in flight
MMA_KERNEL(mma_bf16_deep, 8, 1) // 16 rows a warp, 8 steps in flight for few slots
MMA_KERNEL(mma_bf16_wide, 4, 2) // 32 rows a warp: x read once for both tiles

// y[i] = Σ_z part[z·n + i], z in order: the column splits of mma_bf16.
extern "C" __global__ void sum_parts(float *y, const float *part, long n, int splits) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = part[i];
    for (int z = 1; z < splits; z++) s += part[(long)z * n + i];
    y[i] = s;
}

// xs[r][0][c] = bf16(x[r][c]), xs[r][1][c] = bf16(x[r][c] − xs[r][0][c]):
// the split input of mma_bf16, rows of cols.
extern "C" __global__ void split_rows(bf16 *xs, const float *x, int cols, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols) return;
    long r = i / cols, c = i % cols;
    float v = x[i];
    bf16 h = __float2bfloat16_rn(v);
    xs[(2 * r) * cols + c] = h;
    xs[(2 * r + 1) * cols + c] = __float2bfloat16_rn(v - __bfloat162float(h));
}

// SwiGLU into the split form of mma_bf16: a = act(gu[r][i]) · gu[r][I + i],
// as[r][0][i] = bf16(a), as[r][1][i] = bf16(a − as[r][0][i]).
extern "C" __global__ void swiglu_split(bf16 *as, const float *gu, int I, long rows, int code) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * I) return;
    long r = i / I, c = i % I;
    const float *g = gu + r * 2 * I;
    float a = act(g[c], code) * g[I + c];
    bf16 h = __float2bfloat16_rn(a);
    as[(2 * r) * I + c] = h;
    as[(2 * r + 1) * I + c] = __float2bfloat16_rn(a - __bfloat162float(h));
}

// ---------------------------------------------------------------------------
// Dense products of a few rows of x (decode batches of 2 to 32), weights read
// once: y[t][r] = W[r] · x[t] for t < n, x float32 [n][cols], y [n][rows].
// The arithmetic is mma_bf16's (x split into bf16 hi + lo, mma.m16n8k16 with
// float32 accumulation, the two halves added at the end), without the
// separate split and add kernels of the cuBLAS path, and:
// - x is split here and staged in shared memory, MMD_KC columns at a time,
//   so a block of MMD_ROWS weight rows reads x from L2 once and every warp
//   reads its tiles from shared memory (mma_bf16 reads them from L2 per 16
//   weight rows); the next chunk's loads are issued a chunk ahead;
// - each warp streams its 16·MT weight rows through a ring of two chunks in
//   shared memory (cp.async), the next chunk's copies issued at once when
//   the current one starts (256 consecutive bytes of each row).
// The 4·NT slots of a tile are all rows of x (n ≤ 4·NT). The columns may be
// split over gridDim.z blocks (kchunk each, a multiple of MMD_KC) writing
// partial sums to part[z][n][rows], added in order by sum_parts. cols must
// be a multiple of 8, x 16-byte aligned. Dynamic shared memory: mmdShared
// in ops.go.
//
// Measured on an H200 (docs/GPU.md): at up to 8 rows of x this streams the
// weights about as fast as cuBLAS on the split input, at 16–32 rows it is
// slower on large weights: the hi/lo halves make 64 columns of mma.sync
// work per weight, and the tensor cores' legacy mma.sync rate (half of
// Hopper's wgmma) together with the shared-memory reads of x then bound it
// below the memory's speed. It wins where cuBLAS cannot fill the GPU
// (weights with few rows or few columns).
#define MMD_ROWS 128 // weight rows a block
#define MMD_KC 128
#define MMD_KP (MMD_KC + 32) // padded row: the 16-byte loads of a quarter warp hit distinct banks

__device__ __forceinline__ void cp_async16(void *dst, const void *src, int bytes) {
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}

// MT: 16-row tiles a warp; the block has MMD_ROWS / (16·MT) warps.
template <int NT, int MT>
__device__ __forceinline__ void mmd_impl(float *y, float *part, const bf16 *W, const float *x, int rows, int cols, int n,
                                         int kchunk) {
    constexpr int WR = 16 * MT, NTH = MMD_ROWS / WR * 32, XR = NT * 4, IT = XR * MMD_KC / 4 / NTH, SPC = MMD_KC / 32,
                  S = 2 * SPC;
    static_assert(IT * NTH == XR * MMD_KC / 4, "x chunk not a whole number of float4 per thread");
    extern __shared__ __align__(16) unsigned char mmd_sm[];
    bf16(*xs)[MMD_KP] = (bf16(*)[MMD_KP])mmd_sm;                       // [2·XR][MMD_KP]: row 2t hi of x[t], 2t + 1 lo
    bf16(*ring)[WR][32] = (bf16(*)[WR][32])(mmd_sm + 2 * XR * MMD_KP * 2); // [warp·S + stage][row][col]
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
    long r0 = (long)blockIdx.x * MMD_ROWS + warp * WR;
    int k0 = blockIdx.z * kchunk, k1 = min(cols, k0 + kchunk), nsteps = (k1 - k0 + 31) / 32;
    float *out = gridDim.z > 1 ? part + (long)blockIdx.z * n * rows : y;
    ring += warp * S;
    // issue copies steps p .. p+SPC−1 of the warp's 32 weight rows into its
    // ring (zeros past the last row and past k1) as one group: 256
    // consecutive bytes of each row at once.
    auto issue = [&](int p) {
#pragma unroll
        for (int u = 0; u < SPC; u++)
#pragma unroll
            for (int i = 0; i < 2 * MT; i++) {
                int id = lane + 32 * i, row = id >> 2, q = (id & 3) * 8, col = k0 + 32 * (p + u) + q;
                bool ok = r0 + row < rows && col < k1; // k1 is a multiple of 8
                cp_async16(&ring[(p + u) % S][row][q], ok ? W + (r0 + row) * cols + col : W, ok ? 16 : 0);
            }
        asm volatile("cp.async.commit_group;\n" ::);
    };
    // x chunks go through registers: loaded a chunk ahead, split into xs at the chunk boundary.
    float4 xv4[IT];
    auto xload = [&](int kk) {
#pragma unroll
        for (int s = 0; s < IT; s++) {
            int i = tid + s * NTH, t = i / (MMD_KC / 4), q = (i % (MMD_KC / 4)) * 4;
            xv4[s] = t < n && kk + q < k1 ? *(const float4 *)(x + (long)t * cols + kk + q) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
    };
    const bf16 *xr[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) xr[j] = &xs[(4 * j + (g >> 1)) * 2 + (g & 1)][8 * c];
    float acc[MT][NT][4];
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[t][j][0] = acc[t][j][1] = acc[t][j][2] = acc[t][j][3] = 0.f;
    issue(0);
    xload(k0);
    for (int st = 0; st < nsteps; st++) {
        int kk = k0 + (st / SPC) * MMD_KC;
        if (st % SPC == 0) {
            __syncthreads(); // every warp is done with the last chunk
#pragma unroll
            for (int s = 0; s < IT; s++) {
                int i = tid + s * NTH, t = i / (MMD_KC / 4), q = (i % (MMD_KC / 4)) * 4;
                float4 v = xv4[s];
                __nv_bfloat162 h0 = __floats2bfloat162_rn(v.x, v.y), h1 = __floats2bfloat162_rn(v.z, v.w);
                float2 f0 = __bfloat1622float2(h0), f1 = __bfloat1622float2(h1);
                __nv_bfloat162 l0 = __floats2bfloat162_rn(v.x - f0.x, v.y - f0.y), l1 = __floats2bfloat162_rn(v.z - f1.x, v.w - f1.y);
                uint2 hv, lv;
                hv.x = *(uint32_t *)&h0, hv.y = *(uint32_t *)&h1;
                lv.x = *(uint32_t *)&l0, lv.y = *(uint32_t *)&l1;
                *(uint2 *)&xs[2 * t][q] = hv;
                *(uint2 *)&xs[2 * t + 1][q] = lv;
            }
            __syncthreads(); // xs holds this chunk; the last chunk's slots of the ring are free
            if (kk + MMD_KC < k1) xload(kk + MMD_KC);
            issue(st + SPC); // the next chunk's weights
            asm volatile("cp.async.wait_group 1;\n" ::); // this chunk's have arrived
            __syncwarp();
        }
        int o = (st % SPC) * 32;
        uint4 xv[NT];
#pragma unroll
        for (int j = 0; j < NT; j++) xv[j] = *(const uint4 *)(xr[j] + o); // zeros past k1 (xload)
#pragma unroll
        for (int t = 0; t < MT; t++) {
            uint4 a = *(const uint4 *)&ring[st % S][16 * t + g][8 * c];
            uint4 b = *(const uint4 *)&ring[st % S][16 * t + g + 8][8 * c];
            mma_step<NT>(acc[t], a, b, xv);
        }
    }
    asm volatile("cp.async.wait_all;\n" ::);
    // Thread (g, c) holds columns 2c (hi) and 2c+1 (lo) of x row 4j + c, weight rows g and g+8 of each tile.
#pragma unroll
    for (int j = 0; j < NT; j++) {
        long q = j * 4 + c;
        if (q >= n) continue;
#pragma unroll
        for (int t = 0; t < MT; t++) {
            long ra = r0 + 16 * t + g, rb = ra + 8;
            if (ra < rows) out[q * rows + ra] = acc[t][j][0] + acc[t][j][1];
            if (rb < rows) out[q * rows + rb] = acc[t][j][2] + acc[t][j][3];
        }
    }
}

#define MMD_KERNEL(NAME, NT, MT)                                                                                 \
    extern "C" __global__ void __launch_bounds__(MMD_ROWS / (16 * MT) * 32)                                     \
    NAME(float *y, float *part, const bf16 *W, const float *x, int rows, int cols, int n, int kchunk) {          \
        mmd_impl<NT, MT>(y, part, W, x, rows, cols, n, kchunk);                                                  \
    }
// 4 warps of 32 weight rows for up to 8 rows of x; 8 warps of 16 weight rows
// for more (registers for 32 slots of accumulators: two blocks of 8 warps a
// multiprocessor hide the latencies better than two of 4 warps of 32 rows).
MMD_KERNEL(mmd_bf16_1, 1, 2) // up to 4 rows of x
MMD_KERNEL(mmd_bf16_2, 2, 2) // up to 8
MMD_KERNEL(mmd_bf16_4, 4, 1) // up to 16
MMD_KERNEL(mmd_bf16_8, 8, 1) // up to 32

// ---------------------------------------------------------------------------
// Sampling with top-k and top-p, one block per row of V logits, in the CPU
// sampler's order (sample.Sampler): x = logit · (1/T); top-k keeps the k
// first ids in the order (x descending, id ascending); top-p keeps the
// shortest prefix of those, in the same order, whose probability mass
// reaches p of theirs; min-p drops ids whose probability is below minp times
// the largest; the id is then drawn from softmax(x) over what is kept, by
// the Gumbel-max trick as in sample. Thresholds are found by radix selection
// over the order-preserving keys of x (four passes of 8 bits), and ties at
// a threshold are cut by id with a scan over contiguous chunks. topk ≤ 0 or
// ≥ V and topp ≥ 1 (or ≤ 0) are off. A row with a NaN or infinite logit
// gets id −1. blockDim.x must be 1024.

__device__ __forceinline__ unsigned fkey(float v) {
    unsigned b = __float_as_uint(v);
    return b ^ ((b >> 31) ? 0xffffffffu : 0x80000000u);
}

// block_scan_excl returns the exclusive prefix sum of v over the block's
// threads in order and the total (through tot). sh holds 32 ints.
__device__ int block_scan_excl(int v, int *sh, int *tot) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int x = v;
    for (int o = 1; o < 32; o <<= 1) {
        int y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    __syncthreads();
    if (lane == 31) sh[w] = x;
    __syncthreads();
    int before = 0, all = 0;
    for (int i = 0; i < nw; i++) {
        if (i < w) before += sh[i];
        all += sh[i];
    }
    *tot = all;
    return before + x - v;
}

struct TopState {
    float inv;          // 1/T
    unsigned kt;        // top-k threshold key (ids with a larger key are in)
    int kcut;           // ids with key == kt are in when id ≤ kcut
    unsigned pt;        // top-p threshold key
    int pcut;
};

__device__ __forceinline__ bool top_kept(const TopState &s, unsigned key, int i) {
    return (key > s.kt || (key == s.kt && i <= s.kcut)) && (key > s.pt || (key == s.pt && i <= s.pcut));
}

// tie_cut returns the id of the n-th (from 1) id i in ascending order with
// fkey(x_i) == key and top_kept so far (st), or V−1 when there are fewer.
__device__ int tie_cut(const float *l, int V, const TopState &st, unsigned key, int n, int *sh, int *res) {
    int C = (V + blockDim.x - 1) / blockDim.x;
    int i0 = threadIdx.x * C, i1 = min(V, i0 + C);
    int cnt = 0;
    for (int i = i0; i < i1; i++) {
        unsigned k = fkey(l[i] * st.inv);
        cnt += k == key && top_kept(st, k, i);
    }
    int tot;
    int before = block_scan_excl(cnt, sh, &tot);
    if (threadIdx.x == 0) *res = V - 1;
    __syncthreads();
    if (before < n && n <= before + cnt) {
        int seen = before;
        for (int i = i0; i < i1; i++) {
            unsigned k = fkey(l[i] * st.inv);
            if (k == key && top_kept(st, k, i) && ++seen == n) {
                *res = i;
                break;
            }
        }
    }
    __syncthreads();
    int r = *res;
    __syncthreads();
    return r;
}

__device__ void sample_top_one(int *id, const float *l, int V, float temp, int topk, float topp, float minp,
                               unsigned long long seed, unsigned long long step, long r) {
    __shared__ unsigned hist[256];
    __shared__ double mass[256];
    __shared__ double mpart[8][256]; // mass's partial sums: warp w adds into mpart[w & 7]
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ int sh[32];
    __shared__ int res;
    __shared__ unsigned sdigit;
    __shared__ double srem;
    TopState st;
    st.inv = 1.f / temp;
    st.kt = 0; st.kcut = V; st.pt = 0; st.pcut = V; // everything in
    int bad = 0;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = l[i];
        bad |= !isfinite(v);
        mx = fmaxf(mx, v * st.inv);
    }
    if (__syncthreads_or(bad)) {
        if (threadIdx.x == 0) *id = -1;
        return;
    }
    // The largest x (kept by every filter).
    {
        int bi = 0;
        block_argmax(mx, bi, sv, si);
    }
    if (topk > 0 && topk < V) {
        unsigned prefix = 0, mask = 0;
        int want = topk;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
            __syncthreads();
            for (int i = threadIdx.x; i < V; i += blockDim.x) {
                unsigned k = fkey(l[i] * st.inv);
                if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255], 1u);
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int acc = 0, d = 0;
                for (int b = 255; b >= 0; b--) {
                    if (acc + (int)hist[b] >= want) {
                        d = b;
                        break;
                    }
                    acc += hist[b];
                }
                sdigit = d;
                srem = want - acc;
            }
            __syncthreads();
            prefix |= sdigit << shift;
            mask |= 255u << shift;
            want = (int)srem;
            __syncthreads();
        }
        st.kt = prefix;
        st.kcut = V; // provisional: every tie, for tie_cut's count
        st.kcut = tie_cut(l, V, st, prefix, want, sh, &res);
    }
    if (topp > 0.f && topp < 1.f) {
        double total = 0.0;
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            float x = l[i] * st.inv;
            if (top_kept(st, fkey(x), i)) total += exp((double)(x - mx));
        }
        for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffffu, total, o);
        if (threadIdx.x == 0) srem = 0;
        __syncthreads();
        if ((threadIdx.x & 31) == 0) atomicAdd(&srem, total);
        __syncthreads();
        double want = (double)topp * srem;
        __syncthreads();
        unsigned prefix = 0, mask = 0;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = threadIdx.x; b < 8 * 256; b += blockDim.x) mpart[b >> 8][b & 255] = 0.0;
            __syncthreads();
            // Most keys share their high bits: eight copies of the bins
            // spread the atomics that would all meet on a few.
            double *mp = mpart[(threadIdx.x >> 5) & 7];
            for (int i = threadIdx.x; i < V; i += blockDim.x) {
                float x = l[i] * st.inv;
                unsigned k = fkey(x);
                if ((k & mask) == prefix && top_kept(st, k, i)) atomicAdd(&mp[(k >> shift) & 255], exp((double)(x - mx)));
            }
            __syncthreads();
            for (int b = threadIdx.x; b < 256; b += blockDim.x) {
                double m = 0.0;
                for (int c = 0; c < 8; c++) m += mpart[c][b];
                mass[b] = m;
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                double acc = 0.0;
                int d = -1, low = 0;
                for (int b = 255; b >= 0; b--) {
                    if (mass[b] > 0.0) low = b;
                    if (acc + mass[b] >= want && mass[b] > 0.0) {
                        d = b;
                        break;
                    }
                    acc += mass[b];
                }
                if (d < 0) { // rounding left the target above the whole mass: keep all
                    d = low;
                    acc -= mass[low];
                }
                sdigit = d;
                srem = want - acc;
            }
            __syncthreads();
            prefix |= sdigit << shift;
            mask |= 255u << shift;
            want = srem;
            __syncthreads();
        }
        // Ties at the threshold, each of the same probability, in id order
        // until the mass is reached.
        unsigned b = prefix ^ ((prefix >> 31) ? 0x80000000u : 0xffffffffu);
        double each = exp((double)(__uint_as_float(b) - mx));
        int n = max(1, (int)ceil(want / each - 1e-9));
        st.pt = prefix;
        st.pcut = tie_cut(l, V, st, prefix, n, sh, &res);
    }
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    unsigned long long base = mix64(seed ^ mix64(step * 0x9e3779b97f4a7c15ull + r));
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float x = l[i] * st.inv;
        if (!top_kept(st, fkey(x), i)) continue;
        if (minp > 0.f && exp((double)(x - mx)) < (double)minp) continue;
        unsigned long long h = mix64(base + (unsigned long long)i);
        float u = ((float)(h >> 40) + 0.5f) * (1.f / 16777216.f); // (0, 1)
        argmax_merge(bv, bi, x - logf(-logf(u)), i);
    }
    block_argmax(bv, bi, sv, si);
    if (threadIdx.x == 0) *id = bi;
}

extern "C" __global__ void __launch_bounds__(1024)
sample_top(int *ids, const float *logits, int V, float temp, int topk, float topp, float minp,
           unsigned long long seed, unsigned long long step) {
    long r = blockIdx.x;
    sample_top_one(ids + r, logits + r * V, V, temp, topk, topp, minp, seed, step, r);
}

// SampleRow is one row's sampling parameters for sample_rows: 32 bytes, as
// Model.sampleEach writes them.
struct SampleRow {
    float temp, topp, minp;
    int topk;
    unsigned long long seed, step;
};

// sample_rows samples every row with its own parameters, in one launch: row
// r as sample_top (top-k or top-p on) or sample (else; temp 0: greedy)
// would as the first row of their own launch, so that a request draws the
// same ids in a launch of its own and in one shared with others.
extern "C" __global__ void __launch_bounds__(1024)
sample_rows(int *ids, const float *logits, int V, const SampleRow *rows) {
    long r = blockIdx.x;
    SampleRow q = rows[r];
    if (q.temp > 0.f && ((q.topk > 0 && q.topk < V) || (q.topp > 0.f && q.topp < 1.f)))
        sample_top_one(ids + r, logits + r * V, V, q.temp, q.topk, q.topp, q.minp, q.seed, q.step, 0);
    else
        sample_one(ids + r, logits + r * V, V, q.temp, q.minp, q.seed, q.step, 0);
}
