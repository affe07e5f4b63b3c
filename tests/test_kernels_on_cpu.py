"""The CUDA kernels' own source, run on the CPU (tests/cuda_host.h), against PyTorch.

The NVRTC test compiles each kernel; the emulations in losslab.kernels.reference
restate each algorithm in PyTorch. Neither runs the kernel's index arithmetic,
loop bounds and barriers as written. Here the .cu file itself is compiled by
the host C++ compiler with a small stand-in for CUDA (one std::thread per CUDA
thread, a barrier for __syncthreads, static storage for __shared__, warp
shuffles through a block-wide array) and run on small problems whose shapes
reach every branch: a last tile or group that is short, outputs wider than one
pass of columns, rows of logits starting at every misalignment.

Skipped where there is no C++20 compiler (g++ or clang++). Tolerances: float64
1e-12 relative, float32 1e-5, as in tests/test_kernels.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from losslab import kernels, landscapes

HERE = Path(__file__).resolve().parent
CXX = shutil.which("g++") or shutil.which("clang++")


def _has_cxx20(tmp: Path) -> bool:
    probe = tmp / "probe.cpp"
    probe.write_text("#include <barrier>\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\n")
    return subprocess.run([CXX, "-std=c++20", "-pthread", str(probe), "-o", str(tmp / "probe")],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module", autouse=True)
def _cxx20(tmp_path_factory):
    if CXX is None or not _has_cxx20(tmp_path_factory.mktemp("probe")):
        pytest.skip("needs a C++20 compiler with <barrier> (g++ 11 or clang++ 15 and later)")


def _host_source(name: str) -> str:
    """The kernel's source with its dynamic shared memory given a size (static storage, one block at a time)."""
    return re.sub(r"extern __shared__ __align__\((\d+)\) unsigned char (\w+)\[\];",
                  r"alignas(\1) unsigned char \2[1 << 22];", kernels.source(name))


def _build(tmp_path_factory, name: str, main: str, defines: tuple[str, ...] = ()) -> Path:
    folder = tmp_path_factory.mktemp(name)
    (folder / f"{name}_host.cpp").write_text('#include "cuda_host.h"\n' + _host_source(name) + main)
    exe = folder / f"{name}_host"
    out = subprocess.run([CXX, "-std=c++20", "-O1", "-pthread", "-w", *defines, f"-I{HERE}",
                          str(folder / f"{name}_host.cpp"), "-o", str(exe)], capture_output=True, text=True)
    if out.returncode:
        pytest.fail(f"{name}.cu does not compile as host C++:\n{out.stderr[-3000:]}")
    return exe


# reading and writing the raw arrays numpy's tofile() writes (an empty array is one zero, never read)
IO = r"""
#include <cstdio>
#include <cstdlib>
#include <string>

template <typename T> static std::vector<T> load(const std::string &path, size_t n) {
    std::vector<T> v(n ? n : 1);
    FILE *f = std::fopen(path.c_str(), "rb");
    if (n && std::fread(v.data(), sizeof(T), n, f) != n) std::exit(3);
    std::fclose(f);
    return v;
}
template <typename T> static void save(const std::string &path, const T *p, size_t n) {
    FILE *f = std::fopen(path.c_str(), "wb");
    std::fwrite(p, sizeof(T), n, f);
    std::fclose(f);
}
"""

SCAN_MAIN = IO + r"""

template <typename T, typename K>
static void run(const std::string &dir, long long *s, K kernel) {
    long long N = s[0], G = s[1], L = s[2], Kd = s[3], act = s[4], skip = s[5], M = s[6], maxw = s[7];
    long long tiles = s[8], groups = s[9], nmeta = s[10], H0 = s[11];
    auto P = load<T>(dir + "/P.bin", (Kd + 1) * N * H0);
    auto c = load<T>(dir + "/coeffs.bin", G * Kd);
    auto theta = load<T>(dir + "/theta.bin", M);
    auto dirs = load<T>(dir + "/dirs.bin", Kd * M);
    auto meta = load<long long>(dir + "/meta.bin", nmeta);
    auto y = load<long long>(dir + "/y.bin", N);
    std::vector<T> partial(G * tiles, T(-12345));
    std::memset(ls_smem, 0xAB, sizeof ls_smem);  // to find the last byte of shared memory the kernel wrote
    cuda_host_launch(dim3{(unsigned)tiles, (unsigned)groups, 1}, 256, [&] {
        kernel(P.data(), c.data(), theta.data(), dirs.data(), meta.data(), y.data(), partial.data(), N, G, 0LL,
               (int)L, (int)Kd, (int)act, (int)skip, M, (int)maxw);
    });
    save(dir + "/partial.bin", partial.data(), partial.size());
    long long used = sizeof ls_smem;
    while (used > 0 && ls_smem[used - 1] == 0xAB) --used;
    save(dir + "/smem_used.bin", &used, 1);
}

int main(int argc, char **argv) {
    std::string dir = argv[1];
    long long s[12];
    for (int i = 0; i < 12; ++i) s[i] = std::atoll(argv[3 + i]);
    if (std::string(argv[2]) == "f64") run<double>(dir, s, scan_mlp_f64);
    else run<float>(dir, s, scan_mlp_f32);
    return 0;
}
"""


