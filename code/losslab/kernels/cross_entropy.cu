// Fused, numerically stable cross-entropy over logits [B, V] (row-major, contiguous).
//
// One block per row. Each thread keeps a running (max m, sum s) pair -- the
// online log-sum-exp: on a new value x, if x > m then s = s * exp(m - x) + 1
// and m = x, else s += exp(x - m) -- over a strided part of the row; the
// block then merges the pairs: (m1, s1) + (m2, s2) = (m, s1 e^{m1-m} + s2 e^{m2-m})
// with m = max(m1, m2). The loss of a row is (m - x[target]) + log s, which
// keeps log s from being rounded away next to large logits.
//
// Loads are vectorized (float4 / double2) over the part of the row that is
// aligned to the vector width; the unaligned head (a row of V = 50257 floats
// starts at any 4-byte offset) and the tail go element by element, so every V
// runs at the vectorized speed.
//
// The CPU emulation in losslab.kernels.reference follows the same blocking
// and merge order and is tested against torch.nn.functional.cross_entropy.

#ifndef LL_BLOCK
#define LL_BLOCK 256
#endif
#define LL_WARPS (LL_BLOCK / 32)

template <typename T> struct Vec;
template <> struct Vec<float> { typedef float4 type; static const int width = 4; };
template <> struct Vec<double> { typedef double2 type; static const int width = 2; };

// ll_exp and ll_log: prelude.cu, put in front of this file by losslab.kernels.source()

template <typename T> __device__ __forceinline__ T ll_neg_inf();
template <> __device__ __forceinline__ float ll_neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double ll_neg_inf<double>() { return __longlong_as_double(0xfff0000000000000ULL); }

// Add the W values of one vector load: one rescale per vector instead of one per
// value (the largest of the W first), then W exponentials; all -inf adds nothing.
template <typename T, int W>
__device__ __forceinline__ void ll_push_vec(const T *e, T &m, T &s) {
    T mv = e[0];
    #pragma unroll
    for (int q = 1; q < W; ++q) mv = e[q] > mv ? e[q] : mv;
    if (mv == ll_neg_inf<T>()) return;
    if (mv > m) {
        s = (m == ll_neg_inf<T>()) ? T(0) : s * ll_exp<T>(m - mv);
        m = mv;
    }
    #pragma unroll
    for (int q = 0; q < W; ++q) s += ll_exp<T>(e[q] - m);
}

// Merge (m2, s2) into (m, s).
template <typename T>
__device__ __forceinline__ void ll_merge(T &m, T &s, T m2, T s2) {
    if (m2 == ll_neg_inf<T>()) return;
    if (m == ll_neg_inf<T>()) { m = m2; s = s2; return; }
    if (m2 > m) { s = s * ll_exp<T>(m - m2) + s2; m = m2; }
    else { s = s + s2 * ll_exp<T>(m2 - m); }
}

// (m, s) of every thread of a block of NT threads merged: within each warp by
// shuffles (lane l takes lane l + off), then the warps' pairs in order by thread 0;
// the result is known to every thread.
template <typename T, int NT>
__device__ __forceinline__ void ll_block_merge(T m, T s, T &m_out, T &s_out) {
    for (int off = 16; off > 0; off >>= 1) {
        T m2 = __shfl_down_sync(0xffffffffu, m, off);
        T s2 = __shfl_down_sync(0xffffffffu, s, off);
        ll_merge<T>(m, s, m2, s2);
    }
    __shared__ T sm[NT / 32], ss[NT / 32];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    __syncthreads();
    if (threadIdx.x == 0) {
        T M = sm[0], S = ss[0];
        for (int w = 1; w < NT / 32; ++w) ll_merge<T>(M, S, sm[w], ss[w]);
        sm[0] = M; ss[0] = S;
    }
    __syncthreads();
    m_out = sm[0]; s_out = ss[0];
}

