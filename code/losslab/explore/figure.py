"""Figure descriptions: a matplotlib figure turned into numbers a browser can draw.

An explorer's ``render`` builds a matplotlib figure (cheap: the costly part of a
matplotlib frame is rasterizing it to PNG, which this module never does).
:func:`describe` reads the figure's artists back as a Plotly figure
description, a plain dict of traces and layout, so one ``render`` serves:

- the static book, where plotly.js (vendored in ``_static``, no CDN) draws the
  description of whichever grid point the reader's controls select, with hover
  values, text in CSS pixels (legible on a phone) and panels that stack on a
  narrow screen;
- a live kernel, where a ``plotly.graph_objects.FigureWidget`` updates its
  traces in place (:meth:`losslab.explore.Explorer.widget`).

What is carried over: lines (markers, dashes, labels), scatter collections,
contour lines and filled contours, filled polygons (``fill_between``, bars,
spans, histograms), images (heat maps), text and arrows, axis labels, titles,
limits, log scales, fixed tick labels, twin axes, equal aspect. Three-dimensional
axes and colour bars are left out (the caller is told through ``"skipped"``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.collections import LineCollection, PathCollection, PolyCollection, QuadMesh
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch
from matplotlib.text import Annotation

__all__ = ["describe", "dumps", "plain_text", "FONT_PX", "PX_PER_INCH"]

#: Smallest text, in CSS pixels, of any label in a description (issue: legible on a 390 px phone).
FONT_PX = 12
#: Height of a description per inch of the matplotlib figure.
PX_PER_INCH = 96

_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "eta": "η",
    "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ",
    "sigma": "σ", "tau": "τ", "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Delta": "Δ", "Sigma": "Σ", "Omega": "Ω", "Lambda": "Λ", "Theta": "Θ", "Phi": "Φ", "Psi": "Ψ",
    "nabla": "∇", "partial": "∂", "infty": "∞", "approx": "≈", "times": "×", "cdot": "·", "leq": "≤",
    "geq": "≥", "le": "≤", "ge": "≥", "neq": "≠", "to": "→", "rightarrow": "→", "pm": "±", "star": "*",
    "ast": "*", "ell": "ℓ", "sqrt": "√", "sum": "Σ", "log": "log", "exp": "exp", "min": "min", "max": "max",
    "mid": "|", "lVert": "‖", "rVert": "‖", "Vert": "‖", "|": "‖", "odot": "⊙", "hat": "", "bar": "",
    "tilde": "", "mathcal": "", "mathbb": "", "boldsymbol": "", "displaystyle": "", "mathrm": "", "mathbf": "", "mathit": "", "text": "", "operatorname": "", "left": "", "right": "",
}


_SUP = dict(zip("0123456789+-=()niTtkx*", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵀᵗᵏˣ*"))
_SUB = dict(zip("0123456789+-=()aeoxhklmnpstij", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₒₓₕₖₗₘₙₚₛₜᵢⱼ"))


def _script(text: str, table: dict, mark: str) -> str:
    """Super- or subscript in full-size characters (Plotly draws <sup>/<sub> at 70%: below 10 px)."""
    text = text.replace("−", "-")
    if text and all(ch in table for ch in text):
        return "".join(table[ch] for ch in text)
    return mark + (text if len(text) == 1 or (text[0] == "(" and text[-1] == ")") else f"({text})")


def _math(s: str) -> str:
    s = re.sub(r"\\([A-Za-z]+|\|)", lambda m: _GREEK.get(m.group(1), m.group(1)), s)
    s = s.replace("\\,", " ").replace("\\;", " ").replace("\\!", "").replace("\\ ", " ")
    for _ in range(3):  # nested braces, innermost first
        s = re.sub(r"\^\{([^{}]*)\}", lambda m: _script(m.group(1), _SUP, "\x01"), s)  # \x01, \x02: ^ and _ written out
        s = re.sub(r"_\{([^{}]*)\}", lambda m: _script(m.group(1), _SUB, "\x02"), s)
    s = re.sub(r"\^(\S)", lambda m: _script(m.group(1), _SUP, "^"), s)
    s = re.sub(r"_(\S)", lambda m: _script(m.group(1), _SUB, "_"), s)
    return s.replace("{", "").replace("}", "").replace("\x01", "^").replace("\x02", "_")


def _decade(k: int) -> str:
    return {0: "1", 1: "10"}.get(k, "10" + "".join(_SUP[ch] for ch in str(k)))


def plain_text(s: Any) -> str:
    """Matplotlib text (with ``$...$`` mathtext) as the plain text with <sub>/<sup> that Plotly draws."""
    s = str(s or "")
    if "$" not in s:
        return s.replace("\n", "<br>")
    parts = s.split("$")
    out = [p if i % 2 == 0 else _math(p) for i, p in enumerate(parts)]
    return "".join(out).replace("\n", "<br>")


def _colour(c: Any, alpha: float | None = None) -> str | None:
    try:
        r, g, b, a = mcolors.to_rgba(c)
    except (ValueError, TypeError):
        return None
    if alpha is not None:
        a = a * alpha if a is not None else alpha
    if a >= 0.999:
        return "#%02x%02x%02x" % (round(r * 255), round(g * 255), round(b * 255))
    return f"rgba({round(r * 255)},{round(g * 255)},{round(b * 255)},{a:.3g})"


def _first_colour(arr: Any, alpha: float | None = None) -> str | None:
    a = np.asarray(arr)
    if a.size == 0:
        return None
    if a.ndim == 2:
        a = a[0]
    return _colour(tuple(a), alpha)


_DASH = {"--": "dash", "dashed": "dash", ":": "dot", "dotted": "dot", "-.": "dashdot", "dashdot": "dashdot"}
_SYMBOL = {"o": "circle", ".": "circle", "s": "square", "^": "triangle-up", "v": "triangle-down", "*": "star",
           "D": "diamond", "d": "diamond", "x": "x", "X": "x", "+": "cross", "P": "cross", "<": "triangle-left",
           ">": "triangle-right", "p": "pentagon", "h": "hexagon", "|": "line-ns", "_": "line-ew"}


def _px(points: float) -> float:
    return round(float(points) * 96 / 72, 2)


def _num(a: Any) -> np.ndarray:
    arr = np.ma.asarray(a, dtype=float)
    if np.ma.isMaskedArray(arr):
        arr = arr.filled(np.nan)
    return np.asarray(arr, dtype=float)


def _paths_xy(paths, transform, ax) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of ``paths`` (drawn with ``transform``) in ``ax``'s data coordinates, subpaths split by NaN."""
    xs, ys = [], []
    direct = transform is ax.transData or transform == ax.transData
    to_data = None if direct else ax.transData.inverted()
    for path in paths:
        for poly in path.to_polygons(closed_only=False):
            if len(poly) == 0:
                continue
            pts = poly if direct else to_data.transform(transform.transform(poly))
            xs.extend(pts[:, 0].tolist() + [math.nan])
            ys.extend(pts[:, 1].tolist() + [math.nan])
    return np.array(xs), np.array(ys)