@pytest.fixture(scope="module")
def scan_binary(tmp_path_factory):
    return _build(tmp_path_factory, "scan_mlp", SCAN_MAIN)


@pytest.mark.parametrize("sizes,skip,activation,k", [
    ((5, 3), False, "relu", 2),            # one layer: the logits straight from the first
    ((8, 16, 16, 4), False, "relu", 2),
    ((5, 70, 3), False, "tanh", 1),        # two passes over the columns of a layer's output
    ((3, 130, 2), False, "relu", 3),       # three passes
    ((5, 6, 6, 6, 4), True, "relu", 4),    # skip connections, four directions
])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_the_scan_kernel_source_gives_the_loops_losses(scan_binary, tmp_path, sizes, skip, activation, k, dtype, tol):
    """150 rows (tiles of 64, 64 and 22) and 20 points (groups of 8, 8 and 4): every partial sum the
    kernel writes, added over the tiles, is the per-point loop's mean loss."""
    g = torch.Generator().manual_seed(len(sizes) + k)
    model = landscapes.MLP(sizes, skip=skip, activation=activation, seed=3, dtype=dtype)
    n, points = 150, 20
    x = torch.randn(n, sizes[0], generator=g, dtype=dtype)
    y = torch.randint(0, sizes[-1], (n,), generator=g)
    dirs = [landscapes.random_direction(model, seed=j + 1) for j in range(k)]
    coeffs = (torch.rand(points, k, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    params = {name: v.detach() for name, v in model.named_parameters()}
    P, theta, packed, sz, offsets = kernels._scan_operands(model, params, dirs, x)
    arrays = {"P": P, "coeffs": coeffs, "theta": theta, "dirs": packed,
              "meta": torch.tensor(sz + offsets, dtype=torch.int64), "y": y}
    for name, t in arrays.items():
        t.contiguous().numpy().tofile(tmp_path / f"{name}.bin")
    tiles, groups = -(-n // kernels.SCAN_ROWS), -(-points // kernels.SCAN_POINTS)
    scalars = [n, points, len(model.layers), k, 0 if activation == "relu" else 1, int(skip), theta.numel(),
               max(sz[1:]), tiles, groups, len(sz) + len(offsets), sz[1]]
    subprocess.run([str(scan_binary), str(tmp_path), "f64" if dtype == torch.float64 else "f32", *map(str, scalars)],
                   check=True, timeout=120)
    partial = torch.from_numpy(np.fromfile(tmp_path / "partial.bin", dtype=np.float64 if dtype == torch.float64
                                           else np.float32)).reshape(points, tiles)
    assert (partial != -12345).all(), "a block left a partial sum unwritten"
    used = int(np.fromfile(tmp_path / "smem_used.bin", dtype=np.int64)[0])  # the launch asks for scan_shared_bytes
    assert 0 < used <= kernels.scan_shared_bytes(list(sizes), k, dtype), "the kernel writes past the shared memory it asks for"
    loop = landscapes.scan_losses(model, x, y, dirs, coeffs, method="loop")
    torch.testing.assert_close(partial.sum(dim=1) / n, loop, rtol=tol, atol=tol)


CE_MAIN = IO + r"""

// rows of logits start `off` elements past a 16-byte boundary, as a slice of a larger tensor would
template <typename T, typename Fw, typename Bw, typename FB, typename L2, typename Fin, typename Sc>
static void run(const std::string &dir, long long B, long long V, long long ignore, long long off, long long stride,
                Fw fw, Bw bw, FB fb, L2 l2, Fin fin, Sc sc) {
    auto flat = load<T>(dir + "/logits.bin", B * V);
    auto target = load<long long>(dir + "/target.bin", B);
    auto grad = load<T>(dir + "/grad.bin", B);
    auto scale = load<T>(dir + "/scale.bin", 1);
    std::vector<T> xs(B * V + 8), d1(B * V + 8), d2(B * V + 8), d3(B * V + 8), loss(B), lse(B), loss2(B), lse2(B),
        loss3(B), lse3(B);
    T *x = xs.data() + off;
    std::copy(flat.begin(), flat.end(), x);
    cuda_host_launch(dim3{(unsigned)B, 1, 1}, LL_BLOCK, [&] { fw(x, target.data(), loss.data(), lse.data(), V, ignore); });
    cuda_host_launch(dim3{(unsigned)B, 1, 1}, LL_BLOCK, [&] {
        bw(x, target.data(), lse.data(), grad.data(), stride, d1.data() + off, V, ignore);
    });
    cuda_host_launch(dim3{(unsigned)B, 1, 1}, LL_FBLOCK, [&] {
        fb(x, target.data(), loss2.data(), lse2.data(), d2.data() + off, scale.data(), V, ignore);
    });
    // the two-pass kernel on a grid of B - 1 blocks: the first block takes rows 0 and B - 1
    cuda_host_launch(dim3{(unsigned)(B - 1), 1, 1}, LL_L2BLOCK, [&] {
        l2(x, target.data(), loss3.data(), lse3.data(), d3.data() + off, scale.data(), B, V, ignore);
    });
    save(dir + "/loss3.bin", loss3.data(), B);
    save(dir + "/lse3.bin", lse3.data(), B);
    save(dir + "/dlogits3.bin", d3.data() + off, B * V);
    // ce_finish in each mode (none, sum, mean) and ce_scale for sum and mean, on the forward's losses
    std::vector<T> reduced(3), scales(3);
    std::vector<long long> status(6);
    for (int mode = 0; mode < 3; ++mode) {
        cuda_host_launch(dim3{1, 1, 1}, LL_RBLOCK, [&] {
            fin(loss.data(), target.data(), B, V, ignore, mode, &reduced[mode], &status[2 * mode]);
        });
        cuda_host_launch(dim3{1, 1, 1}, LL_RBLOCK, [&] { sc(target.data(), B, V, ignore, mode, &scales[mode]); });
    }
    save(dir + "/reduced.bin", reduced.data(), 3);
    save(dir + "/scales.bin", scales.data(), 3);
    save(dir + "/status.bin", status.data(), 6);
    save(dir + "/loss.bin", loss.data(), B);
    save(dir + "/lse.bin", lse.data(), B);
    save(dir + "/dlogits.bin", d1.data() + off, B * V);
    save(dir + "/loss2.bin", loss2.data(), B);
    save(dir + "/lse2.bin", lse2.data(), B);
    save(dir + "/dlogits2.bin", d2.data() + off, B * V);
}

int main(int argc, char **argv) {
    std::string dir = argv[1];
    long long B = std::atoll(argv[3]), V = std::atoll(argv[4]), ignore = std::atoll(argv[5]);
    long long off = std::atoll(argv[6]), stride = std::atoll(argv[7]);
    if (std::string(argv[2]) == "f64")
        run<double>(dir, B, V, ignore, off, stride, ce_forward_f64, ce_backward_f64, ce_fwd_bwd_f64, ce_fwd_bwd_l2_f64,
                    ce_finish_f64, ce_scale_f64);
    else run<float>(dir, B, V, ignore, off, stride, ce_forward_f32, ce_backward_f32, ce_fwd_bwd_f32, ce_fwd_bwd_l2_f32,
                    ce_finish_f32, ce_scale_f32);
    return 0;
}
"""


@pytest.fixture(scope="module")
def ce_binary(tmp_path_factory):
    # 64, 128 and 96 threads a row instead of 256, 1024 and 1024 (the source's #ifndef defaults): the same
    # code, each thread's strided loops taking more turns, and far fewer threads to schedule on a CPU (96:
    # three warps, an odd number for the merge); and 2 threads for the block that reduces the rows: each
    # takes two of the four rows, then one step of the tree
    return _build(tmp_path_factory, "cross_entropy", CE_MAIN,
                  ("-DLL_BLOCK=64", "-DLL_FBLOCK=128", "-DLL_L2BLOCK=96", "-DLL_RBLOCK=2"))


@pytest.mark.parametrize("v,bad,ignore", [(1, False, -100), (3, False, -100), (257, False, -100), (1031, False, -100),
                                          (5003, False, -100), (3, True, -100), (1031, True, -100),
                                          (257, False, 5)])  # bad: row 0's target is out of range; 5: a class ignored
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("stride", [0, 1])  # one upstream gradient for all rows (mean, sum), or one per row (none)
def test_the_cross_entropy_kernel_source_matches_torch(ce_binary, tmp_path, v, bad, ignore, dtype, tol, stride):
    """The forward, the backward and the two forward+backward kernels, on rows that start at every
    misalignment from the vector width: a row with half its logits -inf, an ignored row, and a row far
    from 0 (around 1e4 in float64). Then ce_finish (every mode) and ce_scale on the forward's losses: the
    rows out of range, the rows that count, the sum and the mean. A target out of range reads nothing
    (its loss is 0), is left out of the count and is reported, so that the caller can raise. An ignore_index
    that is also a class is still ignored."""
    width = 4 if dtype == torch.float32 else 2
    g = torch.Generator().manual_seed(v)
    b = 4
    x = torch.randn(b, v, generator=g, dtype=dtype) * 6
    x[3] += 1e4 if dtype == torch.float64 else 30.0  # float32 rounds a log-sum-exp near 1e4 to 1e-3: exp(x - lse) to 1e-3
    t = torch.randint(0, v, (b,), generator=g)
    t[1] = ignore
    if v >= 3:
        x[2, ::2] = -torch.inf
        t[2] = 1
    if bad:
        t[0] = v + 1000 if v == 3 else -7
    grad = torch.rand(b, generator=g, dtype=dtype) + 0.5
    scale = torch.tensor([0.37], dtype=dtype)
    for name, arr in {"logits": x, "target": t, "grad": grad, "scale": scale}.items():
        arr.numpy().tofile(tmp_path / f"{name}.bin")
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    in_range = (t >= 0) & (t < v) & (t != ignore)
    valid = in_range.to(dtype)
    t_ok = torch.where(in_range, t, -100)
    ref_loss = torch.nn.functional.cross_entropy(x, t_ok, reduction="none", ignore_index=-100)
    soft = torch.softmax(x, dim=1) - torch.nn.functional.one_hot(t_ok.clamp_min(0), v).to(dtype)
    kept = t != ignore  # the gradient of a row out of range is not looked at: the caller raises
    g_row = (grad if stride else grad[:1].expand(b)) * valid
    for off in range(width):
        subprocess.run([str(ce_binary), str(tmp_path), "f64" if dtype == torch.float64 else "f32", str(b), str(v), str(ignore),
                        str(off), str(stride)], check=True, timeout=120)

        def read(name, shape, np_dtype=np_dtype):
            return torch.from_numpy(np.fromfile(tmp_path / f"{name}.bin", dtype=np_dtype)).reshape(shape)

        for loss, lse in (("loss", "lse"), ("loss2", "lse2"), ("loss3", "lse3")):
            torch.testing.assert_close(read(loss, (b,)), ref_loss, rtol=tol, atol=tol)
            torch.testing.assert_close(read(lse, (b,))[valid.bool()], torch.logsumexp(x, 1)[valid.bool()], rtol=tol, atol=tol)
        if bad:
            assert read("loss", (b,))[0] == 0 and read("loss2", (b,))[0] == 0 and read("loss3", (b,))[0] == 0
        ok = in_range | ~kept
        torch.testing.assert_close(read("dlogits", (b, v))[ok], (soft * g_row[:, None])[ok], rtol=tol, atol=tol * 1e-2)
        for name in ("dlogits2", "dlogits3"):
            torch.testing.assert_close(read(name, (b, v))[ok], (soft * (scale * valid)[:, None])[ok],
                                       rtol=tol, atol=tol * 1e-2)
        count = int(in_range.sum())
        assert read("status", (3, 2), np.int64).tolist() == [[int(bad), count]] * 3
        reduced = read("reduced", (3,))
        torch.testing.assert_close(reduced[1], ref_loss.sum(), rtol=tol, atol=tol)
        torch.testing.assert_close(reduced[2], ref_loss.sum() / count, rtol=tol, atol=tol)
        torch.testing.assert_close(read("scales", (3,))[1:], torch.tensor([1.0, 1.0 / count], dtype=dtype), rtol=tol, atol=0)


TRAJ_MAIN = IO + r"""

template <typename T, typename K>
static void run(const std::string &dir, long long n, long long steps, long long every, double bound, K kernel) {
    auto x0 = load<T>(dir + "/x0.bin", 2 * n);
    auto prm = load<double>(dir + "/prm.bin", 4);
    auto hyp = load<double>(dir + "/hyp.bin", 6);
    long long saved = every ? steps / every + 1 : 1;
    std::vector<T> out(2 * n), path(saved * n * 2);
    std::vector<long long> dead(n);
    cuda_host_launch(dim3{(unsigned)((n + 127) / 128), 1, 1}, 128, [&] {
        kernel(x0.data(), out.data(), dead.data(), path.data(), n, steps, every, prm[0], prm[1], prm[2], prm[3],
               hyp[0], hyp[1], hyp[2], hyp[3], hyp[4], hyp[5], bound);
    });
    save(dir + "/out.bin", out.data(), out.size());
    save(dir + "/dead.bin", dead.data(), dead.size());
    save(dir + "/path.bin", path.data(), path.size());
}

int main(int argc, char **argv) {
    std::string dir = argv[1];
    long long n = std::atoll(argv[3]), steps = std::atoll(argv[4]), every = std::atoll(argv[5]);
    double bound = std::atof(argv[6]);
    if (std::string(argv[2]) == "f64") run<double>(dir, n, steps, every, bound, trajectories_f64);
    else run<float>(dir, n, steps, every, bound, trajectories_f32);
    return 0;
}
"""

TRAJ_CASES = {  # (function, kernel method) -> the updates run through that variant
    ("rosenbrock", "sgd"): {"momentum": dict(lr=1e-3, momentum=0.9), "nesterov": dict(lr=1e-3, momentum=0.9, nesterov=True),
                            "damped-decay": dict(lr=1e-3, momentum=0.5, dampening=0.3, weight_decay=0.01)},
    ("rosenbrock", "adam"): {"adam": dict(lr=1e-2), "adamw": dict(lr=1e-2, weight_decay=0.1)},
    ("rastrigin", "sgd"): {"gd": dict(lr=1e-3)},
}


@pytest.fixture(scope="module")
def traj_binaries(tmp_path_factory):
    from losslab.kernels import FUNCTIONS, _METHODS  # noqa: PLC0415

    return {(fn, m): _build(tmp_path_factory, "trajectories", TRAJ_MAIN, (f"-DFN={FUNCTIONS[fn]}", f"-DMETHOD={_METHODS[m]}"))
            for fn, m in TRAJ_CASES}


@pytest.mark.parametrize("case", [(fn, m, label) for (fn, m), ups in TRAJ_CASES.items() for label in ups],
                         ids=lambda c: "-".join(c))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("every", [7, 0, 1])
def test_the_trajectory_kernel_source_matches_run_trajectories(traj_binaries, tmp_path, case, dtype, every):
    """300 starts (three blocks of 128, the last one short) for 60 steps, a position kept every 7 steps (the
    last chunk of steps short), none, or every step: the final points, the kept path and the step at which
    each diverging run froze are run_trajectories'."""
    from losslab import optim  # noqa: PLC0415

    fn_name, method, label = case
    kw = TRAJ_CASES[fn_name, method][label]
    update = optim.optimizer("adamw" if label == "adamw" else "adam" if method == "adam" else "sgd", **kw)
    _, prm = kernels.function_parameters(fn_name)
    g = torch.Generator().manual_seed(1)
    x0 = (torch.rand(300, 2, generator=g, dtype=torch.float64) * 6 - 3).to(dtype)  # some far enough out to diverge
    x0.numpy().tofile(tmp_path / "x0.bin")
    np.asarray(prm, dtype=np.float64).tofile(tmp_path / "prm.bin")
    np.asarray(kernels._hyper_vector(update), dtype=np.float64).tofile(tmp_path / "hyp.bin")
    steps = 60
    bound = 2.95 if method == "adam" else 1e3  # Adam's steps are at most about lr: only a tight box sees it leave
    subprocess.run([str(traj_binaries[fn_name, method]), str(tmp_path), "f64" if dtype == torch.float64 else "f32",
                    "300", str(steps), str(every), str(bound)], check=True, timeout=120)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    out = torch.from_numpy(np.fromfile(tmp_path / "out.bin", dtype=np_dtype)).reshape(300, 2)
    dead = torch.from_numpy(np.fromfile(tmp_path / "dead.bin", dtype=np.int64))
    path = torch.from_numpy(np.fromfile(tmp_path / "path.bin", dtype=np_dtype))
    loop = kernels.trajectories(fn_name, x0, update, steps, path_every=every, bound=bound, fused=False)
    assert torch.equal(dead, loop.diverged_at)
    assert bool((dead > 0).any()) or label == "gd", "no run diverged: the freezing rule went untested"
    tol = dict(rtol=1e-12, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(out, loop.final, **tol)
    if every:
        torch.testing.assert_close(path.reshape(steps // every + 1, 300, 2), loop.path, **tol)
