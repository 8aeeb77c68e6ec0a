"""numba, set up for the CPU kernels: a compile cache that lasts, and one line when compiling.

The kernels (:mod:`superposition.kernels`, :mod:`superposition.sae.fused`) are compiled by numba
the first time they run, which takes tens of seconds, and kept in numba's on-disk cache
(``cache=True``), so every later process loads them in a moment. The cache lives beside the
sources (``__pycache__``) when that folder is writable; otherwise (a system-wide install) in
``NUMBA_CACHE_DIR`` when it is set, else in ``~/.cache/superposition/numba``. When a kernel has to
be compiled, one line on stderr says so, once per process: a cold cache is then no silent wait.
``superposition warmup`` (:mod:`superposition.warmup`) compiles them all at set-up.

Import numba's decorators from here, never from numba directly, so this runs first.
"""

import os
import sys
from pathlib import Path
from typing import Any

COMPILE_TIME = "up to a minute"
"""How long compiling the kernels takes: ``superposition warmup`` with an empty
``NUMBA_CACHE_DIR`` spends about 50 s of CPU time (one core) compiling all of them; one run
compiles only the kernels it uses."""
PACKAGE = Path(__file__).resolve().parent


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/superposition/numba`` (default ``~/.cache/...``; ``%LOCALAPPDATA%`` on
    Windows)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "superposition" / "numba"


def _writable(folder: Path) -> bool:
    # numba writes next to the sources, in __pycache__ (made if missing)
    target = folder / "__pycache__"
    return os.access(target if target.is_dir() else folder, os.W_OK)


def cache_dir() -> Path:
    """Where the compiled kernels are kept (see the module's docstring)."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given:
        return Path(given)
    if _writable(PACKAGE) and _writable(PACKAGE / "sae"):
        return PACKAGE / "__pycache__"
    return user_cache_dir()


def _configure() -> None:
    """Point numba at :func:`cache_dir` and listen for compilations of our kernels."""
    if not os.environ.get("NUMBA_CACHE_DIR") and cache_dir() != PACKAGE / "__pycache__":
        os.environ["NUMBA_CACHE_DIR"] = str(user_cache_dir())
    import numba
    from numba.core import event

    # numba reads NUMBA_CACHE_DIR when it is first imported: if that was earlier, say it now
    wanted = os.environ.get("NUMBA_CACHE_DIR", "")
    if wanted:
        numba.config.CACHE_DIR = wanted  # type: ignore[attr-defined]

    class Notice(event.Listener):
        def on_start(self, ev: Any) -> None:
            _notice(ev)

        def on_end(self, ev: Any) -> None:
            pass

    event.register("numba:compile", Notice())


_said = False


def _notice(ev: Any) -> None:
    """Says once per process, on stderr, that our kernels are being compiled: numba fires this
    event only when it compiles (a cache miss), never when it loads from the cache."""
    global _said
    if _said:
        return
    dispatcher = (ev.data or {}).get("dispatcher")
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    if not module.startswith("superposition."):
        return
    _said = True
    print(
        f"superposition: compiling the CPU kernels once ({COMPILE_TIME}); "
        f"later runs reuse them (cache: {cache_dir()})",
        file=sys.stderr,
        flush=True,
    )


_configure()

from numba import njit, prange  # noqa: E402

__all__ = ["COMPILE_TIME", "cache_dir", "njit", "prange", "user_cache_dir"]
