"""Files and folders written whole or not at all, and read back with one clear error.

Every file this package writes goes through these helpers, so a crash (power loss, SIGKILL, a full
disk) never leaves something that looks complete but is not:

- :func:`atomic_folder` fills a hidden temporary sibling of a folder, fsyncs it and renames it into
  place; a replaced folder is renamed aside first and deleted last.
- :func:`atomic_file` does the same for one file; :func:`write_text`, :func:`write_json` and
  :func:`write_safetensors` use it, unless told ``atomic=False``: inside a folder that
  :func:`atomic_folder` renames into place whole, a second rename per file would only cost time
  (an fsync of the folder each), so there they write in place and fsync the file.
- :func:`read_json` and :func:`read_safetensors` raise :class:`~superposition.errors.RunDirError`
  naming the file when it cannot be read or parsed. JSON is read by :func:`parse_json`, the one
  JSON reader of the package: it bounds the text's size, its nesting depth and the digits of its
  numbers, and refuses numbers too large for a float, so a corrupt or hostile file is one clear
  error rather than a crash or a long wait.
- :func:`check_destination` refuses, before any work, a destination that cannot be written.

Temporary names start with a dot and hold ``.tmp-<pid>-<random>``; a later :func:`atomic_folder`
or :func:`atomic_file` to the same place removes those of processes that are gone. This module
imports no torch: the safetensors helpers import it when they are called.
"""

import contextlib
import errno
import glob
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superposition.errors import ConfigError, RunDirError

if TYPE_CHECKING:
    import torch

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------------
# folders


