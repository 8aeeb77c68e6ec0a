"""Checks and timings of the CUDA path, in one run on a machine with a GPU.

Run:  python benchmarks/gpu_check.py [--out DIR] [--skip-reproduce]

1. Correctness on CUDA: the torch step's gradients on the GPU equal the CPU's on the same batch
   (every model kind, the paper's and the cross-entropy loss); the finite source memorises a
   training set of 3 samples; a user's sampler and the SAE trainer run; the same config trained
   twice gives the same weights.
2. Speed: training steps per second of ours against a plain reference trainer (the notebook's way:
   dense torch.rand, einsum, autograd, torch.optim.AdamW), both on the GPU in this process, for the
   configs of bench_train.py; and the 4,800-model phase diagram of Section 3 trained end to end.
3. ``superposition reproduce --all`` at full settings on the GPU, timed (unless --skip-reproduce).
Exit status 0 when every check holds.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from superposition import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.losses import get_loss
from superposition.models import ToyModel
from superposition.steps import Instances, StepSpec, TorchStep
from superposition.training import FlatParams, init_params, train

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import reference_train  # noqa: E402  (the same reference as on the CPU)

CUDA = torch.device(os.environ.get("GPU_CHECK_DEVICE", "cuda"))  # "cpu": a dry run
failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)
    if not ok:
        failures.append(name)


def config(
    n: int, m: int, density: float, kind: str = "relu", instances: int = 4, **kw
) -> RunConfig:
    data = {k: kw.pop(k) for k in ("source", "dataset_size") if k in kw}
    return RunConfig(
        data=DataConfig(n_features=n, density=density, importance_decay=0.9, **data),
        model=ModelConfig(kind=kind, n_hidden=m),
        train=TrainConfig(instances=instances, device=str(CUDA), **kw),
    )


def gradients_match(kind: str, loss_name: str) -> None:
    cfg = config(12, 4, 0.3, kind, loss=loss_name)
    spec = StepSpec(cfg, Instances.of(cfg), CUDA, get_loss(loss_name), "fresh")
    flat = FlatParams(init_params(cfg, spec.instances.seeds), CUDA)
    model = ToyModel(kind, **flat.params)
    step = TorchStep(spec, model, flat.grads)
    x = step.source.batch(0, 1024)
    gpu_loss = model.loss_and_grads(x, step.importance, flat.grads, loss=spec.loss)
    cpu_model = ToyModel(kind, **{k: v.cpu() for k, v in model.params().items()})
    cpu_grads = {k: torch.zeros_like(v) for k, v in cpu_model.params().items()}
    cpu_loss = cpu_model.loss_and_grads(x.cpu(), step.importance.cpu(), cpu_grads, loss=spec.loss)
    worst = max(
        float((flat.grads[k].cpu() - cpu_grads[k]).norm() / cpu_grads[k].norm().clamp_min(1e-30))
        for k in cpu_grads
    )
    loss_err = float(((gpu_loss.cpu() - cpu_loss).abs() / cpu_loss.abs()).max())
    ok = worst < 1e-4 and loss_err < 1e-5
    check(f"gradients on CUDA equal the CPU's ({kind}, {loss_name})", ok,
          f"relative error {worst:.2e}, loss {loss_err:.2e}")  # fmt: skip


def correctness() -> None:
    for kind in ("linear", "relu", "privileged", "abs"):
        gradients_match(kind, "mse")
    gradients_match("relu", "cross_entropy")
    cfg = config(6, 6, 0.5, source="finite", dataset_size=3, steps=1500, lr=1e-2, weight_decay=0.0,
                 batch_size=64, eval_samples=2000)  # fmt: skip
    run = train(cfg, progress=False)
    assert run.dataset_loss is not None
    k = int(run.dataset_loss.argmin())  # best-of-N on the training set
    train_loss, held_out = float(run.dataset_loss[k]), float(run.loss[k])
    check("a finite set of 3 samples is memorised on CUDA", train_loss < 1e-3 < held_out,
          f"train {train_loss:.1e}, held-out {held_out:.3f}")  # fmt: skip
    a = train(config(20, 5, 0.05, steps=2000), progress=False)
    b = train(config(20, 5, 0.05, steps=2000), progress=False)
    check("same config, same weights on CUDA", torch.equal(a.W, b.W), f"step {a.info['step']}")
    check("loss falls on CUDA", bool(a.history_loss[-1].mean() < a.history_loss[0].mean()))

    def sampler(batch: int, generator: torch.Generator) -> torch.Tensor:
        which = torch.randint(0, 6, (batch, 2), generator=generator, device=generator.device)
        return torch.nn.functional.one_hot(which, 6).float()

    run = train(config(6, 2, 1.0, instances=2, source="sampler", steps=500), progress=False,
                sampler=sampler)  # fmt: skip
    check("a user's sampler trains on CUDA", bool(torch.isfinite(run.loss).all()))
    from superposition.sae import SAEConfig, train_sae

    toy = train(config(5, 2, 0.05, steps=3000), progress=False)
    sae_cfg = SAEConfig(n_latents=(5,), l1_coefficient=(0.1,), steps=2000, device=str(CUDA))
    sae = train_sae(toy, sae_cfg)
    ok = sae.info["path"] == "torch" and bool(torch.isfinite(sae.W_dec).all())
    check("SAEs train on CUDA", ok, f"mmcs {sae.scores['mmcs'].tolist()}")


def reference_rate(cfg: RunConfig, steps: int) -> float:
    """Steps per second of the notebook's way on the GPU."""
    density = FeatureDistribution.from_config(cfg).density.to(CUDA)
    importance = importance_from_config(cfg).to(CUDA)
    marks: list[float] = []

    def mark(step: int) -> None:
        if step in (19, steps + 19):
            if CUDA.type == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    reference_train(density, importance, cfg.model.n_hidden, steps + 20, cfg.train.batch_size,
                    on_step=mark)  # fmt: skip
    return steps / (marks[1] - marks[0])


