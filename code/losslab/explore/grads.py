"""Explorers for Chapter 6, "Vanishing and exploding gradients".

- :func:`signal_explorer`: activation x initialization -> per-layer gradient
  norms (log scale) at depths 5 to 50 and histograms of the hidden activations of the deepest network.
- :func:`remedies_explorer`: residual / normalization / clipping toggles ->
  the training curve and gradient norm of a deep tanh network.

The measurements behind them (:func:`signal_grid`, :func:`remedy_runs`) are
computed once per process and shared with the chapter's static figures.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullLocator

from .. import backend, data, nets, plots
from ..backend import device
from . import Choice, Explorer, Toggle, registered

__all__ = [
    "DEPTHS",
    "ACTS",
    "SIGNAL_WIDTH",
    "signal_grid",
    "BASE",
    "remedy_runs",
    "smooth",
    "render_signal",
    "signal_explorer",
    "render_remedies",
    "remedies_explorer",
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


# The deep network the remedies are tried on: tanh with a small initialization,
# whose gradients vanish.
BASE = nets.MLPConfig(depth=10, width=32, activation="tanh", init="small")
STEPS, BATCH, LR, CLIP = 80, 64, 0.1, 1.0
FAST_LR = 1.0  # the clipping experiment: a learning rate too large for the unclipped net
CLIP_VALUE = 0.05


def _remedy_table() -> dict[str, nets.Run]:
    runs: dict[str, nets.Run] = {}
    for residual, norm, clip in itertools.product((False, True), nets.NORMS, (False, True)):
        cfg = nets.MLPConfig(**{**BASE.__dict__, "residual": residual, "norm": norm})
        runs[f"res={residual},norm={norm},clip={clip}"] = nets.Run(cfg, lr=LR, clip_norm=CLIP if clip else None)
    xavier = nets.MLPConfig(**{**BASE.__dict__, "init": "xavier"})
    runs["xavier"] = nets.Run(xavier, lr=LR)
    runs["relu-he"] = nets.Run(nets.MLPConfig(**{**BASE.__dict__, "activation": "relu", "init": "he"}), lr=LR)
    runs["fast"] = nets.Run(xavier, lr=FAST_LR)
    runs["fast-clip-norm"] = nets.Run(xavier, lr=FAST_LR, clip_norm=CLIP)
    runs["fast-clip-value"] = nets.Run(xavier, lr=FAST_LR, clip_value=CLIP_VALUE)
    return runs


@lru_cache(maxsize=1)
def remedy_runs(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train the base network with and without each remedy (cached per process).

    Keys: ``"res={bool},norm={none|batch|layer},clip={bool}"`` (the base,
    lr 0.1, optionally clipped to global norm 1), ``"xavier"``, ``"relu-he"``,
    and ``"fast"``, ``"fast-clip-norm"``, ``"fast-clip-value"`` (Xavier
    initialization at learning rate 1.0, unclipped, norm-clipped at 1,
    value-clipped at 0.05).

    Returns
    -------
    dict
        ``name -> (losses (STEPS,), grad_norms (STEPS,))`` as NumPy arrays.
    """
    table = _remedy_table()
    train, _, _ = data.digits(seed=seed, device=device())
    with backend.single_thread():
        losses, norms = nets.train_runs(list(table.values()), train.x, train.y, steps=STEPS, batch_size=BATCH, seed=seed)
    losses, norms = losses.cpu().numpy(), norms.cpu().numpy()
    return {k: (losses[i], norms[i]) for i, k in enumerate(table)}


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
    axes[0].set(yscale="log", xlabel="layer $l$", ylabel=r"$\|\partial L/\partial W_l\|_F$",
                title="Gradient norm per layer")
    axes[0].yaxis.set_major_locator(LogLocator(numticks=6))  # up to 100 decades: few ticks, cheap to draw
    axes[0].yaxis.set_minor_locator(NullLocator())
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
        alt=("Two panels for {activation} networks with {init} initialization: the gradient norm of each layer's "
             "weights on a log scale for depths 5, 10, 20 and 50, and histograms of the activations at layers 1, 5, "
             "20 and 50 of the 50-layer network"),
    )


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
    axes[1].set(yscale="log", xlabel="step", ylabel=r"$\|\nabla L\|$ before clipping", title="Gradient norm")
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
        alt=("Training loss over 80 steps of a 10-layer tanh network with small initialization (residual connections: "
             "{residual}; normalization: {norm}; gradient norm clipped at 1: {clip}) against the same network without "
             "remedies, and the gradient norm at each step on a log scale"),
    )
