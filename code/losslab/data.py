"""Data sets the book uses, generated (seeded) or shipped with a package: nothing is downloaded.

- :func:`digits`: scikit-learn's bundled 8x8 handwritten digits (1,797
  images, 10 classes), split and standardized, as tensors.
- :func:`regression_1d`: a noisy 1-D regression problem with optional outliers.
- :func:`blobs`: Gaussian clusters for small classification examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import _checks
from .backend import generator

__all__ = ["Split", "digits", "regression_1d", "blobs"]


@dataclass(frozen=True)
class Split:
    """Features and targets of one split. ``x``: [N, D] float; ``y``: [N] long (classes) or float."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        return f"Split(x={tuple(self.x.shape)} {self.x.dtype}, y={tuple(self.y.shape)} {self.y.dtype})"

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


def _check_count(name: str, value: int, low: int = 1) -> None:
    _checks.count(name, value, low)


def digits(
    n_train: int = 1000,
    n_val: int = 397,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    standardize: bool = True,
) -> tuple[Split, Split, Split]:
    """scikit-learn's digits, shuffled with ``seed`` and split into train, validation and test.

    Features are standardized with the training split's mean and standard
    deviation (pixels constant in training get standard deviation 1); with
    ``standardize=False`` they stay raw pixel values 0-16. The
    test split is whatever is left after ``n_train + n_val`` (at least 1).

    Parameters
    ----------
    n_train, n_val : int
        Sizes of the training and validation splits; ``n_train + n_val < 1797``.
    seed : int
        Shuffling seed.

    Returns
    -------
    (train, val, test) : Split
        ``x`` [N, 64] in ``dtype``, ``y`` [N] int64 class labels 0-9.

    Raises
    ------
    ValueError
        If the sizes leave no test example.
    """
    from sklearn.datasets import load_digits  # noqa: PLC0415 (ships with scikit-learn)

    _check_count("n_train", n_train, 10)
    _check_count("n_val", n_val, 0)
    data = load_digits()
    total = data.data.shape[0]
    if n_train + n_val >= total:
        raise ValueError(f"n_train + n_val: expected < {total} so a test split remains, got {n_train + n_val}")
    order = torch.randperm(total, generator=generator(seed))
    x = torch.as_tensor(data.data, dtype=torch.float64)[order]  # (1797, 64)
    y = torch.as_tensor(data.target, dtype=torch.int64)[order]  # (1797,)
    if standardize:
        mean = x[:n_train].mean(0)
        std = x[:n_train].std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        x = (x - mean) / std
    x = x.to(dtype)
    cuts = [(0, n_train), (n_train, n_train + n_val), (n_train + n_val, total)]
    return tuple(Split(x[a:b].to(device), y[a:b].to(device)) for a, b in cuts)  # type: ignore[return-value]


def regression_1d(
    n: int = 200,
    *,
    noise: float = 0.3,
    outlier_fraction: float = 0.0,
    outlier_scale: float = 10.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Split:
    """``y = sin(2x) + x/2 + noise`` for ``x`` uniform in [-3, 3], with optional gross outliers.

    Returns
    -------
    Split
        ``x`` [n, 1], ``y`` [n]. A fraction ``outlier_fraction`` of the
        targets get an extra ``outlier_scale * |N(0, 1)|`` added.
    """
    _check_count("n", n)
    if not noise >= 0:
        raise ValueError(f"noise: expected >= 0, got {noise}")
    if not 0 <= outlier_fraction <= 1:
        raise ValueError(f"outlier_fraction: expected in [0, 1], got {outlier_fraction}")
    g = generator(seed)
    x = torch.rand(n, 1, generator=g, dtype=torch.float64) * 6 - 3  # (n, 1)
    y = torch.sin(2 * x[:, 0]) + x[:, 0] / 2 + noise * torch.randn(n, generator=g, dtype=torch.float64)
    n_out = int(round(outlier_fraction * n))
    if n_out:
        idx = torch.randperm(n, generator=g)[:n_out]
        y[idx] += outlier_scale * torch.randn(n_out, generator=g, dtype=torch.float64).abs()
    return Split(x.to(dtype), y.to(dtype))


def blobs(
    n_per_class: int = 100,
    n_classes: int = 3,
    *,
    dim: int = 2,
    spread: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Split:
    """Gaussian clusters with centres on a circle of radius 3 (in the first two coordinates).

    Returns
    -------
    Split
        ``x`` [n_per_class * n_classes, dim], ``y`` [N] int64 labels, shuffled.
    """
    _check_count("n_per_class", n_per_class)
    _check_count("n_classes", n_classes, 2)
    _check_count("dim", dim, 2)
    if not spread > 0:
        raise ValueError(f"spread: expected > 0, got {spread}")
    g = generator(seed)
    angles = torch.arange(n_classes, dtype=torch.float64) * (2 * torch.pi / n_classes)
    centres = torch.zeros(n_classes, dim, dtype=torch.float64)
    centres[:, 0], centres[:, 1] = 3 * torch.cos(angles), 3 * torch.sin(angles)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)  # (N,)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g, dtype=torch.float64)
    order = torch.randperm(len(y), generator=g)
    return Split(x[order].to(dtype), y[order])
