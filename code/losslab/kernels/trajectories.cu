// Fused optimizer trajectories on the 2-D test functions of losslab.landscapes.
//
// One thread runs one start for all its steps, keeping the position and the
// optimizer state in registers: one launch for the whole run, no per-step
// launches and no [N, 2] temporaries. The update rules are those of
// losslab.optim (PyTorch's conventions): SGD with momentum/dampening/Nesterov
// and weight decay, whose buffer starts at the first gradient; Adam and AdamW
// with bias correction. A run whose position leaves |x|_inf <= bound, or
// becomes non-finite, is frozen at its last good position and the step is
// recorded, as losslab.optim.run_trajectories does.
//
// FN selects the function (its parameters in prm[0..3]); METHOD the rule.
// Compiled once per (FN, METHOD) pair by the -D options in losslab.kernels.

#ifndef FN
#define FN 0
#endif
#ifndef METHOD
#define METHOD 0
#endif

#define FN_QUADRATIC 0      // prm: a11, a12, a22
#define FN_ROSENBROCK 1     // prm: a, b
#define FN_HIMMELBLAU 2
#define FN_RASTRIGIN 3      // prm: A
#define FN_BEALE 4
#define FN_SIX_HUMP_CAMEL 5
#define FN_MONKEY_SADDLE 6

#define M_SGD 0
#define M_ADAM 1            // decoupled = 0: Adam; 1: AdamW

template <typename T>
__device__ __forceinline__ void ll_grad(T x, T y, const T *prm, T &gx, T &gy) {
#if FN == FN_QUADRATIC
    T a11 = prm[0], a12 = prm[1], a22 = prm[2];
    gx = a11 * x + a12 * y;
    gy = a12 * x + a22 * y;
#elif FN == FN_ROSENBROCK
    T a = prm[0], b = prm[1];
    T r = y - x * x;
    gx = T(-2) * (a - x) - T(4) * b * x * r;
    gy = T(2) * b * r;
#elif FN == FN_HIMMELBLAU
    T u = x * x + y - T(11), v = x + y * y - T(7);
    gx = T(4) * x * u + T(2) * v;
    gy = T(2) * u + T(4) * y * v;
#elif FN == FN_RASTRIGIN
    const T two_pi = (T)6.283185307179586;
    T A = prm[0];
    gx = T(2) * x + two_pi * A * sin(two_pi * x);
    gy = T(2) * y + two_pi * A * sin(two_pi * y);
#elif FN == FN_BEALE
    T t1 = T(1.5) - x + x * y, t2 = T(2.25) - x + x * y * y, t3 = T(2.625) - x + x * y * y * y;
    gx = T(2) * t1 * (y - T(1)) + T(2) * t2 * (y * y - T(1)) + T(2) * t3 * (y * y * y - T(1));
    gy = T(2) * t1 * x + T(2) * t2 * T(2) * x * y + T(2) * t3 * T(3) * x * y * y;
#elif FN == FN_SIX_HUMP_CAMEL
    T x3 = x * x * x;
    gx = T(8) * x - T(8.4) * x3 + T(2) * x3 * x * x + y;
    gy = x - T(8) * y + T(16) * y * y * y;
#elif FN == FN_MONKEY_SADDLE
    gx = T(3) * x * x - T(3) * y * y;
    gy = T(-6) * x * y;
#else
#error "unknown FN"
#endif
}

template <typename T>
__device__ __forceinline__ bool ll_good(T x, T y, T bound) {
    return fabs(x) <= bound && fabs(y) <= bound;  // false for NaN and inf
}

