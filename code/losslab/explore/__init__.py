"""Explorers: move a control, see the consequence.

An explorer is a pure ``render(**params) -> Figure`` plus a description of its
controls. The same ``render`` feeds three places:

- **live** (Jupyter, Colab): :meth:`Explorer.widget` is a thin ipywidgets
  shell (sliders, dropdowns, checkboxes) around a Plotly ``FigureWidget``
  whose traces update in place on every change (no PNG is drawn);
- **static** (the built book, no kernel): :meth:`Explorer.static_html`
  ships *numbers*, not pictures: the figure description
  (:func:`losslab.explore.figure.describe`, a Plotly figure read off the
  matplotlib figure) at every point of the grid of control values, traces
  shared between frames stored once; plotly.js (its cartesian partial
  bundle, ``book/_static/plotly-cartesian.min.js``, the same plotly.js
  version as the ``plotly`` package's FigureWidget; no CDN) loads when the
  first explorer scrolls into view and draws whichever frame the controls select,
  with hover values, text in CSS pixels and panels stacked on a narrow
  screen; at most :data:`MAX_STATIC_BYTES` per explorer;
- **tests and benchmarks**: :meth:`Explorer.render` and :meth:`Explorer.frame`
  call it directly, without a browser.

:meth:`Explorer.show` picks static or live with :func:`losslab.book.is_static`.

Writing one (chapter modules live beside this file, one per chapter)::

    def render(temperature: float, logits: str) -> Figure:
        fig, ax = plots.figure()
        ...
        return fig

    def softmax_explorer() -> Explorer:
        return Explorer(
            "demo.softmax-temperature", render,
            controls={"temperature": Slider(0.1, 5.0, default=1.0, log=True),
                      "logits": Choice(["peaked", "flat"], default="peaked")},
            title="Softmax temperature",
            alt="Bar chart of softmax probabilities at temperature {temperature:.2g} for {logits} logits",
        )
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .. import plots
from . import figure as _figure

__all__ = ["Slider", "Choice", "Toggle", "Explorer", "MAX_STATIC_BYTES", "registered", "REGISTRY", "canvas", "legend", "bars"]

#: Budget for one explorer's static HTML (all frames together).
MAX_STATIC_BYTES = 1_500_000
#: Positions of a numeric slider in the static book when the grid allows it (issue 19: at least 9).
MIN_POSITIONS = 9


# --- reused figures (a frame drawn on the figure of the previous one) ----------------

_CANVASES: dict[str, Figure] = {}


def canvas(key: str, make: Callable[[], Figure]) -> Figure:
    """The figure ``make()`` built once per ``key``, emptied of the previous frame's data (lines, collections,
    patches, texts, legends); axis scales, limits, ticks and titles are set by each ``render`` again.

    Making a figure with its axes costs 15-40 ms, most of one explorer frame; reusing it makes a frame a few
    milliseconds, which the static book (every point of the grid) and a live update both gain. A ``render``
    that draws on it returns the same figure each call: read it (describe it, save a PNG) before the next call.
    """
    fig = _CANVASES.get(key)
    if fig is None:
        fig = _CANVASES[key] = make()
    for ax in fig.axes:
        for art in [*ax.lines, *ax.collections, *ax.patches, *ax.texts, *ax.images]:
            art.remove()
        ax.containers.clear()
        if ax.get_legend() is not None:
            _KEPT_LEGENDS[id(ax)] = ax.get_legend()
            ax.get_legend().remove()
        ax.relim()  # forget the old data's limits: an axis the render does not fix is autoscaled to the new data
        ax.set_autoscale_on(True)
    return fig


_KEPT_LEGENDS: dict[int, object] = {}


def legend(ax, *, handles_from=None, **kw) -> None:
    """``ax.legend(**kw)`` on a :func:`canvas` (of the labelled artists of ``handles_from``, default ``ax``): the previous
    frame's legend is put back with the new labels when it has as many entries with the same styles (a new legend
    costs about 10 ms; the figure's description reads only its labels)."""
    handles, labels = (handles_from or ax).get_legend_handles_labels()
    kept = _KEPT_LEGENDS.get(id(ax))
    if kept is not None and getattr(kept, "_losslab_kw", None) == kw and len(kept.get_texts()) == len(labels) \
            and getattr(kept, "_losslab_styles", None) == [_style(h) for h in handles]:
        for text, label in zip(kept.get_texts(), labels):
            text.set_text(label)
        ax.legend_ = kept
        kept._remove_method = ax._remove_legend
        return
    leg = ax.legend(handles, labels, **kw)
    leg._losslab_kw = kw
    leg._losslab_styles = [_style(h) for h in handles]


