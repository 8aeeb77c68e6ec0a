"""Training speed of `superposition.training` against a plain reference trainer, in one process.

Run:  .venv/bin/python benchmarks/bench_train.py [--quick] [--profile]

The reference is written the way the paper's notebook trains toy models: [batch, inst, feat] layout,
dense `torch.rand` values and masks, one einsum per layer over the instance axis, autograd and
torch.optim.AdamW. Both trainers run the same configs (same densities, importances, batch size) with
torch's default thread count; we report steps per second of the training loop only (one-off set-up,
JIT warm-up and the final evaluation are excluded) and the ratio ours / reference.
Then: cost against the number of instances (should be linear), and peak memory of a 10,000-instance
run under a small memory budget (measured in a fresh process).
"""

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from superposition import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.data import FeatureDistribution, importance_from_config
from superposition.training import StepInfo, train

# --------------------------------------------------------------------------------------------------
# the reference: the notebook's way


def reference_train(density: torch.Tensor, importance: torch.Tensor, n_hidden: int, steps: int,
                    batch: int, on_step=None) -> torch.Tensor:  # fmt: skip
    """ReLU output model, tied, trained the notebook's way on density's device. density,
    importance: [inst, feat]."""
    n_inst, n_feat = density.shape
    dev = density.device
    W0 = torch.empty(n_inst, n_feat, n_hidden, device=dev)
    W = torch.nn.Parameter(torch.nn.init.xavier_normal_(W0))
    b = torch.nn.Parameter(torch.zeros(n_inst, n_feat, device=dev))
    opt = torch.optim.AdamW([W, b], lr=1e-3)
    for step in range(steps):
        values = torch.rand(batch, n_inst, n_feat, device=dev)
        x = torch.where(torch.rand(batch, n_inst, n_feat, device=dev) <= density, values, 0.0)
        h = torch.einsum("bif,ifh->bih", x, W)
        out = torch.relu(torch.einsum("bih,ifh->bif", h, W) + b)
        loss = (importance * (x - out) ** 2).mean(dim=(0, 2)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step)
    return W.detach()


# --------------------------------------------------------------------------------------------------
# timing


@dataclass
class Case:
    name: str
    config: RunConfig
    target: float
    ref_steps: int  # steps timed for the reference (after warm-up)
    our_steps: int


def timed_steps(n_warm: int, n_timed: int) -> tuple[list[float], Callable[[int], None]]:
    """A per-step hook recording the clock after step n_warm - 1 and after the last timed step."""
    marks: list[float] = []

    def hook(step: int) -> None:
        if step in (n_warm - 1, n_warm + n_timed - 1):
            marks.append(time.perf_counter())

    return marks, hook


def reference_rate(config: RunConfig, n_timed: int) -> float:
    density = FeatureDistribution.from_config(config).density
    importance = importance_from_config(config)
    n_warm = 2
    marks, hook = timed_steps(n_warm, n_timed)
    reference_train(density, importance, config.model.n_hidden, n_warm + n_timed,
                    config.train.batch_size, hook)  # fmt: skip
    return n_timed / (marks[1] - marks[0])


