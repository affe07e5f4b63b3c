// Enough of CUDA to run a kernel's own source on the CPU, for the tests (tests/test_kernels_on_cpu.py).
//
// One block at a time, one std::thread per CUDA thread: __syncthreads() is a
// barrier of the block's threads, __shared__ storage is static (so every
// thread of the block sees the same array), and a warp shuffle is an exchange
// through a block-wide array between two barriers, which is exact as long as
// every thread of the block calls it together (as the package's kernels do).
// Nothing here is fast; it runs the kernel's index arithmetic, loops and
// synchronization as written, where the NVRTC test only compiles them and the
// emulations in losslab.kernels.reference restate the algorithm in PyTorch.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, gridDim, blockDim;
inline std::barrier<> *cuda_host_barrier = nullptr;

inline void __syncthreads() { cuda_host_barrier->arrive_and_wait(); }

// CUDA's vector types and bit casts that the kernels use
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) double2 {
    double x, y;
};
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}
inline double __longlong_as_double(long long i) {
    double d;
    std::memcpy(&d, &i, sizeof d);
    return d;
}

inline float __fdividef(float a, float b) { return a / b; }
// cache-policy loads and stores (evict first, streaming): plain ones on a CPU
template <typename T> inline T __ldcs(const T *p) { return *p; }
template <typename T> inline void __stcs(T *p, T v) { *p = v; }

inline unsigned char cuda_host_slots[1024 * 8];

template <typename T>
T __shfl_down_sync(unsigned, T v, int offset) {
    const int tid = (int)threadIdx.x;
    std::memcpy(&cuda_host_slots[tid * 8], &v, sizeof(T));
    __syncthreads();
    T out = v;
    if (tid % 32 + offset < 32 && tid + offset < (int)blockDim.x) std::memcpy(&out, &cuda_host_slots[(tid + offset) * 8], sizeof(T));
    __syncthreads();
    return out;
}

// Run kernel() on a grid of blocks, each with `threads` threads (1-D blocks). The same threads run
// every block in turn (thread 0 sets blockIdx between two barriers): creating threads, not the
// kernels' arithmetic, is what costs here.
template <typename F>
void cuda_host_launch(dim3 grid, unsigned threads, F kernel) {
    gridDim = grid;
    blockDim = dim3{threads, 1, 1};
    std::barrier<> barrier((std::ptrdiff_t)threads);
    cuda_host_barrier = &barrier;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([t, grid, &kernel, &barrier] {
            threadIdx = dim3{t, 0, 0};
            for (unsigned by = 0; by < grid.y; ++by) {
                for (unsigned bx = 0; bx < grid.x; ++bx) {
                    if (t == 0) blockIdx = dim3{bx, by, 0};
                    barrier.arrive_and_wait();
                    kernel();
                    barrier.arrive_and_wait();
                }
            }
        });
    }
    for (auto &th : pool) th.join();
}