def our_rate(cfg: RunConfig, steps: int) -> float:
    import dataclasses

    short = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps + 20,
                                                               eval_samples=1000))  # fmt: skip
    marks: list[float] = []

    def hook(info) -> None:  # type: ignore[no-untyped-def]
        if info.step in (19, steps + 19):
            if CUDA.type == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    short = dataclasses.replace(short, train=dataclasses.replace(short.train, log_every=1))
    train(short, progress=False, callbacks=[hook])
    return steps / (marks[1] - marks[0])


def speed(results: dict) -> None:
    cases = {
        "canonical 10 x 20->5 @0.05": (config(20, 5, 0.05, instances=10), 2000),
        "phase 4,800 x 2->1": (RunConfig(
            data=DataConfig(n_features=2,
                            density=tuple(float(d) for d in torch.logspace(0, -2, 40))),
            model=ModelConfig(kind="relu", n_hidden=1),
            train=TrainConfig(instances=120, device=str(CUDA))), 1000),
        "geometry 16 x 400->30 @0.01": (config(400, 30, 0.01, instances=16), 1000),
        "geometry 4 x 1000->100 @0.001": (config(1000, 100, 0.001, instances=4), 1000),
        "big 1,000 x 400->30 @0.01": (config(400, 30, 0.01, instances=1000), 200),
    }  # fmt: skip
    print(f"{'config':34} {'reference/s':>12} {'ours/s':>10} {'ratio':>7}", flush=True)
    for name, (cfg, steps) in cases.items():
        ref = reference_rate(cfg, steps)
        ours = our_rate(cfg, steps)
        results[name] = {"reference": ref, "ours": ours, "ratio": ours / ref}
        print(f"{name:34} {ref:12.1f} {ours:10.1f} {ours / ref:7.2f}", flush=True)
    # the whole Section 3 phase diagram: 40 densities x 40 relative importances x 3 seeds, 10k steps
    cfg = RunConfig(
        data=DataConfig(n_features=2, density=tuple(float(d) for d in torch.logspace(0, -2, 40)),
                        relative_importance=tuple(float(r) for r in torch.logspace(-1, 1, 40))),
        model=ModelConfig(kind="relu", n_hidden=1),
        train=TrainConfig(instances=3, device=str(CUDA)),
    )  # fmt: skip
    start = time.perf_counter()
    run = train(cfg, progress=False)
    results["phase diagram 4,800 models x 10k steps, seconds"] = time.perf_counter() - start
    print(f"phase diagram, 4,800 models x 10,000 steps: {time.perf_counter() - start:.1f} s "
          f"({run.info['chunks']} chunk(s))", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu-check")
    parser.add_argument("--results", default="gpu-results", help="reproduce --all writes here")
    parser.add_argument("--skip-reproduce", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(torch.cuda.get_device_name() if CUDA.type == "cuda" else "cpu", torch.__version__)
    results: dict = {}
    correctness()
    speed(results)
    (out / "speed.json").write_text(json.dumps(results, indent=2))
    if not args.skip_reproduce:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "superposition", "reproduce", "--all", "--out",
             args.results, "--no-progress"],
            capture_output=True, text=True,
        )  # fmt: skip
        took = time.perf_counter() - start
        (out / "reproduce.log").write_text(proc.stdout + proc.stderr)
        print(proc.stdout[-3000:], proc.stderr[-2000:], flush=True)
        check("reproduce --all on the GPU", proc.returncode == 0, f"{took:.0f} s")
        results["reproduce --all seconds"] = took
        (out / "speed.json").write_text(json.dumps(results, indent=2))
    print("failures:", failures or "none", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