def our_rate(config: RunConfig, n_timed: int) -> tuple[float, str]:
    """Steps/s of our loop, timed by a logging callback between steps L and 11 L (L = n_timed / 10):
    set-up, JIT loading, the first L steps and the final evaluation fall outside."""
    every = max(1, n_timed // 10)
    cfg = _with_train(config, steps=11 * every + 1, log_every=every, eval_samples=1)
    marks: list[float] = []

    def mark(info: StepInfo) -> None:
        marks.append(time.perf_counter())

    train(_with_train(config, steps=2, eval_samples=1), progress=False)  # loads the kernels
    run = train(cfg, progress=False, callbacks=[mark])
    return 10 * every / (marks[-1] - marks[1]), run.info["step"]


def _with_train(config: RunConfig, **changes) -> RunConfig:
    fields = {**config.train.__dict__, **changes}
    return RunConfig(data=config.data, model=config.model, train=TrainConfig(**fields))


def cases(quick: bool) -> list[Case]:
    scale = 0.4 if quick else 1.0

    def steps(n: int) -> int:
        return max(2, int(n * scale))

    def relu(n_feat: int, n_hidden: int, density, instances: int, decay: float = 1.0) -> RunConfig:
        return RunConfig(
            data=DataConfig(n_features=n_feat, density=density, importance_decay=decay),
            model=ModelConfig(kind="relu", n_hidden=n_hidden),
            train=TrainConfig(instances=instances, batch_size=1024, device="cpu"),
        )

    phase_densities = tuple(float(d) for d in torch.logspace(0, -2, 40))
    return [
        Case("canonical 10 x 20f x 5h @0.05", relu(20, 5, 0.05, 10, 0.7), 15.0,
             steps(300), steps(3000)),
        Case("phase 4800 x 2f x 1h @1..0.01", relu(2, 1, phase_densities, 120), 60.0,
             steps(6), steps(150)),
        Case("geometry 16 x 400f x 30h @0.01", relu(400, 30, 0.01, 16), 8.0,
             steps(40), steps(300)),
        Case("geometry 4 x 1000f x 100h @0.001", relu(1000, 100, 0.001, 4), 8.0,
             steps(60), steps(300)),
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# scaling and memory


def scaling(quick: bool) -> bool:
    print("\nlinear scaling: canonical model (20 features, 5 hidden, density 0.05)")
    print(f"{'instances':>10} {'ms/step':>9} {'us/instance-step':>17}")
    base = None
    ok = True
    for mult in (1, 2, 4):
        n = 250 * mult
        cfg = RunConfig(data=DataConfig(n_features=20, density=0.05),
                        model=ModelConfig(kind="relu", n_hidden=5),
                        train=TrainConfig(instances=n, device="cpu"))  # fmt: skip
        rate, _ = our_rate(cfg, 40 if quick else 100)
        per = 1e6 / rate / n
        base = base or per
        ok &= per < 1.5 * base
        print(f"{n:>10} {1e3 / rate:>9.2f} {per:>17.3f}")
    print(f"per-instance cost at 4x within 1.5x of 1x: {'PASS' if ok else 'FAIL'}")
    return ok


MEMORY_CHILD = """
import json, torch
from superposition import DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.training import train
cfg = RunConfig(data=DataConfig(n_features=20, density=0.05), model=ModelConfig(kind="relu",
      n_hidden=5), train=TrainConfig(instances=10_000, steps={steps}, eval_samples=1024,
      memory_budget_gb={budget}, device="cpu"))
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
train(RunConfig(data=cfg.data, model=cfg.model, train=TrainConfig(steps=1, eval_samples=1)))
base = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
run = train(cfg, progress=False)
peak = status("VmHWM:")
print(json.dumps({{"base": base, "peak": peak, "chunks": run.info["chunks"],
                  "chunk_instances": run.info["chunk_instances"], "step": run.info["step"]}}))
"""


def memory(quick: bool) -> bool:
    budget = 0.25
    steps = 20 if quick else 50
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD.format(steps=steps, budget=budget)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    r = json.loads(out.stdout.strip().splitlines()[-1])
    extra = (r["peak"] - r["base"]) / 2**30
    ok = extra <= budget
    print(f"\nmemory: 10,000 instances x 20 features, memory_budget_gb={budget}: "
          f"{r['chunks']} chunks of {r['chunk_instances']} ({r['step']} step); "
          f"peak RSS {r['peak'] / 2**30:.3f} GiB = baseline {r['base'] / 2**30:.3f} GiB "
          f"+ {extra:.3f} GiB: {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return ok


# --------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (noisier)")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats (best is kept)")
    parser.add_argument("--skip-extra", action="store_true", help="skip scaling and memory")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'config':<34} {'step':>6} {'ref st/s':>9} {'ours st/s':>10} {'ratio':>7} "
          f"{'target':>7}  result")  # fmt: skip
    ok = True
    for case in cases(args.quick):
        if args.only and args.only not in case.name:
            continue
        # best of a few alternating repeats: other processes on a shared machine only slow down
        ref, ours, step = 0.0, 0.0, ""
        for _ in range(args.repeats):
            ref = max(ref, reference_rate(case.config, case.ref_steps))
            rate, step = our_rate(case.config, case.our_steps)
            ours = max(ours, rate)
        ratio = ours / ref
        ok &= ratio >= case.target
        print(f"{case.name:<34} {step:>6} {ref:>9.1f} {ours:>10.1f} {ratio:>6.1f}x "
              f"{case.target:>6.0f}x  {'PASS' if ratio >= case.target else 'FAIL'}", flush=True)
    if not args.skip_extra:
        ok &= scaling(args.quick)
        ok &= memory(args.quick)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
