"""Explorers: move a control, see the consequence.

An explorer is a pure ``render(**params) -> Figure`` plus a description of its
controls. The same ``render`` feeds three places:

- **live** (Jupyter, Colab): :meth:`Explorer.widget` is a thin ipywidgets
  shell (sliders, dropdowns, checkboxes and an image) that re-renders in
  place on every change;
- **static** (the built book, no kernel): :meth:`Explorer.static_html`
  pre-renders one frame per point of a small grid of control values and
  switches between them with plain HTML controls and a few lines of script;
  self-contained, no CDN, no server, at most :data:`MAX_STATIC_BYTES`;
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

__all__ = ["Slider", "Choice", "Toggle", "Explorer", "MAX_STATIC_BYTES", "registered", "REGISTRY"]

#: Budget for one explorer's static HTML (all frames together).
MAX_STATIC_BYTES = 1_500_000


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
        Values pre-rendered for the static book; default 5 values evenly
        (or log-evenly) spaced over the range, with the default among them.
    label : str, optional
        Text beside the control; default the parameter name.
    """

    min: float
    max: float
    default: float
    step: float | None = None
    log: bool = False
    integer: bool = False
    static: Sequence[float] | None = None
    label: str | None = None

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
        if self.static is not None:
            vals = sorted(set(float(v) for v in self.static) | {float(self.default)})
        else:
            if self.log:
                grid = np.geomspace(self.min, self.max, 5)
            else:
                grid = np.linspace(self.min, self.max, 5)
            grid[np.argmin(np.abs(grid - self.default))] = self.default
            vals = sorted(set(float(v) for v in grid))
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
    alt : str
        Alt text, a format string over the parameters (``"... {lr:.2g}"``).
    dpi : float
        Resolution of rendered frames.
    max_frames : int
        Upper bound on the static grid (product of every control's static values).
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
        max_frames: int = 60,
    ) -> None:
        if not callable(render):
            raise TypeError(f"render: expected a callable, got {type(render).__name__}")
        if not controls:
            raise ValueError("controls: an explorer needs at least one control")
        for key, control in controls.items():
            if not isinstance(control, (Slider, Choice, Toggle)):
                raise TypeError(f"controls[{key!r}]: expected Slider, Choice or Toggle, got {type(control).__name__}")
        if not alt or not isinstance(alt, str):
            raise ValueError("alt: every explorer needs alt text describing the figure")
        self.name = name
        self._render = render
        self.controls = dict(controls)
        self.title = title
        self.alt_template = alt
        self.dpi = dpi
        n = self.n_frames
        if n > max_frames:
            sizes = {k: len(c.static_values()) for k, c in self.controls.items()}
            raise ValueError(
                f"controls: the static grid has {n} frames ({sizes}), more than max_frames={max_frames}; "
                "give sliders fewer `static` values"
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
        try:
            return self.alt_template.format(**self.params(**params))
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

    # -- static ---------------------------------------------------------------
    def static_html(self, *, max_bytes: int = MAX_STATIC_BYTES) -> str:
        """Self-contained HTML: pre-rendered frames switched by plain HTML controls.

        Raises
        ------
        ValueError
            If the frames together exceed ``max_bytes``.
        """
        names = list(self.controls)
        statics = [self.controls[k].static_values() for k in names]
        frames: dict[str, str] = {}
        alts: dict[str, str] = {}
        total = 0
        for idx in itertools.product(*(range(len(v)) for v in statics)):
            params = {k: statics[j][i] for j, (k, i) in enumerate(zip(names, idx))}
            png = self.frame(compress=True, **params)
            total += len(png) * 4 // 3
            if total > max_bytes:
                raise ValueError(
                    f"{self.name}: static frames exceed {max_bytes / 1e6:.1f} MB after {len(frames) + 1} of "
                    f"{self.n_frames} frames; use fewer static values, a smaller figure or a lower dpi"
                )
            key = ",".join(map(str, idx))
            frames[key] = base64.b64encode(png).decode("ascii")
            alts[key] = self.alt(**params)
        start = []
        for k, vals in zip(names, statics):
            init = _initial(self.controls[k])
            start.append(int(np.argmin([_distance(v, init) for v in vals])))
        start_key = ",".join(map(str, start))
        uid = "lle-" + uuid.uuid4().hex[:12]
        e = html.escape
        rows = []
        for j, (k, c) in enumerate(zip(names, self.controls.values())):
            label = e(c.label or k)
            labels = [c.format(v) for v in statics[j]]
            data = f'data-j="{j}" data-name="{e(k)}" data-labels="{e(json.dumps(labels))}" aria-label="{label}"'
            if isinstance(c, Slider):
                rows.append(
                    f'<label class="lle-ctl"><span class="lle-name">{label}</span>'
                    f'<input type="range" min="0" max="{len(statics[j]) - 1}" step="1" value="{start[j]}" {data}>'
                    f'<output class="lle-val">{e(labels[start[j]])}</output></label>'
                )
            elif isinstance(c, Choice):
                opts = "".join(
                    f'<option value="{i}"{" selected" if i == start[j] else ""}>{e(text)}</option>'
                    for i, text in enumerate(labels)
                )
                rows.append(f'<label class="lle-ctl"><span class="lle-name">{label}</span><select {data}>{opts}</select></label>')
            else:
                checked = " checked" if start[j] == 1 else ""
                rows.append(f'<label class="lle-ctl"><input type="checkbox" {data}{checked}> <span class="lle-name">{label}</span></label>')
        payload = json.dumps({"frames": frames, "alts": alts})
        return (
            f'<div class="lle" id="{uid}" data-losslab="explorer" data-name="{e(self.name)}">'
            f"<style>{_asset('explorer.css')}</style>"
            f'<div class="lle-title">{e(self.title)}</div>'
            f'<div class="lle-controls">{"".join(rows)}</div>'
            f'<img class="lle-frame" src="data:image/png;base64,{frames[start_key]}" alt="{e(alts[start_key])}">'
            f'<div class="lle-note">Pre-rendered at {self.n_frames} settings; run this chapter in Jupyter or Colab for continuous controls. '
            "The page address records the settings, so a link to it opens this exact view.</div>"
            f'<script type="application/json" class="lle-data">{payload}</script>'
            f"<script>{_asset('explorer.js')}\nwindow.losslabExplorer.mount({json.dumps(uid)});</script>"
            "</div>"
        )

    # -- live -----------------------------------------------------------------
    def widget(self):
        """The live ipywidgets shell: controls above an image updated in place."""
        import ipywidgets as w  # noqa: PLC0415

        # Sliders report on release (continuous_update=False): a frame takes
        # 0.1-0.4 s to draw, and redrawing every position passed while
        # dragging would queue up frames that lag behind the hand.
        ctrls: dict[str, Any] = {}
        for k, c in self.controls.items():
            desc = c.label or k
            style = {"description_width": "initial"}
            if isinstance(c, Slider):
                if c.log:
                    ctrls[k] = w.FloatLogSlider(value=c.default, base=10, min=math.log10(c.min), max=math.log10(c.max),
                                                step=(math.log10(c.max) - math.log10(c.min)) / 100, description=desc, style=style,
                                                readout_format=".3g", continuous_update=False)
                elif c.integer:
                    ctrls[k] = w.IntSlider(value=int(c.default), min=int(c.min), max=int(c.max), step=int(c.step or 1),
                                           description=desc, style=style, continuous_update=False)
                else:
                    ctrls[k] = w.FloatSlider(value=c.default, min=c.min, max=c.max, step=c.step or (c.max - c.min) / 100,
                                             description=desc, style=style, readout_format=".3g", continuous_update=False)
            elif isinstance(c, Choice):
                options = [(c.format(v), v) for v in c.options]
                ctrls[k] = w.Dropdown(options=options, value=c.initial, description=desc, style=style)
            else:
                ctrls[k] = w.Checkbox(value=c.default, description=desc, style=style, indent=False)
        image = w.Image(format="png", value=self.frame(), layout=w.Layout(max_width="100%"))
        error = w.HTML()

        def update(_change: Any = None) -> None:
            try:
                image.value = self.frame(**{k: ctl.value for k, ctl in ctrls.items()})
                error.value = ""
            except Exception as err:  # show the problem where the reader is looking
                error.value = f'<span style="color:#8a3a00">{html.escape(type(err).__name__)}: {html.escape(str(err))}</span>'

        for ctl in ctrls.values():
            ctl.observe(update, names="value")
        box = w.VBox([w.HTML(f"<strong>{html.escape(self.title)}</strong>"), w.HBox(list(ctrls.values()), layout=w.Layout(flex_flow="row wrap")), image, error])
        box.controls = ctrls  # for tests: set a control, then read image.value
        box.image = image
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
        """Median seconds for one live update (render + PNG) at the default settings."""
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.frame()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))


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