// hyp (METHOD == M_SGD): lr, momentum, dampening, nesterov (0/1), weight_decay
// hyp (METHOD == M_ADAM): lr, beta1, beta2, eps, weight_decay, decoupled (0/1)
template <typename T>
__device__ void ll_run(const T *__restrict__ x0, T *__restrict__ out, long long *__restrict__ diverged_at,
                       T *__restrict__ path, long long n, long long steps, long long every,
                       const double *__restrict__ prm, const double *__restrict__ hyp, double bound) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    T x = x0[2 * i], y = x0[2 * i + 1];
    // everything a step reads lives in registers: the function's parameters, the
    // hyperparameters, the bound (in T: a float32 run compares in float32), and
    // 32-bit step counters (the caller checks steps < 2^31)
    T p[4];
    #pragma unroll
    for (int q = 0; q < 4; ++q) p[q] = (T)prm[q];
    const T bnd = (T)bound;
    const int nsteps = (int)steps, every_k = (int)every;
    int dead = -1;
    long long saved = 0;
    if (every > 0) { path[2 * i] = x; path[2 * i + 1] = y; saved = 1; }
#if METHOD == M_SGD
    const T lr = (T)hyp[0], mu = (T)hyp[1], damp = (T)hyp[2], wd = (T)hyp[4];
    const bool nesterov = hyp[3] != 0.0, use_mom = hyp[1] != 0.0;
    T bx = T(0), by = T(0);
#else
    const T lr = (T)hyp[0], b1 = (T)hyp[1], b2 = (T)hyp[2], eps = (T)hyp[3], wd = (T)hyp[4];
    const bool decoupled = hyp[5] != 0.0;
    T mx = T(0), my = T(0), vx = T(0), vy = T(0);
    T b1t = T(1), b2t = T(1);
#endif
    int countdown = every_k;
    for (int t = 1; t <= nsteps; ++t) {
        if (dead < 0) {
            T gx, gy;
            ll_grad<T>(x, y, p, gx, gy);
            T nx, ny;
#if METHOD == M_SGD
            if (wd != T(0)) { gx = gx + wd * x; gy = gy + wd * y; }
            if (use_mom) {
                if (t == 1) { bx = gx; by = gy; }
                else { bx = mu * bx + (T(1) - damp) * gx; by = mu * by + (T(1) - damp) * gy; }
                if (nesterov) { gx = gx + mu * bx; gy = gy + mu * by; }
                else { gx = bx; gy = by; }
            }
            nx = x - lr * gx;
            ny = y - lr * gy;
#else
            T px = x, py = y;
            if (wd != T(0)) {
                if (decoupled) { px = px * (T(1) - lr * wd); py = py * (T(1) - lr * wd); }
                else { gx = gx + wd * x; gy = gy + wd * y; }
            }
            mx = mx + (T(1) - b1) * (gx - mx);
            my = my + (T(1) - b1) * (gy - my);
            vx = b2 * vx + (T(1) - b2) * gx * gx;
            vy = b2 * vy + (T(1) - b2) * gy * gy;
            b1t *= b1; b2t *= b2;
            // the bias corrections once per step, shared by both coordinates: sqrt(v) / sqrt(1 - b2^t)
            // as sqrt(v) * (1 / sqrt(1 - b2^t)), a few ulps from PyTorch's division
            T step = lr / (T(1) - b1t), inv_bc2 = T(1) / sqrt(T(1) - b2t);
            nx = px - step * mx / (sqrt(vx) * inv_bc2 + eps);
            ny = py - step * my / (sqrt(vy) * inv_bc2 + eps);
#endif
            if (ll_good<T>(nx, ny, bnd)) { x = nx; y = ny; }
            else { dead = t; }
        }
        if (every_k > 0 && --countdown == 0) {  // no 64-bit modulo per step
            countdown = every_k;
            path[(saved * n + i) * 2] = x;
            path[(saved * n + i) * 2 + 1] = y;
            ++saved;
        }
    }
    out[2 * i] = x;
    out[2 * i + 1] = y;
    diverged_at[i] = dead;
}

extern "C" {
__global__ void trajectories_f32(const float *x0, float *out, long long *diverged_at, float *path, long long n,
                                 long long steps, long long every, const double *prm, const double *hyp, double bound) {
    ll_run<float>(x0, out, diverged_at, path, n, steps, every, prm, hyp, bound);
}
__global__ void trajectories_f64(const double *x0, double *out, long long *diverged_at, double *path, long long n,
                                 long long steps, long long every, const double *prm, const double *hyp, double bound) {
    ll_run<double>(x0, out, diverged_at, path, n, steps, every, prm, hyp, bound);
}
}
