"""Loss landscapes: classic 2-D test functions, critical points, and slices of real networks.

See Chapter 2 ("Loss landscapes"). Chapter 3 races optimizers on the test
functions defined here.

Two halves:

- **Test functions in the plane.** Each is a :class:`TestFunction` with an
  analytic value, gradient and Hessian, vectorized over any leading batch
  shape (``[..., 2] -> [...]``, ``[..., 2]``, ``[..., 2, 2]``), on whatever
  device and floating dtype the points come in. :data:`TEST_FUNCTIONS` and
  :func:`get` are the registry; :func:`classify` tells minima, maxima and
  saddles apart by Hessian eigenvalues; :func:`find_critical_points` runs
  Newton's method from many starts at once; :func:`evaluate_grid` scans a
  function over a grid.
- **Real networks.** :class:`MLP` (optionally with skip connections),
  :func:`train_classifier`, random directions with filter normalization
  (:func:`random_direction`, :func:`filter_normalize`), 1-D and 2-D loss
  scans along directions (:func:`scan_1d`, :func:`scan_2d`, three methods
  that give the same numbers: a plain loop, ``torch.func.vmap``, and an
  "affine" fast path that exploits that the first layer is linear in the
  scan coefficients), Hessian-vector products, Lanczos for the top Hessian
  eigenvalues (sharpness), and the full Hessian of small networks. Weight
  decay (``weight_decay=`` in :func:`loss_at`, the scans and
  :func:`train_classifier`) gives cross-entropy true minima, which
  :func:`polish_minimum` finds and :func:`gradient_norm` checks;
  :func:`gradient_descent_sharpness` tracks the sharpness during full-batch
  gradient descent (the edge of stability).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks
from .backend import chunk_elements

__all__ = [
    "bezier_point",
    "fit_bezier_midpoint",
    "TestFunction",
    "TEST_FUNCTIONS",
    "get",
    "quadratic",
    "rosenbrock",
    "himmelblau",
    "rastrigin",
    "beale",
    "six_hump_camel",
    "monkey_saddle",
    "classify",
    "hessian_index",
    "find_critical_points",
    "grid_points",
    "evaluate_grid",
    "random_symmetric_matrices",
    "MLP",
    "train_classifier",
    "loss_at",
    "gradient_norm",
    "polish_minimum",
    "SharpnessRun",
    "gradient_descent_sharpness",
    "filter_normalize",
    "random_direction",
    "difference",
    "scan_losses",
    "scan_1d",
    "scan_2d",
    "permute_hidden",
    "hvp",
    "top_hessian_eigenvalues",
    "hessian_matrix",
    "KINDS",
]

#: The kinds :func:`classify` returns.
KINDS = ("minimum", "maximum", "saddle", "degenerate")


# =============================================================================
# Input checks
# =============================================================================

def _check_points(points: object, name: str = "points") -> torch.Tensor:
    """Points in the plane: a floating tensor of shape [..., 2], all finite."""
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape [..., 2], got {type(points).__name__}")
    if not points.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor (float32 or float64), got {points.dtype}")
    if points.ndim < 1 or points.shape[-1] != 2:
        raise ValueError(f"{name}: expected shape [..., 2] (last dimension the x and y coordinates), got {tuple(points.shape)}")
    if not _checks.values_trusted(points) and not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name}: expected finite values, got {int((~torch.isfinite(points)).sum())} non-finite entries")
    return points


def _check_positive(name: str, value: object) -> float:
    return _checks.positive(name, value)


def _check_count(name: str, value: object, low: int = 1) -> int:
    return _checks.count(name, value, low)


def _check_square(hessian: object, name: str = "hessian") -> torch.Tensor:
    if not isinstance(hessian, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape [..., n, n], got {type(hessian).__name__}")
    if not hessian.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {hessian.dtype}")
    if hessian.ndim < 2 or hessian.shape[-1] != hessian.shape[-2] or hessian.shape[-1] == 0:
        raise ValueError(f"{name}: expected shape [..., n, n] with n >= 1, got {tuple(hessian.shape)}")
    if not bool(torch.isfinite(hessian).all()):
        raise ValueError(f"{name}: expected finite values")
    if not torch.allclose(hessian, hessian.transpose(-1, -2), rtol=1e-6, atol=1e-9):
        raise ValueError(f"{name}: expected a symmetric matrix (a Hessian is symmetric)")
    return hessian


# =============================================================================
# Test functions
# =============================================================================

Domain = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class TestFunction:
    """A function of two variables with its analytic gradient and Hessian.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"rosenbrock"``.
    formula : str
        LaTeX of the definition (for titles and prose).
    f : callable
        ``f(points [..., 2]) -> [...]``.
    grad : callable
        ``grad(points [..., 2]) -> [..., 2]``.
    hessian : callable
        ``hessian(points [..., 2]) -> [..., 2, 2]``.
    domain : ((float, float), (float, float))
        The ``(xmin, xmax), (ymin, ymax)`` box where the function is usually drawn.
    minima : tuple of (float, float)
        The global minimizers (empty if the function is unbounded below).
    critical_points : tuple of ((float, float), str)
        Every known critical point in the domain with its kind (one of
        :data:`KINDS`), the global minima included. Complete for the
        functions whose critical points are few; for Rastrigin it lists the
        few nearest the origin.

    Notes
    -----
    ``f``, ``grad`` and ``hessian`` check their input (a floating tensor of
    shape ``[..., 2]`` with finite entries) and keep its device and dtype.
    The dataclass is frozen: registry entries cannot be changed by accident.

    Example
    -------
    >>> fn = get("himmelblau")
    >>> fn.f(torch.tensor([[3.0, 2.0]]))
    tensor([0.])
    """

    __test__ = False  # not a pytest test class, despite the name

    name: str
    formula: str
    f: Callable[[torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor], torch.Tensor]
    hessian: Callable[[torch.Tensor], torch.Tensor]
    domain: Domain
    minima: tuple[tuple[float, float], ...]
    critical_points: tuple[tuple[tuple[float, float], str], ...] = ()

    def __repr__(self) -> str:
        return f"TestFunction({self.name!r}, domain={self.domain}, minima={len(self.minima)})"

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        return self.f(points)

    @property
    def f_min(self) -> float | None:
        """The global minimum value (None if unbounded below)."""
        if not self.minima:
            return None
        return float(self.f(torch.tensor(self.minima[0], dtype=torch.float64)))

    def minima_tensor(self, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
        """The global minimizers as a tensor [M, 2]."""
        return torch.tensor(self.minima, dtype=dtype, device=device).reshape(-1, 2)


def _xy(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    points = _check_points(points)
    return points[..., 0], points[..., 1]


def _hess(fxx: torch.Tensor, fxy: torch.Tensor, fyy: torch.Tensor) -> torch.Tensor:
    fxx, fxy, fyy = torch.broadcast_tensors(fxx, fxy, fyy)
    return torch.stack([torch.stack([fxx, fxy], -1), torch.stack([fxy, fyy], -1)], -2)  # (..., 2, 2)


def quadratic(kappa: float = 10.0, angle: float = 0.0) -> TestFunction:
    r"""An ill-conditioned quadratic bowl with condition number ``kappa``.

    .. math:: f(p) = \tfrac12 p^\top A p, \quad A = R_\theta \operatorname{diag}(1, \kappa) R_\theta^\top,

    so the Hessian is constant with eigenvalues 1 and ``kappa``; ``angle``
    (radians) rotates the narrow axis away from the coordinate axes.

    Parameters
    ----------
    kappa : float
        Condition number, >= 1.
    angle : float
        Rotation of the eigenvectors, in radians.

    Returns
    -------
    TestFunction

    Raises
    ------
    ValueError
        If ``kappa < 1`` or ``angle`` is not finite.
    """
    kappa = _checks.number("kappa", kappa, low=1.0)
    angle = _checks.number("angle", angle)
    c, s = math.cos(angle), math.sin(angle)
    # A = R diag(1, kappa) R^T with R = [[c, -s], [s, c]]
    a11 = c * c + kappa * s * s
    a12 = c * s - kappa * c * s
    a22 = s * s + kappa * c * c

    def f(p: torch.Tensor) -> torch.Tensor:
        x, y = _xy(p)
        return 0.5 * (a11 * x * x + 2 * a12 * x * y + a22 * y * y)

    def grad(p: torch.Tensor) -> torch.Tensor:
        x, y = _xy(p)
        return torch.stack([a11 * x + a12 * y, a12 * x + a22 * y], -1)

    def hessian(p: torch.Tensor) -> torch.Tensor:
        x, _ = _xy(p)
        one = torch.ones_like(x)
        return _hess(a11 * one, a12 * one, a22 * one)

    formula = rf"\tfrac12(x^2 + {kappa:g}\,y^2)" if angle == 0 else rf"\tfrac12 p^\top A p,\ \kappa={kappa:g}"
    return TestFunction("quadratic", formula, f, grad, hessian, ((-3.0, 3.0), (-3.0, 3.0)),
                        ((0.0, 0.0),), (((0.0, 0.0), "minimum"),))


def rosenbrock(a: float = 1.0, b: float = 100.0) -> TestFunction:
    r"""Rosenbrock's banana valley :math:`(a - x)^2 + b (y - x^2)^2`; minimum at :math:`(a, a^2)`."""
    a, b = _checks.number("a", a), _check_positive("b", b)

    def f(p):
        x, y = _xy(p)
        return (a - x) ** 2 + b * (y - x * x) ** 2

    def grad(p):
        x, y = _xy(p)
        r = y - x * x
        return torch.stack([-2 * (a - x) - 4 * b * x * r, 2 * b * r], -1)

    def hessian(p):
        x, y = _xy(p)
        return _hess(2 - 4 * b * y + 12 * b * x * x, -4 * b * x, torch.full_like(x, 2 * b))

    return TestFunction("rosenbrock", rf"({a:g} - x)^2 + {b:g}\,(y - x^2)^2", f, grad, hessian,
                        ((-2.0, 2.0), (-1.0, 3.0)), ((a, a * a),), (((a, a * a), "minimum"),))


