"""``superposition inspect RUN [--json]``: summarise a run directory without retraining it."""

import argparse
import json
from pathlib import Path
from typing import Any

from superposition.cli.common import EXIT_OK, Command, fmt
from superposition.config import RunConfig

HELP = "Summarise a run directory (text, or JSON with --json)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="Run directory written by `superposition train`.")
    p.add_argument("--json", action="store_true", help="Print a JSON document instead of text.")


def inspect_dict(path: Path) -> dict[str, Any]:
    """What ``inspect --json`` prints: per-instance measures as lists of length ``instances``."""
    from superposition import geometry
    from superposition.files import jsonable
    from superposition.store import load_run, read_config_json

    run = load_run(path)
    meta = read_config_json(path)
    cfg = run.config
    best = run.best()
    loss = run.loss.tolist()
    group_of = [cfg.group_of(i) for i in range(cfg.n_instances)]
    groups = [
        {
            **values.as_dict(),
            "instances": list(range(run.group_slice(g).start, run.group_slice(g).stop)),
            "best": best[g],
            "best_loss": loss[best[g]],
        }
        for g, values in enumerate(cfg.groups)
    ]
    doc = {
        "path": str(path),
        "version": meta.get("version"),
        "created_at": meta.get("created_at"),
        "config": cfg.to_dict(),
        "n_instances": cfg.n_instances,
        "n_groups": cfg.n_groups,
        "instances_per_group": cfg.train.instances,
        "loss": loss,
        "group": group_of,
        "density": [cfg.groups[g].density for g in group_of],
        "importance_decay": [cfg.groups[g].importance_decay for g in group_of],
        "relative_importance": [cfg.groups[g].relative_importance for g in group_of],
        "bias": run.b.tolist(),
        **geometry.summary(run),
        "best": best,
        "groups": groups,
        "info": run.info,
    }
    result: dict[str, Any] = jsonable(doc)
    return result


def run(args: argparse.Namespace) -> int:
    path = Path(args.run)
    doc = inspect_dict(path)
    if args.json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        return EXIT_OK
    cfg = RunConfig.from_dict(doc["config"])
    d, m, t = cfg.data, cfg.model, cfg.train
    print(f"run {path}  (superposition {doc['version']}, saved {doc['created_at']})")
    print(
        f"  model: {m.kind}, n_features={d.n_features}, n_hidden={m.n_hidden}, "
        f"{'tied' if m.is_tied else 'untied'}, {'signed' if cfg.signed else 'unsigned'} inputs"
    )
    extras = []
    if d.importance is not None:
        extras.append("importance=" + ",".join(f"{v:g}" for v in d.importance))
    if d.feature_density is not None:
        extras.append("feature_density=" + ",".join(f"{v:g}" for v in d.feature_density))
    if d.correlated:
        extras.append(f"correlated={list(d.correlated)}")
    if d.anticorrelated:
        extras.append(f"anticorrelated={list(d.anticorrelated)}")
    if extras:
        print("  data: " + ", ".join(extras))
    print(
        f"  train: {t.steps} steps, batch {t.batch_size}, {t.optimizer} lr={t.lr:g} "
        f"wd={t.weight_decay:g} {t.schedule}, seed {t.seed}; "
        f"{cfg.n_instances} instance(s) = {cfg.n_groups} group(s) x {t.instances}"
    )
    for g, group in enumerate(doc["groups"]):
        k = group["best"]
        losses = " ".join(fmt(doc["loss"][i]) for i in group["instances"])
        norms = ", ".join(fmt(v, 2) if v is not None else "nan" for v in doc["feature_norms"][k])
        print(
            f"group {g}: density {group['density']:g}, importance_decay "
            f"{group['importance_decay']:g}"
        )
        print(f"  losses (instances {group['instances'][0]}-{group['instances'][-1]}): {losses}")
        print(
            f"  best: instance {k}, loss {fmt(group['best_loss'])}, geometry: {doc['geometry'][k]}"
        )
        print(f"  feature norms of instance {k}: [{norms}]")
    return EXIT_OK


COMMAND = Command(HELP, add_arguments, run)
