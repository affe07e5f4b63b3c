"""Explorers for Chapter 6, "Vanishing and exploding gradients".

- :func:`signal_explorer`: activation x initialization -> per-layer gradient
  norms (log scale) at depths 5 to 50 and histograms of the hidden activations of the deepest network.
- :func:`remedies_explorer`: residual / normalization / clipping toggles ->
  the training curve and gradient norm of a deep tanh network.

The measurements behind them (:func:`signal_grid`, :func:`remedy_runs`) are
computed once per process and shared with the chapter's static figures, with
two more the chapter draws directly: :func:`end_scale_draws` (how far one
random draw of a deep network strays from the variance argument) and
:func:`clipping_runs` (gradient clipping at a learning rate that is too large).
:func:`draw_log_map` draws an annotated heat map whose labels stay readable on
every cell.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatterSciNotation, NullLocator

from .. import backend, data, nets, plots
from ..backend import device, generator
from . import Choice, Explorer, Toggle, registered

__all__ = [
    "DEPTHS",
    "ACTS",
    "SIGNAL_WIDTH",
    "signal_grid",
    "end_scale_draws",
    "contrast_ratio",
    "label_colour",
    "draw_log_map",
    "log_ticks",
    "BASE",
    "remedy_runs",
    "clipping_runs",
    "smooth",
    "render_signal",
    "signal_explorer",
    "render_remedies",
    "remedies_explorer",
    "signal_summary",
    "signal_alt",
    "remedies_summary",
    "remedies_alt",
]

DEPTHS = (5, 10, 20, 50)
ACTS = ("sigmoid", "tanh", "relu", "gelu")
SIGNAL_WIDTH = 64
HIST_LAYERS = (1, 5, 20, 50)




@lru_cache(maxsize=2)
def signal_grid(seed: int = 0, batch: int = 128) -> dict[tuple[int, str, str], nets.SignalStats]:
    """Signal statistics for every (depth, activation, init) of the chapter, in float64.

    One batch of ``batch`` digits; models of one depth and activation (the
    four initializations) run together under ``vmap`` on the book's device.

    Returns
    -------
    dict
        ``(depth, activation, init) -> SignalStats`` (on the CPU).
    """
    train, _, _ = data.digits(seed=seed, dtype=torch.float64, device=device())
    x, y = train.x[:batch], train.y[:batch]  # (batch, 64), (batch,)
    keys = list(itertools.product(DEPTHS, ACTS, nets.INITS))
    configs = [nets.MLPConfig(depth=d, width=SIGNAL_WIDTH, activation=a, init=i) for d, a, i in keys]
    with backend.single_thread():
        stats = nets.sweep(configs, x, y, seed=seed)
    cpu = [nets.SignalStats(*(getattr(s, f).cpu() for f in s.__dataclass_fields__)) for s in stats]
    return dict(zip(keys, cpu))


def end_scale_draws(
    activation: str = "relu", init: str = "he", *, depth: int = 50, seeds: Sequence[int] = tuple(range(1, 33)),
    batch: int = 128, data_seed: int = 0,
) -> np.ndarray:
    """How far independent random draws of one deep network stray from the variance argument.

    For each seed, the network of :func:`signal_grid` (width :data:`SIGNAL_WIDTH`,
    zero biases, the weights :class:`losslab.nets.DeepMLP` would draw from that
    seed) is run forward on the same ``batch`` digits in float64, and the
    standard deviation of its last hidden layer is divided by that of its first.
    The variance argument predicts the mean of the *square* of this ratio
    (1 for He initialization with ReLU); a single draw of finite width
    fluctuates around it, and the fluctuations compound over depth.

    Returns
    -------
    ndarray, shape (len(seeds),)
        ``std(h_depth) / std(h_1)`` per seed.
    """
    if activation not in nets.ACTIVATIONS:
        raise ValueError(f"activation: expected one of {tuple(nets.ACTIVATIONS)}, got {activation!r}")
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    train, _, _ = data.digits(seed=data_seed, dtype=torch.float64)
    x = train.x[:batch]  # (batch, 64)
    phi = nets.ACTIVATIONS[activation]
    dims = [x.shape[1]] + [SIGNAL_WIDTH] * depth
    gens = [generator(seed) for seed in seeds]  # the draws of DeepMLP(seed=seed): hidden layers in order
    h, first = x.expand(len(gens), *x.shape), None  # (S, batch, 64): every draw sees the same batch
    with backend.single_thread("cpu"):  # small products: a second thread on a busy machine only slows them
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            std = nets.init_std(init, fan_in, fan_out)
            w = torch.stack([torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64) for g in gens]) * std
            h = phi(h @ w.transpose(1, 2))  # (S, batch, width)
            first = h.flatten(1).std(1) if first is None else first  # (S,)
    out = (h.flatten(1).std(1) / first).tolist()
    return np.array(out)


def contrast_ratio(a, b) -> float:
    """WCAG contrast ratio of two colours (1 for equal colours, 21 for black on white)."""

    def luminance(c) -> float:
        rgb = np.array(mcolors.to_rgb(c))
        lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        return float(lin @ np.array([0.2126, 0.7152, 0.0722]))

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def label_colour(background) -> str:
    """Black or white, whichever reads better on ``background`` (the higher contrast ratio)."""
    return "black" if contrast_ratio(background, "black") >= contrast_ratio(background, "white") else "white"


def draw_log_map(ax: Axes, logv: np.ndarray, *, rows: Sequence[str], cols: Sequence[str], title: str,
                 vmin: float = -40, vmax: float = 40, cmap: str = "RdBu_r") -> AxesImage:
    """An annotated heat map of base-10 logarithms; each label in black or white, whichever reads better on its cell.

    Parameters
    ----------
    ax : Axes
    logv : ndarray, shape (len(rows), len(cols))
    rows, cols : sequence of str
        Tick labels.
    title : str
    vmin, vmax : float
        The colour scale (values beyond it take the end colours).

    Returns
    -------
    AxesImage
        For a colour bar: ``fig.colorbar(image, ax=...)``.
    """
    logv = np.asarray(logv, dtype=float)
    if logv.shape != (len(rows), len(cols)):
        raise ValueError(f"logv: expected shape {(len(rows), len(cols))}, got {logv.shape}")
    image = ax.imshow(logv, cmap=cmap, vmin=vmin, vmax=vmax)
    for r in range(len(rows)):
        for c in range(len(cols)):
            label = f"{logv[r, c]:.0f}"
            ax.text(c, r, "0" if label == "-0" else label, ha="center", va="center", fontsize=9,
                    color=label_colour(image.cmap(image.norm(logv[r, c]))))
    ax.set(xticks=range(len(cols)), xticklabels=list(cols), yticks=range(len(rows)), yticklabels=list(rows), title=title)
    ax.grid(False)
    return image


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions for a log axis from ``lo`` to ``hi`` (both > 0), at least two inside it.

    Decades (every 1st, 2nd, 5th, 10th, 20th... for a range of many decades, at most 7 ticks);
    within about two decades, the 1-2-5 steps (if they give three ticks),
    else 1-2-3-5, else every integer multiple of a power of ten.
    """
    if not (0 < lo < hi):
        raise ValueError(f"lo, hi: expected 0 < lo < hi, got {lo}, {hi}")
    a, b = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    inside = lambda ts: [t for t in ts if lo <= t <= hi]  # noqa: E731
    if b - a > 2:
        k = next(k for k in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500) if (b - a) // k + 1 <= 7)
        ticks = inside([10.0 ** e for e in range(a, b + 1) if e % k == 0])
        if len(ticks) >= 2:
            return ticks
    for subs, enough in (((1, 2, 5), 3), ((1, 2, 3, 5), 2), (tuple(range(1, 10)), 2)):
        ticks = inside([m * 10.0 ** e for e in range(a, b + 1) for m in subs])
        if len(ticks) >= enough:
            return ticks
    return inside([float(f"{t:.2g}") for t in np.geomspace(lo, hi, 5)[1:-1]])  # a narrow range between 1-2-...-9