class _Builder:
    def __init__(self, fig: Figure) -> None:
        self.fig = fig
        self.traces: list[dict] = []
        self.annotations: list[dict] = []
        self.shapes: list[dict] = []
        self.layout: dict[str, Any] = {}
        self.skipped: list[str] = []
        self.legend_names: set[str] = set()
        self.panels: list[dict] = []

    # -- axes -------------------------------------------------------------
    def run(self) -> dict:
        axes = [ax for ax in self.fig.axes if ax.get_visible()]
        ids: dict[Any, tuple[str, str]] = {}
        n = 0
        for ax in axes:
            if hasattr(ax, "_colorbar"):
                self.skipped.append("colour bar")
                continue
            if getattr(ax, "name", "") == "3d":
                self.skipped.append("3-D axes")
                continue
            n += 1
            ids[ax] = ("x" if n == 1 else f"x{n}", "y" if n == 1 else f"y{n}")
        for ax, (xa, ya) in ids.items():
            leg = ax.get_legend()
            if leg is not None:
                self.legend_names.update(t.get_text() for t in leg.get_texts())
        any_legend = bool(self.legend_names)
        for ax, (xa, ya) in ids.items():
            self._axes(ax, xa, ya, ids)
        w_in, h_in = self.fig.get_size_inches()
        layout = {
            "height": round(float(h_in) * PX_PER_INCH),
            "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
            "font": {"size": FONT_PX, "family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "color": "#1d2430"},
            "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
            "showlegend": any_legend,
            "legend": {"orientation": "h", "x": 0, "y": -0.02, "yanchor": "top", "font": {"size": FONT_PX},
                       "bgcolor": "rgba(255,255,255,0)"},
            "hovermode": "closest",
            "annotations": self.annotations,
            "shapes": self.shapes,
        }
        layout.update(self.layout)
        title = self.fig._suptitle.get_text() if getattr(self.fig, "_suptitle", None) is not None else ""
        if title:
            layout["title"] = {"text": plain_text(title), "font": {"size": FONT_PX + 1}, "x": 0.5, "xanchor": "center",
                               "y": 1, "yref": "container", "yanchor": "top", "pad": {"t": 4}}
        if "3-D axes" in self.skipped and len(self.panels) == 1:  # the panel left alone takes the width
            p = self.panels[0]
            self.layout["xaxis" + p["x"][1:]]["domain"] = p["domain"][0] = [0.0, 1.0]
            if p["title"] >= 0:
                self.annotations[p["title"]]["x"] = 0.5
        out = {"data": self.traces, "layout": layout, "panels": self.panels, "width_in": float(w_in)}
        if self.skipped:
            out["skipped"] = sorted(set(self.skipped))
        return out

    def _axes(self, ax, xa: str, ya: str, ids) -> None:
        pos = ax.get_position()
        x0, x1 = max(0.0, pos.x0), min(1.0, pos.x1)
        y0, y1 = max(0.0, pos.y0), min(1.0, pos.y1)
        twin_of = None
        for other, (oxa, oya) in ids.items():
            if other is ax:
                break
            if np.allclose(other.get_position().bounds, pos.bounds, atol=1e-3):
                twin_of = (other, oxa, oya)
                break
        xaxis: dict[str, Any] = {"domain": [round(x0, 4), round(x1, 4)], "anchor": ya, "automargin": True}
        yaxis: dict[str, Any] = {"domain": [round(y0, 4), round(y1, 4)], "anchor": xa, "automargin": True}
        for axis, mpl_axis, lim, scale, label in (
            (xaxis, ax.xaxis, ax.get_xlim(), ax.get_xscale(), ax.get_xlabel()),
            (yaxis, ax.yaxis, ax.get_ylim(), ax.get_yscale(), ax.get_ylabel()),
        ):
            axis.update({"showgrid": bool(mpl_axis._major_tick_kw.get("gridOn", False)) or bool(ax.axison and _grid_on(mpl_axis)),
                         "gridcolor": "#e3e7ee", "zeroline": False, "linecolor": "#8a94a6", "showline": True,
                         "ticks": "outside", "tickfont": {"size": FONT_PX}, "tickcolor": "#8a94a6"})
            if label:
                axis["title"] = {"text": plain_text(label), "font": {"size": FONT_PX}, "standoff": 4}
            lo, hi = float(lim[0]), float(lim[1])
            if scale == "log":
                axis["type"] = "log"
                axis["exponentformat"] = "power"
                if lo > 0 and hi > 0:
                    axis["range"] = [math.log10(lo), math.log10(hi)]
                # Plotly writes 10^k with a 70% superscript and the 2s and 5s between decades at 75%
                # (below 10 px): decades get full-size labels (10⁻⁴); a short axis plain numbers, larger
                if lo > 0 and hi > 0 and abs(math.log10(hi / lo)) >= 1.5:
                    a, b = sorted((math.log10(lo), math.log10(hi)))
                    ks = list(range(math.ceil(a - 1e-9), math.floor(b + 1e-9) + 1))
                    stride = max(1, math.ceil(len(ks) / 8))
                    ks = ks[::stride]
                    axis.update({"tickvals": [10.0**k for k in ks], "ticktext": [_decade(k) for k in ks]})
                else:
                    axis.update({"tickfont": {"size": 14}, "exponentformat": "e"})
            elif math.isfinite(lo) and math.isfinite(hi):
                axis["range"] = [lo, hi]
            fmt = mpl_axis.get_major_formatter()
            mapping = getattr(fmt, "_units", None)
            if type(fmt).__name__ == "StrCategoryFormatter" and mapping:
                axis["tickvals"] = [float(v) for v in mapping.values()]
                axis["ticktext"] = [plain_text(k) for k in mapping]
            elif type(fmt).__name__ == "FixedFormatter":
                vals = list(mpl_axis.get_majorticklocs())
                texts = [plain_text(t) for t in fmt.seq][: len(vals)]
                axis["tickvals"] = [float(v) for v in vals[: len(texts)]]
                axis["ticktext"] = texts
            if not mpl_axis.get_visible() or not ax.axison:
                axis.update({"visible": False})
        if ax.get_aspect() == 1.0:
            yaxis["scaleanchor"] = xa
            yaxis["scaleratio"] = 1
            xaxis["constrain"] = "domain"
            yaxis["constrain"] = "domain"
        if twin_of is not None:
            other, oxa, oya = twin_of
            if ax.get_shared_x_axes().joined(ax, other) or np.allclose(ax.get_xlim(), other.get_xlim()):
                yaxis.update({"overlaying": oya, "side": "right", "anchor": oxa, "showgrid": False})
                xa_use = oxa
                self.layout["yaxis" + ya[1:]] = yaxis
            else:
                xaxis.update({"overlaying": oxa, "side": "top", "anchor": oya, "showgrid": False})
                xa_use = xa
                self.layout["xaxis" + xa[1:]] = xaxis
                ya = oya
            self._artists(ax, xa_use, ya)
            return
        self.layout["xaxis" + xa[1:]] = xaxis
        self.layout["yaxis" + ya[1:]] = yaxis
        title = ax.get_title() or ax.get_title(loc="left") or ax.get_title(loc="right")
        if title:
            self.annotations.append({
                "text": plain_text(title), "xref": "paper", "yref": "paper", "x": (x0 + x1) / 2, "y": y1,
                "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": FONT_PX + 1},
            })
        self.panels.append({"x": xa, "y": ya, "domain": [[round(x0, 4), round(x1, 4)], [round(y0, 4), round(y1, 4)]],
                            "aspect": ax.get_aspect() == 1.0, "title": len(self.annotations) - 1 if title else -1})
        self._artists(ax, xa, ya)

    # -- artists ------------------------------------------------------------
    def _name(self, artist) -> tuple[str, bool]:
        label = artist.get_label() or ""
        if label.startswith("_"):
            return "", False
        return plain_text(label), label in self.legend_names

    def _add(self, trace: dict, artist, xa: str, ya: str) -> None:
        name, legend = self._name(artist)
        trace.update({"xaxis": xa, "yaxis": ya})
        if name:
            trace["name"] = name
            trace["legendgroup"] = name
        trace["showlegend"] = legend
        if legend:
            self.legend_names.discard(artist.get_label())  # one legend entry per label
        self.traces.append(trace)

    def _artists(self, ax, xa: str, ya: str) -> None:
        for art in sorted(ax.get_children(), key=lambda a: a.get_zorder()):
            if not art.get_visible() or art is ax.patch:
                continue
            if isinstance(art, Line2D):
                self._line(art, ax, xa, ya)
            elif isinstance(art, ContourSet):
                self._contour(art, ax, xa, ya)
            elif isinstance(art, PathCollection):
                self._scatter(art, ax, xa, ya)
            elif isinstance(art, (PolyCollection, LineCollection)) and not isinstance(art, QuadMesh):
                self._poly(art, ax, xa, ya)
            elif isinstance(art, AxesImage):
                self._image(art, ax, xa, ya)
            elif isinstance(art, Annotation):
                self._annotation(art, ax, xa, ya)
            elif type(art).__name__ == "Text" and art.get_text() and art not in (ax.title, ax._left_title, ax._right_title):
                self._text(art, ax, xa, ya)
            elif isinstance(art, FancyArrowPatch):
                self._patch(art, ax, xa, ya, arrow=True)
            elif isinstance(art, Patch) and art is not ax.patch and art.axes is ax and not _is_spine(art):
                self._patch(art, ax, xa, ya)

    def _line(self, ln: Line2D, ax, xa, ya) -> None:
        x, y = ln.get_xdata(orig=False), ln.get_ydata(orig=False)
        x, y = _num(x), _num(y)
        if x.size == 0:
            return
        if ln.get_transform() != ax.transData:  # axhline / axvline: one coordinate is in axes fraction
            pts = ax.transData.inverted().transform(ln.get_transform().transform(np.column_stack([x, y])))
            x, y = pts[:, 0], pts[:, 1]
        color = _colour(ln.get_color(), ln.get_alpha())
        ls = ln.get_linestyle()
        marker = ln.get_marker()
        has_line = ls not in ("None", "none", "", " ")
        has_marker = marker not in (None, "None", "none", "", " ", ",")
        trace: dict[str, Any] = {"type": "scatter", "x": x, "y": y,
                                 "mode": "+".join(m for m, on in (("lines", has_line), ("markers", has_marker)) if on) or "lines"}
        if has_line:
            trace["line"] = {"color": color, "width": max(1.0, _px(ln.get_linewidth())), "dash": _DASH.get(ls, "solid")}
        if has_marker:
            face = _colour(ln.get_markerfacecolor(), ln.get_alpha()) or color
            trace["marker"] = {"color": face, "size": max(4.0, _px(ln.get_markersize()) * (0.6 if marker == "." else 1.0)),
                               "symbol": _SYMBOL.get(str(marker), "circle")}
        self._add(trace, ln, xa, ya)

    def _contour(self, cs: ContourSet, ax, xa, ya) -> None:
        paths = cs.get_paths()
        filled = bool(cs.filled)
        cols = cs.get_facecolor() if filled else cs.get_edgecolor()
        alpha = cs.get_alpha()
        transform = cs.get_transform()
        for k, path in enumerate(paths):
            if len(path.vertices) == 0:
                continue
            x, y = _paths_xy([path], transform, ax)
            col = _colour(tuple(cols[k % len(cols)]), alpha) if len(cols) else "#888888"
            level = cs.levels[k] if k < len(cs.levels) else None
            trace: dict[str, Any] = {"type": "scatter", "x": x, "y": y, "mode": "lines", "hoverinfo": "skip",
                                     "showlegend": False, "xaxis": xa, "yaxis": ya}
            if filled:
                trace.update({"fill": "toself", "fillcolor": col, "line": {"width": 0}})
            else:
                lw = cs.get_linewidth()
                lw = float(np.atleast_1d(lw)[k % len(np.atleast_1d(lw))]) if np.size(lw) else 0.8
                trace["line"] = {"color": col, "width": max(0.8, _px(lw))}
                if level is not None:
                    trace.update({"hoverinfo": "text", "text": f"level {level:.3g}", "hoveron": "points"})
            self.traces.append(trace)

    def _scatter(self, sc: PathCollection, ax, xa, ya) -> None:
        off = _num(sc.get_offsets())
        if off.size == 0:
            return
        if sc.get_offset_transform() != ax.transData:
            off = ax.transData.inverted().transform(sc.get_offset_transform().transform(off))
        faces = sc.get_facecolor()
        sizes = np.atleast_1d(sc.get_sizes())
        marker: dict[str, Any] = {"size": [max(4.0, round(math.sqrt(s) * 96 / 72, 1)) for s in sizes] if len(sizes) > 1
                                  else max(4.0, round(math.sqrt(float(sizes[0])) * 96 / 72, 1)) if len(sizes) else 6}
        if len(faces) > 1:
            marker["color"] = [_colour(tuple(f)) for f in faces]
        elif len(faces) == 1:
            marker["color"] = _colour(tuple(faces[0]))
        else:
            marker["color"] = "rgba(0,0,0,0)"
            edge = _first_colour(sc.get_edgecolor())
            marker["line"] = {"color": edge, "width": 1.5}
        self._add({"type": "scatter", "x": off[:, 0], "y": off[:, 1], "mode": "markers", "marker": marker}, sc, xa, ya)

    def _poly(self, pc, ax, xa, ya) -> None:
        x, y = _paths_xy(pc.get_paths(), pc.get_transform(), ax)
        if x.size == 0:
            return
        if isinstance(pc, LineCollection):
            col = _first_colour(pc.get_edgecolor(), pc.get_alpha()) or "#444444"
            lw = np.atleast_1d(pc.get_linewidth())
            trace = {"type": "scatter", "x": x, "y": y, "mode": "lines", "line": {"color": col, "width": max(1.0, _px(lw[0]) if lw.size else 1)}}
        else:
            face = _first_colour(pc.get_facecolor(), None)
            edge = _first_colour(pc.get_edgecolor())
            trace = {"type": "scatter", "x": x, "y": y, "mode": "lines", "fill": "toself",
                     "fillcolor": face or "rgba(0,0,0,0)", "line": {"color": edge or "rgba(0,0,0,0)", "width": 1 if edge else 0},
                     "hoverinfo": "skip"}
        self._add(trace, pc, xa, ya)

    def _patch(self, p: Patch, ax, xa, ya, arrow: bool = False) -> None:
        path = p.get_path()
        x, y = _paths_xy([path], p.get_transform(), ax)
        if x.size == 0:
            return
        face = _colour(p.get_facecolor()) if p.get_fill() else None
        edge = _colour(p.get_edgecolor()) if p.get_linewidth() > 0 else None
        if face and face.startswith("rgba(") and face.endswith(",0)"):
            face = None
        trace: dict[str, Any] = {"type": "scatter", "x": x, "y": y, "mode": "lines", "hoverinfo": "skip"}
        if face and not arrow:
            trace.update({"fill": "toself", "fillcolor": face})
        trace["line"] = {"color": edge or "rgba(0,0,0,0)", "width": max(1.0, _px(p.get_linewidth())) if edge else 0}
        if arrow and face:
            trace["line"]["color"] = edge or face
        # bars of one colour become one trace (a histogram of 40 bins is one trace, not 40)
        last = self.traces[-1] if self.traces else None
        label = p.get_label() or ""
        if (last is not None and last.get("_patch") and last.get("fillcolor") == trace.get("fillcolor")
                and last["line"] == trace["line"] and last["xaxis"] == xa and last["yaxis"] == ya
                and (label.startswith("_") or not label)):
            last["x"] = np.concatenate([last["x"], x])
            last["y"] = np.concatenate([last["y"], y])
            return
        trace["_patch"] = True
        self._add(trace, p, xa, ya)

    def _image(self, im: AxesImage, ax, xa, ya) -> None:
        z = _num(im.get_array())
        if z.ndim != 2:
            self.skipped.append("RGB image")
            return
        x0, x1, y0, y1 = im.get_extent()
        ny, nx = z.shape
        xs = np.linspace(x0, x1, nx + 1)
        ys = np.linspace(y0, y1, ny + 1)
        if im.origin == "upper":
            ys = ys[::-1]
        xc, yc = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
        cmap, norm = im.get_cmap(), im.norm
        stops = np.linspace(0, 1, 11)
        scale = [[float(s), _colour(cmap(float(s)))] for s in stops]
        trace = {"type": "heatmap", "x": xc, "y": yc, "z": z, "colorscale": scale, "showscale": False,
                 "zmin": float(norm.vmin) if norm.vmin is not None else None,
                 "zmax": float(norm.vmax) if norm.vmax is not None else None,
                 "hovertemplate": "%{z:.3g}<extra></extra>"}
        self._add(trace, im, xa, ya)

    def _text_pos(self, t, ax) -> tuple[float, float, str, str]:
        x, y = t.get_position()
        tr = t.get_transform()
        if tr == ax.transData:
            return float(x), float(y), "data", "data"
        if tr == ax.transAxes:
            return float(x), float(y), "axes", "axes"
        pts = ax.transAxes.inverted().transform(tr.transform([[x, y]]))
        return float(pts[0, 0]), float(pts[0, 1]), "axes", "axes"

    def _ref(self, kind: str, axis: str, ax, value: float, lim: tuple) -> tuple[str, float]:
        if kind == "data":
            if (axis == "x" and ax.get_xscale() == "log") or (axis == "y" and ax.get_yscale() == "log"):
                value = math.log10(value) if value > 0 else value
            return None, value
        return "domain", value

    def _text(self, t, ax, xa, ya) -> None:
        x, y, kx, ky = self._text_pos(t, ax)
        ann = self._annot(t, ax, xa, ya, x, y, kx, ky)
        ann["showarrow"] = False
        self.annotations.append(ann)

    def _annot(self, t, ax, xa, ya, x, y, kx, ky) -> dict:
        if kx == "data" and ax.get_xscale() == "log" and x > 0:
            x = math.log10(x)
        if ky == "data" and ax.get_yscale() == "log" and y > 0:
            y = math.log10(y)
        ha = {"left": "left", "right": "right", "center": "center"}.get(t.get_horizontalalignment(), "center")
        va = {"top": "top", "bottom": "bottom", "center": "middle", "center_baseline": "middle",
              "baseline": "bottom"}.get(t.get_verticalalignment(), "middle")
        ann: dict[str, Any] = {
            "text": plain_text(t.get_text()), "x": x, "y": y,
            "xref": xa if kx == "data" else f"{xa} domain", "yref": ya if ky == "data" else f"{ya} domain",
            "xanchor": ha, "yanchor": va,
            "font": {"size": max(FONT_PX - 1, round(_px(t.get_fontsize()) * 0.95)), "color": _colour(t.get_color()) or "#1d2430"},
        }
        if t.get_rotation():
            ann["textangle"] = -float(t.get_rotation())
        bbox = t.get_bbox_patch()
        if bbox is not None and bbox.get_fill():
            ann["bgcolor"] = _colour(bbox.get_facecolor())
        return ann

    def _annotation(self, a: Annotation, ax, xa, ya) -> None:
        if a.xycoords != "data":
            if a.get_text():
                self._text(a, ax, xa, ya)
            return
        tx, ty = a.xyann if getattr(a, "_textcoords", "data") in ("data", None) else a.xy
        ann = self._annot(a, ax, xa, ya, float(tx), float(ty), "data", "data")
        hx, hy = a.xy
        if ax.get_xscale() == "log" and hx > 0:
            hx = math.log10(hx)
        if ax.get_yscale() == "log" and hy > 0:
            hy = math.log10(hy)
        if a.arrow_patch is not None:
            ann.update({"showarrow": True, "ax": ann.pop("x"), "ay": ann.pop("y"), "x": float(hx), "y": float(hy),
                        "axref": xa, "ayref": ya, "arrowhead": 2, "arrowwidth": 1.5,
                        "arrowcolor": _colour(a.arrow_patch.get_edgecolor()) or "#333333"})
        else:
            ann["showarrow"] = False
        self.annotations.append(ann)