// Elements of a row before its first vector-aligned one (at most V): the head goes element by element.
template <typename T>
__device__ __forceinline__ long long ll_head(const T *row, long long V) {
    typedef typename Vec<T>::type VT;
    unsigned long long addr = (unsigned long long)row;
    long long head = (long long)((sizeof(VT) - (addr % sizeof(VT))) % sizeof(VT)) / (long long)sizeof(T);
    return head > V ? V : head;
}

// (m, s) of the whole row, known to every thread of the block (NT threads).
template <typename T, int NT = LL_BLOCK>
__device__ void ll_row_lse_pair(const T *row, long long V, T &m_out, T &s_out) {
    typedef typename Vec<T>::type VT;
    const int W = Vec<T>::width;
    T m = ll_neg_inf<T>(), s = T(0);
    // 1. unaligned head, element by element
    const long long head = ll_head<T>(row, V);
    for (long long j = threadIdx.x; j < head; j += NT) ll_push_vec<T, 1>(&row[j], m, s);
    // 2. aligned middle, W elements per load, two loads in flight per thread
    int nvec = (int)((V - head) / W);
    const VT *vrow = reinterpret_cast<const VT *>(row + head);
    int k = threadIdx.x;
    for (; k + NT < nvec; k += 2 * NT) {
        VT v0 = vrow[k], v1 = vrow[k + NT];
        ll_push_vec<T, W>(reinterpret_cast<const T *>(&v0), m, s);
        ll_push_vec<T, W>(reinterpret_cast<const T *>(&v1), m, s);
    }
    if (k < nvec) {
        VT v0 = vrow[k];
        ll_push_vec<T, W>(reinterpret_cast<const T *>(&v0), m, s);
    }
    // 3. tail, element by element
    for (long long j = head + (long long)nvec * W + threadIdx.x; j < V; j += NT) ll_push_vec<T, 1>(&row[j], m, s);
    // 4. merge within each warp, then across warps
    ll_block_merge<T, NT>(m, s, m_out, s_out);
}

// Whether target t is a class of a row of V logits (ce_finish reports the rows where it is neither
// that nor ignore_index, and the caller raises; the row kernels read nothing for them).
__device__ __forceinline__ bool ll_is_class(long long t, long long V) { return t >= 0 && t < V; }

// From the row's merged (m, s): lse[b] = m + log s, saved for the backward pass, and
// loss[b] = (m - x_t) + log s (0 for ignore_index, or a target that is not a class), written by
// thread 0; x is the row, in memory or in shared memory. Returns lse to every thread.
template <typename T>
__device__ __forceinline__ T ll_row_loss(const T *x, long long b, long long t, long long V, long long ignore_index,
                                         T m, T s, T *__restrict__ loss, T *__restrict__ lse) {
    const T logs = ll_log<T>(s), L = m + logs;
    if (threadIdx.x == 0) {
        lse[b] = L;
        loss[b] = (t == ignore_index || !ll_is_class(t, V)) ? T(0) : (m - x[t]) + logs;
    }
    return L;
}

// loss[b] = logsumexp(x[b]) - x[b, target[b]] (0 where target == ignore_index);
// lse[b] = logsumexp(x[b]) is saved for the backward pass.
template <typename T>
__device__ void ll_ce_forward(const T *__restrict__ logits, const long long *__restrict__ target,
                              T *__restrict__ loss, T *__restrict__ lse, long long V, long long ignore_index) {
    long long b = blockIdx.x;
    const T *row = logits + b * V;
    T m, s;
    ll_row_lse_pair<T>(row, V, m, s);
    ll_row_loss<T>(row, b, target[b], V, ignore_index, m, s, loss, lse);
}

// dlogits of one vector in place: (exp(x - L) - [j == t]) * g, j0 the index of its first element.
template <typename T, int W, typename VT>
__device__ __forceinline__ void ll_grad_vec(VT &v, long long j0, long long t, T L, T g) {
    T *e = reinterpret_cast<T *>(&v);
    #pragma unroll
    for (int q = 0; q < W; ++q) e[q] = (ll_exp<T>(e[q] - L) - (j0 + q == t ? T(1) : T(0))) * g;
}

