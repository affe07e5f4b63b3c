"""CPU emulations of the CUDA kernels, step for step.

Each function here does what its kernel does, in the same order: the same
split of a row among 256 threads (unaligned head, vector loads, tail), the
same online log-sum-exp per thread, the same warp-shuffle merge tree and the
same merge across warps; the same per-start update loop with the same
freezing rule. They are slow (Python loops over a kernel's iterations) and
exist to be tested against PyTorch on a machine with no GPU, so the
algorithm of each kernel is checked even where the kernel cannot run.
"""

from __future__ import annotations

import math

import torch

BLOCK, FBLOCK, WARP = 256, 1024, 32


def _push_vec(e: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``ll_push_vec`` for every thread at once: ``e`` [threads, w] holds each thread's next w values.

    The largest of the w first (one rescale of s), then the w exponentials
    added in order; a thread whose values are all -inf (or that has none,
    padded with -inf) adds nothing.
    """
    mv = e[:, 0]
    for q in range(1, e.shape[1]):
        mv = torch.where(e[:, q] > mv, e[:, q], mv)
    skip = mv == -math.inf
    up = ~skip & (mv > m)
    s = torch.where(up, torch.where(m == -math.inf, torch.zeros_like(s), s * torch.exp(m - mv)), s)
    m = torch.where(up, mv, m)
    for q in range(e.shape[1]):
        s = torch.where(skip, s, s + torch.exp(e[:, q] - m))
    return m, s


def _merge(m: torch.Tensor, s: torch.Tensor, m2: torch.Tensor, s2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ll_merge: (m, s) + (m2, s2), elementwise."""
    skip = m2 == -math.inf
    take = ~skip & (m == -math.inf)
    bigger = ~skip & ~take & (m2 > m)
    rest = ~skip & ~take & ~bigger
    s_new = torch.where(take, s2, s)
    s_new = torch.where(bigger, s * torch.exp(m - m2) + s2, s_new)
    s_new = torch.where(rest, s + s2 * torch.exp(m2 - m), s_new)
    m_new = torch.where(take | bigger, m2, m)
    return m_new, s_new


def _thread_rounds(row: torch.Tensor, head: int, width: int, block: int = BLOCK) -> list[torch.Tensor]:
    """What each of the ``block`` threads pushes, in order: [block, 1] tensors for the head and
    tail elements, [block, width] for the vector loads (-inf where a thread has nothing)."""
    v = row.shape[0]
    head = min(head, v)
    pad = torch.tensor(-math.inf, dtype=row.dtype)
    rounds: list[torch.Tensor] = []

    def plan(start: int, count: int, step: int = 1) -> torch.Tensor:
        n_rounds = -(-count // block) if count else 0
        k = torch.arange(n_rounds * block).reshape(n_rounds, block)
        return torch.where(k < count, start + k * step, torch.full_like(k, -1))

    def gather(idx: torch.Tensor) -> torch.Tensor:  # idx [block, w], -1 where none
        return torch.where(idx >= 0, row[idx.clamp_min(0)], pad)

    for r in plan(0, head):  # 1. head, element by element
        rounds.append(gather(r[:, None]))
    nvec = (v - head) // width
    offsets = torch.arange(width)
    for r in plan(0, nvec):  # 2. vector k of each thread (k, k + block, ...): its width elements
        idx = torch.where(r[:, None] >= 0, head + r[:, None] * width + offsets, torch.full((block, width), -1))
        rounds.append(gather(idx))
    tail_start = head + nvec * width
    for r in plan(tail_start, v - tail_start):  # 3. tail
        rounds.append(gather(r[:, None]))
    return rounds


def row_logsumexp(row: torch.Tensor, *, head: int = 0, width: int = 4, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair (m, s) of ``row`` as ``cross_entropy.cu`` computes it (log sum exp = m + log s).

    Parameters
    ----------
    row : Tensor [V]
    head : int
        Elements before the first vector-aligned address (the kernel derives
        it from the row's address; any value in [0, width) can occur).
    width : int
        Elements per vector load: 4 for float32, 2 for float64.
    block : int
        Threads per row: 256 in ``ce_forward``, 1024 in ``ce_fwd_bwd``.
    """
    m = torch.full((block,), -math.inf, dtype=row.dtype)
    s = torch.zeros(block, dtype=row.dtype)
    for e in _thread_rounds(row, head, width, block):
        m, s = _push_vec(e, m, s)
    # warp shuffle-down tree: lane l merges lane l + off, or itself when l + off leaves the warp
    lane = torch.arange(block) % WARP
    for off in (16, 8, 4, 2, 1):
        src = torch.where(lane + off < WARP, torch.arange(block) + off, torch.arange(block))
        m, s = _merge(m, s, m[src], s[src])
    wm, ws = m[::WARP].clone(), s[::WARP].clone()  # lane 0 of each warp
    M, S = wm[:1], ws[:1]
    for w in range(1, block // WARP):
        M, S = _merge(M, S, wm[w:w + 1], ws[w:w + 1])
    return M[0], S[0]


def cross_entropy_blocked(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = -100,
                          reduction: str = "mean", base_offset: int = 0, block: int = BLOCK) -> torch.Tensor:
    """The fused kernel's forward, emulated row by row on the CPU (``block`` 1024: ``ce_fwd_bwd``'s).

    ``base_offset`` is the misalignment of the tensor's first element in
    elements; row ``b`` then starts ``(base_offset + b V) mod width`` elements
    past an aligned address, and its head is the rest of that vector.
    """
    b, v = logits.shape
    width = 4 if logits.dtype == torch.float32 else 2
    per_row = torch.zeros(b, dtype=logits.dtype)
    for i in range(b):
        mis = (base_offset + i * v) % width
        head = (width - mis) % width
        m, s = row_logsumexp(logits[i], head=head, width=width, block=block)
        t = int(target[i])
        per_row[i] = 0.0 if t == ignore_index else (m - logits[i, t]) + torch.log(s)
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / (target != ignore_index).sum().to(per_row.dtype)


def cross_entropy_backward(logits: torch.Tensor, target: torch.Tensor, lse: torch.Tensor, grad: torch.Tensor,
                           *, ignore_index: int = -100) -> torch.Tensor:
    """``ce_backward``: (exp(x - lse) - onehot(target)) * grad per row, 0 for ignored rows."""
    valid = target != ignore_index
    onehot = torch.zeros_like(logits)
    onehot[valid, target[valid]] = 1.0
    g = torch.where(valid, grad.expand(target.shape), torch.zeros_like(lse))
    return (torch.exp(logits - lse[:, None]) - onehot) * g[:, None]


def trajectories_loop(grad, x0: torch.Tensor, hyp: list[float], method: str, steps: int, *,
                      path_every: int = 0, bound: float = 1e6):
    """``trajectories.cu``'s per-start loop, vectorized over starts: same formulas, same order.

    ``grad(x, y) -> (gx, gy)`` is the test function's gradient on coordinate
    tensors; ``hyp`` the kernel's hyperparameter vector (see
    :func:`losslab.kernels._hyper_vector`). Returns ``(final [N, 2],
    diverged_at [N], path or None)``.
    """
    x, y = x0[:, 0].clone(), x0[:, 1].clone()
    n = x.shape[0]
    dead = torch.full((n,), -1, dtype=torch.int64)
    path = [torch.stack([x, y], 1)] if path_every else None
    zeros = torch.zeros_like(x)
    if method == "sgd":
        lr, mu, damp, nesterov, wd = hyp[0], hyp[1], hyp[2], hyp[3] != 0, hyp[4]
        bx, by = zeros.clone(), zeros.clone()
    else:
        lr, b1, b2, eps, wd, decoupled = hyp[0], hyp[1], hyp[2], hyp[3], hyp[4], hyp[5] != 0
        mx, my, vx, vy = zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone()
        b1t, b2t = 1.0, 1.0
    for t in range(1, steps + 1):
        alive = dead < 0
        gx, gy = grad(x, y)
        if method == "sgd":
            if wd != 0:
                gx, gy = gx + wd * x, gy + wd * y
            if mu != 0:
                if t == 1:
                    bx, by = gx.clone(), gy.clone()
                else:
                    bx, by = mu * bx + (1 - damp) * gx, mu * by + (1 - damp) * gy
                gx, gy = (gx + mu * bx, gy + mu * by) if nesterov else (bx, by)
            nx, ny = x - lr * gx, y - lr * gy
        else:
            px, py = x, y
            if wd != 0:
                if decoupled:
                    px, py = px * (1 - lr * wd), py * (1 - lr * wd)
                else:
                    gx, gy = gx + wd * x, gy + wd * y
            mx, my = mx + (1 - b1) * (gx - mx), my + (1 - b1) * (gy - my)
            vx, vy = b2 * vx + (1 - b2) * gx * gx, b2 * vy + (1 - b2) * gy * gy
            b1t, b2t = b1t * b1, b2t * b2
            step, inv_bc2 = lr / (1 - b1t), 1 / math.sqrt(1 - b2t)
            nx = px - step * mx / (vx.sqrt() * inv_bc2 + eps)
            ny = py - step * my / (vy.sqrt() * inv_bc2 + eps)
        good = (nx.abs() <= bound) & (ny.abs() <= bound)
        newly = alive & ~good
        dead = torch.where(newly, torch.full_like(dead, t), dead)
        keep = alive & good
        x, y = torch.where(keep, nx, x), torch.where(keep, ny, y)
        if path_every and t % path_every == 0:
            path.append(torch.stack([x, y], 1))
    return torch.stack([x, y], 1), dead, (torch.stack(path) if path_every else None)


def gradient(name: str, prm: list[float]):
    """``ll_grad`` of ``trajectories.cu`` for function ``name`` with parameters ``prm``, on coordinate tensors."""
    if name == "quadratic":
        a11, a12, a22 = prm[:3]
        return lambda x, y: (a11 * x + a12 * y, a12 * x + a22 * y)
    if name == "rosenbrock":
        a, b = prm[:2]

        def rosen(x, y):
            r = y - x * x
            return -2 * (a - x) - 4 * b * x * r, 2 * b * r
        return rosen
    if name == "himmelblau":
        def himmel(x, y):
            u, v = x * x + y - 11, x + y * y - 7
            return 4 * x * u + 2 * v, 2 * u + 4 * y * v
        return himmel
    if name == "rastrigin":
        two_pi, A = 6.283185307179586, prm[0]
        return lambda x, y: (2 * x + two_pi * A * torch.sin(two_pi * x), 2 * y + two_pi * A * torch.sin(two_pi * y))
    if name == "beale":
        def beale(x, y):
            t1, t2, t3 = 1.5 - x + x * y, 2.25 - x + x * y * y, 2.625 - x + x * y * y * y
            gx = 2 * t1 * (y - 1) + 2 * t2 * (y * y - 1) + 2 * t3 * (y * y * y - 1)
            gy = 2 * t1 * x + 2 * t2 * 2 * x * y + 2 * t3 * 3 * x * y * y
            return gx, gy
        return beale
    if name == "six_hump_camel":
        def camel(x, y):
            x3 = x * x * x
            return 8 * x - 8.4 * x3 + 2 * x3 * x * x + y, x - 8 * y + 16 * y * y * y
        return camel
    if name == "monkey_saddle":
        return lambda x, y: (3 * x * x - 3 * y * y, -6 * x * y)
    raise ValueError(f"name: no kernel gradient for {name!r}")


SCAN_ROWS = 64  # LS_ROWS of scan_mlp.cu: data rows per block


def scan_mlp_blocked(P: torch.Tensor, coeffs: torch.Tensor, theta: torch.Tensor, dirs: torch.Tensor,
                     sizes: list[int], offsets: list[int], y: torch.Tensor, *, activation: str = "relu",
                     skip: bool = False, rows: int = SCAN_ROWS) -> torch.Tensor:
    """``scan_mlp.cu`` for every point and tile at once: the per-tile sums of the per-row losses [G, tiles].

    The same steps in the same order: each point's weights ``theta + c_1 d_1 + c_2 d_2 + ...``
    (k in order), the first layer ``P_0 + c_1 P_1 + ...`` (k in order) activated (not when the MLP
    has one layer), each later layer ``b + h W^T`` activated, plus its input with skip connections
    (not the last: its z are the logits), each row's ``(m + log sum exp(z - m)) - z[y]``, summed
    over tiles of ``rows`` data rows (rows past N count nothing).
    """
    act = torch.relu if activation == "relu" else torch.tanh
    L, K = len(sizes) - 1, coeffs.shape[1]
    n = P.shape[1]
    g = coeffs.shape[0]
    w = theta.expand(g, -1).clone()  # (G, M): the weights of layers 2..L at each point
    for k in range(K):
        w = w + coeffs[:, k:k + 1] * dirs[k]
    z = P[0].expand(g, -1, -1).clone()  # (G, N, H0)
    for k in range(K):
        z = z + coeffs[:, k, None, None] * P[k + 1]
    h = z if L == 1 else act(z)
    for i in range(1, L):
        fan_in, fan_out, o = sizes[i], sizes[i + 1], offsets[i - 1]
        W = w[:, o:o + fan_in * fan_out].reshape(g, fan_out, fan_in)
        b = w[:, o + fan_in * fan_out:o + fan_in * fan_out + fan_out]
        z = b[:, None, :] + h @ W.transpose(1, 2)  # (G, N, out)
        if i == L - 1:
            h = z
        else:
            h = act(z) + h if skip else act(z)
    m = h.amax(dim=2, keepdim=True)
    per_row = (m[..., 0] + torch.log(torch.exp(h - m).sum(dim=2))) - h.gather(2, y.view(1, n, 1).expand(g, n, 1))[..., 0]
    tiles = -(-n // rows)
    padded = torch.zeros(g, tiles * rows, dtype=per_row.dtype)
    padded[:, :n] = per_row
    return padded.reshape(g, tiles, rows).sum(dim=2)
