"""A griffe extension that makes the project's reStructuredText-flavoured docstrings read well as
Markdown on the API pages (mkdocs.yml loads it; the sources stay as they are).

The docstrings are written for readers of the source and for ``help()``: they use Sphinx roles
(``:func:`name```), ``::`` before literal blocks, simple reST tables and doctest examples. Markdown
would show the roles verbatim, turn a table's ``====`` rules into headings and a doctest's ``>>>``
into nested block quotes, so each is rewritten here before the docstring is parsed:

- ``:func:`~a.b.c``` becomes `` `c` `` and ``:class:`a.b``` becomes `` `a.b` `` (plain code: a
  cross-reference to a private or relative name would be a broken link, an error under --strict);
- a paragraph ending in ``::`` ends in ``:`` (the indented block after it is already code);
- a simple table (``====  ====`` rules) becomes a Markdown pipe table;
- a run of ``>>>`` / ``...`` lines becomes a fenced ``pycon`` block, without its ``# doctest:``
  directives.

Config fields document themselves in ``doc_field(default, "doc")`` (or ``field(...,
metadata={"doc": ...})``), which the command line reads for ``--help``; a static reader sees no
docstring there, so the doc becomes the field's docstring and the default its shown value.
"""

import ast
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|exc|obj|const):`~?([^`]+)`")
RULE = re.compile(r"^(\s*)=+(?:\s+=+)+\s*$")
DIRECTIVE = re.compile(r"\s*# doctest:.*$")


def _role(match: re.Match[str]) -> str:
    target = match.group(1)
    if "`~" in match.group(0):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _columns(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]


def _cells(line: str, spans: list[tuple[int, int]]) -> list[str]:
    out = []
    for k, (start, _end) in enumerate(spans):
        stop = len(line) if k == len(spans) - 1 else spans[k + 1][0]
        out.append(line[start:stop].strip().replace("|", "\\|"))
    return out


def _tables(lines: list[str]) -> list[str]:
    """Rewrite simple reST tables (top rule, header, rule, rows, bottom rule) as pipe tables."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        rules = (
            [j for j in range(i, len(lines)) if RULE.match(lines[j])][:3]
            if RULE.match(lines[i])
            else []
        )
        if len(rules) < 3:
            out.append(lines[i])
            i += 1
            continue
        top, mid, bottom = rules
        indent = RULE.match(lines[top]).group(1)  # type: ignore[union-attr]
        spans = _columns(lines[top])
        header = [_cells(line, spans) for line in lines[top + 1 : mid]]
        rows = [_cells(line, spans) for line in lines[mid + 1 : bottom] if line.strip()]
        head = header[0] if header else [""] * len(spans)
        out.append(indent + "| " + " | ".join(head) + " |")
        out.append(indent + "|" + "|".join(" --- " for _ in spans) + "|")
        out.extend(indent + "| " + " | ".join(row) + " |" for row in rows)
        i = bottom + 1
    return out


def _doctests(lines: list[str]) -> list[str]:
    """Fence every run of doctest lines (``>>>``, ``...`` and their output) as a pycon block."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not lines[i].lstrip().startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        # dedented (an indented fence would be shown as code itself), directives dropped
        block = [DIRECTIVE.sub("", line[indent:]) for line in lines[i:j]]
        out += ["", "```pycon", *block, "```", ""]
        i = j
    return out


def markdown(text: str) -> str:
    """The docstring ``text`` with the reST constructs above rewritten as Markdown."""
    text = ROLE.sub(_role, text)
    text = re.sub(r"::$", ":", text, flags=re.MULTILINE)
    return "\n".join(_doctests(_tables(text.split("\n"))))


def _literal(expr: Any) -> Any:
    try:
        return ast.literal_eval(str(expr))
    except (ValueError, SyntaxError):
        return None


def _field_doc(attr: griffe.Object) -> tuple[str, Any] | None:
    """The doc and the value to show of a self-documenting dataclass field, or None."""
    call = getattr(attr, "value", None)
    if not isinstance(call, griffe.ExprCall):
        return None
    name = str(call.function).rsplit(".", 1)[-1]
    args = [a for a in call.arguments if not isinstance(a, griffe.ExprKeyword)]
    keywords = {a.name: a.value for a in call.arguments if isinstance(a, griffe.ExprKeyword)}
    if name == "doc_field" and len(args) == 2:  # doc_field(default, doc)
        doc = _literal(args[1])
        return (doc, args[0]) if isinstance(doc, str) else None
    meta = keywords.get("metadata")
    if name in ("field", "_doc") and isinstance(meta, griffe.ExprDict):
        docs = [v for k, v in zip(meta.keys, meta.values, strict=True) if _literal(k) == "doc"]
        doc = _literal(docs[0]) if docs else None
        factory = keywords.get("default_factory")
        shown = f"{factory}()" if factory is not None else keywords.get("default")
        return (doc, shown) if isinstance(doc, str) else None
    if name == "_doc" and len(args) == 1:  # _doc(doc): a required field
        doc = _literal(args[0])
        return (doc, None) if isinstance(doc, str) else None
    return None


class ReSTToMarkdown(griffe.Extension):
    """Rewrite every docstring once the package is loaded, before it is parsed or rendered."""

    def __init__(self) -> None:
        super().__init__()
        self._done: set[int] = set()  # the rewrite is not idempotent: once per docstring

    def _rewrite(self, obj: griffe.Object) -> None:
        doc = obj.docstring
        if doc is not None and id(doc) not in self._done:
            self._done.add(id(doc))
            doc.value = markdown(doc.value)

    def on_object(self, *, obj: griffe.Object, loader: Any, **kwargs: Any) -> None:
        if obj.is_attribute and obj.docstring is None:
            found = _field_doc(obj)
            if found is not None:
                obj.docstring = griffe.Docstring(found[0], parent=obj)
                obj.value = found[1]  # type: ignore[attr-defined]
        self._rewrite(obj)

    def on_package(self, *, pkg: griffe.Module, loader: Any, **kwargs: Any) -> None:
        # the top-level package itself is not passed to on_object
        self._rewrite(pkg)
