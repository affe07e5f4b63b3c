"""Make the book's icon fonts: the few Font Awesome glyphs its pages show, nothing else.

The theme (pydata-sphinx-theme) ships all of Font Awesome 6 Free twice: as a 1.5 MB
script that swaps every ``<i class="fa-...">`` for an SVG, and as web fonts
(solid 150 KiB, brands 115 KiB) that its CSS uses. The book drops the script
(book/_templates/layout.html) and points the theme's icon CSS at two small
subsets of those fonts, ``book/_static/icons/book-icons-{solid,brands}.woff``
(book/_static/book.css). This script writes them.

The glyphs kept: every icon the theme's CSS names (``--pst-icon-*``: admonitions,
external links, breadcrumbs, ...), every ``fa-*`` class in the built pages, and the
icons the theme's JavaScript inserts. Run it after changing the theme or adding
an icon, on a built book:

    python tools/icons.py            # reads _build/html, writes book/_static/icons/

tests/test_built_web.py checks that every icon a built page uses has its glyph.
Font Awesome Free's fonts are under the SIL Open Font License 1.1; the subsets
are renamed ("Book Icons"), as the license asks of modified versions.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
OUT = ROOT / "book" / "_static" / "icons"
THEME_CSS = "_static/styles/pydata-sphinx-theme.css"
THEME_JS = ["_static/scripts/pydata-sphinx-theme.js", "_static/scripts/sphinx-book-theme.js"]
BRAND_CLASSES = {"fab", "fa-brands"}
STYLE_CLASSES = {"fa-solid", "fa-brands", "fa-regular", "fa-lg", "fa-fw", "fa-xs", "fa-sm", "fa-xl", "fa-2x"}


def icon_codepoints(css: str) -> dict[str, int]:
    """``fa-name`` -> codepoint, from the theme's copy of Font Awesome's CSS."""
    names = {}
    for selectors, value in re.findall(r"((?:\.fa-[a-z0-9-]+:before,?)+)\{content:\"\\([0-9a-f]+)\"\}", css):
        for name in re.findall(r"\.(fa-[a-z0-9-]+):before", selectors):
            names[name] = int(value, 16)
    return names


def css_variable_codepoints(css: str) -> dict[str, int]:
    """The theme's ``--pst-icon-*`` and breadcrumb variables that hold a glyph."""
    found = {}
    for name, value in re.findall(r"(--pst-(?:icon-[a-z-]+|breadcrumb-divider)):\"([^\"]+)\"", css):
        if len(value) == 1 and ord(value) >= 0xE000:
            found[name] = ord(value)
        elif value.startswith("\\"):
            found[name] = int(value[1:], 16)
    return found


def used_icons(html_root: Path) -> tuple[set[str], set[str]]:
    """(solid, brands) ``fa-*`` names used by the built pages and the theme's scripts."""
    solid, brands = set(), set()
    pages = [p.read_text(encoding="utf-8") for p in html_root.rglob("*.html")]
    for text in pages:
        for classes in re.findall(r'class="([^"]*\bfa[a-z-]*\b[^"]*)"', text):
            words = set(classes.split())
            icons = {w for w in words if w.startswith("fa-")} - STYLE_CLASSES
            (brands if words & BRAND_CLASSES else solid).update(icons)
    for js in THEME_JS:
        path = html_root / js
        if path.exists():  # e.g. the close button of the search dialog (fa-xmark)
            solid.update(set(re.findall(r"fa-[a-z0-9-]+", path.read_text(encoding="utf-8"))) - STYLE_CLASSES)
    return solid, brands


def glyphs_needed(html_root: Path = HTML) -> tuple[set[int], set[int]]:
    css = (html_root / THEME_CSS).read_text(encoding="utf-8")
    names = icon_codepoints(css)
    solid_names, brand_names = used_icons(html_root)
    unknown = sorted((solid_names | brand_names) - names.keys())
    if unknown:
        raise SystemExit(f"icons with no glyph in the theme's Font Awesome: {unknown}")
    variables = css_variable_codepoints(css)
    brand_vars = {v for k, v in variables.items() if k in {"--pst-icon-github", "--pst-icon-gitlab"}}
    solid = {names[n] for n in solid_names} | (set(variables.values()) - brand_vars)
    brands = {names[n] for n in brand_names} | brand_vars
    return solid, brands


def theme_fonts() -> Path:
    import pydata_sphinx_theme  # noqa: PLC0415

    return Path(pydata_sphinx_theme.__file__).parent / "theme" / "pydata_sphinx_theme" / "static" / "vendor" / "fontawesome" / "webfonts"


def subset(source: Path, codepoints: set[int], family: str, out: Path) -> None:
    from fontTools import subset as ft  # noqa: PLC0415
    from fontTools.ttLib import TTFont  # noqa: PLC0415

    options = ft.Options()
    options.flavor = "woff"  # woff2 needs brotli; woff (zlib) is as small for a few glyphs
    options.layout_features = []
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6]
    options.notdef_outline = True
    font = TTFont(source)
    sub = ft.Subsetter(options)
    sub.populate(unicodes=sorted(codepoints))
    sub.subset(font)
    for record in font["name"].names:
        if record.nameID in (1, 3, 4, 16):
            record.string = family
        elif record.nameID == 6:
            record.string = family.replace(" ", "")
    font.flavor = "woff"
    font.save(out)


def main() -> int:
    if not (HTML / THEME_CSS).exists():
        sys.exit("no built book under _build/html: build it first")
    solid, brands = glyphs_needed()
    OUT.mkdir(parents=True, exist_ok=True)
    fonts = theme_fonts()
    subset(fonts / "fa-solid-900.ttf", solid, "Book Icons", OUT / "book-icons-solid.woff")
    subset(fonts / "fa-brands-400.ttf", brands, "Book Icons Brands", OUT / "book-icons-brands.woff")
    for name in ("book-icons-solid.woff", "book-icons-brands.woff"):
        print(f"{OUT / name}: {(OUT / name).stat().st_size} bytes")
    print(f"{len(solid)} solid and {len(brands)} brand glyphs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
