// The loss of a small MLP at many points of a plane (or a line) in parameter space, fused.
//
// losslab.landscapes.scan_losses(method="kernel"). Point g has the weights
// theta + sum_k c[g, k] d_k. The first layer's pre-activation is affine in c:
// P_0 + sum_k c_k P_k, with P_0 = x W_1^T + b_1 and P_k = x D_k^T + e_k, which
// PyTorch computes once for the whole scan (K + 1 products). This kernel does
// everything after that, for every point, without writing an activation to
// global memory (the batched PyTorch path writes and reads each layer's
// [points, N, width] activations, several passes over gigabytes):
//
// - the grid is (tiles of LS_ROWS data rows) x (groups of LS_POINTS points);
// - a block loads its tile of P_0..P_K into shared memory once, then for each
//   of its points, one after the other:
//   1. that point's weights of layers 2..L, theta + sum_k c_k d_k (k in order),
//      into shared memory, each W row-major as in theta (W[out][in]), then b;
//   2. the tile's first activation, act(P_0 + sum_k c_k P_k) (k in order; the
//      logits themselves when the MLP has one layer);
//   3. each later layer as a small product in shared memory: 16 x 16 threads,
//      each keeping LS_ROWS / 16 rows x 4 columns of the output in registers
//      (columns tx, tx + 16, ...; a pass takes 64 columns, and a pass over
//      fewer columns, such as a 10-class output, leaves out the groups of 16
//      that hold none, so no warp multiplies for them); the inputs are read
//      four at a time, one 16-byte load per row of the activation and per
//      column of W, and each output still adds its terms in order of the input;
//      act(z), plus the layer's input where the MLP has skip connections; the
//      last layer's z are the logits;
//   4. each row's loss, log sum exp(z) - z[y] with the max taken out first,
//      summed over the tile (a warp-shuffle tree, then the warps in order);
//      partial[g, tile] is that sum, and PyTorch adds the tiles.
//
// Its CPU emulation, losslab.kernels.reference.scan_mlp_blocked, takes the same
// tiles, the same order of the weight and first-layer sums and the same
// per-tile partial sums, and is tested against the per-point loop.
//
// meta (int64): sizes[0..L] of the MLP, then off[1..L-1], where layer i's W
// (out x in, row-major) starts in the packed theta / d_k, its bias after it.
//
// Rows in shared memory (of W, and of the activations) are ls_stride(n) elements
// apart: a whole number of 16-byte vectors, and an odd number of them, so that the
// 16-byte loads of 8 consecutive rows fall in 8 different groups of 4 banks.

#ifndef LS_ROWS
#define LS_ROWS 64
#endif
#ifndef LS_POINTS
#define LS_POINTS 8
#endif
#define LS_THREADS 256
#define LS_TX 16                 // threads along a row of the output (columns)
#define LS_TY 16                 // threads along its columns (rows)
#define LS_RT (LS_ROWS / LS_TY)  // rows per thread
#define LS_CT 4                  // columns per thread per pass
#define LS_MAXL 8                // layers at most
#define LS_MAXK 4                // directions at most

// ll_exp, ll_log and ll_tanh: prelude.cu, put in front of this file by losslab.kernels.source()

// act 0: relu (a NaN stays NaN, as torch.relu); 1: tanh
template <typename T> __device__ __forceinline__ T ls_act(T v, int act) {
    if (act == 0) return v < T(0) ? T(0) : v;
    return ll_tanh<T>(v);
}

extern __shared__ __align__(16) unsigned char ls_smem[];

// elements in a 16-byte vector, and the row stride for rows of n elements (losslab.kernels._scan_stride)
template <typename T> __device__ __forceinline__ int ls_vec() { return 16 / (int)sizeof(T); }
template <typename T> __device__ __forceinline__ int ls_stride(int n) {
    const int v = ls_vec<T>(), quads = (n + v - 1) / v;
    return v * (quads | 1);
}
// a run of n elements rounded up to whole vectors (so that the next array starts aligned)
template <typename T> __device__ __forceinline__ int ls_round(int n) { return (n + ls_vec<T>() - 1) / ls_vec<T>() * ls_vec<T>(); }

// four consecutive elements from a 16-byte-aligned address
template <typename T> __device__ __forceinline__ void ls_load4(const T *p, T *out);
template <> __device__ __forceinline__ void ls_load4<float>(const float *p, float *out) {
    const float4 v = *reinterpret_cast<const float4 *>(p);
    out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
}
template <> __device__ __forceinline__ void ls_load4<double>(const double *p, double *out) {
    const double2 v0 = reinterpret_cast<const double2 *>(p)[0], v1 = reinterpret_cast<const double2 *>(p)[1];
    out[0] = v0.x; out[1] = v0.y; out[2] = v1.x; out[3] = v1.y;
}