// A load and a store of the backward's second pass over a row: plain, or (STREAM) the last use of the
// row's logits (__ldcs: evict first) and a store that is not read again here (__stcs: streaming), so
// that L2 keeps the rows a kernel has still to re-read.
template <bool STREAM, typename VT> __device__ __forceinline__ VT ll_load(const VT *p) {
    if constexpr (STREAM) return __ldcs(p); else return *p;
}
template <bool STREAM, typename VT> __device__ __forceinline__ void ll_store(VT *p, VT v) {
    if constexpr (STREAM) __stcs(p, v); else *p = v;
}

// drow[j] = (exp(row[j] - L) - [j == t]) * g over a row, by NT threads.
template <typename T, int NT, bool STREAM>
__device__ __forceinline__ void ll_row_grad(const T *__restrict__ row, T *__restrict__ drow, long long V, long long t,
                                            T L, T g) {
    typedef typename Vec<T>::type VT;
    const int W = Vec<T>::width;
    // logits and dlogits rows share their offset from alignment (same V, same dtype, both allocations aligned)
    const long long head = ll_head<T>(row, V);
    for (long long j = threadIdx.x; j < head; j += NT)
        ll_store<STREAM>(&drow[j], (ll_exp<T>(ll_load<STREAM>(&row[j]) - L) - (j == t ? T(1) : T(0))) * g);
    int nvec = (int)((V - head) / W);
    const VT *vrow = reinterpret_cast<const VT *>(row + head);
    VT *vdrow = reinterpret_cast<VT *>(drow + head);
    int k = threadIdx.x;
    for (; k + NT < nvec; k += 2 * NT) {  // two loads in flight per thread, as in the forward
        VT v0 = ll_load<STREAM>(&vrow[k]), v1 = ll_load<STREAM>(&vrow[k + NT]);
        ll_grad_vec<T, W>(v0, head + (long long)k * W, t, L, g);
        ll_grad_vec<T, W>(v1, head + (long long)(k + NT) * W, t, L, g);
        ll_store<STREAM>(&vdrow[k], v0);
        ll_store<STREAM>(&vdrow[k + NT], v1);
    }
    if (k < nvec) {
        VT v0 = ll_load<STREAM>(&vrow[k]);
        ll_grad_vec<T, W>(v0, head + (long long)k * W, t, L, g);
        ll_store<STREAM>(&vdrow[k], v0);
    }
    for (long long j = head + (long long)nvec * W + threadIdx.x; j < V; j += NT)
        ll_store<STREAM>(&drow[j], (ll_exp<T>(ll_load<STREAM>(&row[j]) - L) - (j == t ? T(1) : T(0))) * g);
}

// dlogits[b, j] = (exp(x[b, j] - lse[b]) - [j == target[b]]) * grad[b]  (0 for ignored rows).
// grad_stride is 0 for a scalar upstream gradient (reduction mean or sum), 1 for one per row.
template <typename T>
__device__ void ll_ce_backward(const T *__restrict__ logits, const long long *__restrict__ target,
                               const T *__restrict__ lse, const T *__restrict__ grad, long long grad_stride,
                               T *__restrict__ dlogits, long long V, long long ignore_index) {
    long long b = blockIdx.x;
    long long t = target[b];
    T g = (t == ignore_index) ? T(0) : grad[b * grad_stride];
    ll_row_grad<T, LL_BLOCK, false>(logits + b * V, dlogits + b * V, V, t, lse[b], g);
}

// Forward and backward in one kernel, without shared memory: each block of LL_L2BLOCK threads takes
// rows blockIdx.x, blockIdx.x + gridDim.x, ...: a first pass over the row for the online log-sum-exp,
// then a second that reads the row again and writes dlogits. Launched with about one block per SM,
// the rows in flight (132 x 201 KB on an H100) fit in L2 (50 MB), so that the second read comes from
// L2 rather than from memory: the logits are read from memory once, as with the rows in shared
// memory, with more than one block's worth of loads in flight per SM. g = scale[0] as in ll_ce_fwd_bwd.
#ifndef LL_L2BLOCK
#define LL_L2BLOCK 1024
#endif

