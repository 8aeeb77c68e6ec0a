"""The report: one self-contained HTML page for a results folder (layer 4).

``superposition reproduce --all --out DIR`` writes one folder per experiment (see
:mod:`superposition.reproduce`); :func:`build_report` turns ``DIR`` into ``DIR/report.html``:

- a header (package version, quick or full runs, when the results were made) with a summary, "N of
  M claims hold", and a table of contents;
- one section per experiment (:func:`reported`: those of ``reproduce --all`` in the paper's order
  and of each other group, for the groups with a folder there): its title and paper section, a
  table of the paper's claims beside what this run measured and whether each holds, the
  interactive figures (plotly, ``INTERACTIVE`` of the experiment's plots module) and the static
  ones (matplotlib, ``FIGURES``);
- for an experiment that is not in the folder, or whose folder is incomplete or unreadable, a
  visible box that says what is missing and the command that makes it; the rest still renders.

It works offline and from anywhere: plotly.js is embedded once, in the head; the static PNGs are
inlined as base64 data (a report copied or mailed without its folder still shows them), with
relative links to the PNG and SVG files beside them. Nothing is fetched from the network: no fonts,
no CDN. Everything comes from the run directories (no training), and the page is deterministic: the
same folder gives the same bytes (the only dates are those recorded in the experiments).
"""

import base64
import html
import importlib
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superposition import __version__, files
from superposition.errors import ConfigError, install_hint
from superposition.experiments import ALL, EXPERIMENT_NAMES, GROUPS
from superposition.results import Claim, Run

REPORT_FILE = "report.html"
PLOTLY_MARKER = "* plotly.js v"
"""A string that occurs once in plotly.js's licence header (tests count the copies embedded)."""


@dataclass
class SectionReport:
    """What the report shows for one experiment."""

    name: str
    title: str
    status: str
    """"ok"; "missing" (no folder), "unavailable" (not in this version) or "incomplete"."""
    problem: str = ""
    """For a section that is not "ok": what is missing, and how to make it."""
    paper_section: str = ""
    claims: list[Claim] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    interactive: list[tuple[str, str, str]] = field(default_factory=list)
    """(figure name, plotly div or "", error message or "")."""
    static: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(figure name, PNG as base64 or "", relative PNG link, relative SVG link or "")."""
    notes: list[str] = field(default_factory=list)

    @property
    def holding(self) -> int:
        return sum(c.holds for c in self.claims)


@dataclass(frozen=True)
class ReportInfo:
    """The report written by :func:`write_report` and what it found."""

    path: Path
    sections: tuple[SectionReport, ...]

    @property
    def claims_total(self) -> int:
        return sum(len(s.claims) for s in self.sections)

    @property
    def claims_holding(self) -> int:
        return sum(s.holding for s in self.sections)

    @property
    def present(self) -> list[str]:
        return [s.name for s in self.sections if s.status == "ok"]

    @property
    def missing(self) -> list[str]:
        return [s.name for s in self.sections if s.status != "ok"]

    def summary(self) -> str:
        """One line: claims that hold, experiments present."""
        n = len(self.sections)
        return (
            f"{self.claims_holding} of {self.claims_total} claims hold; "
            f"{len(self.present)} of {n} experiments reproduced"
            + (f" (missing: {', '.join(self.missing)})" if self.missing else "")
        )


def build_report(results_dir: Path, *, out: Path | None = None, redraw: bool = False) -> Path:
    """Write the HTML report of ``results_dir`` (default ``results_dir/report.html``) atomically
    and return its path. ``redraw`` first redraws each experiment's static figures and claims from
    its runs (:func:`superposition.reproduce.redraw`); otherwise those on disk are shown."""
    return write_report(results_dir, out=out, redraw=redraw).path


def write_report(results_dir: Path, *, out: Path | None = None, redraw: bool = False) -> ReportInfo:
    """:func:`build_report`, returning what the report found as well as where it is."""
    results_dir = Path(results_dir)
    _check_results_dir(results_dir)
    plotly_js = load_plotly_js()
    out = Path(out) if out is not None else results_dir / REPORT_FILE
    if out.is_dir():
        raise ConfigError(f"report path {out} is a folder; give a file name such as report.html")
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write the report {out}: folder {out.parent} does not exist")
    sections = tuple(
        _section(results_dir, name, out.parent, redraw=redraw)
        for name in reported(results_dir)
    )
    info = ReportInfo(out, sections)
    files.write_text(out, _render(results_dir, info, plotly_js))
    return info


def reported(results_dir: Path) -> tuple[str, ...]:
    """The experiments the report of ``results_dir`` has a section for, in order: those of each
    block with at least one folder there, the blocks being what ``reproduce --all`` runs
    (:data:`ALL`) and each other group. A block is shown whole, so that a missing experiment of
    it is named; a group that was not run is left out."""
    blocks = [ALL, *(names for names in GROUPS.values() if not set(names) <= set(ALL))]
    shown = {
        name
        for block in blocks
        if any((Path(results_dir) / name).exists() for name in block)
        for name in block
    }
    return tuple(name for name in EXPERIMENT_NAMES if name in shown)


# --------------------------------------------------------------------------------------------------
# reading the folder


def _check_results_dir(results_dir: Path) -> None:
    if not results_dir.exists():
        raise ConfigError(f"results folder {results_dir} does not exist")
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir} is a file, not a results folder")
    from superposition.reproduce import EXPERIMENT_FILE

    if (results_dir / EXPERIMENT_FILE).is_file():
        raise ConfigError(
            f"{results_dir} is one experiment's folder; pass the folder that holds it "
            f"({results_dir.parent})"
        )
    if not any((results_dir / name).exists() for name in EXPERIMENT_NAMES):
        raise ConfigError(
            f"{results_dir} holds no reproduced experiment; make them with "
            f"`superposition reproduce --all --out {results_dir}`"
        )


def load_plotly_js() -> str:
    """plotly.js, which the report embeds; ConfigError saying how to install plotly if it is
    missing (call it before long work whose result needs the report)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ConfigError(
            f"the HTML report needs plotly; install it with: {install_hint('report')}"
        ) from None
    js: str = get_plotlyjs()
    return js