// One pass of layer hin -> hout over the columns c0 + tx + 16 q, q < NQ (the groups that hold a column).
template <typename T, int NQ>
__device__ __forceinline__ void ls_pass(const T *__restrict__ hin, T *__restrict__ hout, const T *__restrict__ w,
                                        const T *__restrict__ b, int in, int out, int ws, int stride, int c0,
                                        int tx, int ty, int act, int skip, bool last) {
    T acc[LS_RT][NQ];
    int col[NQ];
    const T *wrow[NQ];
    #pragma unroll
    for (int q = 0; q < NQ; ++q) {
        col[q] = c0 + tx + LS_TX * q;
        wrow[q] = w + (long long)(col[q] < out ? col[q] : out - 1) * ws;  // a column past the end reads the last
        const T bq = col[q] < out ? b[col[q]] : T(0);
        #pragma unroll
        for (int p = 0; p < LS_RT; ++p) acc[p][q] = bq;
    }
    const int in4 = in & ~3;
    for (int kk = 0; kk < in4; kk += 4) {
        T a[LS_RT][4], wv[NQ][4];
        #pragma unroll
        for (int p = 0; p < LS_RT; ++p) ls_load4<T>(&hin[(ty + LS_TY * p) * stride + kk], a[p]);
        #pragma unroll
        for (int q = 0; q < NQ; ++q) ls_load4<T>(&wrow[q][kk], wv[q]);
        #pragma unroll
        for (int u = 0; u < 4; ++u) {
            #pragma unroll
            for (int p = 0; p < LS_RT; ++p) {
                #pragma unroll
                for (int q = 0; q < NQ; ++q) acc[p][q] += a[p][u] * wv[q][u];
            }
        }
    }
    for (int kk = in4; kk < in; ++kk) {
        #pragma unroll
        for (int p = 0; p < LS_RT; ++p) {
            const T a = hin[(ty + LS_TY * p) * stride + kk];
            #pragma unroll
            for (int q = 0; q < NQ; ++q) acc[p][q] += a * wrow[q][kk];
        }
    }
    #pragma unroll
    for (int p = 0; p < LS_RT; ++p) {
        #pragma unroll
        for (int q = 0; q < NQ; ++q) {
            if (col[q] >= out) continue;
            const int r = ty + LS_TY * p;
            T v = acc[p][q];
            if (!last) {
                v = ls_act<T>(v, act);
                if (skip) v += hin[r * stride + col[q]];  // h + act(z)
            }
            hout[r * stride + col[q]] = v;
        }
    }
}