# Critical points of Himmelblau's function, refined with Newton's method in float64.
_HIMMELBLAU_CRIT = (
    ((3.0, 2.0), "minimum"),
    ((-2.805118086952745, 3.131312518250573), "minimum"),
    ((-3.779310253377747, -3.283185991286169), "minimum"),
    ((3.5844283403304917, -1.8481265269644036), "minimum"),
    ((-0.2708445906673476, -0.9230385564799813), "maximum"),
    ((0.08667750455539634, 2.884254701174776), "saddle"),
    ((-3.0730257507643897, -0.08135304428796751), "saddle"),
    ((3.385154183607021, 0.07385187983774928), "saddle"),
    ((-0.12796134673068005, -1.9537149802445766), "saddle"),
)


def himmelblau() -> TestFunction:
    r"""Himmelblau's function :math:`(x^2 + y - 11)^2 + (x + y^2 - 7)^2`: four global minima (value 0), four saddles, one maximum."""

    def f(p):
        x, y = _xy(p)
        return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2

    def grad(p):
        x, y = _xy(p)
        u, v = x * x + y - 11, x + y * y - 7
        return torch.stack([4 * x * u + 2 * v, 2 * u + 4 * y * v], -1)

    def hessian(p):
        x, y = _xy(p)
        u, v = x * x + y - 11, x + y * y - 7
        return _hess(4 * u + 8 * x * x + 2, 4 * x + 4 * y, 4 * v + 8 * y * y + 2)

    minima = tuple(pt for pt, kind in _HIMMELBLAU_CRIT if kind == "minimum")
    return TestFunction("himmelblau", r"(x^2 + y - 11)^2 + (x + y^2 - 7)^2", f, grad, hessian,
                        ((-5.0, 5.0), (-5.0, 5.0)), minima, _HIMMELBLAU_CRIT)


# Critical points of Rastrigin near the origin (per coordinate: 2t + 20 pi sin(2 pi t) = 0).
_RASTRIGIN_T = (0.0, 0.5025460365546747, 0.9949586376523348)  # 0: minimum, ~0.5: maximum, ~1: minimum of the 1-D profile


def rastrigin(A: float = 10.0) -> TestFunction:
    r"""Rastrigin's egg crate :math:`2A + \sum_i (x_i^2 - A\cos 2\pi x_i)`: a bowl covered in local minima; global minimum 0 at the origin."""
    A = _check_positive("A", A)
    two_pi = 2 * math.pi

    def f(p):
        p = _check_points(p)
        return 2 * A + (p * p - A * torch.cos(two_pi * p)).sum(-1)

    def grad(p):
        p = _check_points(p)
        return 2 * p + two_pi * A * torch.sin(two_pi * p)

    def hessian(p):
        x, y = _xy(p)
        d = lambda t: 2 + two_pi**2 * A * torch.cos(two_pi * t)  # noqa: E731
        return _hess(d(x), torch.zeros_like(x), d(y))

    crit: tuple = (((0.0, 0.0), "minimum"),)
    if A == 10.0:
        m, s = _RASTRIGIN_T[2], _RASTRIGIN_T[1]
        crit = crit + (((m, 0.0), "minimum"), ((0.0, m), "minimum"), ((s, 0.0), "saddle"), ((0.0, s), "saddle"),
                       ((s, s), "maximum"), ((m, s), "saddle"))
    return TestFunction("rastrigin", rf"{2 * A:g} + \sum_i (x_i^2 - {A:g}\cos 2\pi x_i)", f, grad, hessian,
                        ((-5.12, 5.12), (-5.12, 5.12)), ((0.0, 0.0),), crit)


_BEALE_C = (1.5, 2.25, 2.625)


def beale() -> TestFunction:
    r"""Beale's function :math:`\sum_{k=1}^3 (c_k - x + x y^k)^2`, :math:`c = (1.5, 2.25, 2.625)`: minimum 0 at (3, 0.5), saddles at (0, 1) and near (0.10, -2.64)."""

    def terms(p):
        x, y = _xy(p)
        return x, y, [(c - x + x * y ** (k + 1)) for k, c in enumerate(_BEALE_C)]

    def f(p):
        _, _, t = terms(p)
        return t[0] ** 2 + t[1] ** 2 + t[2] ** 2

    def grad(p):
        x, y, t = terms(p)
        gx = sum(2 * t[k] * (y ** (k + 1) - 1) for k in range(3))
        gy = sum(2 * t[k] * (k + 1) * x * y**k for k in range(3))
        return torch.stack([gx, gy], -1)

    def hessian(p):
        x, y, t = terms(p)
        # t_k = c_k - x + x y^k, k = 1..3: d t/dx = y^k - 1, d t/dy = k x y^(k-1), d2 t/dxdy = k y^(k-1), d2 t/dy2 = k(k-1) x y^(k-2)
        tx = [y - 1, y * y - 1, y**3 - 1]
        ty = [x, 2 * x * y, 3 * x * y * y]
        txy = [torch.ones_like(y), 2 * y, 3 * y * y]
        tyy = [torch.zeros_like(x), 2 * x, 6 * x * y]
        fxx = sum(2 * tx[k] ** 2 for k in range(3))
        fxy = sum(2 * (tx[k] * ty[k] + t[k] * txy[k]) for k in range(3))
        fyy = sum(2 * (ty[k] ** 2 + t[k] * tyy[k]) for k in range(3))
        return _hess(fxx, fxy, fyy)

    return TestFunction("beale", r"\sum_{k=1}^{3} (c_k - x + x y^k)^2", f, grad, hessian,
                        ((-4.5, 4.5), (-4.5, 4.5)), ((3.0, 0.5),),
                        (((3.0, 0.5), "minimum"), ((0.0, 1.0), "saddle"),
                         ((0.10053793732415839, -2.644513585023125), "saddle")))


_CAMEL_CRIT = (
    ((0.08984201310031807, -0.7126564030207396), "minimum"),
    ((-0.08984201310031807, 0.7126564030207396), "minimum"),
    ((-1.703606714969981, 0.7960835686726251), "minimum"),
    ((1.703606714969981, -0.7960835686726251), "minimum"),
    ((1.607104752920197, 0.5686514548841314), "minimum"),
    ((-1.607104752920197, -0.5686514548841314), "minimum"),
    ((0.0, 0.0), "saddle"),
    ((-1.1092053368047863, 0.7682680925095399), "saddle"),
    ((1.1092053368047863, -0.7682680925095399), "saddle"),
    ((-1.6380679841897785, -0.22867406904439408), "saddle"),
    ((1.6380679841897785, 0.22867406904439408), "saddle"),
    ((1.296070267167109, 0.6050843880386585), "saddle"),
    ((-1.296070267167109, -0.6050843880386585), "saddle"),
    ((-1.2302298765166526, -0.16233458445899498), "maximum"),
    ((1.2302298765166526, 0.16233458445899498), "maximum"),
)


def six_hump_camel() -> TestFunction:
    r"""Six-hump camel :math:`(4 - 2.1x^2 + x^4/3)x^2 + xy + (4y^2 - 4)y^2`: six minima, two of them global (about -1.0316), six saddles and two maxima."""

    def f(p):
        x, y = _xy(p)
        x2, y2 = x * x, y * y
        return (4 - 2.1 * x2 + x2 * x2 / 3) * x2 + x * y + (4 * y2 - 4) * y2

    def grad(p):
        x, y = _xy(p)
        return torch.stack([8 * x - 8.4 * x**3 + 2 * x**5 + y, x - 8 * y + 16 * y**3], -1)

    def hessian(p):
        x, y = _xy(p)
        return _hess(8 - 25.2 * x * x + 10 * x**4, torch.ones_like(x), -8 + 48 * y * y)

    crit = tuple(c for c in _CAMEL_CRIT)
    return TestFunction("six_hump_camel", r"(4 - 2.1x^2 + \tfrac{x^4}{3})x^2 + xy + (4y^2 - 4)y^2", f, grad, hessian,
                        ((-2.0, 2.0), (-1.1, 1.1)), tuple(pt for pt, _ in _CAMEL_CRIT[:2]), crit)


