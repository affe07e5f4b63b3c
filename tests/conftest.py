import matplotlib

matplotlib.use("Agg")


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
