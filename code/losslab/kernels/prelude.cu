// What every kernel source shares: losslab.kernels.source() puts this file in front of each one
// (then a #line directive, so that NVRTC's messages keep the kernel file's own line numbers).

// exp, log and tanh in the precision of T (float: expf, logf, tanhf)
template <typename T> __device__ __forceinline__ T ll_exp(T x);
template <> __device__ __forceinline__ float ll_exp<float>(float x) { return expf(x); }
template <> __device__ __forceinline__ double ll_exp<double>(double x) { return exp(x); }
template <typename T> __device__ __forceinline__ T ll_log(T x);
template <> __device__ __forceinline__ float ll_log<float>(float x) { return logf(x); }
template <> __device__ __forceinline__ double ll_log<double>(double x) { return log(x); }
template <typename T> __device__ __forceinline__ T ll_tanh(T x);
template <> __device__ __forceinline__ float ll_tanh<float>(float x) { return tanhf(x); }
template <> __device__ __forceinline__ double ll_tanh<double>(double x) { return tanh(x); }