def monkey_saddle() -> TestFunction:
    r"""The monkey saddle :math:`x^3 - 3 x y^2`: one critical point, at the origin, where the Hessian is zero (degenerate); unbounded below."""

    def f(p):
        x, y = _xy(p)
        return x**3 - 3 * x * y * y

    def grad(p):
        x, y = _xy(p)
        return torch.stack([3 * x * x - 3 * y * y, -6 * x * y], -1)

    def hessian(p):
        x, y = _xy(p)
        return _hess(6 * x, -6 * y, -6 * x)

    return TestFunction("monkey_saddle", r"x^3 - 3xy^2", f, grad, hessian, ((-1.5, 1.5), (-1.5, 1.5)), (),
                        (((0.0, 0.0), "degenerate"),))


#: The registry of test functions, by name (defaults: kappa = 10, Rosenbrock a = 1, b = 100, Rastrigin A = 10).
TEST_FUNCTIONS: Mapping[str, TestFunction] = {
    fn.name: fn
    for fn in (quadratic(), rosenbrock(), himmelblau(), rastrigin(), beale(), six_hump_camel(), monkey_saddle())
}


def get(name: str) -> TestFunction:
    """The test function called ``name`` (one of :data:`TEST_FUNCTIONS`).

    Raises
    ------
    KeyError
        For an unknown name, listing the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, got {type(name).__name__}")
    if name not in TEST_FUNCTIONS:
        raise KeyError(f"name: no test function {name!r}; expected one of {sorted(TEST_FUNCTIONS)}")
    return TEST_FUNCTIONS[name]


# =============================================================================
# Critical points
# =============================================================================

def _eig_tol(eig: torch.Tensor, tol: float) -> torch.Tensor:
    scale = eig.abs().amax(-1, keepdim=True).clamp_min(1.0)  # (..., 1)
    return tol * scale


def classify(hessian: torch.Tensor, *, tol: float = 1e-8) -> str | list:
    """Classify a critical point by the eigenvalues of its Hessian.

    All eigenvalues > 0: ``"minimum"``; all < 0: ``"maximum"``; some of each:
    ``"saddle"``; otherwise (some eigenvalue zero and no sign change) the
    second-derivative test is silent: ``"degenerate"``. An eigenvalue counts
    as zero when ``|lambda| <= tol * max(1, max |lambda|)``.

    Parameters
    ----------
    hessian : Tensor [n, n] or [B, n, n]
        Symmetric Hessian(s) at critical point(s).
    tol : float
        Relative tolerance for "zero".

    Returns
    -------
    str or list of str
        One of :data:`KINDS`; a list of B kinds for a batch.

    Raises
    ------
    TypeError, ValueError
        If ``hessian`` is not a finite, symmetric, square floating tensor, or has more than 3 dimensions.

    Example
    -------
    >>> classify(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))
    'saddle'
    """
    hessian = _check_square(hessian)
    if hessian.ndim > 3:
        raise ValueError(f"hessian: expected shape [n, n] or [B, n, n], got {tuple(hessian.shape)}")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol: expected a number >= 0, got {tol!r}")
    eig = torch.linalg.eigvalsh(hessian)  # (..., n)
    t = _eig_tol(eig, tol)
    pos, neg = (eig > t).any(-1), (eig < -t).any(-1)
    allpos, allneg = (eig > t).all(-1), (eig < -t).all(-1)
    kinds = []
    for p, n_, ap, an in zip(pos.reshape(-1).tolist(), neg.reshape(-1).tolist(), allpos.reshape(-1).tolist(), allneg.reshape(-1).tolist()):
        kinds.append("minimum" if ap else "maximum" if an else "saddle" if (p and n_) else "degenerate")
    return kinds[0] if hessian.ndim == 2 else kinds


def hessian_index(hessian: torch.Tensor, *, tol: float = 0.0) -> torch.Tensor:
    """The fraction of negative Hessian eigenvalues (the *index* divided by n).

    Parameters
    ----------
    hessian : Tensor [..., n, n]
        Symmetric matrices.
    tol : float
        Eigenvalues below ``-tol * max(1, max |lambda|)`` count as negative.

    Returns
    -------
    Tensor [...]
        In [0, 1]: 0 at a minimum, 1 at a maximum.
    """
    hessian = _check_square(hessian)
    eig = torch.linalg.eigvalsh(hessian)  # (..., n)
    return (eig < -_eig_tol(eig, tol)).to(hessian.dtype).mean(-1)


def find_critical_points(
    fn: TestFunction,
    starts: torch.Tensor,
    *,
    steps: int = 60,
    tol: float = 1e-9,
    merge: float = 1e-5,
) -> tuple[torch.Tensor, list[str]]:
    """Critical points of ``fn`` found by Newton's method on ``grad f = 0`` from many starts at once.

    Newton's method solves ``H(p) delta = -grad f(p)``; it converges to *any*
    nearby critical point, saddles and maxima included, which is why it finds
    them all here and why it is a poor optimizer for networks (Chapter 2).

    Parameters
    ----------
    fn : TestFunction
    starts : Tensor [M, 2]
        Starting points (float64 recommended).
    steps : int
        Newton iterations (all starts advance together).
    tol : float
        A start counts as converged when ``|grad f| <= tol * max(1, |f|)``.
    merge : float
        Converged points closer than this are the same critical point.

    Returns
    -------
    points : Tensor [K, 2]
        The distinct critical points found inside ``fn.domain``, sorted by value of ``fn``.
    kinds : list of str
        Their kinds (:func:`classify`).
    """
    if not isinstance(fn, TestFunction):
        raise TypeError(f"fn: expected a TestFunction, got {type(fn).__name__}")
    starts = _check_points(starts, "starts")
    if starts.ndim != 2:
        raise ValueError(f"starts: expected shape [M, 2], got {tuple(starts.shape)}")
    _check_count("steps", steps)
    p = starts.clone()  # (M, 2)
    for _ in range(steps):
        g = fn.grad(p)  # (M, 2)
        h = fn.hessian(p)  # (M, 2, 2)
        a, b, d = h[:, 0, 0], h[:, 0, 1], h[:, 1, 1]
        det = a * d - b * b  # (M,)
        ok = det.abs() > 1e-12 * (a.abs() + d.abs() + b.abs()).clamp_min(1e-300) ** 2
        safe = torch.where(ok, det, torch.ones_like(det))
        # delta = -H^{-1} g, written out for 2 x 2; a singular H takes no step
        delta = -torch.stack([d * g[:, 0] - b * g[:, 1], a * g[:, 1] - b * g[:, 0]], -1) / safe[:, None]  # (M, 2)
        delta = torch.where(ok[:, None], delta, torch.zeros_like(delta)).clamp(-1.0, 1.0)
        p = torch.nan_to_num(p + delta, nan=0.0).clamp(-1e3, 1e3)
    (x0, x1), (y0, y1) = fn.domain
    inside = (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
    gnorm = fn.grad(p).norm(dim=-1)
    p = p[inside & (gnorm <= tol * fn.f(p).abs().clamp_min(1.0))]
    if p.shape[0] == 0:
        return p.new_zeros(0, 2), []
    # merge duplicates: snap to a grid of spacing `merge`, keep one point per cell
    keys = torch.round(p / merge).to(torch.int64)  # (M', 2)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), p.shape[0], dtype=torch.int64)
    first = first.scatter_reduce(0, inverse, torch.arange(p.shape[0]), reduce="amin")
    pts = p[first]  # (K, 2)
    pts = pts[torch.argsort(fn.f(pts))]
    kinds = classify(fn.hessian(pts), tol=1e-9)
    return pts, list(kinds)


# =============================================================================
# Grids
# =============================================================================

def _check_domain(domain: object) -> Domain:
    try:
        (x0, x1), (y0, y1) = domain  # type: ignore[misc]
        x0, x1, y0, y1 = float(x0), float(x1), float(y0), float(y1)
    except (TypeError, ValueError):
        raise ValueError(f"domain: expected ((xmin, xmax), (ymin, ymax)), got {domain!r}") from None
    if not all(math.isfinite(v) for v in (x0, x1, y0, y1)) or not (x0 < x1 and y0 < y1):
        raise ValueError(f"domain: expected finite bounds with xmin < xmax and ymin < ymax, got {domain!r}")
    return (x0, x1), (y0, y1)


def grid_points(
    domain: Domain, n: int = 101, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A regular ``n x n`` grid over ``domain``.

    Returns
    -------
    xs, ys : Tensor [n]
        The coordinates along each axis.
    points : Tensor [n, n, 2]
        ``points[i, j] = (xs[j], ys[i])``: rows follow y, columns follow x,
        the layout ``contour(xs, ys, Z)`` expects.
    """
    (x0, x1), (y0, y1) = _check_domain(domain)
    _check_count("n", n, 2)
    xs = torch.linspace(x0, x1, n, dtype=dtype, device=device)  # (n,)
    ys = torch.linspace(y0, y1, n, dtype=dtype, device=device)  # (n,)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (n, n) each
    return xs, ys, torch.stack([xx, yy], -1)  # (n, n, 2)