def _section(results_dir: Path, name: str, report_dir: Path, *, redraw: bool) -> SectionReport:
    from superposition import reproduce

    folder = results_dir / name
    quick = " --quick" if _folder_is_quick(results_dir) else ""
    make = f"superposition reproduce {name} --out {results_dir}{quick}"
    try:
        exp = reproduce.get(name)
    except ConfigError:
        found = f" (the folder {folder} is there, but this version cannot read it)"
        return SectionReport(
            name, _pretty(name), "unavailable",
            f"This experiment is not available in superposition {__version__} yet"
            + (found if folder.exists() else ", so there is nothing to reproduce") + ".",
        )
    title = exp.title
    paper_section = str(getattr(exp.module, "SECTION", ""))
    if not folder.exists():
        return SectionReport(
            name, title, "missing", f"Not reproduced in this folder yet. Make it with: {make}",
            paper_section,
        )
    try:
        claims = reproduce.redraw(folder) if redraw else None
        exp, runs = reproduce.load_runs(folder)
        meta = files.read_json(folder / reproduce.EXPERIMENT_FILE)
    except Exception as exc:  # noqa: BLE001 - one unreadable folder must not hide the others
        reason = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        return SectionReport(
            name, title, "incomplete",
            f"The folder {folder} is incomplete or unreadable ({reason}). Make it again with: "
            f"{make} --force",
            paper_section,
        )
    sec = SectionReport(name, title, "ok", "", paper_section, meta=meta)
    if claims is None:
        claims = _saved_claims(folder, sec)
        if claims is None:
            claims = list(exp.module.claims(runs))
    sec.claims = list(claims)
    if not sec.paper_section and sec.claims:
        sec.paper_section = sec.claims[0].section
    plots = importlib.import_module(f"superposition.plots.{name.replace('-', '_')}")
    interactive: dict[str, Callable[[dict[str, Run]], Any]] = getattr(plots, "INTERACTIVE", {})
    for fig_name, draw in interactive.items():
        try:
            fig = draw(runs)
            div = fig.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"plot-{name}-{fig_name}",
                default_width="100%",
                # no "share to the cloud" button: the report never talks to a server
                config={"displaylogo": False, "responsive": True, "showSendToCloud": False},
            )
            sec.interactive.append((fig_name, div, ""))
        except Exception as exc:  # noqa: BLE001 - show the error in place of the figure
            sec.interactive.append((fig_name, "", f"{type(exc).__name__}: {exc}"))
    for fig_name in exp.figures:
        png = folder / "figures" / f"{fig_name}.png"
        svg = folder / "figures" / f"{fig_name}.svg"
        if not png.is_file():
            sec.notes.append(
                f"Static figure {fig_name}.png is missing; `superposition report {results_dir}` "
                "redraws it from the runs."
            )
            continue
        sec.static.append(
            (
                fig_name,
                base64.b64encode(png.read_bytes()).decode("ascii"),
                _relative(png, report_dir),
                _relative(svg, report_dir) if svg.is_file() else "",
            )
        )
    return sec


