"""The HTML report of a results folder, and the CLI around it (`report`, `reproduce --all`).

The browser test (test_browser.py) opens the same report in headless Chromium; both share one
quick reproduction of the introduction, made once per session by :func:`reproduced_results`.
"""

import json
import re
import shutil
from pathlib import Path

import pytest

from superposition import report as report_module
from superposition.cli import main
from superposition.experiments import ALL
from superposition.report import PLOTLY_MARKER, REPORT_FILE, build_report, write_report
from superposition.reproduce import reproduce

_SHARED: dict[str, Path] = {}


def reproduced_results(factory: pytest.TempPathFactory) -> Path:
    """A results folder holding ``intro`` reproduced with ``--quick``, trained once per session
    (test_browser.py uses it too). Tests that change a folder work on a copy."""
    if "results" not in _SHARED:
        out = factory.mktemp("reproduced")
        reproduce("intro", out, quick=True, progress=False)
        _SHARED["results"] = out
    return _SHARED["results"]


@pytest.fixture(scope="session")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return reproduced_results(tmp_path_factory)


@pytest.fixture
def partial(results: Path, tmp_path: Path) -> Path:
    """A copy of the results with one more experiment folder that names a run it does not have."""
    folder = tmp_path / "results"
    shutil.copytree(results / "intro", folder / "intro")
    broken = folder / ALL[2]
    broken.mkdir()
    meta = {"name": ALL[2], "title": "?", "quick": True, "runs": ["gone"]}
    (broken / "experiment.json").write_text(json.dumps(meta))
    return folder


def sections(page: str) -> dict[str, str]:
    """Each experiment's <section> of the page, by name."""
    found = re.findall(r'<section [^>]*data-experiment="([^"]+)"[^>]*>(.*?)</section>', page, re.S)
    return dict(found)