template <typename T>
__device__ void ll_ce_fwd_bwd_l2(const T *__restrict__ logits, const long long *__restrict__ target,
                                 T *__restrict__ loss, T *__restrict__ lse, T *__restrict__ dlogits,
                                 const T *__restrict__ scale, long long B, long long V, long long ignore_index) {
    for (long long b = blockIdx.x; b < B; b += gridDim.x) {
        const T *row = logits + b * V;
        T m, s;
        ll_row_lse_pair<T, LL_L2BLOCK>(row, V, m, s);
        const long long t = target[b];
        const T L = ll_row_loss<T>(row, b, t, V, ignore_index, m, s, loss, lse);
        T g = (t == ignore_index) ? T(0) : scale[0];
        ll_row_grad<T, LL_L2BLOCK, true>(row, dlogits + b * V, V, t, L, g);
        __syncthreads();  // the next row's merge reuses the shared slots this one's threads may still read
    }
}

// Forward and backward in one read of the logits, for rows that fit in shared
// memory (V = 50257 float32 logits are 201 KB; an H100 block may hold 227 KB):
// each row is read once into shared memory, pushing the online log-sum-exp as it
// arrives, and dlogits = (softmax - onehot) * g is then written from there, so the
// logits are read once instead of twice. g = scale[0] (1/count for a mean, 1 for a
// sum); the loss and lse are those of ll_ce_forward. One block of LL_FBLOCK threads
// per row. Element j of the row is kept at base[j], base = smem + pad with pad
// chosen so that base + head is vector-aligned in shared memory too.
#ifndef LL_FBLOCK
#define LL_FBLOCK 1024
#endif
extern __shared__ __align__(16) unsigned char ll_dyn_smem[];

template <typename T>
__device__ void ll_ce_fwd_bwd(const T *__restrict__ logits, const long long *__restrict__ target,
                              T *__restrict__ loss, T *__restrict__ lse, T *__restrict__ dlogits,
                              const T *__restrict__ scale, long long V, long long ignore_index) {
    typedef typename Vec<T>::type VT;
    const int W = Vec<T>::width;
    long long b = blockIdx.x;
    const T *row = logits + b * V;
    T *drow = dlogits + b * V;
    const int head = (int)ll_head<T>(row, V);
    int pad = (W - head % W) % W;
    T *base = reinterpret_cast<T *>(ll_dyn_smem) + pad;
    T m = ll_neg_inf<T>(), s = T(0);
    for (int j = threadIdx.x; j < head; j += LL_FBLOCK) { T x = row[j]; base[j] = x; ll_push_vec<T, 1>(&x, m, s); }
    int nvec = (int)((V - head) / W);
    const VT *vrow = reinterpret_cast<const VT *>(row + head);
    VT *vbuf = reinterpret_cast<VT *>(base + head);
    int k = threadIdx.x;
    for (; k + LL_FBLOCK < nvec; k += 2 * LL_FBLOCK) {
        VT v0 = vrow[k], v1 = vrow[k + LL_FBLOCK];
        vbuf[k] = v0; vbuf[k + LL_FBLOCK] = v1;
        ll_push_vec<T, W>(reinterpret_cast<const T *>(&v0), m, s);
        ll_push_vec<T, W>(reinterpret_cast<const T *>(&v1), m, s);
    }
    if (k < nvec) {
        VT v0 = vrow[k];
        vbuf[k] = v0;
        ll_push_vec<T, W>(reinterpret_cast<const T *>(&v0), m, s);
    }
    long long tail = head + (long long)nvec * W;
    for (long long j = tail + threadIdx.x; j < V; j += LL_FBLOCK) { T x = row[j]; base[j] = x; ll_push_vec<T, 1>(&x, m, s); }
    T M, S;
    ll_block_merge<T, LL_FBLOCK>(m, s, M, S);  // its __syncthreads also publishes base[] to every thread
    const long long t = target[b];
    const T L = ll_row_loss<T>(base, b, t, V, ignore_index, M, S, loss, lse);
    T g = (t == ignore_index) ? T(0) : scale[0];
    for (int j = threadIdx.x; j < head; j += LL_FBLOCK) drow[j] = (ll_exp<T>(base[j] - L) - (j == t ? T(1) : T(0))) * g;
    VT *vd = reinterpret_cast<VT *>(drow + head);
    for (int k2 = threadIdx.x; k2 < nvec; k2 += LL_FBLOCK) {
        VT v = vbuf[k2];
        T *e = reinterpret_cast<T *>(&v);
        #pragma unroll
        for (int q = 0; q < W; ++q) {
            long long j = head + (long long)k2 * W + q;
            e[q] = (ll_exp<T>(e[q] - L) - (j == t ? T(1) : T(0))) * g;
        }
        vd[k2] = v;
    }
    for (long long j = tail + threadIdx.x; j < V; j += LL_FBLOCK) drow[j] = (ll_exp<T>(base[j] - L) - (j == t ? T(1) : T(0))) * g;
}

