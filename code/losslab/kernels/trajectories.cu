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

// hyp (METHOD == M_SGD): lr, momentum, dampening, nesterov (0/1), weight_decay
// hyp (METHOD == M_ADAM): lr, beta1, beta2, eps, weight_decay, decoupled (0/1)
// (scalar arguments, not a device array: a launch copies nothing to the device first)
//
// The loop is written for the instructions it issues per step, which is what bounds the kernel
// (1e6 starts x 1000 steps is 1e9 steps of a dozen or so floating-point operations each; see
// tools/sass_loops.py for the count per step read from the compiled code):
// - each combination of the uniform choices (momentum, Nesterov, dampening, weight decay; for
//   Adam, weight decay and whether it is decoupled) is its own loop, a template instance picked
//   once per thread, so no step tests or predicates one of them;
// - a run that leaves the box is frozen by selects, not by a branch around the step: a branch
//   costs a convergence barrier (BSSY/BSYNC) per step even when no thread takes it;
// - the first step (where a momentum buffer starts at the gradient) is peeled off the loop;
// - positions are kept at the end of each chunk of `every` steps, so no step counts down to a
//   path write (without a path the whole run is one chunk);
// - in float32, Adam's divisions are __fdividef: 2 ulps, as --prec-div=false gives, without its
//   range tests, which no denominator here needs: 1 - beta1^t >= 2^-24, and sqrt(v) / sqrt(1 - beta2^t)
//   + eps lies between eps and sqrt(FLT_MAX) * 2^12 < 2^126 (an infinite one gives 0, as a division).
#define LL_MOM 1
#define LL_NESTEROV 2
#define LL_DAMPED 4
#define LL_DECAY 8
#define LL_DECOUPLED 16

template <typename T> __device__ __forceinline__ T ll_div(T a, T b) { return a / b; }
template <> __device__ __forceinline__ float ll_div<float>(float a, float b) { return __fdividef(a, b); }

template <typename T, int FLAGS>
__device__ __forceinline__ void ll_run(T &x, T &y, int &dead, T *__restrict__ path, long long i, long long n,
                                       int nsteps, int every_k, const T *p, T bnd,
                                       double h0, double h1, double h2, double h3, double h4) {
    constexpr bool decay = FLAGS & LL_DECAY;
    bool alive = true;
    long long saved = every_k > 0 ? 1 : 0;
#if METHOD == M_SGD
    constexpr bool use_mom = FLAGS & LL_MOM, nesterov = FLAGS & LL_NESTEROV, damped = FLAGS & LL_DAMPED;
    const T lr = (T)h0, mu = (T)h1, keep_grad = T(1) - (T)h2, wd = (T)h4;
    T bx = T(0), by = T(0);
#else
    constexpr bool decoupled = FLAGS & LL_DECOUPLED;
    const T lr = (T)h0, b1 = (T)h1, b2 = (T)h2, eps = (T)h3, wd = (T)h4;
    const T shrink = T(1) - lr * wd, one_b1 = T(1) - b1, one_b2 = T(1) - b2;
    T mx = T(0), my = T(0), vx = T(0), vy = T(0);
    T b1t = T(1), b2t = T(1);
#endif
    // one step of the rule at step number t (first: t == 1), then the freezing rule
    auto step = [&](int t, bool first) {
        T gx, gy;
        ll_grad<T>(x, y, p, gx, gy);
        T nx, ny;
#if METHOD == M_SGD
        if constexpr (decay) { gx = gx + wd * x; gy = gy + wd * y; }
        if constexpr (use_mom) {
            if (first) { bx = gx; by = gy; }
            else if constexpr (damped) { bx = mu * bx + keep_grad * gx; by = mu * by + keep_grad * gy; }
            else { bx = mu * bx + gx; by = mu * by + gy; }  // (1 - 0) * g is g: the same numbers
            if constexpr (nesterov) { gx = gx + mu * bx; gy = gy + mu * by; }
            else { gx = bx; gy = by; }
        }
        nx = x - lr * gx;
        ny = y - lr * gy;
#else
        T px = x, py = y;
        if constexpr (decay) {
            if constexpr (decoupled) { px = px * shrink; py = py * shrink; }
            else { gx = gx + wd * x; gy = gy + wd * y; }
        }
        mx = mx + one_b1 * (gx - mx);
        my = my + one_b1 * (gy - my);
        vx = b2 * vx + one_b2 * gx * gx;
        vy = b2 * vy + one_b2 * gy * gy;
        b1t *= b1; b2t *= b2;
        // the bias corrections once per step, shared by both coordinates: sqrt(v) / sqrt(1 - b2^t)
        // as sqrt(v) * (1 / sqrt(1 - b2^t)), a few ulps from PyTorch's division
        T stp = ll_div<T>(lr, T(1) - b1t), inv_bc2 = ll_div<T>(T(1), sqrt(T(1) - b2t));
        nx = px - ll_div<T>(stp * mx, sqrt(vx) * inv_bc2 + eps);
        ny = py - ll_div<T>(stp * my, sqrt(vy) * inv_bc2 + eps);
#endif
        // in the box (false for NaN and inf), tested with & so that no branch is made of it
        const bool good = (fabs(nx) <= bnd) & (fabs(ny) <= bnd);
        dead = (alive & !good) ? t : dead;
        alive = alive & good;
        x = alive ? nx : x;
        y = alive ? ny : y;
    };
    const int chunk = every_k > 0 ? every_k : nsteps;
    int t = 1;
    step(t++, true);
    for (long long stop = chunk; ; stop += chunk) {  // chunks end at steps chunk, 2 chunk, ...
        const int last = stop < nsteps ? (int)stop : nsteps;
        for (; t <= last; ++t) step(t, false);
        if (every_k > 0 && last == stop) {
            path[(saved * n + i) * 2] = x;
            path[(saved * n + i) * 2 + 1] = y;
            ++saved;
        }
        if (last == nsteps) break;
    }
}