def section_status(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-experiment="([^"]+)" data-status="([^"]+)"', page))


def without_plotly_js(page: str) -> str:
    head_script = re.compile(r"<script>/\*\*\n\* plotly\.js v.*?</script>", re.S)
    return head_script.sub("", page, count=1)


# --------------------------------------------------------------------------------------------------
# the page


@pytest.mark.slow
def test_report_renders_the_present_experiments_and_says_what_is_missing(partial: Path) -> None:
    path = build_report(partial)
    assert path == partial / REPORT_FILE
    page = path.read_text(encoding="utf-8")
    assert page.count(PLOTLY_MARKER) == 1, "plotly.js must be embedded exactly once"
    assert page.index(PLOTLY_MARKER) < page.index("</head>")

    status = section_status(page)
    assert list(status) == list(ALL), "one section per experiment, paper's order"
    assert status["intro"] == "ok"
    assert status[ALL[2]] in ("incomplete", "unavailable")
    assert all(s != "ok" for name, s in status.items() if name != "intro")

    parts = sections(page)
    intro = parts["intro"]
    claims = json.loads((partial / "intro" / "claims.json").read_text())
    for c in claims:
        assert f"<td>{c['text']}</td>" in intro
    verdicts = re.findall(r'<tr class="(holds|fails)">', intro)
    assert verdicts == ["holds" if c["holds"] else "fails" for c in claims]
    holding = sum(c["holds"] for c in claims)
    assert f"<strong>{holding} of {len(claims)}</strong> claims hold" in page
    # the interactive polygons figure (plotly div + call) and the static PNG, inlined
    assert 'data-figure="polygons"' in intro
    assert intro.count("Plotly.newPlot") == 1
    assert 'src="data:image/png;base64,iVBORw0KGgo' in intro
    assert 'href="./intro/figures/polygons.png"' in intro
    assert 'href="./intro/figures/polygons.svg"' in intro

    for name in ALL[1:]:
        assert 'class="missing-box"' in parts[name], name
    if status[ALL[2]] == "incomplete":
        assert "runs/gone" in parts[ALL[2]]
        assert f"superposition reproduce {ALL[2]} --out" in parts[ALL[2]]

    # nothing to fetch: no script, stylesheet, image or font from anywhere but the page itself
    rest = without_plotly_js(page)
    assert "<script src" not in rest and "<link" not in rest
    assert not re.search(r'(src|href)="(https?:)?//', rest)
    assert "@import" not in rest and "url(" not in rest


@pytest.mark.slow
def test_an_incomplete_experiment_says_what_is_missing_and_the_rest_renders(
    results: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "results"
    shutil.copytree(results / "intro", folder / "intro")
    shutil.rmtree(folder / "intro" / "runs" / "relu")
    info = write_report(folder)
    sec = {s.name: s for s in info.sections}["intro"]
    assert sec.status == "incomplete"
    assert "runs/relu" in sec.problem and "--force" in sec.problem
    assert "superposition reproduce intro --out" in sec.problem and "--quick" in sec.problem
    page = info.path.read_text(encoding="utf-8")
    assert section_status(page)["intro"] == "incomplete"
    assert page.count(PLOTLY_MARKER) == 1
    assert info.claims_total == 0 and "intro" in info.missing


def test_a_missing_experiment_gives_the_command_that_makes_it(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    other = folder / ALL[-1]
    other.mkdir(parents=True)
    (other / "experiment.json").write_text("{not json")
    info = write_report(folder)
    intro = {s.name: s for s in info.sections}["intro"]
    assert intro.status == "missing"
    assert intro.problem.endswith(f"superposition reproduce intro --out {folder}")
    page = info.path.read_text(encoding="utf-8")
    assert f'<code class="command">superposition reproduce intro --out {folder}</code>' in page
    assert info.summary().startswith(
        f"0 of 0 claims hold; 0 of {len(ALL)} experiments reproduced"
    )


@pytest.mark.slow
def test_the_report_is_deterministic(partial: Path, tmp_path: Path) -> None:
    first = build_report(partial, out=tmp_path / "a.html").read_bytes()
    second = build_report(partial, out=tmp_path / "b.html").read_bytes()
    assert first == second


@pytest.mark.slow
def test_redraw_rebuilds_missing_figures_and_claims_from_the_runs(partial: Path) -> None:
    png = partial / "intro" / "figures" / "polygons.png"
    png.unlink()
    page = build_report(partial).read_text(encoding="utf-8")
    assert "polygons.png is missing" in sections(page)["intro"]
    assert not png.exists(), "without redraw the report only reads the folder"

    (partial / "intro" / "claims.json").unlink()
    page = build_report(partial, redraw=True).read_text(encoding="utf-8")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (partial / "intro" / "claims.json").is_file()
    assert "is missing" not in sections(page)["intro"]


@pytest.mark.slow
def test_the_report_is_written_atomically(partial: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = partial / REPORT_FILE
    target.write_text("the previous report")

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module.os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        build_report(partial)
    assert target.read_text() == "the previous report"
    left = sorted(p.name for p in partial.iterdir())
    assert left == sorted([ALL[2], "intro", REPORT_FILE]), "a temporary file was left"


# --------------------------------------------------------------------------------------------------
# the command line


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.slow
def test_cli_report_builds_and_summarises(
    partial: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "report", str(partial))
    assert code == 0, err
    claims = json.loads((partial / "intro" / "claims.json").read_text())
    holding = sum(c["holds"] for c in claims)
    assert f"intro: {holding} of {len(claims)} claims hold" in out
    assert f"{holding} of {len(claims)} claims hold; 1 of {len(ALL)}" in out
    assert out.rstrip().endswith(f"report: {partial / REPORT_FILE}")
    assert (partial / REPORT_FILE).read_text(encoding="utf-8").count(PLOTLY_MARKER) == 1


def test_cli_report_refuses_a_folder_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "report", str(tmp_path / "nowhere"))
    assert_refused(code, err, "nowhere", "does not exist")
    assert not (tmp_path / "nowhere").exists()


def test_cli_report_refuses_a_folder_without_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("not a result")
    code, out, err = run_cli(capsys, "report", str(tmp_path))
    assert_refused(code, err, "holds no reproduced experiment", "reproduce --all --out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_cli_report_refuses_one_experiments_folder(
    results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "report", str(results / "intro"))
    assert_refused(code, err, "one experiment's folder", str(results))
    assert not (results / "intro" / REPORT_FILE).exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["reproduce", "--out", "X"], ["one of the arguments NAME --all --group is required"]),
        (["reproduce", "intro", "--all", "--out", "X"], ["not allowed with argument"]),
        (["reproduce", "--group", "paper", "--all", "--out", "X"], ["not allowed with argument"]),
        (["reproduce", "--group", "nope", "--out", "X"], ["unknown group 'nope'", "paper"]),
        (["reproduce", "--all"], ["--out"]),
        (["report"], ["DIR"]),
    ],
)
def test_cli_argument_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_reproduce_all_refuses_existing_results_before_training_anything(
    partial: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from superposition import reproduce as reproduce_module

    calls: list[str] = []
    monkeypatch.setattr(
        reproduce_module, "reproduce_many", lambda names, *a, **k: calls.extend(names)
    )
    before = {p: p.stat().st_mtime_ns for p in partial.rglob("*")}
    code, out, err = run_cli(capsys, "reproduce", "--all", "--out", str(partial), "--quick")
    assert_refused(code, err, "already holds results of intro", "--force", "nothing was trained")
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in partial.rglob("*")} == before


@pytest.mark.slow
def test_reproduce_all_runs_every_available_experiment_in_order_then_the_report(
    results: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wiring of --all (training itself is tested per experiment): each available experiment
    in the paper's order with the options given, unavailable ones skipped with a note, and the
    report at the end. The stand-in 'trains' intro by copying the shared result."""
    from superposition import reproduce as reproduce_module

    calls: list[tuple[str, bool, bool, int | None]] = []

    def fake(names, out, *, quick, force, progress, workers, on_done, size):  # type: ignore[no-untyped-def]
        assert size is None
        for name in names:
            calls.append((name, quick, force, workers))
            if name == "intro":
                shutil.copytree(results / "intro", out / "intro")
            on_done(name, out / name, [])

    monkeypatch.setattr(reproduce_module, "reproduce_many", fake)
    out_dir = tmp_path / "all"
    code, out, err = run_cli(
        capsys,
        "reproduce",
        "--all",
        "--out",
        str(out_dir),
        "--quick",
        "--no-progress",
        "--workers",
        "3",
    )
    assert code == 0, err
    available, skipped = [], []
    for name in ALL:
        try:
            reproduce_module.get(name)
            available.append(name)
        except Exception:
            skipped.append(name)
    assert calls == [(name, True, False, 3) for name in available]
    assert f"== {len(available)}/{len(available)} {available[-1]}" in out
    for name in skipped:
        assert f"skipping {name}: not available in this version yet" in out
    assert f"report: {out_dir / REPORT_FILE}" in out
    page = (out_dir / REPORT_FILE).read_text(encoding="utf-8")
    assert section_status(page)["intro"] == "ok"


@pytest.mark.slow
def test_reproduce_group_runs_that_group_and_the_report_shows_its_sections(
    results: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--group follow-ups`` asks for exactly that group, in order; the report then has a
    section for each of its experiments and none for the groups not run."""
    from superposition import reproduce as reproduce_module
    from superposition.experiments import GROUPS

    calls: list[str] = []

    def fake(names, out, *, quick, force, progress, workers, on_done, size):  # type: ignore[no-untyped-def]
        assert size is None
        for name in names:
            calls.append(name)
            (out / name).mkdir(parents=True)
            on_done(name, out / name, [])

    monkeypatch.setattr(reproduce_module, "reproduce_many", fake)
    out_dir = tmp_path / "follow"
    code, out, err = run_cli(
        capsys, "reproduce", "--group", "follow-ups", "--out", str(out_dir), "--no-progress"
    )
    assert code == 0, err
    assert calls == list(GROUPS["follow-ups"])
    status = section_status((out_dir / REPORT_FILE).read_text(encoding="utf-8"))
    assert list(status) == list(GROUPS["follow-ups"])
    assert all(status[name] != "missing" for name in GROUPS["follow-ups"])


def test_reproduce_all_needs_plotly_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from superposition import reproduce as reproduce_module

    calls: list[str] = []
    monkeypatch.setattr(
        reproduce_module, "reproduce_many", lambda names, *a, **k: calls.extend(names)
    )
    monkeypatch.setitem(sys.modules, "plotly.offline", None)  # import fails as if not installed
    code, out, err = run_cli(capsys, "reproduce", "--all", "--out", str(tmp_path / "o"))
    assert_refused(code, err, "needs plotly", "toy-superposition[report]")
    assert calls == [] and not (tmp_path / "o").exists()