def evaluate_grid(
    fn: TestFunction | Callable[[torch.Tensor], torch.Tensor],
    domain: Domain | None = None,
    n: int = 101,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evaluate a function of two variables on an ``n x n`` grid, in one batched call.

    Parameters
    ----------
    fn : TestFunction or callable
        Maps points [..., 2] to values [...].
    domain : ((xmin, xmax), (ymin, ymax)), optional
        Defaults to ``fn.domain`` for a TestFunction.
    n : int
        Points per axis.

    Returns
    -------
    xs, ys : Tensor [n]
    Z : Tensor [n, n]
        ``Z[i, j] = fn((xs[j], ys[i]))``.
    """
    if domain is None:
        if not isinstance(fn, TestFunction):
            raise ValueError("domain: required when fn is not a TestFunction")
        domain = fn.domain
    xs, ys, pts = grid_points(domain, n, dtype=dtype, device=device)
    Z = fn(pts)  # (n, n)
    if Z.shape != pts.shape[:-1]:
        raise ValueError(f"fn: expected values of shape {tuple(pts.shape[:-1])} for points {tuple(pts.shape)}, got {tuple(Z.shape)}")
    return xs, ys, Z


def random_symmetric_matrices(
    n: int, samples: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Samples of the Gaussian orthogonal ensemble: a random-matrix model of a Hessian.

    ``(A + A^T) / sqrt(2 n)`` with ``A`` standard normal, so the eigenvalues
    fill Wigner's semicircle on about [-2, 2] as n grows.

    Returns
    -------
    Tensor [samples, n, n]
    """
    _check_count("n", n)
    _check_count("samples", samples)
    a = torch.randn(samples, n, n, generator=generator, dtype=dtype)  # (S, n, n)
    return (a + a.transpose(-1, -2)) / math.sqrt(2 * n)


# =============================================================================
# Networks
# =============================================================================

class MLP(nn.Module):
    """A multilayer perceptron, optionally with skip connections between equal-width hidden layers.

    ``h_1 = act(W_1 x + b_1)``; for hidden layers ``l >= 2``,
    ``h_l = act(W_l h_{l-1} + b_l)`` plus ``h_{l-1}`` when ``skip`` (a residual
    block); the output is ``W_L h_{L-1} + b_L`` (logits).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output, e.g. ``(64, 64, 10)``; at least 2.
    skip : bool
        Residual connections around hidden layers 2, 3, ... (they need equal widths).
    activation : {"relu", "tanh"}
    seed : int
        Seeds the initialization (PyTorch's default ``nn.Linear`` scheme, from a private generator).
    dtype : torch.dtype

    Example
    -------
    >>> MLP((64, 32, 10), seed=0)(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    """

    def __init__(self, sizes: Sequence[int], *, skip: bool = False, activation: str = "relu", seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"sizes: expected at least 2 positive ints, got {sizes!r}")
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation: expected 'relu' or 'tanh', got {activation!r}")
        if skip and len(set(sizes[1:-1])) > 1:
            raise ValueError(f"skip: residual connections need equal hidden widths, got {sizes[1:-1]}")
        self.sizes, self.skip, self.activation = sizes, bool(skip), activation
        self.layers = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:]))
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.layers:
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=g, dtype=dtype) * 2 * bound - bound)
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=g, dtype=dtype) * 2 * bound - bound)

    def __repr__(self) -> str:
        return f"MLP({'-'.join(map(str, self.sizes))}, skip={self.skip}, activation={self.activation!r})"

    def act(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z) if self.activation == "relu" else torch.tanh(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x  # (N, D)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            z = layer(h)  # (N, width_i)
            if i == last:
                return z  # (N, classes)
            z = self.act(z)
            h = h + z if (self.skip and i > 0) else z
        return h


def _check_data(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 2:
        raise ValueError(f"x: expected a floating tensor [N, D], got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != x.shape[:1]:
        raise ValueError(f"y: expected int64 class labels of shape [{x.shape[0]}], got "
                         f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x: expected finite values")
    return x, y


def _check_model_data(model: nn.Module, x: torch.Tensor, y: torch.Tensor, p: Mapping[str, torch.Tensor]) -> None:
    """The data must fit the model: its dtype, its feature count, labels below its number of outputs."""
    dtypes = {v.dtype for v in p.values()}
    if dtypes and x.dtype not in dtypes:
        raise TypeError(f"x: expected dtype {sorted(map(str, dtypes))[0]} (that of the model's parameters), got {x.dtype}")
    first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    if first is not None and x.shape[1] != first.in_features:
        raise ValueError(f"x: expected {first.in_features} features per row (the model's first layer), got {x.shape[1]}")
    with torch.no_grad():
        out = torch.func.functional_call(model, dict(p), (x[:1],))
    if out.ndim != 2:
        raise ValueError(f"model: expected logits of shape [N, C], got {tuple(out.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= out.shape[1]):
        raise ValueError(f"y: expected class labels in [0, {out.shape[1] - 1}] (the model has {out.shape[1]} outputs), "
                         f"got values in [{int(y.min())}, {int(y.max())}]")


def _params(model: nn.Module, params: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    own = {k: v.detach() for k, v in model.named_parameters()}
    if params is None:
        return own
    params = dict(params)
    if set(params) != set(own):
        raise ValueError(f"params: expected the keys {sorted(own)}, got {sorted(params)}")
    for k, v in params.items():
        if not isinstance(v, torch.Tensor) or v.shape != own[k].shape:
            raise ValueError(f"params[{k!r}]: expected a tensor of shape {tuple(own[k].shape)}, got {tuple(getattr(v, 'shape', ()))}")
    return {k: v.detach() for k, v in params.items()}


def loss_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None,
            *, weight_decay: float = 0.0) -> torch.Tensor:
    r"""Mean cross-entropy of ``model`` (with ``params`` in place of its own, if given) on ``(x, y)``; a 0-d tensor.

    With ``weight_decay`` :math:`\lambda > 0` it is the regularized training
    loss :math:`\mathrm{CE}(\theta) + \tfrac{\lambda}{2} \lVert \theta \rVert^2`
    (every parameter, biases included, as ``torch.optim.SGD(weight_decay=)`` decays them).
    """
    x, y = _check_data(x, y)
    p = _params(model, params)
    _check_model_data(model, x, y, p)
    wd = _check_weight_decay(weight_decay)
    with torch.no_grad():
        ce = F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)
        return ce + _penalty(p.values(), wd) if wd else ce


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 500,
    lr: float = 0.1,
    batch_size: int = 64,
    momentum: float = 0.9,
    seed: int = 0,
    weight_decay: float = 0.0,
) -> torch.Tensor:
    """Train ``model`` in place with minibatch SGD (PyTorch's) on the cross-entropy.

    Parameters
    ----------
    model : nn.Module
    x : Tensor [N, D]
    y : Tensor [N] int64
    steps : int
        Optimizer steps.
    lr, momentum : float
        SGD settings.
    batch_size : int
        Examples per step, sampled without replacement within each pass over the data
        (``batch_size >= N`` is full-batch gradient descent).
    seed : int
        Seeds the order of the examples.
    weight_decay : float
        The L2 penalty ``weight_decay / 2 * ||theta||^2`` on every parameter
        (``torch.optim.SGD``'s ``weight_decay``); 0 for none.

    Returns
    -------
    Tensor [steps]
        The minibatch cross-entropy at every step (without the penalty).
    """
    x, y = _check_data(x, y)
    _check_count("steps", steps)
    _check_count("batch_size", batch_size)
    _check_positive("lr", lr)
    if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
        raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    wd = _check_weight_decay(weight_decay)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    losses = torch.empty(steps)
    order, pos = torch.randperm(n, generator=g), 0
    for step in range(steps):
        if batch_size >= n:
            idx = slice(None)
        else:
            if pos + batch_size > n:
                order, pos = torch.randperm(n, generator=g), 0
            idx = order[pos:pos + batch_size].to(x.device)
            pos += batch_size
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step] = loss.detach()
    return losses


# ---- directions ---------------------------------------------------------------

def filter_normalize(direction: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor], *,
                     eps: float = 1e-10) -> dict[str, torch.Tensor]:
    r"""Filter normalization (Li et al., 2018): give each filter of the direction the norm of the matching filter of the weights.

    For a weight matrix ``W`` (any parameter with 2 or more dimensions), a
    *filter* is one output unit's incoming weights, the row ``W[i]``; the
    direction's row is rescaled to

    .. math:: d_i \leftarrow \frac{d_i}{\lVert d_i \rVert}\,\lVert W_i \rVert .

    One-dimensional parameters (biases) get a zero direction, as in Li et
    al.'s default. A scan along the result moves every unit by an amount
    proportional to its own scale, so plots of networks with different weight
    scales (or rescaled by ReLU's symmetry) can be compared.

    Parameters
    ----------
    direction, params : mapping of str to Tensor
        The same keys and shapes.
    eps : float
        Guards rows of the direction with zero norm.

    Returns
    -------
    dict of str to Tensor
        A new direction; the inputs are not modified.
    """
    if set(direction) != set(params):
        raise ValueError(f"direction: expected the keys of params {sorted(params)}, got {sorted(direction)}")
    out = {}
    for k, w in params.items():
        d = direction[k]
        if d.shape != w.shape:
            raise ValueError(f"direction[{k!r}]: expected shape {tuple(w.shape)}, got {tuple(d.shape)}")
        if w.ndim <= 1:
            out[k] = torch.zeros_like(d)
            continue
        d_rows = d.reshape(d.shape[0], -1)  # (out, in...)
        w_rows = w.reshape(w.shape[0], -1)
        scale = w_rows.norm(dim=1, keepdim=True) / (d_rows.norm(dim=1, keepdim=True) + eps)  # (out, 1)
        out[k] = (d_rows * scale).reshape(d.shape)
    return out


def random_direction(
    model: nn.Module,
    *,
    normalization: str = "filter",
    seed: int = 0,
    params: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """A random Gaussian direction in parameter space, one tensor per parameter.

    Parameters
    ----------
    model : nn.Module
        Gives the parameter names and shapes (and the weights that filter normalization scales to).
    normalization : {"filter", "layer", "none"}
        ``"filter"``: :func:`filter_normalize`. ``"layer"``: each weight
        tensor scaled to that tensor's norm (biases zero). ``"none"``: the raw
        Gaussian, entries N(0, 1).
    seed : int
        The direction depends only on this seed and the shapes.
    params : mapping, optional
        The point to normalize against (default: the model's parameters).

    Returns
    -------
    dict of str to Tensor
    """
    if normalization not in ("filter", "layer", "none"):
        raise ValueError(f"normalization: expected 'filter', 'layer' or 'none', got {normalization!r}")
    p = _params(model, params)
    g = torch.Generator().manual_seed(seed)
    d = {k: torch.randn(v.shape, generator=g, dtype=v.dtype).to(v.device) for k, v in p.items()}
    if normalization == "filter":
        return filter_normalize(d, p)
    if normalization == "layer":
        return {k: (d[k] * v.norm() / d[k].norm() if v.ndim > 1 else torch.zeros_like(v)) for k, v in p.items()}
    return d


def difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``a - b`` parameter by parameter (e.g. the direction from initial to trained weights)."""
    if set(a) != set(b):
        raise ValueError(f"b: expected the keys {sorted(a)}, got {sorted(b)}")
    return {k: a[k].detach() - b[k].detach() for k in a}


# ---- mode connectivity ----------------------------------------------------------

def _check_endpoints(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], names=("a", "b")) -> None:
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise TypeError(f"{names[0]}, {names[1]}: expected mappings from parameter names to tensors")
    if set(a) != set(b):
        raise ValueError(f"{names[1]}: expected the keys {sorted(a)}, got {sorted(b)}")
    for k in a:
        if not isinstance(b[k], torch.Tensor) or not isinstance(a[k], torch.Tensor) or a[k].shape != b[k].shape:
            raise ValueError(f"{names[1]}[{k!r}]: expected a tensor of shape {tuple(getattr(a[k], 'shape', ()))}, "
                             f"got {tuple(getattr(b[k], 'shape', ()))}")


def bezier_point(a: Mapping[str, torch.Tensor], c: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                 t: float) -> dict[str, torch.Tensor]:
    r"""The point at ``t`` on the quadratic Bezier curve from ``a`` through control point ``c`` to ``b``.

    $$\phi(t) = (1 - t)^2\, a + 2t(1 - t)\, c + t^2\, b, \qquad t \in [0, 1],$$

    parameter by parameter: $\phi(0) = a$, $\phi(1) = b$, and the curve bends
    towards ``c`` (with ``c = (a + b) / 2`` it is the straight segment). Gradients
    flow into ``c`` (and ``a``, ``b``) when they require grad. See Chapter 2
    (mode connectivity, Garipov et al., 2018).
    """
    _check_endpoints(a, b)
    _check_endpoints(a, c, ("a", "c"))
    t = _checks.number("t", t, low=0.0, high=1.0)
    return {k: (1 - t) ** 2 * a[k] + 2 * t * (1 - t) * c[k] + t ** 2 * b[k] for k in a}


def fit_bezier_midpoint(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    *,
    steps: int = 300,
    lr: float = 0.01,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    r"""Train the control point of a quadratic Bezier curve between two minima so the whole curve has low loss.

    Minimizes $\mathbb E_{t \sim U(0, 1)}\, \mathrm{CE}(\phi(t))$ over the control
    point $c$ with Adam, one random $t$ and one random minibatch per step (the
    endpoints stay fixed), starting from the midpoint $(a + b) / 2$, the
    straight line (Garipov et al., 2018). See Chapter 2.

    Parameters
    ----------
    model : nn.Module
        Supplies the architecture (its own parameters are not used or changed).
    x : Tensor [N, D]
    y : Tensor [N] int64
    a, b : mapping of parameter name to Tensor
        The two endpoints (e.g. two independently trained networks).
    steps, batch_size : int
    lr : float
        Adam's learning rate.
    seed : int
        Seeds the draws of ``t`` and of the minibatches.

    Returns
    -------
    dict of name to Tensor
        The trained control point $c$ (detached).
    """
    x, y = _check_data(x, y)
    a, b = _params(model, a), _params(model, b)
    _check_model_data(model, x, y, a)
    steps, batch_size = _checks.count("steps", steps), _checks.count("batch_size", batch_size)
    lr = _check_positive("lr", lr)
    g = torch.Generator().manual_seed(_checks.count("seed", seed, 0))
    c = {k: ((a[k] + b[k]) / 2).clone().requires_grad_() for k in a}
    opt = torch.optim.Adam(list(c.values()), lr=lr)
    n = x.shape[0]
    for _ in range(steps):
        t = float(torch.rand((), generator=g, dtype=torch.float64))
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g).to(x.device)
        loss = F.cross_entropy(torch.func.functional_call(model, bezier_point(a, c, b, t), (x[idx],)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in c.items()}


def permute_hidden(model: MLP, layer: int, perm: torch.Tensor,
                   params: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Parameters with the units of hidden layer ``layer`` permuted: the same function, another point.

    Permuting the rows of ``W_layer`` and ``b_layer`` and the columns of
    ``W_{layer+1}`` reorders the hidden units without changing any output.

    Parameters
    ----------
    model : MLP
        Without skip connections (a residual stream ties the units of all layers together).
    layer : int
        Index of a hidden layer, 0 <= layer < len(model.layers) - 1.
    perm : Tensor [width] int64
        A permutation of the layer's units.

    Returns
    -------
    dict of str to Tensor
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected an MLP, got {type(model).__name__}")
    if model.skip:
        raise ValueError("model: permuting one layer of a network with skip connections changes its function")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(model.layers) - 1:
        raise ValueError(f"layer: expected a hidden layer index in [0, {len(model.layers) - 2}], got {layer!r}")
    width = model.sizes[layer + 1]
    if not isinstance(perm, torch.Tensor) or perm.dtype != torch.int64 or perm.shape != (width,) \
            or not torch.equal(torch.sort(perm).values, torch.arange(width, device=perm.device)):
        raise ValueError(f"perm: expected a permutation of range({width}) as an int64 tensor")
    p = dict(_params(model, params))
    p[f"layers.{layer}.weight"] = p[f"layers.{layer}.weight"][perm]
    p[f"layers.{layer}.bias"] = p[f"layers.{layer}.bias"][perm]
    p[f"layers.{layer + 1}.weight"] = p[f"layers.{layer + 1}.weight"][:, perm]
    return p


# ---- scans ----------------------------------------------------------------------

#: Floats per intermediate [chunk, N, width] tensor in the batched scans (bounds memory).
_CHUNK_ELEMENTS = 1 << 20


def _combine(params: Mapping[str, torch.Tensor], dirs: Sequence[Mapping[str, torch.Tensor]], c: torch.Tensor) -> dict:
    """theta + sum_k c[g, k] d_k for every g: tensors with a leading [G] dimension."""
    out = {}
    for k, v in params.items():
        d = torch.stack([dd[k] for dd in dirs])  # (K, *shape)
        out[k] = v + torch.tensordot(c, d, dims=1)  # (G, *shape)
    return out


def _scan_loop(model, params, dirs, coeffs, x, y):
    out = torch.empty(coeffs.shape[0], dtype=x.dtype, device=x.device)
    for g in range(coeffs.shape[0]):
        p = {k: v + sum(float(coeffs[g, j]) * d[k] for j, d in enumerate(dirs)) for k, v in params.items()}
        out[g] = F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)
    return out


def _scan_vmap(model, params, dirs, coeffs, x, y, chunk):
    def loss(p):
        return F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

    batched = torch.func.vmap(loss)
    pieces = [batched(_combine(params, dirs, coeffs[s:s + chunk])) for s in range(0, coeffs.shape[0], chunk)]
    return torch.cat(pieces)


#: How the affine scan forms the first layer: None picks by device (a product on a GPU,
#: multiply-adds on a CPU); True or False forces one (for benchmarks and tests).
_FIRST_LAYER_AS_PRODUCT: bool | None = None


def _scan_affine(model: MLP, params, dirs, coeffs, x, y, chunk):
    """The fast path for :class:`MLP`: the first layer's pre-activation is affine in the coefficients.

    With ``W_1(c) = W_1 + sum_k c_k D_k`` the first pre-activation is
    ``x W_1^T + b_1 + sum_k c_k (x D_k^T + e_k)``: the [N, D] x [D, H] products are
    computed once for the whole scan (K + 1 of them) instead of once per grid
    point, leaving one multiply-add per element per point. Later layers use a
    batched matmul with per-point weights.
    """
    n_layers = len(model.layers)
    W = [params[f"layers.{i}.weight"] for i in range(n_layers)]
    B = [params[f"layers.{i}.bias"] for i in range(n_layers)]
    DW = [torch.stack([d[f"layers.{i}.weight"] for d in dirs]) for i in range(n_layers)]  # (K, out, in)
    DB = [torch.stack([d[f"layers.{i}.bias"] for d in dirs]) for i in range(n_layers)]  # (K, out)
    K, N = coeffs.shape[1], x.shape[0]
    H = W[0].shape[0]
    P0 = torch.addmm(B[0], x, W[0].T)  # (N, H)
    Pk = torch.matmul(x, DW[0].transpose(1, 2)) + DB[0][:, None, :]  # (K, N, H)
    P = torch.cat([P0[None], Pk]).reshape(K + 1, N * H)  # (K + 1, N H): [P0; P_1; ...; P_K]
    in_place = {"relu": torch.relu_, "tanh": torch.tanh_}
    out = torch.empty(coeffs.shape[0], dtype=x.dtype, device=x.device)
    as_product = _FIRST_LAYER_AS_PRODUCT if _FIRST_LAYER_AS_PRODUCT is not None else x.is_cuda
    # The activations of every layer are written into buffers allocated once: on a CPU a fresh
    # multi-megabyte tensor per chunk and per layer cost as much as the arithmetic (out-of-place
    # broadcasting ops measured 3x slower than the same op into a buffer). Hidden layers are
    # (chunk, N, width); the logits are classes first, (chunk, classes, N), so that the loss
    # reduces over a short leading dimension of contiguous rows instead of over a last dimension
    # of 10 (on this book's CPU the last layer and the loss went from 98 to 45 us per point).
    widths = [W[i].shape[0] for i in range(n_layers)]
    first = min(chunk, coeffs.shape[0])
    bufs = [torch.empty(first, N, w, dtype=x.dtype, device=x.device) for w in widths[:-1]]
    bufs.append(torch.empty((first, N, widths[-1]) if n_layers == 1 else (first, widths[-1], N),
                            dtype=x.dtype, device=x.device))
    for s in range(0, coeffs.shape[0], chunk):
        c = coeffs[s:s + chunk]  # (g, K)
        g = c.shape[0]
        # z = P0 + sum_k c_k P_k. On a GPU one (g, K + 1) x (K + 1, N H) product writes the
        # (g, N, H) tensor once; on a CPU K fused multiply-adds into the buffer are faster
        z = bufs[0][:g]
        if as_product:
            torch.mm(torch.cat([torch.ones_like(c[:, :1]), c], 1), P, out=z.view(g, N * H))
        else:
            torch.addcmul(P0, Pk[0], c[:, 0, None, None], out=z)
            for k in range(1, K):
                z.addcmul_(c[:, k, None, None], Pk[k])
        if n_layers == 1:  # the first layer gives the logits (no activation)
            logits = z.transpose(1, 2)  # (g, classes, N)
        else:
            h = in_place[model.activation](z)
        for i in range(1, n_layers):
            Wg = W[i] + torch.tensordot(c, DW[i], dims=1)  # (g, out, in): the weights at each point
            bg = B[i] + c @ DB[i]  # (g, out)
            if i == n_layers - 1:
                logits = torch.baddbmm(bg[:, :, None], Wg, h.transpose(1, 2), out=bufs[i][:g])  # (g, classes, N)
                break
            z = torch.baddbmm(bg[:, None, :], h, Wg.transpose(1, 2), out=bufs[i][:g])  # (g, N, out)
            h = h + model.act(z) if model.skip else in_place[model.activation](z)
        # the loss of the target class, log sum exp(logits) - logits[y], without a log-softmax
        # tensor; in place in the logits' buffer, after the target's logit is read
        picked = logits.gather(1, y.view(1, 1, N).expand(g, 1, N))[:, 0]  # (g, N)
        top = logits.amax(dim=1, keepdim=True)  # (g, 1, N)
        lse = logits.sub_(top).exp_().sum(dim=1).log_().add_(top[:, 0])  # (g, N)
        out[s:s + g] = (lse - picked).mean(dim=1)
    return out


def scan_losses(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    directions: Sequence[Mapping[str, torch.Tensor]],
    coeffs: torch.Tensor,
    *,
    params: Mapping[str, torch.Tensor] | None = None,
    method: str = "auto",
    chunk_size: int | None = None,
    weight_decay: float = 0.0,
) -> torch.Tensor:
    r"""Mean cross-entropy at many points :math:`\theta + \sum_k c_{gk} d_k` of a line or plane in parameter space.

    Parameters
    ----------
    model : nn.Module
        The architecture (its own parameters are the centre unless ``params`` is given).
    x : Tensor [N, D]
    y : Tensor [N] int64
    directions : sequence of K mappings of str to Tensor
        Directions with the model's parameter names and shapes.
    coeffs : Tensor [G, K]
        One row of coefficients per point.
    params : mapping, optional
        The centre :math:`\theta`.
    method : {"auto", "affine", "vmap", "loop", "kernel"}
        ``"loop"``: one forward pass per point (the reference).
        ``"vmap"``: ``torch.func.functional_call`` under ``torch.func.vmap``, in chunks.
        ``"affine"``: the fast path for :class:`MLP` (first layer computed once, see Notes).
        ``"kernel"``: the affine path's first layer, then every later layer and the loss in one
        CUDA kernel (:func:`losslab.kernels.scan_mlp`; an :class:`MLP` on a CUDA device with CuPy).
        ``"auto"``: ``"affine"`` for an :class:`MLP`, else ``"vmap"``.
    chunk_size : int, optional
        Points per batched call; default bounds each intermediate tensor to about 2**20 floats on
        a CPU, and to the share of free memory :func:`losslab.backend.chunk_elements` gives on a GPU.
    weight_decay : float
        Adds :math:`\tfrac{\lambda}{2}\lVert \theta + \sum_k c_{gk} d_k \rVert^2` at each
        point (the regularized loss, as :func:`loss_at`), computed in closed form from the
        coefficients: the same for every method.

    Returns
    -------
    Tensor [G]

    Notes
    -----
    All three methods compute the same numbers (tested to 1e-5 in float32
    and 1e-10 in float64); they differ in speed. Straightforward ``vmap``
    materializes G copies of the weights and repeats the [N, D] x [D, H]
    product of the first layer for every point; the affine path computes
    that product K + 1 times in all.
    """
    x, y = _check_data(x, y)
    p = _params(model, params)
    if not isinstance(directions, (list, tuple)) or not directions:
        raise ValueError("directions: expected a non-empty list of direction mappings")
    for j, d in enumerate(directions):
        if set(d) != set(p):
            raise ValueError(f"directions[{j}]: expected the keys {sorted(p)}, got {sorted(d)}")
        for k in p:
            if d[k].shape != p[k].shape:
                raise ValueError(f"directions[{j}][{k!r}]: expected shape {tuple(p[k].shape)}, got {tuple(d[k].shape)}")
    if not isinstance(coeffs, torch.Tensor) or coeffs.ndim != 2 or coeffs.shape[1] != len(directions):
        raise ValueError(f"coeffs: expected a tensor [G, {len(directions)}], got {tuple(getattr(coeffs, 'shape', ()))}")
    if not bool(torch.isfinite(coeffs).all()):
        raise ValueError("coeffs: expected finite values")
    if method not in ("auto", "affine", "vmap", "loop", "kernel"):
        raise ValueError(f"method: expected 'auto', 'affine', 'vmap', 'loop' or 'kernel', got {method!r}")
    if method == "auto":
        method = "affine" if isinstance(model, MLP) else "vmap"
    if method in ("affine", "kernel") and not isinstance(model, MLP):
        raise ValueError(f"method: {method!r} needs an MLP, got {type(model).__name__}")
    dtype, dev = x.dtype, x.device
    p = {k: v.to(dtype=dtype, device=dev) for k, v in p.items()}
    dirs = [{k: v.detach().to(dtype=dtype, device=dev) for k, v in d.items()} for d in directions]
    coeffs = coeffs.to(dtype=dtype, device=dev)
    width = max(v.shape[0] for v in p.values())
    if chunk_size is None:
        # cache-sized chunks on a CPU, memory-sized ones on a GPU (backend.chunk_elements)
        elements = _CHUNK_ELEMENTS if dev.type != "cuda" else chunk_elements(dev, dtype=dtype)
        chunk_size = max(1, elements // (x.shape[0] * max(width, x.shape[1])))
    _check_count("chunk_size", chunk_size)
    wd = _check_weight_decay(weight_decay)
    with torch.no_grad():
        if method == "loop":
            out = _scan_loop(model, p, dirs, coeffs, x, y)
        elif method == "vmap":
            out = _scan_vmap(model, p, dirs, coeffs, x, y, chunk_size)
        elif method == "kernel":
            from . import kernels  # noqa: PLC0415

            out = kernels.scan_mlp(model, p, dirs, coeffs, x, y)
        else:
            out = _scan_affine(model, p, dirs, coeffs, x, y, chunk_size)
        return out + _penalty_along(p, dirs, coeffs, wd) if wd else out


def _check_coords(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.numel() < 1 or not t.is_floating_point():
        raise ValueError(f"{name}: expected a 1-D floating tensor of coefficients, got {getattr(t, 'shape', type(t).__name__)}")
    return t


def scan_1d(model: nn.Module, x: torch.Tensor, y: torch.Tensor, direction: Mapping[str, torch.Tensor],
            alphas: torch.Tensor, **kwargs) -> torch.Tensor:
    r"""Loss along a line, :math:`L(\theta + \alpha d)` for each ``alpha``: Tensor [len(alphas)].

    ``kwargs`` go to :func:`scan_losses` (``params``, ``method``, ``chunk_size``, ``weight_decay``).
    With ``params`` = initial weights and ``direction`` = trained minus initial,
    ``alpha`` = 0 and 1 are the two ends of Goodfellow et al.'s interpolation.
    """
    alphas = _check_coords("alphas", alphas)
    return scan_losses(model, x, y, [direction], alphas[:, None], **kwargs)


def scan_2d(model: nn.Module, x: torch.Tensor, y: torch.Tensor, d1: Mapping[str, torch.Tensor],
            d2: Mapping[str, torch.Tensor], alphas: torch.Tensor, betas: torch.Tensor, **kwargs) -> torch.Tensor:
    r"""Loss over a plane, :math:`L(\theta + \alpha d_1 + \beta d_2)`.

    Returns
    -------
    Tensor [len(betas), len(alphas)]
        Rows follow ``betas``, columns ``alphas`` (the layout ``contour(alphas, betas, Z)`` expects).
    """
    alphas, betas = _check_coords("alphas", alphas), _check_coords("betas", betas)
    bb, aa = torch.meshgrid(betas, alphas, indexing="ij")  # (B, A) each
    coeffs = torch.stack([aa.reshape(-1), bb.reshape(-1)], 1)  # (B*A, 2)
    return scan_losses(model, x, y, [d1, d2], coeffs, **kwargs).reshape(len(betas), len(alphas))


# ---- weight decay and true minima -----------------------------------------------
#
# Cross-entropy on data a network classifies perfectly has no minimum at finite
# weights: scaling up the logits lowers it forever. An L2 penalty (weight decay)
# makes true minima; polish_minimum finds one, gradient_norm checks it.

def _check_weight_decay(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"weight_decay: expected a finite number >= 0, got {value!r}")
    return float(value)


def _penalty(tensors, weight_decay: float) -> torch.Tensor:
    """(weight_decay / 2) * the squared norm of all ``tensors`` together."""
    return 0.5 * weight_decay * sum(t.pow(2).sum() for t in tensors)


def _penalty_along(params: Mapping[str, torch.Tensor], dirs: Sequence[Mapping[str, torch.Tensor]],
                   coeffs: torch.Tensor, weight_decay: float) -> torch.Tensor:
    r"""``weight_decay / 2 * ||theta + sum_k c_gk d_k||^2`` for every row of ``coeffs`` [G, K], in closed form:
    :math:`\lVert\theta\rVert^2 + 2 c^\top D\theta + c^\top D D^\top c`."""
    keys = list(params)
    theta = torch.cat([params[k].reshape(-1) for k in keys])  # (P,)
    D = torch.stack([torch.cat([d[k].reshape(-1) for k in keys]) for d in dirs])  # (K, P)
    Dt, DD = D @ theta, D @ D.T  # (K,), (K, K)
    sq = theta @ theta + 2 * coeffs @ Dt + ((coeffs @ DD) * coeffs).sum(1)  # (G,)
    return 0.5 * weight_decay * sq


def gradient_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, weight_decay: float = 0.0,
                  params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The length of the full-batch gradient of :func:`loss_at` (with the same ``weight_decay``); a 0-d tensor.

    Zero exactly at a critical point; "small" is how a minimum is recognized in practice.
    """
    x, y = _check_data(x, y)
    p = _params(model, params)
    wd = _check_weight_decay(weight_decay)
    loss, theta = _flat_loss(model, x, y, p)
    return torch.func.grad(lambda t: loss(t) + 0.5 * wd * (t @ t))(theta).norm()


def polish_minimum(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    weight_decay: float,
    max_iter: int = 500,
    gtol: float = 1e-6,
    rounds: int = 10,
) -> torch.Tensor:
    r"""Move ``model`` (in place) to a nearby minimum of the regularized loss with full-batch L-BFGS.

    Minimizes :math:`\mathrm{CE}(\theta) + \tfrac{\lambda}{2}\lVert\theta\rVert^2` with
    ``torch.optim.LBFGS`` (strong Wolfe line search, so the loss never rises),
    in up to ``rounds`` rounds of ``max_iter / rounds`` iterations, stopping as
    soon as the gradient norm is at most ``gtol``. Start it where training
    ended: it finds the bottom of the basin training reached.

    Parameters
    ----------
    weight_decay : float
        :math:`\lambda > 0`: without it cross-entropy on separable data has no minimum to find.
    max_iter : int
        L-BFGS iterations in all.
    gtol : float
        Target for the gradient norm (:func:`gradient_norm`).
    rounds : int
        How often the gradient norm is checked.

    Returns
    -------
    Tensor [r + 1]
        The gradient norm before and after each of the ``r`` rounds run; the last is the final one.
    """
    x, y = _check_data(x, y)
    wd = _check_weight_decay(weight_decay)
    if wd == 0:
        raise ValueError("weight_decay: expected a number > 0 (without it a separable problem has no minimum)")
    _check_count("max_iter", max_iter)
    _check_count("rounds", rounds)
    _check_positive("gtol", gtol)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max(1, max_iter // rounds), history_size=20,
                            tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y) + _penalty(params, wd)
        loss.backward()
        return loss

    norms = [float(gradient_norm(model, x, y, weight_decay=wd))]
    for _ in range(rounds):
        if norms[-1] <= gtol:
            break
        opt.step(closure)
        norms.append(float(gradient_norm(model, x, y, weight_decay=wd)))
    return torch.tensor(norms, dtype=torch.float64)


@dataclass(frozen=True)
class SharpnessRun:
    """A record of :func:`gradient_descent_sharpness`.

    Attributes
    ----------
    lr : float
    loss : Tensor [steps + 1]
        The full-batch loss before every step and after the last.
    at : Tensor [S] int64
        The steps at which the sharpness was measured (0 = the start).
    sharpness : Tensor [S]
        The top Hessian eigenvalue of the loss at those steps.
    """

    lr: float
    loss: torch.Tensor
    at: torch.Tensor
    sharpness: torch.Tensor

    def __repr__(self) -> str:
        return (f"SharpnessRun(lr={self.lr:g}, steps={self.loss.numel() - 1}, "
                f"sharpness {float(self.sharpness[0]):.3g} -> {float(self.sharpness[-1]):.3g})")


def gradient_descent_sharpness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    steps: int,
    every: int = 20,
    objective: str = "mse",
    power_iters: int = 10,
    seed: int = 0,
) -> SharpnessRun:
    r"""Full-batch gradient descent on ``model`` (in place), measuring the sharpness as it goes.

    Plain gradient descent :math:`\theta \leftarrow \theta - \eta \nabla L(\theta)`
    on the whole data set; every ``every`` steps the top Hessian eigenvalue
    :math:`\lambda_{\max}` is measured by power iteration on Hessian-vector
    products (double backward through the step's own gradient), warm-started
    from the previous eigenvector (it changes slowly, so a few products suffice). Cohen et al. (2021) found that the sharpness
    rises during such training until it reaches about :math:`2/\eta` and then
    hovers there ("the edge of stability"); see Chapter 2.

    Parameters
    ----------
    x : Tensor [N, D]
    y : Tensor
        ``objective="mse"``: targets of the model's output shape [N, out];
        ``"cross_entropy"``: int64 labels [N].
    lr : float
        :math:`\eta`.
    steps, every : int
    objective : {"mse", "cross_entropy"}
        ``"mse"`` is the mean over all entries of :math:`(f(x) - y)^2`.
    power_iters : int
        Hessian-vector products per measurement (30 at the first one).
    seed : int
        Seeds the start vector of the power iteration.

    Returns
    -------
    SharpnessRun

    Notes
    -----
    Power iteration converges to the eigenvalue of largest magnitude; near a
    trained network's weights that is the top (positive) one, which is what
    the tests check against the exact Hessian.
    """
    if objective not in ("mse", "cross_entropy"):
        raise ValueError(f"objective: expected 'mse' or 'cross_entropy', got {objective!r}")
    if objective == "cross_entropy":
        x, y = _check_data(x, y)
    else:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 2:
            raise ValueError(f"x: expected a floating tensor [N, D], got {getattr(x, 'shape', type(x).__name__)}")
        if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.shape[:1] != x.shape[:1]:
            raise ValueError(f"y: expected floating targets [{x.shape[0]}, out], got {tuple(getattr(y, 'shape', ()))}")
    lr = _check_positive("lr", lr)
    _check_count("steps", steps)
    _check_count("every", every)
    _check_count("power_iters", power_iters)
    p = _params(model, None)
    names, shapes = list(p), [v.shape for v in p.values()]
    sizes = [v.numel() for v in p.values()]
    theta = torch.cat([v.reshape(-1) for v in p.values()])  # (P,)

    def loss(t: torch.Tensor) -> torch.Tensor:
        q = {k: part.reshape(s) for k, part, s in zip(names, torch.split(t, sizes), shapes)}
        out = torch.func.functional_call(model, q, (x,))
        if objective == "mse":
            if out.shape != y.shape:
                raise ValueError(f"y: expected the model's output shape {tuple(out.shape)}, got {tuple(y.shape)}")
            return (out - y).pow(2).mean()
        return F.cross_entropy(out, y)

    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(theta.numel(), generator=gen, dtype=theta.dtype).to(theta.device)
    v = v / v.norm()
    theta = theta.clone().requires_grad_(True)
    losses, at, sharp = [], [], []
    for step in range(steps + 1):
        measure = step % every == 0 or step == steps
        value = loss(theta)
        (g,) = torch.autograd.grad(value, theta, create_graph=measure)  # keep the graph only to measure
        losses.append(float(value.detach()))
        if measure:
            lam = 0.0
            for _ in range(30 if not at else power_iters):
                (w,) = torch.autograd.grad(g, theta, v, retain_graph=True)  # H v, by double backward
                lam = float(w @ v)
                v = w / w.norm().clamp_min(1e-30)
            at.append(step)
            sharp.append(lam)
        if step < steps:
            with torch.no_grad():
                theta -= lr * g.detach()
    theta = theta.detach()
    own = dict(model.named_parameters())
    with torch.no_grad():
        for k, part, s in zip(names, torch.split(theta, sizes), shapes):
            own[k].copy_(part.reshape(s))
    f64 = torch.float64
    return SharpnessRun(lr, torch.tensor(losses, dtype=f64), torch.tensor(at), torch.tensor(sharp, dtype=f64))


# ---- curvature ----------------------------------------------------------------

def _flat_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor]):
    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]
    theta = torch.cat([params[k].reshape(-1) for k in names])  # (P,)

    def loss(t: torch.Tensor) -> torch.Tensor:
        parts = torch.split(t, sizes)
        p = {k: part.reshape(s) for k, part, s in zip(names, parts, shapes)}
        return F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)

    return loss, theta


