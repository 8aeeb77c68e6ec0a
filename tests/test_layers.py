"""The package's layers: each module imports only from the layers below it, and
`import superposition` stays light (no plotting library, no distributed engine)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "superposition"

LAYERS = {
    "_types": 0,
    "_html": 0,
    "colours": 0,
    "config": 0,
    "results": 0,
    "errors": 0,
    "files": 0,
    "workers": 0,
    "data": 1,
    "models": 1,
    "losses": 1,
    "geometry": 1,
    "theory": 1,
    "kgon": 1,
    "kernels": 1,
    "jit": 1,
    "rng": 1,
    "interventions": 1,
    "tokens": 1,
    "training": 2,
    "steps": 2,
    "store": 2,
    "fastpaths": 2,
    "loggers": 2,
    "sweep": 3,
    "interop": 3,
    "experiments": 3,
    "sae": 3,
    "exercises": 3,
    "warmup": 3,
    "plots": 4,
    "report": 4,
    "reproduce": 4,
    "cli": 5,
    "__main__": 5,
    "distributed": 5,
    "explore": 5,
}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    if top not in LAYERS:
        raise AssertionError(f"module {module!r} has no layer in the LAYERS table; add it")
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


# --------------------------------------------------------------------------------------------------
# no import circles, no other module's _private names
#
# The checker reads the source tree (it imports nothing). Every import counts, at module level or
# inside a function, absolute or relative, including those between modules of one subpackage. A
# name with one leading underscore belongs to its module; dunder names are public. A module whose
# own name has a leading underscore (``superposition._types``) may be imported anywhere, but the
# `_private` names inside it stay its own.


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def source_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module under the package folder ``root``, by dotted name (a package by its own)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


class _ImportScan(ast.NodeVisitor):
    """One module's imports of the package's modules, and its uses of their `_private` names."""

    def __init__(self, own: str, is_package: bool, modules: dict[str, Path]) -> None:
        self.own = own
        self.package = own if is_package else own.rpartition(".")[0]
        self.modules = modules
        self.edges: set[str] = set()
        self.private: set[str] = set()
        self.bindings: dict[ast.AST, dict[str, str]] = {}  # scope node -> name -> module
        self.scopes: list[ast.AST] = []

    # the module an import names, absolute or relative
    def _absolute(self, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        base = self.package.split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def _bind(self, name: str, module: str) -> None:
        self.bindings.setdefault(self.scopes[-1], {})[name] = module

    def _report(self, module: str, name: str, line: int) -> None:
        if _is_private(name) and module != self.own and f"{module}.{name}" not in self.modules:
            self.private.add(f"{self.own}:{line} uses {module}.{name}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in self.modules:
                self.edges.add(alias.name)
            if alias.asname:
                self._bind(alias.asname, alias.name)
            else:
                head = alias.name.split(".")[0]
                self._bind(head, head)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = self._absolute(node)
        if module not in self.modules:
            return
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            if sub in self.modules:  # a submodule, possibly a shared `_private` module
                self.edges.add(sub)
                self._bind(alias.asname or alias.name, sub)
                continue
            self.edges.add(module)
            if alias.name != "*":
                self._report(module, alias.name, node.lineno)

    def _scoped(self, node: ast.AST) -> None:
        self.scopes.append(node)
        self.generic_visit(node)
        self.scopes.pop()

    visit_Module = _scoped
    visit_FunctionDef = _scoped
    visit_AsyncFunctionDef = _scoped
    visit_ClassDef = _scoped
    visit_Lambda = _scoped

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain: list[str] = []
        base: ast.AST = node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if isinstance(base, ast.Name):
            module = next(
                (
                    self.bindings[s][base.id]
                    for s in reversed(self.scopes)
                    if base.id in self.bindings.get(s, {})
                ),
                None,
            )
            for attr in chain if module in self.modules else ():
                assert module is not None
                if f"{module}.{attr}" in self.modules:
                    module = f"{module}.{attr}"
                    continue
                self._report(module, attr, node.lineno)
                break
        self.generic_visit(node)


def _scan(own: str, path: Path, modules: dict[str, Path]) -> _ImportScan:
    tree = ast.parse(path.read_text(), str(path))
    scan = _ImportScan(own, path.name == "__init__.py", modules)
    # bindings first (a function may use a name imported at the bottom of the module), then uses
    scan.visit(tree)
    scan.private.clear()
    scan.visit(tree)
    return scan


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """One circle per strongly connected group of modules that import each other (Tarjan), as
    ``a -> b -> a``, naming the group's other modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for group in groups:  # a shortest way back to the group's first module, for the message
        start = min(group)
        paths = {start: [start]}
        frontier = [start]
        while frontier and start not in {w for v in frontier for w in graph[v]}:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & group):
                    if w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
            frontier = nxt
        last = next(v for v in frontier if start in graph[v])
        cycle = " -> ".join([*paths[last], start])
        others = sorted(group - set(paths[last]))
        out.append(cycle + (f" (also in the circle: {', '.join(others)})" if others else ""))
    return out


