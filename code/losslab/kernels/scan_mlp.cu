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
//      into shared memory, each W transposed (W^T[in][out], so that the 16
//      threads of a row of the block read 16 consecutive words), its rows
//      out + 1 words apart (an odd stride: the transposing stores of 32
//      consecutive weights fall in 32 different banks, not all in one);
//   2. the tile's first activation, act(P_0 + sum_k c_k P_k) (k in order; the
//      logits themselves when the MLP has one layer);
//   3. each later layer as a small product in shared memory: 16 x 16 threads,
//      each keeping LS_ROWS / 16 rows x 4 columns of the output in registers;
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
    if (tid == 0) {  // where each layer's W^T (rows out + 1 apart) and b start in shared memory
        soff[1] = 0;
        for (int i = 1; i < L; ++i) soff[i + 1] = soff[i] + (long long)sz[i] * (sz[i + 1] + 1) + sz[i + 1];
    }
    __syncthreads();
    const int H0 = sz[1];
    const int stride = maxw + 1;  // a row of an activation buffer: an odd number of words, no bank conflicts
    const long long per = (long long)LS_ROWS * H0;
    T *ptile = reinterpret_cast<T *>(ls_smem);  // (K + 1) x LS_ROWS x H0
    T *wt = ptile + (K + 1) * per;               // soff[L]: the point's weights, W^T then b per layer
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
            const int in = sz[i], out = sz[i + 1];
            const long long o0 = off[i], s0 = soff[i];
            for (int idx = tid; idx < out * in + out; idx += LS_THREADS) {
                T v = theta[o0 + idx];
                #pragma unroll
                for (int k = 0; k < LS_MAXK; ++k)  // unrolled, so that c[] stays in registers
                    if (k < K) v += c[k] * dirs[(long long)k * M + o0 + idx];
                if (idx < out * in) wt[s0 + (long long)(idx % in) * (out + 1) + idx / in] = v;  // W^T[q][o]
                else wt[s0 + (long long)in * (out + 1) + (idx - out * in)] = v;  // the bias
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
            const int in = sz[i], out = sz[i + 1];
            const T *w = wt + soff[i];
            const T *b = w + (long long)in * (out + 1);
            const bool last = (i == L - 1);
            for (int c0 = 0; c0 < out; c0 += LS_TX * LS_CT) {
                T acc[LS_RT][LS_CT];
                int col[LS_CT];
                #pragma unroll
                for (int q = 0; q < LS_CT; ++q) {
                    col[q] = c0 + tx + LS_TX * q;
                    const T bq = col[q] < out ? b[col[q]] : T(0);
                    #pragma unroll
                    for (int p = 0; p < LS_RT; ++p) acc[p][q] = bq;
                }
                for (int kk = 0; kk < in; ++kk) {
                    T a[LS_RT], wv[LS_CT];
                    #pragma unroll
                    for (int p = 0; p < LS_RT; ++p) a[p] = hin[(ty + LS_TY * p) * stride + kk];
                    #pragma unroll
                    for (int q = 0; q < LS_CT; ++q) wv[q] = col[q] < out ? w[kk * (out + 1) + col[q]] : T(0);
                    #pragma unroll
                    for (int p = 0; p < LS_RT; ++p) {
                        #pragma unroll
                        for (int q = 0; q < LS_CT; ++q) acc[p][q] += a[p] * wv[q];
                    }
                }
                #pragma unroll
                for (int p = 0; p < LS_RT; ++p) {
                    #pragma unroll
                    for (int q = 0; q < LS_CT; ++q) {
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