def _saved_claims(folder: Path, sec: SectionReport) -> list[Claim] | None:
    """The claims written by ``reproduce`` (None, with a note, if they are missing or corrupt: the
    caller then checks them again on the runs)."""
    from superposition.reproduce import CLAIMS_FILE

    path = folder / CLAIMS_FILE
    try:
        raw = files.read_json(path)
        return [
            Claim(str(c["section"]), str(c["text"]), str(c["measured"]), bool(c["holds"]))
            for c in raw
        ]
    except (ValueError, KeyError, TypeError):  # RunDirError is a ValueError
        sec.notes.append(f"{CLAIMS_FILE} is missing or unreadable; the claims were checked again.")
        return None


def _folder_is_quick(results_dir: Path) -> bool:
    """Whether the experiments already in the folder are quick ones (so that the suggested command
    for a missing one makes a matching result)."""
    from superposition.reproduce import EXPERIMENT_FILE

    for name in EXPERIMENT_NAMES:
        try:
            meta = files.read_json(results_dir / name / EXPERIMENT_FILE)
        except ValueError:  # RunDirError (missing, unreadable, not JSON) is a ValueError
            continue
        if isinstance(meta, dict) and "quick" in meta:
            return bool(meta["quick"])
    return False


def _relative(path: Path, start: Path) -> str:
    """``path`` as a URL relative to the folder ``start``: every component percent-encoded and
    the whole prefixed with ``./``, so that no folder name can make it another kind of link (a
    results folder named ``javascript:...`` would otherwise make a link that runs a script)."""
    parts = Path(os.path.relpath(path.resolve(), start.resolve())).parts
    return "./" + "/".join(urllib.parse.quote(part, safe="") for part in parts)


def _date(iso: object) -> str:
    """An ISO time stamp as "2024-05-01 12:00 UTC" (reproduce records UTC)."""
    text = str(iso).replace("T", " ", 1)
    if text.endswith("+00:00"):
        text = text.removesuffix("+00:00")[:16] + " UTC"
    return text


def _pretty(name: str) -> str:
    return name.replace("-", " ").capitalize()