def _style(h) -> tuple:
    """What a legend entry draws of a handle: type, colours, line style, marker."""
    get = lambda name: (lambda v: tuple(np.ravel(v)) if hasattr(v, "__len__") and not isinstance(v, str) else v)(
        getattr(h, name)()) if hasattr(h, name) else None  # noqa: E731
    return (type(h).__name__, get("get_color"), get("get_facecolor"), get("get_linestyle"), get("get_marker"),
            get("get_linewidth"), get("get_markersize"))


def bars(ax, x, height, *, width: float, bottom=0.0, **kw):
    """Bars of one style as one ``PolyCollection`` (``ax.bar`` makes a patch per bar, about 1 ms each; the figure's
    description draws bars of one colour as one trace either way)."""
    from matplotlib.collections import PolyCollection  # noqa: PLC0415

    x, h = np.asarray(x, dtype=float), np.asarray(height, dtype=float)
    b = np.broadcast_to(np.asarray(bottom, dtype=float), x.shape)
    lo, hi = x - width / 2, x + width / 2
    verts = np.stack([np.stack([lo, b], 1), np.stack([hi, b], 1), np.stack([hi, b + h], 1), np.stack([lo, b + h], 1)], 1)
    pc = PolyCollection(verts, **kw)
    ax.add_collection(pc)
    return pc


# --- controls -------------------------------------------------------------------