def _grid_on(axis) -> bool:
    try:
        return bool(axis._major_tick_kw.get("gridOn", False))
    except AttributeError:
        return False


def _is_spine(p) -> bool:
    return type(p).__name__ == "Spine"


def describe(fig: Figure) -> dict:
    """The Plotly figure description of ``fig``: ``{"data", "layout", "panels", ...}``, with numpy arrays.

    ``panels`` lists each panel's axes ids and domain (the browser restacks them
    on a narrow screen); ``skipped`` names what could not be carried over.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    out = _Builder(fig).run()
    for t in out["data"]:
        t.pop("_patch", None)
    return out


def _fmt(v: float, digits: int) -> str:
    if not math.isfinite(v):
        return "null"
    if v == 0:
        return "0"
    s = f"{v:.{digits}g}"
    if "e" in s:
        m, e = s.split("e")
        return f"{m}e{int(e)}"
    return s


class _Encoder(json.JSONEncoder):
    pass


def dumps(obj: Any, digits: int = 4) -> str:
    """Compact JSON of a description: arrays rounded to ``digits`` significant digits, NaN as null (a gap)."""
    def enc(o: Any) -> str:
        if isinstance(o, np.ndarray):
            if o.ndim == 1:
                return "[" + ",".join(_fmt(float(v), digits) for v in o.tolist()) + "]"
            return "[" + ",".join(enc(r) for r in o) + "]"
        if isinstance(o, dict):
            return "{" + ",".join(json.dumps(str(k)) + ":" + enc(v) for k, v in o.items()) + "}"
        if isinstance(o, (list, tuple)):
            return "[" + ",".join(enc(v) for v in o) + "]"
        if isinstance(o, (bool, np.bool_)):
            return "true" if o else "false"
        if isinstance(o, (int, np.integer)):
            return str(int(o))
        if isinstance(o, (float, np.floating)):
            v = float(o)
            return _fmt(v, max(digits, 6)) if math.isfinite(v) else "null"
        if o is None:
            return "null"
        return json.dumps(o, ensure_ascii=False).replace("</", "<\\/")
    return enc(obj)
