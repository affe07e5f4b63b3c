import json
import os
import re
import shutil

import pytest

import bookfiles as bf
from losslab import book
from losslab.__main__ import sync_setup


def test_setup_cell_installs_from_the_configured_repository():
    url, branch = book.read_repository(bf.ROOT / "_config.yml")
    src = book.setup_cell(url, branch)
    assert f'"losslab @ git+{url}@{branch}"' in src
    assert 'if "google.colab" in sys.modules:' in src
    assert src.rstrip().endswith("device = losslab.setup(seed=0)")


def test_setup_cell_executes_outside_colab(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    result = shell.run_cell(book.setup_cell("https://example.org/repo", "main", seed=3))
    assert result.success, result.error_in_exec
    assert "losslab" in capsys.readouterr().out
    assert str(shell.user_ns["device"]) in ("cpu", "cuda", "mps")


def test_read_repository_rejects_missing_or_insecure_urls(tmp_path):
    cfg = tmp_path / "_config.yml"
    cfg.write_text("repository:\n  url: http://insecure.example/repo\n  branch: main\n")
    with pytest.raises(ValueError, match="repository.url"):
        book.read_repository(cfg)
    cfg.write_text("repository:\n  url: https://example.org/repo\n")
    with pytest.raises(ValueError, match="repository.branch"):
        book.read_repository(cfg)


def test_sync_setup_rewrites_cells_after_the_url_changes(tmp_path):
    shutil.copy(bf.ROOT / "book" / "how_this_book_works.ipynb", tmp_path / "page.ipynb")
    cfg = tmp_path / "_config.yml"
    cfg.write_text("repository:\n  url: https://example.org/fork\n  branch: dev\n")
    changed = sync_setup(cfg, tmp_path)
    assert changed == [tmp_path / "page.ipynb"]
    nb = json.loads((tmp_path / "page.ipynb").read_text())
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert '"losslab @ git+https://example.org/fork@dev"' in "".join(first_code["source"])
    assert sync_setup(cfg, tmp_path) == []  # idempotent


def test_static_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv(book.STATIC_ENV, "1")
    assert book.is_static()
    monkeypatch.setenv(book.STATIC_ENV, "0")
    assert not book.is_static()
    monkeypatch.delenv(book.STATIC_ENV)
    assert not book.is_static()


def test_glue_rejects_bad_names():
    with pytest.raises(ValueError, match="name"):
        book.glue("not a name", 1)


def test_a_cell_ending_in_glue_prints_no_stray_value():
    """In a real kernel, a cell whose last line is glue(...) shows the value only where the prose asks for it."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import losslab\nx = 0.14096502606708886\nlosslab.glue('x', x)"),
        nbformat.v4.new_code_cell("losslab.glue('y', 2 * x, display=True)"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    first, second = (c.outputs for c in nb.cells)
    shown = [o for o in first if o.output_type in ("execute_result", "display_data")
             and "0.1409650260" in o.get("data", {}).get("text/plain", "")
             and "scrapbook" not in o.get("metadata", {})]
    assert not shown, f"a cell ending in glue() printed its value: {shown}"
    assert not [o for o in first if o.output_type == "execute_result"], "glue() returned a value that IPython displayed"
    # display=True still shows it, once, through myst-nb's glue output.
    assert any("0.2819300521" in o.get("data", {}).get("text/plain", "") for o in second)


def test_without_myst_nb_a_static_run_still_records_glued_values_for_comparison():
    """gpucheck executes pages where myst-nb is missing: the values must still be found, as myst-nb writes them."""
    import nbformat
    from nbclient import NotebookClient

    from losslab.reader import glued_values

    hide = "import sys\nsys.modules['myst_nb'] = None  # as on a machine without the build tools\nimport losslab\n"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(hide + "losslab.glue('x', 0.25)\nlosslab.glue('word', 'lower')")]
    for static, expected in (("1", {"x": "0.25", "word": "'lower'"}), ("0", {})):
        run = nbformat.from_dict(nb)
        NotebookClient(run, timeout=120, kernel_name="python3").execute(env=dict(os.environ, LOSSLAB_STATIC=static))
        assert glued_values(run) == expected
        assert not [o for o in run.cells[0].outputs if "text/plain" in o.get("data", {})], "a glued value was shown"


def test_the_config_loads_the_extension_that_marks_static_builds():
    import yaml

    cfg = yaml.safe_load((bf.ROOT / "_config.yml").read_text())
    assert "losslab.sphinxext" in cfg["sphinx"]["extra_extensions"]
    assert cfg["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert cfg["only_build_toc_files"] is True
    assert "path_to_book" not in cfg["repository"]
    assert re.match(r"https://github\.com/[\w.-]+/[\w.-]+$", cfg["repository"]["url"])


def test_widgets_advice_names_the_fix_for_ipywidgets_7():
    assert book.widgets_advice("8.1.9", "8.1.9") is None
    old = book.widgets_advice("7.7.1", "7.7.1")
    assert "ipywidgets 8" in old and "%pip install -q 'ipywidgets>=8,<9'" in old and "restart" in old
    upgraded = book.widgets_advice("7.7.1", "8.1.9")
    assert "8.1.9 was installed" in upgraded and "7.7.1" in upgraded and "restart" in upgraded


def test_setup_is_quiet_about_widgets_when_they_work(capsys, monkeypatch):
    monkeypatch.delenv(book.STATIC_ENV, raising=False)
    book.setup(seed=0)
    out = capsys.readouterr().out
    assert "ipywidgets" not in out and out.count("\n") == 1