// The rows' targets checked and their losses reduced on the device, by one block after the row
// kernel, so that the public function launches no small kernels of its own and waits for the GPU
// once, at the end, to learn whether a target was out of range (it then raises):
//   status[0] = rows whose target is neither a class in [0, V) nor ignore_index,
//   status[1] = rows that count (target in [0, V));
//   mode 0 (reduction "none"): status only; 1 ("sum"): out[0] = the sum of loss;
//   2 ("mean"): out[0] = that sum / status[1] (NaN when no row counts, as in PyTorch).
// The sum is the same for every run: each thread adds its rows in order, then a fixed tree.
// ll_ce_scale is the same count before a forward+backward kernel that needs 1 / count for a mean.
#ifndef LL_RBLOCK
#define LL_RBLOCK 1024
#endif

template <typename T>
__device__ __forceinline__ void ll_ce_count(const T *__restrict__ loss, const long long *__restrict__ target,
                                            long long B, long long V, long long ignore_index,
                                            T &sum, long long &count, long long &bad) {
    __shared__ T s_sum[LL_RBLOCK];
    __shared__ long long s_count[LL_RBLOCK], s_bad[LL_RBLOCK];
    T acc = T(0);
    long long n = 0, nbad = 0;
    for (long long b = threadIdx.x; b < B; b += LL_RBLOCK) {
        long long t = target[b];
        if (t == ignore_index) continue;
        if (!ll_is_class(t, V)) { ++nbad; continue; }
        ++n;
        if (loss) acc += loss[b];
    }
    s_sum[threadIdx.x] = acc; s_count[threadIdx.x] = n; s_bad[threadIdx.x] = nbad;
    __syncthreads();
    for (int half = LL_RBLOCK / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) {
            s_sum[threadIdx.x] += s_sum[threadIdx.x + half];
            s_count[threadIdx.x] += s_count[threadIdx.x + half];
            s_bad[threadIdx.x] += s_bad[threadIdx.x + half];
        }
        __syncthreads();
    }
    sum = s_sum[0]; count = s_count[0]; bad = s_bad[0];
}

template <typename T>
__device__ void ll_ce_finish(const T *__restrict__ loss, const long long *__restrict__ target, long long B,
                             long long V, long long ignore_index, int mode, T *__restrict__ out,
                             long long *__restrict__ status) {
    T sum;
    long long count, bad;
    ll_ce_count<T>(mode ? loss : nullptr, target, B, V, ignore_index, sum, count, bad);
    if (threadIdx.x == 0) {
        status[0] = bad;
        status[1] = count;
        if (mode == 1) out[0] = sum;
        if (mode == 2) out[0] = sum / (T)count;
    }
}

// scale[0] = 1 / count for a mean (1 when no row counts: every gradient is then 0), 1 for a sum
template <typename T>
__device__ void ll_ce_scale(const long long *__restrict__ target, long long B, long long V, long long ignore_index,
                            int mode, T *__restrict__ scale) {
    T sum;
    long long count, bad;
    ll_ce_count<T>(nullptr, target, B, V, ignore_index, sum, count, bad);
    if (threadIdx.x == 0) scale[0] = (mode == 2 && count > 0) ? T(1) / (T)count : T(1);
}

