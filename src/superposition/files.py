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
  naming the file when it cannot be read or parsed.
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


def read_json(path: PathLike) -> Any:
    """The JSON value in ``path``; :class:`RunDirError` naming the file if it cannot be read or
    is not valid JSON."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{file} cannot be read ({exc.__class__.__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunDirError(
            f"{file} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None


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
