"""python -m losslab.gpucheck: the comparison of a page's glued values across devices."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bookfiles as bf
from losslab import gpucheck

SPEC = {
    "default_rtol": 1e-4,
    "default_atol": 1e-9,
    "rule": [
        {"page": "05_*", "names": ["fd_*"], "skip": True, "reason": "timings"},
        {"page": "04_*", "names": ["wsd_*"], "rtol": 0.2, "reason": "training noise"},
    ],
}


def test_values_within_the_default_tolerance_pass_and_others_fail():
    rows = {r["name"]: r for r in gpucheck.compare_glued(
        "01_loss", {"a": "1.0", "b": "2.0", "c": "np.float64(3.0)", "w": "'higher'"},
        {"a": "1.00001", "b": "2.01", "c": "3.0", "w": "'lower'"}, SPEC)}
    assert rows["a"]["ok"] and not rows["b"]["ok"] and rows["c"]["ok"] and not rows["w"]["ok"]


def test_rules_loosen_or_skip_by_page_and_name():
    rows = {r["name"]: r for r in gpucheck.compare_glued(
        "04_schedules", {"wsd_loss": "1.0", "other": "1.0"}, {"wsd_loss": "1.15", "other": "1.15"}, SPEC)}
    assert rows["wsd_loss"]["ok"] and not rows["other"]["ok"]
    rows = gpucheck.compare_glued("05_backprop", {"fd_large": "10"}, {"fd_large": "900"}, SPEC)
    assert rows[0]["ok"] and "timings" in rows[0]["why"]


def test_a_value_glued_in_one_run_only_fails():
    rows = gpucheck.compare_glued("01", {"a": "1"}, {}, SPEC)
    assert not rows[0]["ok"] and "one run" in rows[0]["why"]


def test_the_books_tolerance_file_is_valid(tmp_path):
    spec = gpucheck.load_tolerances(bf.ROOT / "book" / "device_tolerances.toml")
    assert spec["default_rtol"] <= 1e-3 and all(r["reason"] for r in spec.get("rule", []))
    bad = tmp_path / "t.toml"
    bad.write_text('[[rule]]\npage = "x"\nnames = ["*"]\nreason = "r"\n')
    with pytest.raises(ValueError, match="rtol/atol or skip"):
        gpucheck.load_tolerances(bad)


def test_the_command_runs_without_a_gpu_and_writes_its_report(tmp_path):
    out = subprocess.run([sys.executable, "-m", "losslab.gpucheck", "--skip-tests", "--skip-bench", "--skip-pages",
                          "--out", str(tmp_path)], cwd=bf.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ALL PASSED" in (tmp_path / "report.md").read_text()
