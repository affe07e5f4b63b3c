import matplotlib

matplotlib.use("Agg")


def pytest_terminal_summary(terminalreporter):
    import bookfiles

    if bookfiles.TIMES:
        terminalreporter.section("notebook execution times (limit %.0f s each)" % bookfiles.TIME_LIMIT_S)
        for name, seconds in bookfiles.TIMES.items():
            terminalreporter.write_line(f"{name:40s} {seconds:6.1f} s")
        terminalreporter.write_line(f"{'total':40s} {sum(bookfiles.TIMES.values()):6.1f} s")
