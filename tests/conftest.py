import matplotlib

matplotlib.use("Agg")


def pytest_runtest_logreport(report):
    """Collect notebook times from test reports: also those of xdist workers, whose module state stays there."""
    import bookfiles

    if report.when == "call":
        for key, value in report.user_properties:
            if key == "notebook_seconds":
                bookfiles.TIMES[value[0]] = value[1]


def pytest_terminal_summary(terminalreporter):
    import bookfiles

    if bookfiles.TIMES:
        terminalreporter.section(
            "notebook execution times (budget %.0f s each on a 2-core CPU; the test fails past %.0f s)"
            % (bookfiles.TIME_LIMIT_S, bookfiles.TIME_GUARD_S))
        for name, seconds in bookfiles.TIMES.items():
            over = "  OVER BUDGET" if seconds > bookfiles.TIME_LIMIT_S else ""
            terminalreporter.write_line(f"{name:40s} {seconds:6.1f} s{over}")
        terminalreporter.write_line(f"{'total':40s} {sum(bookfiles.TIMES.values()):6.1f} s")


# Property-based tests (tests/test_properties.py) run under a hypothesis profile:
# "quick" (the default, what `make test` runs: few, fixed examples per property, no example database
# written) or "long" (HYPOTHESIS_PROFILE=long: many random examples, for a nightly or manual run).
import os

from hypothesis import HealthCheck, settings

settings.register_profile("quick", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


# The JupyterLab test (tests/test_jupyterlab.py) needs an environment of its own (`make jupyterlab-test`):
# it runs only when the -m expression names it, so `make test`, `make unit` and plain `pytest` leave it out.
def pytest_collection_modifyitems(config, items):
    if "jupyterlab" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("jupyterlab") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("jupyterlab")])
        items[:] = kept