def _label_log_axis(ax: Axes, values: np.ndarray) -> None:
    """Fit the log y axis to ``values`` and label it with :func:`log_ticks` (never a frame without labels)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return
    lo, hi = np.log10(v.min()), np.log10(v.max())
    pad = max(0.1, 0.05 * (hi - lo))
    lo, hi = 10 ** (lo - pad), 10 ** (hi + pad)
    ax.set_ylim(lo, hi)
    ticks = log_ticks(lo, hi)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    wide = all(np.isclose(np.log10(t), round(np.log10(t))) for t in ticks) and len(ticks) > 1
    ax.yaxis.set_major_formatter(LogFormatterSciNotation() if wide else FuncFormatter(lambda t, _: f"{t:.2g}"))
    ax.yaxis.set_minor_locator(NullLocator())


# The deep network the remedies are tried on: tanh with a small initialization,
# whose gradients vanish.
BASE = nets.MLPConfig(depth=10, width=32, activation="tanh", init="small")
STEPS, BATCH, LR, CLIP = 80, 64, 0.1, 1.0
FAST_LR = 1.0  # the clipping experiment: a learning rate too large for the unclipped net
SLOW_LR = 0.5  # ... and a smaller one, unclipped, to compare with
SPIKE_CLIP = 3.0  # a norm threshold above the typical gradient of the fast run: it acts on the spikes only
CLIP_VALUE = 0.05
CLIP_SEEDS = (0, 1, 2)  # initial draws of the clipping experiment


def _remedy_table() -> dict[str, nets.Run]:
    runs: dict[str, nets.Run] = {}
    for residual, norm, clip in itertools.product((False, True), nets.NORMS, (False, True)):
        cfg = nets.MLPConfig(**{**BASE.__dict__, "residual": residual, "norm": norm})
        runs[f"res={residual},norm={norm},clip={clip}"] = nets.Run(cfg, lr=LR, clip_norm=CLIP if clip else None)
    runs["xavier"] = nets.Run(nets.MLPConfig(**{**BASE.__dict__, "init": "xavier"}), lr=LR)
    runs["relu-he"] = nets.Run(nets.MLPConfig(**{**BASE.__dict__, "activation": "relu", "init": "he"}), lr=LR)
    for norm in ("batch", "layer"):
        runs[f"{norm}-xavier"] = nets.Run(nets.MLPConfig(**{**BASE.__dict__, "norm": norm, "init": "xavier"}), lr=LR)
    return runs


def remedy_runs(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train the base network with and without each remedy (cached per process).

    Keys: ``"res={bool},norm={none|batch|layer},clip={bool}"`` (the base,
    lr 0.1, optionally clipped to global norm 1), ``"xavier"``, ``"relu-he"``,
    and ``"batch-xavier"``, ``"layer-xavier"`` (normalization with Xavier
    instead of the small initialization).

    Returns
    -------
    dict
        ``name -> (losses (STEPS,), grad_norms (STEPS,))`` as NumPy arrays.
    """
    return _all_runs(seed)[0]


