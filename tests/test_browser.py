"""The report in a real browser: Debian's headless Chromium driven by Playwright.

Every experiment section the report holds must show its figures (each interactive one drawn by
plotly, each static PNG decoded), with no console error and no request leaving the page (anything
but file: and data: URLs is aborted and fails the test). A full-page screenshot is saved as a test
artefact, test-artifacts/report.png.
"""

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS
from playwright.sync_api import sync_playwright

from superposition.experiments import ALL
from superposition.report import build_report
from superposition.reproduce import reproduce, reproduce_many

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the whole paper reproduced with --quick (what `reproduce --all --quick`
    writes), so every section of the real report is opened in the browser."""
    out = tmp_path_factory.mktemp("all-quick")
    reproduce_many(ALL, out, quick=True, progress=False, workers=2)
    return build_report(out)


@pytest.mark.slow
def test_report_renders_in_chromium_offline(report_path: Path) -> None:
    console_errors: list[str] = []
    outside: list[str] = []

    def route(r):  # type: ignore[no-untyped-def]
        url = r.request.url
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            outside.append(url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}"))
            page.route("**/*", route)
            page.goto(report_path.as_uri(), wait_until="load")

            sections = page.eval_on_selector_all(
                "section.experiment",
                """els => els.map(s => ({
                    name: s.dataset.experiment,
                    status: s.dataset.status,
                    interactive: Number(s.dataset.interactive),
                    static: Number(s.dataset.static),
                }))""",
            )
            present = [s for s in sections if s["status"] == "ok"]
            assert [s["name"] for s in present] == list(ALL), sections
            expected_plots = sum(s["interactive"] for s in present)
            # plotly draws asynchronously: wait until every figure has its SVG
            page.wait_for_function(
                """n => document.querySelectorAll('.js-plotly-plot .main-svg').length > 0 &&
                   [...document.querySelectorAll('.js-plotly-plot')]
                     .filter(p => p.querySelector('.main-svg')).length >= n""",
                arg=expected_plots,
                timeout=60_000,
            )
            for sec in present:
                sel = f'section[data-experiment="{sec["name"]}"]'
                rendered = page.eval_on_selector(
                    sel,
                    """s => ({
                        plots: [...s.querySelectorAll('.js-plotly-plot')].filter(
                            p => p.querySelector('.main-svg') &&
                                 p.querySelectorAll('.scatterlayer .trace, .heatmaplayer .hm, '
                                   + '.barlayer .trace, .imagelayer image').length > 0).length,
                        errors: s.querySelectorAll('.figure-error').length,
                        images: [...s.querySelectorAll('figure.static img')]
                            .filter(i => i.complete && i.naturalWidth > 0).length,
                        claims: s.querySelectorAll('table.claims tbody tr').length,
                    })""",
                )
                assert rendered["errors"] == 0, f"{sec['name']}: a figure could not be drawn"
                assert rendered["plots"] == sec["interactive"], (sec, rendered)
                assert rendered["images"] == sec["static"], (sec, rendered)
                assert rendered["claims"] > 0, sec
            # plotly's "Share chart" button would upload to a server; the report turns it off
            assert page.locator('.modebar-btn[data-title^="Share"]').count() == 0
            for sec in sections:
                if sec["status"] != "ok":
                    box = page.locator(f'section[data-experiment="{sec["name"]}"] .missing-box')
                    assert box.is_visible(), sec

            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert outside == [], f"the report tried to reach the network: {outside}"
    assert console_errors == [], console_errors
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


@pytest.mark.slow
def test_a_results_folder_named_like_a_script_gives_plain_file_links(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A results folder named ``javascript:...``: the report's figure links are relative,
    percent-encoded file links; clicking one opens the PNG and runs no script."""
    base = tmp_path_factory.mktemp("hostile")
    results = base / "javascript:alert(document.title)"
    reproduce("intro", results, quick=True, progress=False)
    report = build_report(results, out=base / "report.html")
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.as_uri(), wait_until="load")
            title = page.title()
            links = page.eval_on_selector_all(
                "figure.static figcaption a",
                "els => els.map(a => [a.getAttribute('href'), a.href])",
            )
            assert links, "the report has no figure links"
            for raw, resolved in links:
                assert raw.startswith("./javascript%3Aalert%28document.title%29/"), raw
                assert resolved.startswith("file://"), resolved
                target = Path(unquote(urlsplit(resolved).path))
                assert target.is_file() and target.is_relative_to(results), target
            page.click("figure.static figcaption a >> nth=0")
            page.wait_for_load_state("load")
            assert page.url.startswith("file://") and page.url.endswith(".png"), page.url
            page.go_back(wait_until="load")
            assert page.title() == title
        finally:
            browser.close()
    assert dialogs == []
