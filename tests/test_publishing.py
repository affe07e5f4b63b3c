"""The workflows publish what the build makes and watch for dependency drift."""

import re

import yaml

import bookfiles as bf

WORKFLOWS = bf.ROOT / ".github" / "workflows"


def load(name):
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps(workflow):
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_pages_publishes_exactly_the_build_output():
    wf = load("pages.yml")
    runs = [s.get("run", "") for s in steps(wf)]
    assert any(re.search(r"^make book$", r, re.M) for r in runs), "pages.yml must build with the README's command"
    uploads = [s for s in steps(wf) if s.get("uses", "").startswith("actions/upload-pages-artifact")]
    assert len(uploads) == 1 and uploads[0]["with"]["path"] == "_build/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in steps(wf))
    assert wf["permissions"]["pages"] == "write"


def test_pages_publishes_the_reader_edition_on_the_branch_the_launch_buttons_open():
    wf = load("pages.yml")
    runs = "\n".join(s.get("run", "") for s in steps(wf))
    assert "python -m losslab.reader --out _build/reader" in runs
    assert "losslab_reader_branch" in runs and 'git push --force origin "$branch"' in runs
    assert wf["permissions"]["contents"] == "write"
    cfg = yaml.safe_load((bf.ROOT / "_config.yml").read_text())
    reader = cfg["sphinx"]["config"]["losslab_reader_branch"]
    assert reader and reader != cfg["repository"]["branch"]


def test_the_readme_commands_are_the_ones_ci_runs():
    readme = (bf.ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    ci = (bf.ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert any(re.search(r"^make test$", s.get("run", ""), re.M) for s in steps(load("test.yml")))


def test_drift_workflow_runs_on_a_schedule_with_unpinned_newest_versions():
    wf = load("drift.yml")
    on = wf.get(True, wf.get("on"))  # YAML reads the key `on` as True
    assert "schedule" in on and on["schedule"][0]["cron"]
    newest = [s.get("run", "") for s in steps(wf) if "pinned" not in s.get("name", "")]
    runs = "\n".join(newest)
    assert "requirements.txt" not in runs, "the drift job's newest environment must ignore the pins"
    assert "--upgrade-strategy eager" in runs and '-e ".[dev]"' in runs
    assert "pytest" in runs and "not built" in runs


def test_the_package_ranges_admit_the_pinned_environment():
    """requirements.txt (the pins) must satisfy pyproject's ranges, or the two drift apart silently."""
    import tomllib

    from packaging.requirements import Requirement

    pins = {}
    for line in (bf.ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.split("+")[0]
    project = tomllib.loads((bf.ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is a dependency but requirements.txt does not pin it"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"


def test_binder_installs_the_cpu_build_of_the_pinned_torch():
    binder = (bf.ROOT / "binder" / "requirements.txt").read_text()
    pins = (bf.ROOT / "requirements.txt").read_text()
    torch_pin = re.search(r"^torch==([\w.]+)$", pins, re.M).group(1)
    assert re.search(rf"^torch=={re.escape(torch_pin)}\+cpu$", binder, re.M)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in binder
    assert re.search(r"^-r \.\./requirements\.txt$", binder, re.M), "binder must install the same pins"


def test_drift_compares_every_pages_glued_values_with_the_pinned_run():
    wf = load("drift.yml")
    runs = "\n".join(s.get("run", "") for s in steps(wf))
    assert ".pinned/bin/pip install -r requirements.txt" in runs
    assert ".pinned/bin/python -m losslab.glued save _build/pinned.json" in runs
    assert ".venv/bin/python -m losslab.glued save _build/newest.json" in runs
    assert "losslab.glued compare _build/pinned.json _build/newest.json --kind versions" in runs