def hvp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor,
        params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    r"""Hessian-vector product :math:`\nabla^2 L(\theta)\, v` of the mean cross-entropy, without forming the Hessian.

    Reverse-over-reverse: the vector-Jacobian product (``torch.func.vjp``) of
    the gradient (``torch.func.grad``), costing about two backward passes; the
    Hessian is symmetric, so ``v^T H = (H v)^T``. (Not forward-over-reverse:
    PyTorch's forward mode loads decompositions that call the deprecated
    ``torch.jit.script`` and warn on newer versions.)

    Parameters
    ----------
    v : Tensor [P] or [B, P]
        Vector(s) in the flattened parameter space (parameters in ``named_parameters`` order).

    Returns
    -------
    Tensor, same shape as ``v``
    """
    x, y = _check_data(x, y)
    p = _params(model, params)
    _check_model_data(model, x, y, p)
    loss, theta = _flat_loss(model, x, y, p)
    if isinstance(v, torch.Tensor) and not v.is_floating_point():
        raise TypeError(f"v: expected a floating-point tensor, got {v.dtype}")
    if not isinstance(v, torch.Tensor) or v.shape[-1:] != theta.shape or v.ndim > 2:
        raise ValueError(f"v: expected a tensor [{theta.numel()}] or [B, {theta.numel()}], got {tuple(getattr(v, 'shape', ()))}")
    product = _hessian_vector_products(loss, theta)
    u = v.to(theta.dtype)
    return product(u[None])[0] if v.ndim == 1 else product(u)


