"""Glued values compared across devices (python -m losslab.gpucheck) and dependency versions (losslab.glued)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import bookfiles as bf
from losslab import glued

SPEC = {
    "default_rtol": 1e-4,
    "default_atol": 1e-9,
    "rule": [
        {"page": "05_*", "names": ["fd_*"], "skip": True, "reason": "timings"},
        {"page": "04_*", "names": ["wsd_*"], "rtol": 0.2, "reason": "training noise"},
    ],
}


def test_values_within_the_default_tolerance_pass_and_others_fail():
    rows = {r["name"]: r for r in glued.compare_glued(
        "01_loss", {"a": "1.0", "b": "2.0", "c": "np.float64(3.0)", "w": "'higher'"},
        {"a": "1.00001", "b": "2.01", "c": "3.0", "w": "'lower'"}, SPEC)}
    assert rows["a"]["ok"] and not rows["b"]["ok"] and rows["c"]["ok"] and not rows["w"]["ok"]


def test_rules_loosen_or_skip_by_page_and_name():
    rows = {r["name"]: r for r in glued.compare_glued(
        "04_schedules", {"wsd_loss": "1.0", "other": "1.0"}, {"wsd_loss": "1.15", "other": "1.15"}, SPEC)}
    assert rows["wsd_loss"]["ok"] and not rows["other"]["ok"]
    rows = glued.compare_glued("05_backprop", {"fd_large": "10"}, {"fd_large": "900"}, SPEC)
    assert rows[0]["ok"] and "timings" in rows[0]["why"]


def test_a_value_glued_in_one_run_only_fails():
    rows = glued.compare_glued("01", {"a": "1"}, {}, SPEC)
    assert not rows[0]["ok"] and "one run" in rows[0]["why"]


def test_the_books_tolerance_file_is_valid(tmp_path):
    spec = glued.load_tolerances(bf.ROOT / "book" / "tolerances.toml", kind="devices")
    assert spec["default_rtol"] <= 1e-3 and all(r["reason"] for r in spec.get("rule", []))
    bad = tmp_path / "t.toml"
    bad.write_text('[[rule]]\npage = "x"\nnames = ["*"]\nreason = "r"\n')
    with pytest.raises(ValueError, match="rtol/atol or skip"):
        glued.load_tolerances(bad, kind="versions")


def test_the_command_runs_without_a_gpu_and_writes_its_report(tmp_path):
    out = subprocess.run([sys.executable, "-m", "losslab.gpucheck", "--skip-tests", "--skip-bench", "--skip-pages",
                          "--out", str(tmp_path)], cwd=bf.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ALL PASSED" in (tmp_path / "report.md").read_text()


def test_rules_can_apply_to_one_kind_of_comparison(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[rule]]\npage = "07_*"\nnames = ["*"]\nrtol = 0.5\nreason = "noise"\nonly = "devices"\n')
    assert glued.load_tolerances(path, kind="devices")["rule"] and not glued.load_tolerances(path, kind="versions")["rule"]
    with pytest.raises(ValueError, match="kind"):
        glued.load_tolerances(path, kind="both")


def test_saved_runs_compare_and_failed_pages_are_reported(tmp_path):
    a = {"torch": "2.13", "pages": {"01": {"error": None, "values": {"x": "1.0"}}, "02": {"error": "boom", "values": {}}}}
    b = {"torch": "2.14", "pages": {"01": {"error": None, "values": {"x": "1.5"}}, "02": {"error": None, "values": {}}}}
    rows, failed = glued.compare_runs(a, b, SPEC)
    assert failed == ["02"] and not rows[0]["ok"]
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    out = subprocess.run([sys.executable, "-m", "losslab.glued", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                          "--kind", "versions"], cwd=bf.ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "1 beyond tolerance" in out.stdout and "01 x: 1.0 vs 1.5" in out.stdout