template <typename T>
__device__ void ls_scan(const T *__restrict__ P, const T *__restrict__ coeffs, const T *__restrict__ theta,
                        const T *__restrict__ dirs, const long long *__restrict__ meta,
                        const long long *__restrict__ y, T *__restrict__ partial, long long N, long long G,
                        long long g0, int L, int K, int act, int skip, long long M, int maxw) {
    __shared__ int sz[LS_MAXL + 1];
    __shared__ long long off[LS_MAXL], soff[LS_MAXL + 1];
    __shared__ T red[LS_THREADS / 32];
    const int tid = threadIdx.x, tx = tid % LS_TX, ty = tid / LS_TX;
    const long long tile = blockIdx.x, tiles = gridDim.x;
    if (tid <= L) sz[tid] = (int)meta[tid];
    if (tid >= 1 && tid < L) off[tid] = meta[L + tid];
    __syncthreads();
    if (tid == 0) {  // where each layer's W (rows ls_stride(in) apart) and b start in shared memory
        soff[1] = 0;
        for (int i = 1; i < L; ++i)
            soff[i + 1] = soff[i] + (long long)sz[i + 1] * ls_stride<T>(sz[i]) + ls_round<T>(sz[i + 1]);
    }
    __syncthreads();
    const int H0 = sz[1];
    const int stride = ls_stride<T>(maxw);  // a row of an activation buffer
    const long long per = (long long)LS_ROWS * H0;
    T *ptile = reinterpret_cast<T *>(ls_smem);  // (K + 1) x LS_ROWS x H0
    T *wt = ptile + (K + 1) * per;               // soff[L]: the point's weights, W then b per layer
    T *hA = wt + soff[L];                        // LS_ROWS x stride
    T *hB = hA + LS_ROWS * stride;
    const long long row0 = tile * LS_ROWS;
    // the tile of P_0..P_K, once for all the block's points (zeros past the last row)
    for (long long idx = tid; idx < (K + 1) * per; idx += LS_THREADS) {
        long long k = idx / per, rem = idx % per;
        long long r = rem / H0, j = rem % H0;
        ptile[idx] = (row0 + r < N) ? P[(k * N + row0 + r) * H0 + j] : T(0);
    }
    for (int pi = 0; pi < LS_POINTS; ++pi) {
        const long long g = g0 + (long long)blockIdx.y * LS_POINTS + pi;
        if (g >= G) break;  // the same for every thread of the block
        T c[LS_MAXK];
        #pragma unroll
        for (int k = 0; k < LS_MAXK; ++k) c[k] = k < K ? coeffs[g * K + k] : T(0);
        __syncthreads();  // the tile is loaded, and the previous point is done with wt, hA and hB
        // 1. the point's weights of layers 2..L
        for (int i = 1; i < L; ++i) {
            const int in = sz[i], out = sz[i + 1], ws = ls_stride<T>(in);
            const long long o0 = off[i], s0 = soff[i];
            for (int idx = tid; idx < out * in + out; idx += LS_THREADS) {
                T v = theta[o0 + idx];
                #pragma unroll
                for (int k = 0; k < LS_MAXK; ++k)  // unrolled, so that c[] stays in registers
                    if (k < K) v += c[k] * dirs[(long long)k * M + o0 + idx];
                if (idx < out * in) wt[s0 + (long long)(idx / in) * ws + idx % in] = v;  // W[o][q]
                else wt[s0 + (long long)out * ws + (idx - out * in)] = v;  // the bias
            }
        }
        // 2. the first layer
        for (int idx = tid; idx < LS_ROWS * H0; idx += LS_THREADS) {
            const int r = idx / H0, j = idx % H0;
            T v = ptile[idx];
            #pragma unroll
            for (int k = 0; k < LS_MAXK; ++k)
                if (k < K) v += c[k] * ptile[(k + 1) * per + idx];
            hA[r * stride + j] = (L == 1) ? v : ls_act<T>(v, act);
        }
        __syncthreads();
        // 3. the later layers, hin -> hout
        T *hin = hA, *hout = hB;
        for (int i = 1; i < L; ++i) {
            const int in = sz[i], out = sz[i + 1], ws = ls_stride<T>(in);
            const T *w = wt + soff[i];
            const T *b = w + (long long)out * ws;
            const bool last = (i == L - 1);
            for (int c0 = 0; c0 < out; c0 += LS_TX * LS_CT) {
                const int groups = (out - c0 + LS_TX - 1) / LS_TX;  // the same for the whole block
                if (groups >= 4) ls_pass<T, 4>(hin, hout, w, b, in, out, ws, stride, c0, tx, ty, act, skip, last);
                else if (groups == 3) ls_pass<T, 3>(hin, hout, w, b, in, out, ws, stride, c0, tx, ty, act, skip, last);
                else if (groups == 2) ls_pass<T, 2>(hin, hout, w, b, in, out, ws, stride, c0, tx, ty, act, skip, last);
                else ls_pass<T, 1>(hin, hout, w, b, in, out, ws, stride, c0, tx, ty, act, skip, last);
            }
            __syncthreads();
            T *tmp = hin; hin = hout; hout = tmp;
        }
        // 4. the tile's sum of per-row losses; the logits are in hin
        const int C = sz[L];
        T part = T(0);
        for (int r = tid; r < LS_ROWS; r += LS_THREADS) {
            if (row0 + r >= N) continue;
            const T *z = hin + r * stride;
            T m = z[0];
            for (int j = 1; j < C; ++j) m = z[j] > m ? z[j] : m;
            T s = T(0);
            for (int j = 0; j < C; ++j) s += ll_exp<T>(z[j] - m);
            part += (m + ll_log<T>(s)) - z[y[row0 + r]];
        }
        for (int o = 16; o > 0; o >>= 1) part += __shfl_down_sync(0xffffffffu, part, o);
        if (tid % 32 == 0) red[tid / 32] = part;
        __syncthreads();
        if (tid == 0) {
            T sum = red[0];
            for (int w2 = 1; w2 < LS_THREADS / 32; ++w2) sum += red[w2];
            partial[g * tiles + tile] = sum;
        }
    }
}

extern "C" {
__global__ void __launch_bounds__(LS_THREADS) scan_mlp_f32(
        const float *P, const float *coeffs, const float *theta, const float *dirs, const long long *meta,
        const long long *y, float *partial, long long N, long long G, long long g0, int L, int K, int act,
        int skip, long long M, int maxw) {
    ls_scan<float>(P, coeffs, theta, dirs, meta, y, partial, N, G, g0, L, K, act, skip, M, maxw);
}
__global__ void __launch_bounds__(LS_THREADS) scan_mlp_f64(
        const double *P, const double *coeffs, const double *theta, const double *dirs, const long long *meta,
        const long long *y, double *partial, long long N, long long G, long long g0, int L, int K, int act,
        int skip, long long M, int maxw) {
    ls_scan<double>(P, coeffs, theta, dirs, meta, y, partial, N, G, g0, L, K, act, skip, M, maxw);
}
}