@dataclass(frozen=True)
class Slider:
    """A numeric control.

    Parameters
    ----------
    min, max : float
        Range of the live slider.
    default : float
        Starting value (inside the range).
    step : float, optional
        Live step; default 1/100 of the range (ignored when ``log``).
    log : bool
        Logarithmic slider (``min`` must be > 0).
    integer : bool
        Integer values only.
    static : sequence of float, optional
        Values the static book must offer (the settings the text asks the
        reader to try); the default is always among them.
    label : str, optional
        Text beside the control; default the parameter name.
    fill : bool
        Fill the static positions up to :data:`MIN_POSITIONS` with evenly
        (log-evenly) spaced values (default). ``False`` keeps exactly
        ``static`` and the default: a slider left with one position is not
        shown in the static book.
    """

    min: float
    max: float
    default: float
    step: float | None = None
    log: bool = False
    integer: bool = False
    static: Sequence[float] | None = None
    label: str | None = None
    fill: bool = True

    def __post_init__(self) -> None:
        for name in ("min", "max", "default"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"Slider {name}: expected a finite number, got {v!r}")
        if not self.min < self.max:
            raise ValueError(f"Slider: expected min < max, got min={self.min}, max={self.max}")
        if not self.min <= self.default <= self.max:
            raise ValueError(f"Slider default: expected within [{self.min}, {self.max}], got {self.default}")
        if self.log and self.min <= 0:
            raise ValueError(f"Slider min: a log slider needs min > 0, got {self.min}")
        if self.step is not None and not self.step > 0:
            raise ValueError(f"Slider step: expected > 0, got {self.step}")
        if self.static is not None:
            vals = list(self.static)
            if not vals:
                raise ValueError("Slider static: expected at least one value")
            bad = [v for v in vals if not self.min <= v <= self.max]
            if bad:
                raise ValueError(f"Slider static: values {bad} lie outside [{self.min}, {self.max}]")

    def static_values(self) -> list[float]:
        """The positions in the static book: the ``static`` values (settings the text names) and the
        default, filled up to :data:`MIN_POSITIONS` with evenly (log-evenly) spaced values over the range
        unless ``static`` is given with ``fill=False`` (an integer slider has at most its integers)."""
        named = set(float(v) for v in (self.static or ())) | {float(self.default)}
        vals = sorted(named)
        if self.fill:
            want = MIN_POSITIONS
            if self.integer:
                want = min(want, int(math.floor(self.max)) - int(math.ceil(self.min)) + 1)
            n = want
            while len(vals) < want and n < 10 * want:
                grid = np.geomspace(self.min, self.max, n) if self.log else np.linspace(self.min, self.max, n)
                if self.integer:
                    grid = np.round(grid)
                # a grid value closer than a third of a grid step to a named one is replaced by it
                step = (math.log(self.max / self.min) if self.log else (self.max - self.min)) / max(n - 1, 1)
                keep = set(named)
                for g in grid:
                    d = [abs((math.log(g / v) if self.log else g - v)) for v in named if (not self.log or v > 0)]
                    if not d or min(d) > step / 3:
                        keep.add(float(g))
                vals = sorted(keep)
                n += 1
        if self.integer:
            vals = sorted(set(int(round(v)) for v in vals))
        return vals

    def validate(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if not self.min <= value <= self.max:
            raise ValueError(f"{name}: expected a value in [{self.min}, {self.max}], got {value}")
        return int(round(value)) if self.integer else float(value)

    def format(self, value: Any) -> str:
        return str(int(value)) if self.integer else f"{value:.3g}"


@dataclass(frozen=True)
class Choice:
    """A choice among options (strings, or any values with ``labels``)."""

    options: Sequence[Any]
    default: Any = None
    labels: Sequence[str] | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        opts = list(self.options)
        if len(opts) < 2:
            raise ValueError(f"Choice options: expected at least 2, got {opts!r}")
        if self.labels is not None and len(self.labels) != len(opts):
            raise ValueError(f"Choice labels: expected {len(opts)} labels, got {len(self.labels)}")
        if self.default is not None and self.default not in opts:
            raise ValueError(f"Choice default: expected one of {opts!r}, got {self.default!r}")

    @property
    def initial(self) -> Any:
        return self.options[0] if self.default is None else self.default

    def static_values(self) -> list[Any]:
        return list(self.options)

    def validate(self, name: str, value: Any) -> Any:
        if value not in list(self.options):
            raise ValueError(f"{name}: expected one of {list(self.options)!r}, got {value!r}")
        return value

    def format(self, value: Any) -> str:
        if self.labels is not None:
            return str(self.labels[list(self.options).index(value)])
        return str(value)


@dataclass(frozen=True)
class Toggle:
    """An on/off control."""

    default: bool = False
    label: str | None = None

    def static_values(self) -> list[bool]:
        return [False, True]

    def validate(self, name: str, value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name}: expected True or False, got {value!r}")
        return bool(value)

    def format(self, value: Any) -> str:
        return "on" if value else "off"

    # static_values() is [False, True]: index 0 is "off", index 1 is "on"


Control = Slider | Choice | Toggle


def _initial(control: Control) -> Any:
    return control.initial if isinstance(control, Choice) else control.default


# --- the explorer ---------------------------------------------------------------

REGISTRY: dict[str, Callable[[], "Explorer"]] = {}


def registered(factory: Callable[[], "Explorer"]) -> Callable[[], "Explorer"]:
    """Decorator: record an explorer factory so benchmarks and tests can find every explorer."""
    REGISTRY[f"{factory.__module__}.{factory.__name__}"] = factory
    return factory


class Explorer:
    """A pure ``render(**params) -> Figure`` with controls, shown live or static.

    Parameters
    ----------
    name : str
        Stable id ``<prefix>.<name>``, as for questions.
    render : callable
        ``render(**params)`` returning a ``matplotlib.figure.Figure``; it
        must not display anything or depend on state outside its arguments.
    controls : mapping of str to Slider, Choice or Toggle
        One per parameter of ``render``.
    title : str
        Shown above the figure.
    alt : str or callable
        Alt text: a format string over the parameters (``"... {lr:.2g}"``; a
        choice of strings reads as its label), or a function of the settings
        returning the text, for an alt text that states what the frame shows.
    dpi : float
        Resolution of rendered frames.
    max_frames : int
        Upper bound on the static grid (product of every control's static values).
    min_width : int, optional
        CSS px below which the static book does not shrink the figure: a figure that
        cannot stack into panels (a graph drawn as one picture) keeps this width on a
        phone and scrolls sideways in its own box, so its labels never overlap.
    """

    def __init__(
        self,
        name: str,
        render: Callable[..., Figure],
        controls: Mapping[str, Control],
        *,
        title: str,
        alt: str,
        dpi: float = 80,
        max_frames: int = 200,
        min_width: int | None = None,
    ) -> None:
        if not callable(render):
            raise TypeError(f"render: expected a callable, got {type(render).__name__}")
        if not controls:
            raise ValueError("controls: an explorer needs at least one control")
        for key, control in controls.items():
            if not isinstance(control, (Slider, Choice, Toggle)):
                raise TypeError(f"controls[{key!r}]: expected Slider, Choice or Toggle, got {type(control).__name__}")
        if not alt or not (isinstance(alt, str) or callable(alt)):
            raise ValueError("alt: every explorer needs alt text describing the figure (a template or a function of the settings)")
        self.name = name
        self._render = render
        self.controls = dict(controls)
        self.title = title
        self.alt_template = alt
        self.dpi = dpi
        if min_width is not None and (isinstance(min_width, bool) or not isinstance(min_width, int) or not 200 <= min_width <= 2000):
            raise ValueError(f"min_width: expected CSS pixels, an int in [200, 2000], or None; got {min_width!r}")
        self.min_width = min_width
        n = self.n_frames
        if n > max_frames:
            sizes = {k: len(c.static_values()) for k, c in self.controls.items()}
            raise ValueError(
                f"controls: the static grid has {n} frames ({sizes}), more than max_frames={max_frames}; "
                "give sliders fewer `static` values (or fill=False)"
            )
        self.alt(**self.defaults)  # fail now, not in the browser, if the template names an unknown parameter

    def __repr__(self) -> str:
        ctrl = ", ".join(f"{k}={type(c).__name__}" for k, c in self.controls.items())
        return f"Explorer({self.name!r}, {ctrl}, static frames={self.n_frames})"

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: _initial(c) for k, c in self.controls.items()}

    @property
    def n_frames(self) -> int:
        return math.prod(len(c.static_values()) for c in self.controls.values())

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Defaults updated with ``overrides``, each validated against its control."""
        unknown = set(overrides) - set(self.controls)
        if unknown:
            raise TypeError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; expected {sorted(self.controls)}")
        values = self.defaults | overrides
        return {k: self.controls[k].validate(k, v) for k, v in values.items()}

    def alt(self, **params: Any) -> str:
        """The alt text of one setting; a choice reads as its label (``"saddle (six-hump camel)"``, not ``six_hump_camel``)."""
        values = self.params(**params)
        if callable(self.alt_template):
            return str(self.alt_template(**values))
        words = {k: (self.controls[k].format(v) if (isinstance(self.controls[k], Choice) and isinstance(v, str))
                     or isinstance(self.controls[k], Toggle) else v)
                 for k, v in values.items()}
        try:
            return self.alt_template.format(**words)
        except (KeyError, IndexError) as err:
            raise ValueError(f"alt: template {self.alt_template!r} names unknown parameter {err}") from None

    def render(self, **overrides: Any) -> Figure:
        """Call ``render`` with validated parameters; check it returned a Figure."""
        fig = self._render(**self.params(**overrides))
        if not isinstance(fig, Figure):
            raise TypeError(f"{self.name}: render must return a matplotlib Figure, got {type(fig).__name__}")
        return fig

    def frame(self, *, compress: bool = False, **overrides: Any) -> bytes:
        """PNG bytes of one frame (palette-compressed when ``compress``, as in the static book)."""
        png = plots.to_png(self.render(**overrides), dpi=self.dpi)
        return _quantize(png) if compress else png

    def grid(self) -> list[dict[str, Any]]:
        """Every parameter combination pre-rendered for the static book."""
        names = list(self.controls)
        values = [self.controls[k].static_values() for k in names]
        return [dict(zip(names, combo)) for combo in itertools.product(*values)]

    def describe(self, **overrides: Any) -> dict:
        """The figure description (Plotly traces and layout, numpy arrays) of one setting."""
        return _figure.describe(self.render(**overrides))  # the figure is not registered anywhere: dropped here

    # -- static ---------------------------------------------------------------
    def static_controls(self) -> list[str]:
        """The controls the static book shows: those with more than one position."""
        return [k for k, c in self.controls.items() if len(c.static_values()) > 1]

    def static_payload(self) -> tuple[dict, str]:
        """Every frame of the static grid as shared traces and layouts: ``({"traces", "layouts", "frames",
        "alts", "panels"}, start key)``; a frame key is the control indices joined by commas."""
        names = list(self.controls)
        statics = [self.controls[k].static_values() for k in names]
        trace_ids: dict[str, int] = {}
        layout_ids: dict[str, int] = {}
        panels_ids: dict[str, int] = {}
        frames: dict[str, list] = {}
        alts: dict[str, str] = {}
        for idx in itertools.product(*(range(len(v)) for v in statics)):
            params = {k: statics[j][i] for j, (k, i) in enumerate(zip(names, idx))}
            d = self.describe(**params)
            t = [trace_ids.setdefault(_figure.dumps(tr), len(trace_ids)) for tr in d["data"]]
            lay = layout_ids.setdefault(_figure.dumps(d["layout"]), len(layout_ids))
            pan = panels_ids.setdefault(_figure.dumps(d["panels"]), len(panels_ids))
            key = ",".join(map(str, idx))
            frames[key] = [lay, pan, t]
            alts[key] = self.alt(**params)
        start = []
        for k, vals in zip(names, statics):
            init = _initial(self.controls[k])
            start.append(int(np.argmin([_distance(v, init) for v in vals])))
        payload = {"traces": list(trace_ids), "layouts": list(layout_ids), "panels": list(panels_ids),
                   "frames": frames, "alts": alts}
        return payload, ",".join(map(str, start))

    def static_html(self, *, max_bytes: int = MAX_STATIC_BYTES) -> str:
        """Self-contained HTML: the figure data of every grid point, drawn by plotly.js, switched by plain HTML controls.

        Raises
        ------
        ValueError
            If the data together exceed ``max_bytes``.
        """
        names = list(self.controls)
        statics = [self.controls[k].static_values() for k in names]
        payload, start_key = self.static_payload()
        body = ('{"traces":[' + ",".join(payload["traces"]) + '],"layouts":[' + ",".join(payload["layouts"])
                + '],"panels":[' + ",".join(payload["panels"]) + '],"frames":' + json.dumps(payload["frames"], separators=(",", ":"))
                + ',"alts":' + json.dumps(payload["alts"], separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
                + (f',"minWidth":{self.min_width}' if self.min_width else "") + "}")
        if len(body.encode("utf-8")) > max_bytes:
            raise ValueError(
                f"{self.name}: static data of {self.n_frames} frames take {len(body.encode()) / 1e6:.2f} MB, more than "
                f"{max_bytes / 1e6:.1f} MB; use fewer static values or fewer points per trace"
            )
        start = [int(i) for i in start_key.split(",")]
        first = payload["frames"][start_key]
        height = json.loads(payload["layouts"][first[0]]).get("height", 360)
        uid = "lle-" + uuid.uuid4().hex[:12]
        e = html.escape
        rows = []
        for j, (k, c) in enumerate(zip(names, self.controls.values())):
            label = e(c.label or k)
            labels = [c.format(v) for v in statics[j]]
            data = f'data-j="{j}" data-name="{e(k)}" data-labels="{e(json.dumps(labels))}"'
            if len(statics[j]) < 2:  # a control that cannot move here is not shown (the address still may name it)
                rows.append(f'<input type="hidden" value="0" {data}>')
            elif isinstance(c, Slider):
                complete = c.integer and len(statics[j]) == int(math.floor(c.max)) - int(math.ceil(c.min)) + 1
                rows.append(
                    f'<label class="lle-ctl"><span class="lle-name">{label}</span>'
                    f'<input type="range" min="0" max="{len(statics[j]) - 1}" step="1" value="{start[j]}" {data} '
                    + ('data-complete="1" ' if complete else '')
                    + f'aria-label="{label}" aria-valuetext="{e(labels[start[j]])}">'
                    f'<output class="lle-val">{e(labels[start[j]])}</output></label>'
                )
            elif isinstance(c, Choice):
                opts = "".join(
                    f'<option value="{i}"{" selected" if i == start[j] else ""}>{e(text)}</option>'
                    for i, text in enumerate(labels)
                )
                rows.append(f'<label class="lle-ctl"><span class="lle-name">{label}</span><select {data} aria-label="{label}">{opts}</select></label>')
            else:
                checked = " checked" if start[j] == 1 else ""
                rows.append(f'<label class="lle-ctl"><input type="checkbox" {data} aria-label="{label}"{checked}> <span class="lle-name">{label}</span></label>')
        shown = self.static_controls()
        counts = " x ".join(str(len(self.controls[k].static_values())) for k in shown) or "1"
        return (
            f'<div class="lle" id="{uid}" data-losslab="explorer" data-name="{e(self.name)}">'
            f"<style>{_asset('explorer.css')}</style>"
            f'<div class="lle-title">{e(self.title)}</div>'
            f'<div class="lle-controls">{"".join(rows)}</div>'
            f'<div class="lle-frame" role="img" aria-label="{e(payload["alts"][start_key])}" data-key="{start_key}" '
            f'data-height="{int(height)}" style="height:{int(height)}px"></div>'
            f'<div class="lle-note">Computed at every combination of {counts} settings ({self.n_frames} in all); hover for values, '
            "or run this chapter in Jupyter or Colab for continuous controls. "
            "The page address records the settings, so a link to it opens this exact view.</div>"
            f'<script type="application/json" class="lle-data">{body}</script>'
            f"<script>{_asset('explorer.js')}\nwindow.losslabExplorer.mount({json.dumps(uid)});</script>"
            "</div>"
        )

    # -- live -----------------------------------------------------------------
    def _controls_widgets(self, continuous: bool):
        import ipywidgets as w  # noqa: PLC0415

        ctrls: dict[str, Any] = {}
        for k, c in self.controls.items():
            desc = c.label or k
            style = {"description_width": "initial"}
            if isinstance(c, Slider):
                if c.log:
                    ctrls[k] = w.FloatLogSlider(value=c.default, base=10, min=math.log10(c.min), max=math.log10(c.max),
                                                step=(math.log10(c.max) - math.log10(c.min)) / 100, description=desc, style=style,
                                                readout_format=".3g", continuous_update=continuous)
                elif c.integer:
                    ctrls[k] = w.IntSlider(value=int(c.default), min=int(c.min), max=int(c.max), step=int(c.step or 1),
                                           description=desc, style=style, continuous_update=continuous)
                else:
                    ctrls[k] = w.FloatSlider(value=c.default, min=c.min, max=c.max, step=c.step or (c.max - c.min) / 100,
                                             description=desc, style=style, readout_format=".3g", continuous_update=continuous)
            elif isinstance(c, Choice):
                options = [(c.format(v), v) for v in c.options]
                ctrls[k] = w.Dropdown(options=options, value=c.initial, description=desc, style=style)
            else:
                ctrls[k] = w.Checkbox(value=c.default, description=desc, style=style, indent=False)
        return ctrls

    def widget(self):
        """The live ipywidgets shell: controls above a Plotly ``FigureWidget`` whose traces update in place."""
        import ipywidgets as w  # noqa: PLC0415

        # Sliders update while dragged when one update is fast (see time_update), else on release.
        t0 = time.perf_counter()
        first = self.describe()
        continuous = time.perf_counter() - t0 < 0.1
        ctrls = self._controls_widgets(continuous)
        fig = _figure_widget(first)
        error = w.HTML()

        def update(_change: Any = None) -> None:
            try:
                _apply(fig, self.describe(**{k: ctl.value for k, ctl in ctrls.items()}))
                error.value = ""
            except Exception as err:  # show the problem where the reader is looking
                error.value = f'<span style="color:#8a3a00">{html.escape(type(err).__name__)}: {html.escape(str(err))}</span>'

        for ctl in ctrls.values():
            ctl.observe(update, names="value")
        box = w.VBox([w.HTML(f"<strong>{html.escape(self.title)}</strong>"), w.HBox(list(ctrls.values()), layout=w.Layout(flex_flow="row wrap")), fig, error])
        box.controls = ctrls  # for tests: set a control, then read figure.data
        box.figure = fig
        return box

    def show(self) -> None:
        """Display the explorer: static HTML in the book build, live widgets in a kernel."""
        from IPython.display import display  # noqa: PLC0415

        from ..book import is_static  # noqa: PLC0415

        meta = {"losslab": {"kind": "explorer", "name": self.name, "mode": "static" if is_static() else "live"}}
        if is_static():
            display({"text/html": self.static_html(), "text/plain": f"[{self.title}]"}, raw=True, metadata=meta)
        else:
            display(self.widget(), metadata=meta)

    def time_render(self, repeats: int = 3) -> float:
        """Median seconds for one PNG frame (render + rasterize) at the default settings: the old live update."""
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.frame()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def time_update(self, repeats: int = 3, settings: Sequence[Mapping[str, Any]] | None = None) -> float:
        """Median seconds for one live update: render, describe, and update a ``FigureWidget``'s traces in place.

        ``settings`` (default: the static grid's settings, at most ``repeats`` of them, spread over it) are
        visited in turn, so each update changes the figure as a reader's would.
        """
        grid = list(settings) if settings is not None else self.grid()
        if settings is None and len(grid) > repeats:
            grid = [grid[round(i * (len(grid) - 1) / max(repeats - 1, 1))] for i in range(repeats)]
        fig = _figure_widget(self.describe())
        times = []
        for params in grid:
            t0 = time.perf_counter()
            _apply(fig, self.describe(**params))
            times.append(time.perf_counter() - t0)
        return float(np.median(times))


def _plotly_ready(desc: dict) -> tuple[list, dict]:
    data = [{k: v for k, v in t.items()} for t in desc["data"]]
    layout = dict(desc["layout"])
    layout.pop("height", None)
    layout["height"] = desc["layout"].get("height", 360)
    return data, layout


def _figure_widget(desc: dict):
    """A Plotly FigureWidget drawing ``desc`` (a plain Figure where anywidget is missing)."""
    import plotly.graph_objects as go  # noqa: PLC0415

    data, layout = _plotly_ready(desc)
    try:
        return go.FigureWidget(data=data, layout=layout)
    except (ImportError, ValueError):
        return go.Figure(data=data, layout=layout)


def _apply(fig, desc: dict) -> None:
    """Update ``fig``'s traces and layout in place to draw ``desc`` (the trace list is replaced only if its shape changed)."""
    data, layout = _plotly_ready(desc)
    with fig.batch_update():
        same = len(fig.data) == len(data) and all(t.type == d.get("type", "scatter") for t, d in zip(fig.data, data))
        if same:
            for t, d in zip(fig.data, data):
                t.update(d, overwrite=True)
        else:
            fig.data = []
            fig.add_traces(data)
        fig.layout.update(layout, overwrite=True)


def _distance(value: Any, target: Any) -> float:
    if isinstance(value, (int, float)) and isinstance(target, (int, float)):
        return abs(value - target)
    return 0.0 if value == target else 1.0


def _quantize(png: bytes) -> bytes:
    """Re-encode a PNG with a 256-colour palette: about 3x smaller for plots."""
    from PIL import Image  # noqa: PLC0415

    img = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, format="PNG")
    return out.getvalue()


def _asset(name: str) -> str:
    return (resources.files("losslab") / "assets" / name).read_text(encoding="utf-8")