#: The clipping experiment: name -> keyword arguments of :class:`losslab.nets.Run`.
CLIPPING = {
    "no clipping": dict(lr=FAST_LR),
    "clip norm at 1": dict(lr=FAST_LR, clip_norm=CLIP),
    f"clip norm at {SPIKE_CLIP:g}": dict(lr=FAST_LR, clip_norm=SPIKE_CLIP),
    f"clip value at {CLIP_VALUE:g}": dict(lr=FAST_LR, clip_value=CLIP_VALUE),
    f"no clipping, lr {SLOW_LR:g}": dict(lr=SLOW_LR),
}


def clipping_runs(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The Xavier-initialized base network at learning rate :data:`FAST_LR`, clipped in each way of :data:`CLIPPING`.

    Each variant trains from the initial draws :data:`CLIP_SEEDS` on the same
    minibatches as :func:`remedy_runs` (drawn with ``seed``; cached per process).

    Returns
    -------
    dict
        ``name -> (losses (S, STEPS), grad_norms (S, STEPS))`` with ``S = len(CLIP_SEEDS)``;
        the norm is the global gradient norm before norm clipping (after value clipping, if any).
    """
    return _all_runs(seed)[1]


@lru_cache(maxsize=1)
def _all_runs(seed: int) -> tuple[dict, dict]:
    """Both experiments in one :func:`losslab.nets.train_runs` call: runs of one shape train together."""
    table = _remedy_table()
    xavier = nets.MLPConfig(**{**BASE.__dict__, "init": "xavier"})
    clipping = [nets.Run(xavier, seed=s, **kw) for kw in CLIPPING.values() for s in CLIP_SEEDS]
    train, _, _ = data.digits(seed=seed, device=device())
    with backend.single_thread():
        losses, norms = nets.train_runs([*table.values(), *clipping], train.x, train.y, steps=STEPS,
                                        batch_size=BATCH, seed=seed)
    losses, norms = losses.cpu().numpy(), norms.cpu().numpy()
    remedies = {k: (losses[i], norms[i]) for i, k in enumerate(table)}
    shape = (len(CLIPPING), len(CLIP_SEEDS), STEPS)
    lc, nc = losses[len(table):].reshape(shape), norms[len(table):].reshape(shape)
    return remedies, {k: (lc[i], nc[i]) for i, k in enumerate(CLIPPING)}


def smooth(values: np.ndarray, beta: float = 0.8) -> np.ndarray:
    """Exponential moving average (bias-corrected) of a loss curve; NaN stays NaN."""
    out = np.empty_like(values)
    avg = 0.0
    for t, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out[t] = avg / (1 - beta ** (t + 1))
    return out


# --- explorer 1: signal propagation ------------------------------------------------------


def render_signal(activation: str, init: str) -> Figure:
    """Per-layer weight-gradient norms and activation histograms for one activation and initialization."""
    grid = signal_grid()
    fig, axes = plots.figure(1, 2, size=(9.0, 3.4), layout="fixed")
    fig.subplots_adjust(left=0.09, right=0.98, wspace=0.3)
    for j, d in enumerate(DEPTHS):
        st = grid[(d, activation, init)]
        axes[0].plot(np.arange(1, d + 1), st.weight_grad_norm.numpy(), color=plots.PALETTE[j], label=f"depth {d}")
    axes[0].set(yscale="log", xlabel="layer $l$", ylabel=r"$\|\partial \mathcal{L}/\partial W_l\|_F$",
                title="Gradient norm per layer")
    _label_log_axis(axes[0], np.concatenate([grid[(d, activation, init)].weight_grad_norm.numpy() for d in DEPTHS]))
    axes[0].legend(fontsize=8, loc="best")
    deep = grid[(DEPTHS[-1], activation, init)]
    bounded = activation in ("sigmoid", "tanh")
    ax = axes[1]
    for j, l in enumerate(HIST_LAYERS):
        h = deep.act_sample[l - 1].numpy()
        if bounded:
            vals, rng = h, ((0, 1) if activation == "sigmoid" else (-1, 1))
        else:
            rms = float(np.sqrt(np.mean(h**2))) or 1.0
            vals, rng = h / rms, (-1, 4)
        ax.hist(vals, bins=40, range=rng, histtype="step", density=True, color=plots.PALETTE[j], label=f"layer {l}")
    ax.set(xlabel="$h_l$" if bounded else r"$h_l / \mathrm{rms}(h_l)$", ylabel="density",
           title=f"Activations, depth {DEPTHS[-1]}")
    ax.legend(fontsize=8, loc="upper right")
    return fig


@registered
def signal_explorer() -> Explorer:
    """Activation x initialization -> per-layer gradient norms and activation histograms."""
    signal_grid()  # compute once, before the frames
    return Explorer(
        "grads.signal",
        render_signal,
        controls={
            "activation": Choice(list(ACTS), default="tanh"),
            "init": Choice(list(nets.INITS), default="xavier", label="initialization"),
        },
        title="Signal propagation through depth",
        alt=signal_alt,
    )


def signal_summary(activation: str, init: str) -> dict[str, float]:
    """What a frame of :func:`signal_explorer` shows, in numbers (from the cached :func:`signal_grid`).

    Returns
    -------
    dict
        ``"ratio_<depth>"``: the first hidden layer's weight-gradient norm over the last one's, per depth of
        :data:`DEPTHS`; ``"std_first"``, ``"std_last"``: the standard deviation of the activations at
        layers 1 and 50 of the 50-layer network.
    """
    grid = signal_grid()
    out = {}
    for d in DEPTHS:
        g = grid[(d, activation, init)].weight_grad_norm
        out[f"ratio_{d}"] = float(g[0] / g[-1]) if float(g[-1]) > 0 else float("inf")
    deep = grid[(DEPTHS[-1], activation, init)]
    out["std_first"], out["std_last"] = float(deep.act_std[0]), float(deep.act_std[-1])
    return out


_INIT_WORDS = {"small": "small", "xavier": "Xavier", "he": "He", "large": "large"}
_ACT_WORDS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU", "gelu": "GELU"}


def _ratio(r: float) -> str:
    return "infinite (the last layer's gradient is zero)" if not np.isfinite(r) else f"{r:.2g}"


def signal_alt(activation: str, init: str) -> str:
    """The alt text of one frame of :func:`signal_explorer`, from :func:`signal_summary`."""
    s = signal_summary(activation, init)
    ratios = ", ".join(f"{_ratio(s[f'ratio_{d}'])} at depth {d}" for d in DEPTHS)
    scaled = "" if activation in ("sigmoid", "tanh") else ", each divided by its root mean square"
    return (f"Two panels for {_ACT_WORDS.get(activation, activation)} networks with "
            f"{_INIT_WORDS.get(init, init)} initialization. Left: the gradient norm of each layer's weights on a log "
            f"scale; the first layer's norm divided by the last layer's is {ratios}. Right: histograms of the "
            f"activations of the {DEPTHS[-1]}-layer network at layers {', '.join(map(str, HIST_LAYERS))}{scaled}; "
            f"the activations' standard deviation goes from {s['std_first']:.2g} at layer 1 to {s['std_last']:.2g} "
            f"at layer {DEPTHS[-1]}")


# --- explorer 2: remedies ----------------------------------------------------------------


def render_remedies(residual: bool, norm: str, clip: bool) -> Figure:
    """Training loss and gradient norm of the base network with the chosen remedies."""
    runs = remedy_runs()
    key = f"res={residual},norm={norm},clip={clip}"
    base = "res=False,norm=none,clip=False"
    fig, axes = plots.figure(1, 2, size=(9.0, 3.4), layout="fixed")
    fig.subplots_adjust(left=0.08, right=0.98, wspace=0.28)
    steps = np.arange(1, len(runs[base][0]) + 1)
    for k, (loss, _) in runs.items():
        if k.startswith("res="):
            axes[0].plot(steps, smooth(loss), color="#b7c2cf", lw=0.8)
    axes[0].plot(steps, smooth(runs[base][0]), color=plots.PALETTE[1], lw=1.6, label="no remedy")
    axes[0].plot(steps, smooth(runs[key][0]), color=plots.PALETTE[0], lw=2.0, label="this setting")
    axes[0].set(xlabel="step", ylabel="training loss (smoothed)", ylim=(0, 3.0),
                title="Loss (grey: the other settings)")
    axes[0].legend(fontsize=8, loc="lower left")
    axes[1].plot(steps, runs[base][1], color=plots.PALETTE[1], lw=1.2, label="no remedy")
    axes[1].plot(steps, runs[key][1], color=plots.PALETTE[0], lw=1.2, label="this setting")
    if clip:
        axes[1].axhline(CLIP, color="k", ls="--", lw=0.8, label="clip threshold")
    axes[1].set(yscale="log", xlabel="step", ylabel=r"$\|\nabla \mathcal{L}\|$ before clipping", title="Gradient norm")
    _label_log_axis(axes[1], np.concatenate([runs[base][1], runs[key][1]] + ([np.array([CLIP])] if clip else [])))
    axes[1].legend(fontsize=8, loc="best")
    return fig


@registered
def remedies_explorer() -> Explorer:
    """Residual / normalization / clipping toggles -> training curve of a deep tanh network."""
    remedy_runs()
    return Explorer(
        "grads.remedies",
        render_remedies,
        controls={
            "residual": Toggle(False, label="residual connections"),
            "norm": Choice(list(nets.NORMS), default="none", label="normalization"),
            "clip": Toggle(False, label="clip gradient norm at 1"),
        },
        title="Remedies for a vanishing gradient",
        alt=remedies_alt,
    )


def remedies_summary(residual: bool, norm: str, clip: bool) -> dict[str, float]:
    """What a frame of :func:`remedies_explorer` shows, in numbers (from the cached :func:`remedy_runs`).

    ``"loss"`` and ``"base_loss"``: the smoothed training loss at the last step, with this setting and
    without any remedy (the drawn curves end there); ``"norm_lo"``, ``"norm_hi"``: the range of this
    setting's gradient norm over the steps; ``"base_norm_hi"``: the largest without a remedy.
    """
    runs = remedy_runs()
    loss, norms = runs[f"res={residual},norm={norm},clip={clip}"]
    base_loss, base_norms = runs["res=False,norm=none,clip=False"]
    return {"loss": float(smooth(loss)[-1]), "base_loss": float(smooth(base_loss)[-1]),
            "norm_lo": float(np.nanmin(norms)), "norm_hi": float(np.nanmax(norms)),
            "base_norm_hi": float(np.nanmax(base_norms))}


_NORM_WORDS = {"none": "without normalization", "batch": "with batch normalization", "layer": "with layer normalization"}


def remedies_alt(residual: bool, norm: str, clip: bool) -> str:
    """The alt text of one frame of :func:`remedies_explorer`, from :func:`remedies_summary`."""
    s = remedies_summary(residual, norm, clip)
    setting = (f"{'with' if residual else 'without'} residual connections, {_NORM_WORDS.get(norm, norm)}, "
               f"{'with the gradient norm clipped at 1' if clip else 'without clipping'}")
    if not (residual or clip) and norm == "none":
        against = "; this is the network without any remedy"
    else:
        against = f", against {s['base_loss']:.2f} without any remedy"
    return (f"Training of a {BASE.depth}-layer tanh network with small initialization, {setting}, over {STEPS} "
            f"steps: the smoothed training loss ends at {s['loss']:.2f}{against}. Beside it, the gradient norm "
            f"before clipping on a log scale, between {s['norm_lo']:.2g} and {s['norm_hi']:.2g} (without a remedy it "
            f"peaks at {s['base_norm_hi']:.2g})")


# --- explorer 3: update-to-data ratios during training ---------------------------------------

#: The learning rates of the update-ratio explorer: nine, log-spaced from gentle to too large.
UPDATE_LRS = (0.02, 0.035, 0.05, 0.08, 0.12, 0.2, 0.35, 0.6, 0.9)
UPDATE_STEPS = 120


@lru_cache(maxsize=1)
def update_ratio_runs() -> nets.ReluDiagnostics:
    """One 4-hidden-layer ReLU network per learning rate of :data:`UPDATE_LRS`, trained together on the digits (cached)."""
    train, _, _ = data.digits(seed=0, device=device())
    with backend.single_thread():
        return nets.relu_diagnostics(train.x, train.y, lrs=UPDATE_LRS, seeds=(0,), steps=UPDATE_STEPS)


def update_ratio_summary(lr: float) -> dict[str, float]:
    """What the explorer's frame for ``lr`` shows: the final loss, the ratio range over layers, the peak dead fraction."""
    d = update_ratio_runs()
    j = UPDATE_LRS.index(lr)
    ratio = d.update_ratio[j].numpy()  # (steps, layers)
    med = np.nanmedian(ratio, axis=0)
    return {"loss": float(np.nanmean(d.loss[j, -20:].numpy())), "ratio_lo": float(np.nanmin(med)),
            "ratio_hi": float(np.nanmax(med)), "dead_peak": float(np.nanmax(d.dead[j].numpy()))}


def render_update_ratio(lr: float) -> Figure:
    """Karpathy's diagnostic: each weight matrix's log10 update-to-data ratio at every step, and the loss."""
    d = update_ratio_runs()
    j = UPDATE_LRS.index(lr)
    ratio = d.update_ratio[j].numpy()  # (steps, layers)
    steps = np.arange(1, ratio.shape[0] + 1)
    fig, axes = plots.figure(1, 2, size=(9.0, 3.4), layout="fixed")
    fig.subplots_adjust(left=0.08, right=0.98, wspace=0.3)
    for l in range(ratio.shape[1]):
        name = "read-out" if l == ratio.shape[1] - 1 else f"layer {l + 1}"
        axes[0].plot(steps, ratio[:, l], color=plots.PALETTE[l % len(plots.PALETTE)], lw=1.0, label=name)
    axes[0].axhline(-3, color="k", ls=":", lw=0.9, label="$10^{-3}$ rule of thumb")
    axes[0].set(xlabel="step", ylabel=r"$\log_{10}$ update / weight", ylim=(-5, 0.5), title="Update-to-data ratio")
    axes[0].legend(fontsize=8, loc="lower right", ncol=2)
    loss = d.loss[j].numpy()
    axes[1].plot(steps, np.clip(loss, None, 5.0), color=plots.PALETTE[0], lw=1.2)
    axes[1].set(xlabel="step", ylabel="minibatch loss", ylim=(0, 3.0), title="Training loss")
    return fig


def _update_ratio_alt(lr: float) -> str:
    s = update_ratio_summary(lr)
    return (f"At learning rate {lr}, the median base-10 update-to-data ratio of the five weight matrices over "
            f"{UPDATE_STEPS} steps lies between {s['ratio_lo']:.1f} and {s['ratio_hi']:.1f} (the rule of thumb is -3), "
            f"up to {s['dead_peak']:.0%} of a hidden layer's units are dead at some step, and the loss ends near "
            f"{s['loss']:.2f}")


@registered
def update_ratio_explorer() -> Explorer:
    """Learning rate -> per-layer update-to-data ratios and the loss of a 4-hidden-layer ReLU network."""
    update_ratio_runs()
    return Explorer(
        "grads.update-ratio",
        render_update_ratio,
        controls={"lr": Choice(list(UPDATE_LRS), default=0.2, labels=[f"{v:g}" for v in UPDATE_LRS], label="learning rate")},
        title="Update-to-data ratios during training",
        alt=_update_ratio_alt,
    )