def _hessian_vector_products(loss, theta: torch.Tensor):
    """``block [B, P] -> block @ H`` (= ``H @ v`` for each row: H is symmetric), reverse-over-reverse.

    One backward pass builds the gradient's graph; each product is one more
    backward through it (``vjp``), batched with ``vmap``. No forward-mode AD:
    it would import PyTorch's jvp decompositions, which call the deprecated
    ``torch.jit.script``.
    """
    _, pullback = torch.func.vjp(torch.func.grad(loss), theta)

    def products(block: torch.Tensor) -> torch.Tensor:
        if block.shape[0] == 1:  # one vector: no vmap (its tracing costs more than the product)
            return pullback(block[0])[0][None]
        return torch.func.vmap(lambda u: pullback(u)[0])(block)

    return products


def _full_hessian(loss, theta: torch.Tensor) -> torch.Tensor:
    """``[P, P]`` Hessian by reverse-over-reverse (``jacrev`` of ``grad``), symmetrized; no forward-mode AD."""
    h = torch.func.jacrev(torch.func.grad(loss))(theta)
    return 0.5 * (h + h.T)


def hessian_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The full Hessian [P, P] of the mean cross-entropy (small networks only: P^2 numbers)."""
    x, y = _check_data(x, y)
    p = _params(model, params)
    _check_model_data(model, x, y, p)
    loss, theta = _flat_loss(model, x, y, p)
    if theta.numel() > 5000:
        raise ValueError(f"model: {theta.numel()} parameters is too many for a full Hessian (at most 5000); use hvp")
    return _full_hessian(loss, theta)


def top_hessian_eigenvalues(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    k: int = 1,
    iters: int = 30,
    seed: int = 0,
    params: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The ``k`` largest Hessian eigenvalues, by block Lanczos on Hessian-vector products (or exactly, when small).

    ``iters`` steps of block Lanczos with full reorthogonalization: a block of
    ``k`` orthonormal vectors at a time (their ``k`` Hessian-vector products
    batched with ``vmap``) builds an orthonormal basis Q of the block Krylov
    space of the Hessian H; the largest eigenvalues of ``Q^T H Q`` (Ritz
    values) converge to the largest of H first. The top one is the
    *sharpness*. A block of ``k`` vectors finds an eigenvalue repeated up to
    ``k`` times (one vector sees only one direction of a repeated
    eigenvalue's eigenspace, and would report the next eigenvalue instead).
    When the network has at most ``max(iters * k, 64)`` parameters the
    Krylov space would be (nearly) the whole space anyway, and the eigenvalues
    come from the full Hessian (:func:`hessian_matrix`, ``eigvalsh``).

    Parameters
    ----------
    k : int
        How many eigenvalues, 1 <= k <= the number of parameters.
    iters : int
        Lanczos (block) steps; ``iters * k`` Hessian-vector products.
    seed : int
        Seeds the random start block.

    Returns
    -------
    Tensor [k]
        Descending.
    """
    x, y = _check_data(x, y)
    p = _params(model, params)
    _check_model_data(model, x, y, p)
    k = _checks.count("k", k)
    iters = _checks.count("iters", iters)
    seed = _checks.count("seed", seed, 0)
    loss, theta = _flat_loss(model, x, y, p)
    P = theta.numel()
    if k > P:
        raise ValueError(f"k: expected at most the number of parameters, {P}, got {k}")
    if P <= max(iters * k, 64):  # small: the exact answer costs no more than the iteration
        return torch.linalg.eigvalsh(_full_hessian(loss, theta)).flip(0)[:k]
    H = _hessian_vector_products(loss, theta)  # (b, P) -> (b, P)

    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(k, P, generator=gen, dtype=theta.dtype).to(theta.device)
    block = torch.linalg.qr(start.T).Q.T  # (k, P) orthonormal rows
    basis, images = [], []  # Q's blocks and H applied to them
    for _ in range(iters):
        hb = H(block)  # (k, P)
        basis.append(block)
        images.append(hb)
        Q = torch.cat(basis)  # (m, P)
        w = hb - (hb @ Q.T) @ Q  # full reorthogonalization against every earlier vector, twice
        w = w - (w @ Q.T) @ Q
        qr = torch.linalg.qr(w.T)
        norms = qr.R.diagonal().abs()
        keep = norms > 1e-10 * hb.norm(dim=1).max().clamp_min(1e-30)
        if not bool(keep.any()):
            break  # the Krylov space is exhausted: its Ritz values are exact
        block = qr.Q.T[keep]
    Q, HQ = torch.cat(basis), torch.cat(images)  # (m, P) each
    T = Q @ HQ.T  # (m, m) = Q H Q^T
    ritz = torch.linalg.eigvalsh((T + T.T) / 2)  # ascending
    return ritz.flip(0)[:k]
