"""The documentation site: it builds with `mkdocs build --strict` (every warning an error: a broken
link or anchor, a page missing from the nav, a docstring mkdocstrings cannot read), its API pages
carry the docstrings, and every experiment of the paper has its page."""

import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from superposition.experiments import EXPERIMENT_NAMES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SECTIONS = DOCS / "sections"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once for this module, strictly, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _text(page: Path) -> str:
    """A built page's visible text, tags dropped and whitespace collapsed."""
    raw = re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))
    return re.sub(r"\s+", " ", html.unescape(raw))


def test_site_builds_with_every_page(site: Path) -> None:
    for md in DOCS.rglob("*.md"):
        built = site / md.relative_to(DOCS).with_suffix(".html")
        assert built.is_file(), f"{md.relative_to(ROOT)} was not built"


def _squeezed(text: str) -> str:
    """Text without whitespace or reST double backticks, to compare a docstring with a page."""
    return re.sub(r"\s+", "", text.replace("``", ""))


def test_api_pages_carry_the_docstrings(site: Path) -> None:
    from superposition import geometry
    from superposition.config import DataConfig, field_docs

    page = site / "api" / "geometry.html"
    assert 'id="superposition.geometry.feature_dimensionality"' in page.read_text(encoding="utf-8")
    # the function's own docstring, not just its name
    summary = (geometry.feature_dimensionality.__doc__ or "").strip().splitlines()[0]
    assert summary and _squeezed(summary) in _squeezed(_text(page))
    # config fields document themselves in doc_field(...): the docs extension shows that text
    density_doc = field_docs(DataConfig)["density"]
    assert _squeezed(density_doc) in _squeezed(_text(site / "api" / "config.html"))
    # Sphinx roles are rewritten for Markdown, never shown raw
    for page in (site / "api").glob("*.html"):
        assert not re.search(r":(func|class|mod|data|meth|attr):`", _text(page)), page.name


def test_every_experiment_has_a_section_page() -> None:
    for name in EXPERIMENT_NAMES:
        page = SECTIONS / f"{name}.md"
        assert page.is_file(), f"experiment {name!r} has no page docs/sections/{name}.md"
        text = page.read_text(encoding="utf-8")
        assert f"superposition reproduce {name} --out results/" in text, (
            f"docs/sections/{name}.md does not give the command `superposition reproduce {name}`"
        )
        assert f"sections/{name}.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
        assert f"({name}.md)" in (SECTIONS / "index.md").read_text(encoding="utf-8")


def test_no_section_page_for_an_unknown_experiment() -> None:
    pages = {p.stem for p in SECTIONS.glob("*.md")} - {"index"}
    assert pages == set(EXPERIMENT_NAMES)


def _docs_extension() -> ModuleType:
    spec = importlib.util.spec_from_file_location("griffe_roles", DOCS / "griffe_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_rewriting_for_markdown() -> None:
    markdown = _docs_extension().markdown
    assert markdown("see :func:`~superposition.training.train_many` and :class:`Run`") == (
        "see `train_many` and `Run`"
    )
    rule = "====  ======"
    table = markdown(f"Kinds::\n\n{rule}\nkind  forward\n{rule}\na     x + b\nb     y | z\n{rule}")
    assert table.splitlines() == [
        "Kinds:",
        "",
        "| kind | forward |",
        "| --- | --- |",
        "| a | x + b |",
        "| b | y \\| z |",
    ]
    doctest = markdown("Example:\n\n    >>> f(1)  # doctest: +SKIP\n    2\n\nAfter.")
    assert "```pycon\n>>> f(1)\n2\n```" in doctest
    assert doctest.rstrip().endswith("After.")