extern "C" {
__global__ void __launch_bounds__(LL_RBLOCK) ce_finish_f32(const float *loss, const long long *target, long long B,
                                                            long long V, long long ignore_index, int mode, float *out,
                                                            long long *status) {
    ll_ce_finish<float>(loss, target, B, V, ignore_index, mode, out, status);
}
__global__ void __launch_bounds__(LL_RBLOCK) ce_finish_f64(const double *loss, const long long *target, long long B,
                                                            long long V, long long ignore_index, int mode, double *out,
                                                            long long *status) {
    ll_ce_finish<double>(loss, target, B, V, ignore_index, mode, out, status);
}
__global__ void __launch_bounds__(LL_RBLOCK) ce_scale_f32(const long long *target, long long B, long long V,
                                                           long long ignore_index, int mode, float *scale) {
    ll_ce_scale<float>(target, B, V, ignore_index, mode, scale);
}
__global__ void __launch_bounds__(LL_RBLOCK) ce_scale_f64(const long long *target, long long B, long long V,
                                                           long long ignore_index, int mode, double *scale) {
    ll_ce_scale<double>(target, B, V, ignore_index, mode, scale);
}
__global__ void __launch_bounds__(LL_BLOCK) ce_forward_f32(const float *logits, const long long *target, float *loss,
                                                           float *lse, long long V, long long ignore_index) {
    ll_ce_forward<float>(logits, target, loss, lse, V, ignore_index);
}
__global__ void __launch_bounds__(LL_BLOCK) ce_forward_f64(const double *logits, const long long *target, double *loss,
                                                           double *lse, long long V, long long ignore_index) {
    ll_ce_forward<double>(logits, target, loss, lse, V, ignore_index);
}
__global__ void __launch_bounds__(LL_BLOCK) ce_backward_f32(const float *logits, const long long *target,
                                                            const float *lse, const float *grad, long long grad_stride,
                                                            float *dlogits, long long V, long long ignore_index) {
    ll_ce_backward<float>(logits, target, lse, grad, grad_stride, dlogits, V, ignore_index);
}
__global__ void __launch_bounds__(LL_BLOCK) ce_backward_f64(const double *logits, const long long *target,
                                                            const double *lse, const double *grad, long long grad_stride,
                                                            double *dlogits, long long V, long long ignore_index) {
    ll_ce_backward<double>(logits, target, lse, grad, grad_stride, dlogits, V, ignore_index);
}
__global__ void __launch_bounds__(LL_L2BLOCK) ce_fwd_bwd_l2_f32(const float *logits, const long long *target,
                                                                float *loss, float *lse, float *dlogits,
                                                                const float *scale, long long B, long long V,
                                                                long long ignore_index) {
    ll_ce_fwd_bwd_l2<float>(logits, target, loss, lse, dlogits, scale, B, V, ignore_index);
}
__global__ void __launch_bounds__(LL_L2BLOCK) ce_fwd_bwd_l2_f64(const double *logits, const long long *target,
                                                                double *loss, double *lse, double *dlogits,
                                                                const double *scale, long long B, long long V,
                                                                long long ignore_index) {
    ll_ce_fwd_bwd_l2<double>(logits, target, loss, lse, dlogits, scale, B, V, ignore_index);
}
__global__ void __launch_bounds__(LL_FBLOCK) ce_fwd_bwd_f32(const float *logits, const long long *target, float *loss,
                                                             float *lse, float *dlogits, const float *scale, long long V,
                                                             long long ignore_index) {
    ll_ce_fwd_bwd<float>(logits, target, loss, lse, dlogits, scale, V, ignore_index);
}
__global__ void __launch_bounds__(LL_FBLOCK) ce_fwd_bwd_f64(const double *logits, const long long *target, double *loss,
                                                             double *lse, double *dlogits, const double *scale, long long V,
                                                             long long ignore_index) {
    ll_ce_fwd_bwd<double>(logits, target, loss, lse, dlogits, scale, V, ignore_index);
}
}