@contextlib.contextmanager
def atomic_folder(target: PathLike) -> Iterator[Path]:
    """Yield a hidden temporary sibling of ``target`` to fill.

    When the block ends without an error the folder is fsynced and renamed to ``target`` (an
    existing ``target`` is renamed aside first and deleted last); otherwise it is removed and
    ``target`` is left as it was. Temporary folders that earlier writers to ``target`` left behind
    when they died are removed first. The caller decides whether replacing ``target`` is allowed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = _sibling(target, "tmp")
    try:
        tmp.mkdir()
        yield tmp
        fsync_folder(tmp)
        move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_folder(target.parent)


def move_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder ``tmp`` to ``target``; an existing ``target`` is renamed aside,
    replaced, and deleted only once the new one is in place (restored if the rename fails)."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = _sibling(target, "old")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_stale(target: Path) -> None:
    """Remove the hidden temporary folders of ``target`` left by writers that crashed (those of a
    process still alive are kept: it may be writing them right now)."""
    parent = target.parent
    if not parent.is_dir():
        return
    for prefix in (f".{target.name}.tmp-", f".{target.name}.old-"):
        for p in parent.glob(f"{glob.escape(prefix)}*"):
            pid = p.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            shutil.rmtree(p, ignore_errors=True)


def remove_stale_files(path: Path) -> None:
    """Remove the hidden temporary files of ``path`` (:func:`atomic_file`'s) left by writers that
    died (those of a live process are kept)."""
    prefix = f".{path.stem}.tmp-"
    if not path.parent.is_dir():
        return
    for p in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"):
        pid = p.name[len(prefix) :].split("-", 1)[0]
        # this process's own are being written by another thread
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if p.is_file():
            p.unlink(missing_ok=True)


STALE_NAME = re.compile(r"^\..+\.(?:tmp|old)-(\d+)-[0-9a-f]+")
"""A temporary name of :func:`atomic_folder` or :func:`atomic_file`; group 1 is the writer's pid."""


def remove_stale_in(folder: Path) -> None:
    """Remove every temporary file or folder in ``folder`` left by writers that died (when an
    interrupted sweep resumes, for instance: its finished parts are not written again, so their
    own writes would never clean up after the dead ones)."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        match = STALE_NAME.match(p.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def is_plain_name(name: str) -> bool:
    """Whether ``name`` names an entry of a folder and nothing else: not empty, no separator,
    not ``.`` or ``..``, no NUL, and not hidden (temporary names start with a dot)."""
    return (
        bool(name)
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def _sibling(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError included: the process exists but is not ours
        return True
    return True


# --------------------------------------------------------------------------------------------------
# destinations, checked before the work


TEMPORARY_NAME_EXTRA = len(".") + len(".tmp-") + 10 + len("-") + 8
"""Bytes a temporary sibling's name adds to the name it stands for (a dot, ``.tmp-``, a pid of up
to ten digits, a dash and eight hex digits)."""


def check_destination(path: PathLike, *, flag: str = "--out") -> None:
    """Refuse, before any work, a destination that cannot be written, with one sentence naming it
    (:class:`~superposition.errors.ConfigError`): a name longer than the filesystem allows
    (the last one also leaves room for its temporary sibling), a path longer than the system
    allows, a component that is a file, or a nearest existing folder in which nothing can be
    created (read-only, not ours, or a virtual filesystem such as /proc). The folder is tried by
    making and removing a hidden empty folder in it; nothing else is written."""
    target = Path(os.path.abspath(path))
    text = str(path)
    where = f"{flag} {text if len(text) <= 160 else text[:80] + '...' + text[-40:]}"
    existing = _nearest_existing(target.parent, where)
    if not existing.is_dir():
        raise ConfigError(f"{where} cannot be written: {existing} is a file, not a folder")
    name_max = _pathconf(existing, "PC_NAME_MAX", 255)
    new_names = target.relative_to(existing).parts
    for i, name in enumerate(new_names):
        allowed = name_max - (TEMPORARY_NAME_EXTRA if i == len(new_names) - 1 else 0)
        size = len(os.fsencode(name))
        if size > allowed:
            shown = name if len(name) <= 40 else name[:37] + "..."
            room = " (less room for the temporary name written first)" if allowed < name_max else ""
            raise ConfigError(
                f"{where} cannot be written: the name {shown!r} is {size} bytes long, more than "
                f"the {allowed} this filesystem allows{room}; use a shorter name"
            )
    path_max = _pathconf(existing, "PC_PATH_MAX", 4096)
    longest = len(os.fsencode(str(target))) + TEMPORARY_NAME_EXTRA + 64  # files inside it
    if longest > path_max:
        raise ConfigError(
            f"{where} cannot be written: the path is {len(str(target))} characters long, too "
            f"close to the {path_max} bytes this system allows; use a shorter path"
        )
    folders = [existing]
    if target.is_dir():  # written inside as well (a sweep resumed, figures, experiments)
        folders.append(target)
    for folder in folders:
        _try_writing(folder, where)


def _nearest_existing(path: Path, where: str) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while True:
        try:
            os.stat(path)
            return path
        except (FileNotFoundError, NotADirectoryError):
            pass  # not there yet, or an ancestor is a file: the loop reaches it
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                path = path.parent  # the name check below says which name
                continue
            raise ConfigError(
                f"{where} cannot be written: {path} cannot be read ({exc.strerror})"
            ) from None
        if path.parent == path:
            return path
        path = path.parent


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not POSIX, or no limit
        return default
    return value if value > 0 else default


def _try_writing(folder: Path, where: str) -> None:
    probe = folder / f".superposition-check-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise ConfigError(
            f"{where} cannot be written: nothing can be created in {folder} "
            f"({exc.strerror or exc.__class__.__name__})"
        ) from None
    probe.rmdir()


# --------------------------------------------------------------------------------------------------
# files


@contextlib.contextmanager
def atomic_file(path: PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path`` for the block to write.

    The temporary name keeps ``path``'s suffix, so writers that infer the format from the
    extension (``savefig``) do the right thing. When the block ends without an error the file is
    fsynced and renamed over ``path``; otherwise it is deleted. The block must create the file.
    Temporary files that earlier writers to ``path`` left behind when they died are removed first.
    """
    path = Path(path)
    remove_stale_files(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        if not tmp.is_file():
            raise RunDirError(f"nothing was written for {path}")
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


@contextlib.contextmanager
def _writing(path: PathLike, atomic: bool) -> Iterator[Path]:
    if atomic:
        with atomic_file(path) as tmp:
            yield tmp
        return
    yield Path(path)
    fsync_file(path)


def write_text(path: PathLike, text: str, *, atomic: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path``: atomically (:func:`atomic_file`), or in place and
    fsynced when ``atomic`` is false (for files inside an :func:`atomic_folder`)."""
    with _writing(path, atomic) as out:
        out.write_text(text, encoding="utf-8")


def json_text(obj: Any, *, compact_values: bool = False) -> str:
    """``obj`` as indented JSON text ending in a newline; NaN and infinities are refused.

    ``compact_values`` writes one line per top-level key, so long per-instance lists stay
    readable.
    """
    if compact_values:
        body = ",\n".join(
            f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in obj.items()
        )
        return "{\n" + body + "\n}\n"
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def write_json(
    path: PathLike, obj: Any, *, compact_values: bool = False, atomic: bool = True
) -> None:
    """Write ``obj`` as JSON (:func:`json_text`) to ``path`` (``atomic`` as in
    :func:`write_text`)."""
    write_text(path, json_text(obj, compact_values=compact_values), atomic=atomic)


MAX_JSON_BYTES = 256 * 2**20
"""The largest JSON text read (a sweep's metrics of many instances stay far below)."""
MAX_JSON_DEPTH = 64
"""The deepest nesting of arrays and objects read (the package writes at most a few levels)."""
MAX_JSON_DIGITS = 100
"""The most characters in one number (a float64 needs at most 25)."""


def parse_json(text: str | bytes, source: str) -> Any:
    """The JSON value in ``text``, read from ``source`` (named in errors).

    Refused with :class:`RunDirError`, one sentence naming ``source``: text over
    :data:`MAX_JSON_BYTES`, nesting deeper than :data:`MAX_JSON_DEPTH`, a number of more than
    :data:`MAX_JSON_DIGITS` characters or out of a float's range, NaN and infinities (never
    written by this package), text that is not UTF-8 or not JSON.
    """
    if len(text) > MAX_JSON_BYTES:
        raise RunDirError(
            f"{source} is {len(text)} bytes long; JSON of at most {MAX_JSON_BYTES} bytes is read"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise RunDirError(f"{source} is not UTF-8 text") from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise RunDirError(
            f"{source} nests arrays and objects {depth} deep; at most {MAX_JSON_DEPTH} is read"
        )
    try:
        return json.loads(
            text,
            parse_int=lambda t: _number(t, int, source),
            parse_float=lambda t: _number(t, float, source),
            parse_constant=lambda t: _refuse_constant(t, source),
        )
    except json.JSONDecodeError as exc:
        raise RunDirError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:  # pragma: no cover - _json_depth refuses deep nesting first
        raise RunDirError(f"{source} nests arrays and objects too deeply") from None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def _json_depth(text: str) -> int:
    """The deepest nesting of brackets in ``text`` outside strings (without parsing it)."""
    depth = deepest = 0
    for m in _JSON_BRACKETS.finditer(_JSON_STRING.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _number(text: str, kind: type[int] | type[float], source: str) -> int | float:
    if len(text) > MAX_JSON_DIGITS:
        raise RunDirError(
            f"{source} has a number of {len(text)} characters ({text[:12]}...); at most "
            f"{MAX_JSON_DIGITS} are read"
        )
    value = kind(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise RunDirError(f"{source} has the number {text}, too large for a float")
    return value


def _refuse_constant(text: str, source: str) -> Any:
    raise RunDirError(f"{source} has {text}, which is not a JSON number")


def read_json(path: PathLike) -> Any:
    """The JSON value in ``path`` (read by :func:`parse_json`); :class:`RunDirError` naming the
    file if it cannot be read, is too large or is not valid JSON."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_JSON_BYTES:
            raise RunDirError(
                f"{file} is {size} bytes long; JSON of at most {MAX_JSON_BYTES} bytes is read"
            )
        text = file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{file} cannot be read ({exc.__class__.__name__})") from None
    return parse_json(text, str(file))


MAX_TOML_BYTES = 16 * 2**20
"""The largest TOML file read (config and sweep files are a few lines)."""
_TOML_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*')


def read_toml(path: PathLike, what: str = "config file") -> dict[str, Any]:
    """The tables of the TOML file ``path``; :class:`~superposition.errors.ConfigError`, one
    sentence naming ``what`` and the file, if it is missing, unreadable, too large, nested
    deeper than :data:`MAX_JSON_DEPTH`, holds a number of more than :data:`MAX_JSON_DIGITS`
    characters or is not valid TOML."""
    import tomllib

    file = Path(path)
    try:
        if file.stat().st_size > MAX_TOML_BYTES:
            raise ConfigError(f"{what} {file} is over {MAX_TOML_BYTES} bytes long")
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {file} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {file} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {file} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {file} is not UTF-8 text") from None
    depth = _json_depth(_TOML_STRING.sub("", text))  # brackets outside strings and comments
    if depth > MAX_JSON_DEPTH:
        raise ConfigError(
            f"{what} {file} nests arrays and tables {depth} deep; at most {MAX_JSON_DEPTH} is read"
        )
    try:
        raw = tomllib.loads(text, parse_float=lambda t: _number(t, float, f"{what} {file}"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {file} is not valid TOML ({exc})") from None
    except ConfigError:  # a float out of range, from _number
        raise
    except (ValueError, RecursionError):  # an integer too long for int(), nesting in strings
        raise ConfigError(
            f"{what} {file} holds a number of more than {MAX_JSON_DIGITS} characters or "
            f"nests too deeply"
        ) from None
    _check_toml_ints(raw, f"{what} {file}")
    return raw


def _check_toml_ints(value: Any, source: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if len(str(abs(value))) > MAX_JSON_DIGITS:
            raise ConfigError(f"{source} has an integer of more than {MAX_JSON_DIGITS} digits")
    elif isinstance(value, dict):
        for v in value.values():
            _check_toml_ints(v, source)
    elif isinstance(value, list):
        for v in value:
            _check_toml_ints(v, source)


def fsync_file(path: PathLike) -> None:
    """Flush the file at ``path`` to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: PathLike) -> None:
    """Flush the folder at ``path`` (its list of names: creations and renames) to the disk, where
    the platform can open folders; elsewhere do nothing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# tensors


def write_safetensors(
    path: PathLike,
    tensors: Mapping[str, "torch.Tensor"],
    *,
    metadata: dict[str, str] | None = None,
    atomic: bool = True,
) -> None:
    """Write ``tensors`` (moved to the CPU, made contiguous) to the safetensors file ``path``
    (``atomic`` as in :func:`write_text`); :class:`RunDirError` naming the file if safetensors
    refuses them."""
    import torch
    from safetensors.torch import save_file

    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise RunDirError(
                f"cannot write {path}: {key!r} is of type {type(value).__name__}, not a tensor"
            )
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with _writing(path, atomic) as out:
        try:
            save_file(cpu, str(out), metadata=metadata)
        except ValueError as exc:
            raise RunDirError(f"cannot write {path}: {_first_line(exc)}") from None


def read_safetensors(path: PathLike) -> dict[str, "torch.Tensor"]:
    """Every tensor in the safetensors file ``path``; :class:`RunDirError` naming the file if it
    is corrupt or not a safetensors file."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several types for corrupt input
        raise RunDirError(
            f"{path} is corrupt or not a safetensors file ({_first_line(exc)[:120]})"
        ) from None


def open_safetensors(path: PathLike) -> Any:
    """The safetensors file ``path`` opened lazily (``safetensors.safe_open``: its header read,
    each tensor read when asked for with ``get_tensor``); :class:`RunDirError` naming the file if
    its header is corrupt or it cannot be read."""
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # safetensors raises several types for corrupt input
        raise RunDirError(
            f"{path} is corrupt or not a safetensors file ({_first_line(exc)[:120]})"
        ) from None


def safetensors_shapes(path: PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in the safetensors file ``path``, read from its header alone
    (nothing is allocated for the data), so that a loader can compare them with a config before
    reading the tensors; :class:`RunDirError` naming the file if the header is corrupt."""
    file = Path(path)
    try:
        with open(file, "rb") as f:
            head = f.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < size <= min(MAX_JSON_BYTES, file.stat().st_size - 8):
                raise RunDirError(f"{file} is corrupt or not a safetensors file (bad header)")
            header = parse_json(f.read(size), f"the header of {file}")
    except OSError as exc:
        raise RunDirError(f"{file} cannot be read ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise RunDirError(f"{file} is corrupt or not a safetensors file (bad header)")
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise RunDirError(
                f"{file} is corrupt or not a safetensors file (bad shape of {name!r})"
            )
        shapes[name] = tuple(shape)
    return shapes


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


# --------------------------------------------------------------------------------------------------
# JSON values


def jsonable(obj: Any) -> Any:
    """Plain JSON values: mappings to objects with string keys, tuples to lists, tensors and numpy
    arrays to (nested) lists, NaN and infinities to None, anything else to its string."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    if hasattr(obj, "tolist"):  # torch tensors, numpy arrays and scalars
        return jsonable(obj.tolist())
    return str(obj)
