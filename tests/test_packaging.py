"""The distribution: its name (``superposition`` on PyPI is another project), the install hints
that name it, the version, the extras and ``py.typed`` in the built wheel; and the CPU kernels'
compile cache (a line on stderr when compiling, silence once cached, warm-up covers training)."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import superposition
from superposition.errors import DISTRIBUTION, install_hint

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_names_the_distribution_and_its_version() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == DISTRIBUTION == "toy-superposition"
    assert project["version"] == superposition.__version__
    assert project["scripts"] == {"superposition": "superposition.cli:main"}
    extras = project["optional-dependencies"]
    for extra in ("wandb", "tensorboard"):
        assert extras[extra] and set(extras[extra]) <= set(extras["dev"])
    assert install_hint("ray") == "pip install 'toy-superposition[ray]'"


def test_every_install_hint_names_the_distribution() -> None:
    """``pip install 'superposition[...]'`` would ask PyPI for the unrelated project."""
    texts = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("src/**/*.py")]
    hints = 0
    for path in texts:
        text = path.read_text()
        # a distribution with extras (not a JavaScript index like f.superposition[i])
        for match in re.finditer(r"(?<![\w.\-/])([\w.\-]+)\[(\w+)\]'", text):
            name = match.group(1)
            assert name in (DISTRIBUTION, "."), f"{path}: {match.group(0)}"
            hints += name == DISTRIBUTION
        assert not re.search(r"(?<![\w.\-])superposition\[", text), path
    assert hints >= 4  # README, docs, the Ray backend's module and the sweep command's help


def test_the_wheel_ships_py_typed_under_the_distribution_name(tmp_path) -> None:
    src = tmp_path / "project"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith(f"toy_superposition-{superposition.__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "superposition/py.typed" in names
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = zf.read(metadata).decode()
    assert "\nName: toy-superposition\n" in text
    assert f"\nVersion: {superposition.__version__}\n" in text
    assert "Provides-Extra: wandb" in text and "Provides-Extra: tensorboard" in text


# --------------------------------------------------------------------------------------------------
# the compile cache

COMPILE_ONE = """
import numpy as np
from superposition import kernels
rowptr = np.array([0, 1], np.int64)
x = np.zeros((1, 1, 3), np.float32)
kernels.csr_to_dense(np.array([[2]], np.int32), np.array([[0.5]], np.float32), rowptr[None], x)
kernels.csr_to_dense(np.array([[1]], np.int32), np.array([[0.5]], np.float32), rowptr[None], x)
assert x[0, 0, 1] == x[0, 0, 2] == 0.5
"""


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_cold_cache_says_it_compiles_once_and_a_warm_one_is_silent(tmp_path) -> None:
    cache = tmp_path / "numba"
    first = _python(COMPILE_ONE, NUMBA_CACHE_DIR=str(cache))
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("compiling the CPU kernels once") == 1, first.stderr
    assert f"(cache: {cache})" in first.stderr
    assert list(cache.rglob("*.nbi")), "numba wrote no cache index"
    second = _python(COMPILE_ONE, NUMBA_CACHE_DIR=str(cache))
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""


def test_a_read_only_install_caches_in_the_users_cache_dir(tmp_path, monkeypatch) -> None:
    from superposition import jit

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(jit, "_writable", lambda folder: False)
    assert jit.cache_dir() == tmp_path / "superposition" / "numba"
    monkeypatch.setattr(jit, "_writable", lambda folder: True)
    assert jit.cache_dir() == jit.PACKAGE / "__pycache__"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "given"))
    assert jit.cache_dir() == tmp_path / "given"


WARM_THEN_TRAIN = """
from numba.core import event
from superposition.warmup import warm_up
from superposition.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.sae.config import SAEConfig
from superposition.sae.train import train_sae
from superposition.training import train

from superposition import kernels
from superposition.sae import fused, sparse
from superposition.sae.synthetic import SyntheticConfig, SyntheticModel
from superposition.sae.synthetic_train import train_synthetic

def signatures():
    # every kernel's overloads in memory, compiled or loaded from the cache
    return {(mod.__name__, name): set(f.signatures) for mod in (kernels, fused, sparse)
            for name, f in vars(mod).items() if hasattr(f, "signatures") and hasattr(f, "py_func")}

warm_up()
after_warm_up = signatures()
assert any(after_warm_up.values())
compiled = []

class Record(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass

event.register("numba:compile", Record())
t = TrainConfig(instances=2, steps=3, batch_size=16, log_every=1, eval_samples=32)
for kind in ("linear", "relu", "privileged", "abs"):
    for n, m, tied in ((5, 2, True), (5, 2, False), (30, 10, True)):
        data = DataConfig(n_features=n, density=(1.0, 0.05), importance_decay=0.9)
        tied = None if kind == "abs" else tied
        run = train(RunConfig(data, ModelConfig(kind=kind, n_hidden=m, tied=tied), t),
                    progress=False)
        if kind in ("relu", "privileged"):
            train_sae(run, SAEConfig(steps=2, batch_size=8, seeds=1, eval_samples=16,
                                     device="cpu"), progress=False)
# the sparse SAE steps (the leaderboard's): another model, width and batch than warm_up's
model = SyntheticModel(SyntheticConfig(n_features=200, n_hidden=16, mean_active=3.0,
                                       hierarchy_roots=4, correlation_rank=2))
for arch in ("topk", "batchtopk", "matryoshka", "jumprelu"):
    extra = {"threshold_init": 50.0} if arch == "jumprelu" else {"k": (3, 5)}
    train_synthetic(model, SAEConfig(architecture=arch, n_latents=(256,), steps=2,
                                     batch_size=32, seeds=1, eval_samples=16, device="cpu",
                                     **extra), progress=False)
assert all(f.signatures for f in vars(sparse).values() if hasattr(f, "py_func"))
assert compiled == [], compiled
assert signatures() == after_warm_up, "a kernel or signature that warm_up does not run"
print("no compilation after warm_up")
"""


def test_warm_up_compiles_every_kernel_that_training_uses() -> None:
    done = _python(WARM_THEN_TRAIN)
    assert done.returncode == 0, done.stderr
    assert "no compilation after warm_up" in done.stdout


def test_warmup_command(capsys) -> None:
    from superposition.cli import main

    assert main(["warmup"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("CPU kernels ready in ") and "(cache: " in out