def check_imports(root: Path, package: str) -> tuple[list[str], list[str]]:
    """The import circles (``a -> b -> a``) and the uses of other modules' `_private` names in the
    package whose folder is ``root``."""
    modules = source_modules(root, package)
    graph: dict[str, set[str]] = {}
    private: set[str] = set()
    for own, path in modules.items():
        scan = _scan(own, path, modules)
        graph[own] = scan.edges - {own}
        private |= scan.private
    return _cycles(graph), sorted(private, key=_by_module_and_line)


def _by_module_and_line(use: str) -> tuple[str, int, str]:
    module, _, rest = use.partition(":")
    line, _, what = rest.partition(" ")
    return module, int(line), what


def test_no_import_circles() -> None:
    circles, _ = check_imports(SRC, "superposition")
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_private_names_of_other_modules() -> None:
    _, private = check_imports(SRC, "superposition")
    assert not private, "uses of another module's _private name:\n" + "\n".join(private)


def test_command_line_uses_no_private_names() -> None:
    _, private = check_imports(SRC, "superposition")
    surface = ("superposition.cli", "superposition.__main__")
    cli = [use for use in private if use.startswith(surface)]
    assert not cli, "\n".join(cli)


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_finds_planted_circles(tmp_path: Path) -> None:
    pkg = _plant(
        tmp_path,
        {
            "__init__.py": "",
            # a -> b at module level, b -> c inside a function, c -> a by a relative import
            "a.py": "from pkg import b\n",
            "b.py": "def f():\n    from pkg.c import g\n    return g\n",
            "c.py": "from . import a\ndef g():\n    return a\n",
            # inside a subpackage: its __init__ imports a submodule that imports the __init__
            "sub/__init__.py": "from pkg.sub.x import y\n",
            "sub/x.py": "import pkg.sub\ny = 1\n",
            # no circle: d imports e, e imports nothing of the package
            "d.py": "import pkg.e as e\n",
            "e.py": "import json\n",
        },
    )
    circles, private = check_imports(pkg, "pkg")
    assert circles == ["pkg.a -> pkg.b -> pkg.c -> pkg.a", "pkg.sub -> pkg.sub.x -> pkg.sub"]
    assert private == []


def test_checker_finds_planted_private_names(tmp_path: Path) -> None:
    pkg = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "def _hidden():\n    return 1\ndef shown():\n    return _hidden()\n",
            "_shared.py": "def helper():\n    return 1\ndef _inner():\n    return 2\n",
            "user.py": (
                "import pkg.a\n"
                "from pkg import _shared, a as mod_a\n"  # a private module is fine to import
                "from pkg._shared import helper\n"  # and its public names to use
                "from pkg.a import _hidden\n"  # 4: not this module's name
                "def f():\n"
                "    from pkg import a as late\n"
                "    return late._hidden(), mod_a.__name__, helper(), _shared.helper()\n"  # 7
                "def g():\n"
                "    return pkg.a._hidden(), _shared._inner(), late._hidden()\n"  # 9 (not late)
                "from pkg._shared import _inner\n"  # 10: a private name in a private module
            ),
            "rel.py": "from .a import _hidden\n",
        },
    )
    circles, private = check_imports(pkg, "pkg")
    assert circles == []
    assert private == [
        "pkg.rel:1 uses pkg.a._hidden",
        "pkg.user:4 uses pkg.a._hidden",
        "pkg.user:7 uses pkg.a._hidden",
        "pkg.user:9 uses pkg._shared._inner",
        "pkg.user:9 uses pkg.a._hidden",
        "pkg.user:10 uses pkg._shared._inner",
    ]