template <typename T>
__device__ void ll_trajectories(const T *__restrict__ x0, T *__restrict__ out, long long *__restrict__ diverged_at,
                                T *__restrict__ path, long long n, long long steps, long long every,
                                double prm0, double prm1, double prm2, double prm3,
                                double h0, double h1, double h2, double h3, double h4, double h5, double bound) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    T x = x0[2 * i], y = x0[2 * i + 1];
    // everything a step reads lives in registers: the function's parameters, the
    // hyperparameters, the bound (in T: a float32 run compares in float32), and
    // 32-bit step counters (the caller checks steps < 2^31)
    const T p[4] = {(T)prm0, (T)prm1, (T)prm2, (T)prm3};
    const T bnd = (T)bound;
    const int nsteps = (int)steps, every_k = (int)every;
    int dead = -1;
    if (every > 0) { path[2 * i] = x; path[2 * i + 1] = y; }
#define LL_RUN(F) ll_run<T, F>(x, y, dead, path, i, n, nsteps, every_k, p, bnd, h0, h1, h2, h3, h4)
    const int decay = h4 != 0.0 ? LL_DECAY : 0;
#if METHOD == M_SGD
    const int flags = decay | (h1 == 0.0 ? 0 : LL_MOM | (h3 != 0.0 ? LL_NESTEROV : 0) | (h2 != 0.0 ? LL_DAMPED : 0));
    switch (flags) {  // every combination that can occur: nesterov and dampening only with momentum
        case 0: LL_RUN(0); break;
        case LL_DECAY: LL_RUN(LL_DECAY); break;
        case LL_MOM: LL_RUN(LL_MOM); break;
        case LL_MOM | LL_DECAY: LL_RUN(LL_MOM | LL_DECAY); break;
        case LL_MOM | LL_NESTEROV: LL_RUN(LL_MOM | LL_NESTEROV); break;
        case LL_MOM | LL_NESTEROV | LL_DECAY: LL_RUN(LL_MOM | LL_NESTEROV | LL_DECAY); break;
        case LL_MOM | LL_DAMPED: LL_RUN(LL_MOM | LL_DAMPED); break;
        case LL_MOM | LL_DAMPED | LL_DECAY: LL_RUN(LL_MOM | LL_DAMPED | LL_DECAY); break;
        case LL_MOM | LL_NESTEROV | LL_DAMPED: LL_RUN(LL_MOM | LL_NESTEROV | LL_DAMPED); break;
        default: LL_RUN(LL_MOM | LL_NESTEROV | LL_DAMPED | LL_DECAY); break;
    }
#else
    if (!decay) LL_RUN(0);
    else if (h5 != 0.0) LL_RUN(LL_DECAY | LL_DECOUPLED);
    else LL_RUN(LL_DECAY);
#endif
#undef LL_RUN
    out[2 * i] = x;
    out[2 * i + 1] = y;
    diverged_at[i] = dead;
}

#define LL_TRAJ_ARGS(T)                                                                                      \
    const T *x0, T *out, long long *diverged_at, T *path, long long n, long long steps, long long every,   \
        double prm0, double prm1, double prm2, double prm3, double h0, double h1, double h2, double h3,     \
        double h4, double h5, double bound
#define LL_TRAJ_PASS x0, out, diverged_at, path, n, steps, every, prm0, prm1, prm2, prm3, h0, h1, h2, h3, h4, h5, bound

extern "C" {
__global__ void trajectories_f32(LL_TRAJ_ARGS(float)) { ll_trajectories<float>(LL_TRAJ_PASS); }
__global__ void trajectories_f64(LL_TRAJ_ARGS(double)) { ll_trajectories<double>(LL_TRAJ_PASS); }
}
