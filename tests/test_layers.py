"""DESIGN.md's layers: each module imports only from the layers below it, and `import superposition`
stays light (no plotting library, no distributed engine)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "superposition"

LAYERS = {
    "_types": 0, "_html": 0, "config": 0, "results": 0, "errors": 0, "files": 0,
    "data": 1, "models": 1, "losses": 1, "geometry": 1, "theory": 1, "kernels": 1,
    "train": 2, "store": 2, "fastpaths": 2,
    "sweep": 3, "experiments": 3, "sae": 3,
    "plots": 4, "report": 4, "reproduce": 4,
    "cli": 5, "cli_sweep": 5, "cli_sae": 5, "__main__": 5, "distributed": 5,
    "explore": 5, "cli_explore": 5,
}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    if top not in LAYERS:
        raise AssertionError(f"module {module!r} has no layer in DESIGN.md's table; add it")
    return LAYERS[top]


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_only_from_lower_layers(path: Path) -> None:
    rel = path.relative_to(SRC).with_suffix("")
    own = ".".join(rel.parts).removesuffix(".__init__")
    own_layer = _layer(own)
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "superposition":
                names = [f"superposition.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if not name.startswith("superposition.") or name == "superposition.__version__":
                continue
            target = name.removeprefix("superposition.")
            if target in ("__version__",) or target.split(".")[0] == own.split(".")[0]:
                continue
            assert _layer(target) <= own_layer, (
                f"{own} (layer {own_layer}) imports {target} (layer {_layer(target)})"
            )


def test_import_superposition_is_light() -> None:
    code = (
        "import sys, superposition; "
        "heavy = [m for m in ('matplotlib', 'plotly', 'ray', 'tqdm') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import superposition loaded {out.stdout.strip()}"