# --------------------------------------------------------------------------------------------------
# writing the page


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _render(results_dir: Path, info: ReportInfo, plotly_js: str) -> str:
    present = [s for s in info.sections if s.status == "ok"]
    quick = {bool(s.meta.get("quick")) for s in present}
    mode = (
        "quick runs (--quick)" if quick == {True}
        else "full runs (the paper's settings)" if quick == {False}
        else "a mix of quick and full runs" if quick
        else ""
    )
    versions = sorted({str(s.meta.get("version", "?")) for s in present})
    dates = sorted(_date(s.meta["created_at"]) for s in present if s.meta.get("created_at"))
    made = ""
    if dates:
        made = f"made {_e(dates[0])}" + (f" to {_e(dates[-1])}" if dates[-1] != dates[0] else "")
    all_hold = info.claims_holding == info.claims_total and not info.missing
    meta_line = " · ".join(
        x
        for x in [
            f"report by superposition {_e(__version__)}",
            f"results by superposition {_e(', '.join(versions))}" if versions else "",
            _e(mode),
            made,
            f"folder <code>{_e(results_dir.resolve().name)}</code>",
        ]
        if x
    )
    toc = "\n".join(_toc_entry(i, s) for i, s in enumerate(info.sections, 1))
    body = "\n".join(_render_section(i, s) for i, s in enumerate(info.sections, 1))
    missing = (
        f'<p class="summary-missing">Missing: {_e(", ".join(info.missing))} (see their sections '
        "for how to make them).</p>"
        if info.missing
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="superposition {_e(__version__)}">
<title>Toy Models of Superposition: reproduction report</title>
<style>{CSS}</style>
<script>{plotly_js}</script>
</head>
<body>
<header class="page">
<h1>Toy Models of Superposition: reproduction report</h1>
<p class="subtitle">Elhage et al. (2022), reproduced by <code>superposition</code></p>
<p class="meta">{meta_line}</p>
<div class="summary {"good" if all_hold else "warn"}" id="summary"
 data-claims-holding="{info.claims_holding}" data-claims-total="{info.claims_total}">
<p class="big"><strong>{info.claims_holding} of {info.claims_total}</strong> claims hold</p>
<p>{len(info.present)} of {len(info.sections)} experiments reproduced.</p>
{missing}
</div>
</header>
<nav class="toc" aria-label="Contents">
<h2>Contents</h2>
<ol>
{toc}
</ol>
</nav>
<main>
{body}
</main>
<footer>Built from the run directories in <code>{_e(results_dir.resolve().name)}</code> without
training; rebuild it with <code>superposition report {_e(results_dir)}</code>.</footer>
</body>
</html>
"""


def _badge(sec: SectionReport) -> str:
    if sec.status != "ok":
        return f'<span class="pill {sec.status}">{_e(sec.status)}</span>'
    good = sec.holding == len(sec.claims)
    mark = "✓" if good else "✗"
    return (
        f'<span class="pill {"holds" if good else "fails"}">{mark} {sec.holding}/'
        f"{len(sec.claims)} claims</span>"
    )


def _toc_entry(i: int, sec: SectionReport) -> str:
    return f'<li><a href="#exp-{_e(sec.name)}">{_e(sec.title)}</a> {_badge(sec)}</li>'


def _render_section(i: int, sec: SectionReport) -> str:
    head = (
        f'<section class="experiment {sec.status}" id="exp-{_e(sec.name)}" '
        f'data-experiment="{_e(sec.name)}" data-status="{sec.status}" '
        f'data-interactive="{len(sec.interactive)}" data-static="{len(sec.static)}">\n'
        f'<h2><span class="num">{i}.</span> {_e(sec.title)} {_badge(sec)}</h2>\n'
    )
    if sec.status != "ok":
        return (
            head
            + f'<p class="meta">experiment <code>{_e(sec.name)}</code>'
            + (f" · paper: {_e(sec.paper_section)}" if sec.paper_section else "")
            + "</p>\n"
            + f'<div class="missing-box" role="note"><strong>{_e(sec.status.capitalize())}.'
            + f"</strong> {_problem(sec.problem)}</div>\n</section>"
        )
    m = sec.meta
    meta = " · ".join(
        x
        for x in [
            f"experiment <code>{_e(sec.name)}</code>",
            f"paper: {_e(sec.paper_section)}" if sec.paper_section else "",
            "quick run" if m.get("quick") else "full run",
            f"superposition {_e(m.get('version', '?'))}",
            _e(_date(m["created_at"])) if m.get("created_at") else "",
            "runs: " + ", ".join(f"<code>{_e(r)}</code>" for r in m.get("runs", [])),
        ]
        if x
    )
    parts = [head, f'<p class="meta">{meta}</p>\n']
    parts.append(_claims_table(sec.claims))
    for note in sec.notes:
        parts.append(f'<p class="note">{_e(note)}</p>\n')
    if sec.interactive:
        parts.append("<h3>Interactive figures</h3>\n")
        for fig_name, div, error in sec.interactive:
            if error:
                parts.append(
                    f'<div class="missing-box figure-error" data-figure="{_e(fig_name)}">'
                    f"<strong>Figure {_e(fig_name)} could not be drawn:</strong> {_e(error)}"
                    "</div>\n"
                )
            else:
                parts.append(
                    f'<figure class="interactive" data-figure="{_e(fig_name)}">{div}'
                    f"<figcaption>{_e(fig_name)} (interactive: hover, zoom, pan; double-click to "
                    "reset)</figcaption></figure>\n"
                )
    if sec.static:
        parts.append("<h3>Static figures</h3>\n")
        for fig_name, b64, png, svg in sec.static:
            links = f'<a href="{_e(png)}">PNG</a>'
            if svg:
                links += f' · <a href="{_e(svg)}">SVG</a>'
            parts.append(
                f'<figure class="static" data-figure="{_e(fig_name)}">'
                f'<a href="{_e(png)}" title="open the PNG at full size">'
                f'<img alt="{_e(sec.title)}: {_e(fig_name)}" src="data:image/png;base64,{b64}"></a>'
                f"<figcaption>{_e(fig_name)} · {links}</figcaption></figure>\n"
            )
    parts.append("</section>")
    return "".join(parts)


def _problem(text: str) -> str:
    """The problem's sentence, with the command to run (after "with: ") set as code."""
    if ": superposition " in text:
        before, command = text.split(": superposition ", 1)
        return f'{_e(before)}:<br><code class="command">superposition {_e(command)}</code>'
    return _e(text)


def _claims_table(claims: list[Claim]) -> str:
    if not claims:
        return '<p class="note">This experiment checks no claims.</p>\n'
    rows = "\n".join(
        f'<tr class="{"holds" if c.holds else "fails"}"><td class="where">{_e(c.section)}</td>'
        f"<td>{_e(c.text)}</td><td>{_e(c.measured)}</td>"
        f'<td class="verdict">{"✓ holds" if c.holds else "✗ fails"}</td></tr>'
        for c in claims
    )
    return (
        '<table class="claims">\n<thead><tr><th>Paper</th><th>Claim</th>'
        "<th>Measured in this run</th><th>Holds</th></tr></thead>\n"
        f"<tbody>\n{rows}\n</tbody>\n</table>\n"
    )


CSS = """
:root { --fg: #1d232b; --muted: #5b6573; --line: #dde2e8; --bg: #f6f7f9; --card: #ffffff;
  --good: #1a7f37; --good-bg: #e7f5ea; --bad: #b42318; --bad-bg: #fdecea; --warn: #9a6700;
  --warn-bg: #fff6dd; --accent: #2f5fb3; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 0.9em; background: #eef1f5; padding: 0.05em 0.3em; border-radius: 3px; }
a { color: var(--accent); }
header.page, nav.toc, main, footer { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header.page { padding-top: 28px; }
h1 { margin: 0 0 4px; font-size: 1.8em; }
.subtitle { margin: 0; color: var(--muted); }
.meta { color: var(--muted); font-size: 0.88em; margin: 6px 0 12px; }
.summary { border-radius: 8px; padding: 12px 18px; margin: 16px 0; border: 1px solid; }
.summary p { margin: 2px 0; }
.summary .big { font-size: 1.35em; }
.summary.good { background: var(--good-bg); border-color: #a8dbb3; }
.summary.warn { background: var(--warn-bg); border-color: #ecd38f; }
nav.toc { margin-bottom: 8px; }
nav.toc h2 { font-size: 1.1em; margin: 8px 0 4px; }
nav.toc ol { margin: 0; padding-left: 1.6em; columns: 2; column-gap: 32px; }
nav.toc li { margin: 2px 0; break-inside: avoid; }
section.experiment { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 6px 22px 18px; margin: 18px auto; }
section.experiment h2 { font-size: 1.35em; margin: 14px 0 0; }
section.experiment h2 .num { color: var(--muted); font-weight: 400; }
section.experiment h3 { font-size: 1.02em; margin: 18px 0 6px; color: var(--muted);
  text-transform: uppercase; letter-spacing: 0.04em; }
.pill { display: inline-block; vertical-align: middle; font-size: 0.62em; font-weight: 600;
  padding: 2px 8px; border-radius: 999px; margin-left: 6px; white-space: nowrap; }
nav.toc .pill { font-size: 0.75em; }
.pill.holds { background: var(--good-bg); color: var(--good); }
.pill.fails { background: var(--bad-bg); color: var(--bad); }
.pill.missing, .pill.unavailable, .pill.incomplete { background: #eceff3; color: var(--muted); }
.pill.incomplete { background: var(--warn-bg); color: var(--warn); }
table.claims { border-collapse: collapse; width: 100%; font-size: 0.92em; margin: 6px 0; }
table.claims th { text-align: left; color: var(--muted); font-weight: 600;
  border-bottom: 2px solid var(--line); padding: 6px 8px; }
table.claims td { border-bottom: 1px solid var(--line); padding: 7px 8px; vertical-align: top; }
table.claims td.where { color: var(--muted); white-space: nowrap; }
table.claims td.verdict { white-space: nowrap; font-weight: 600; }
table.claims tr.holds td.verdict { color: var(--good); }
table.claims tr.fails td.verdict { color: var(--bad); }
table.claims tr.fails { background: var(--bad-bg); }
.missing-box { border: 1px dashed #c9a227; background: var(--warn-bg); border-radius: 8px;
  padding: 10px 14px; margin: 12px 0 6px; }
section.experiment.missing, section.experiment.unavailable, section.experiment.incomplete {
  padding-bottom: 8px; margin: 10px auto; }
section.experiment.missing h2, section.experiment.unavailable h2,
section.experiment.incomplete h2 { font-size: 1.1em; margin-top: 10px; }
section.experiment.unavailable .missing-box { border-color: #b8c0cc; background: #f1f3f6; }
section.experiment.unavailable .meta, section.experiment.missing .meta,
section.experiment.incomplete .meta { margin: 2px 0 4px; }
section.experiment:not(.ok) .missing-box { margin: 4px 0; padding: 6px 12px; }
code.command { display: inline-block; margin-top: 6px; padding: 4px 8px; }
.note { color: var(--warn); font-size: 0.9em; }
figure { margin: 8px 0 14px; }
figure.interactive { border: 1px solid var(--line); border-radius: 8px; padding: 4px; }
figure.static img { max-width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 8px; background: #fff; }
figcaption { color: var(--muted); font-size: 0.85em; margin-top: 4px; }
footer { color: var(--muted); font-size: 0.85em; padding-top: 8px; padding-bottom: 32px; }
"""
