"""``superposition sae-export``: one SAE of an SAE directory or of a leaderboard written as a folder
that SAELens loads (read back with sae-lens itself), the leaderboard's weights, and bad input."""

import json
import shutil

import pytest
import torch
from conftest import fake_run, tiny_config

from superposition.cli import main
from superposition.errors import RunDirError
from superposition.sae import bench
from superposition.sae.config import SAEConfig
from superposition.sae.model import SparseAutoencoder
from superposition.sae.store import save_sae
from superposition.sae.synthetic import SyntheticConfig
from superposition.sae.train import train_sae
from superposition.store import save_run

TINY = SyntheticConfig(n_features=24, n_hidden=8, density_profile="zipf", mean_active=2.0,
                       hierarchy_roots=2, hierarchy_children=2, correlation_rank=2)  # fmt: skip
ARCHS = ("topk", "jumprelu")


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    """topk SAEs on a 2-dimensional toy model: 2 toy instances x widths 3, 5 x k 1, 2."""
    config = SAEConfig(architecture="topk", n_latents=(3, 5), k=(1, 2), seeds=1, steps=40,
                       batch_size=64, eval_samples=300, device="cpu", log_every=20)  # fmt: skip
    toy = fake_run(tiny_config())
    sae_run = train_sae(toy, config)
    root = tmp_path_factory.mktemp("sae")
    save_run(toy, root / "toy")
    return save_sae(sae_run, root / "sae"), sae_run


@pytest.fixture(scope="module")
def leaderboard(tmp_path_factory):
    """A leaderboard of two architectures at target L0s 2 and 4, 16 latents, a few seconds."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(bench.SIZES, "quick", bench.BenchSize(TINY, 16, (2, 4), 80, 128, 3e-3, 2000))
        result = bench.run_bench("quick", architectures=ARCHS, device="cpu", progress=False,
                                 workers=1)  # fmt: skip
    return bench.write_bench(result, tmp_path_factory.mktemp("lb") / "lb"), result


def ours(arch, params, i, n_latents, k):
    """Our SAE instance ``i`` alone (its first ``n_latents`` latents), in inference mode."""
    one = {name: v[i : i + 1, :n_latents] if v.dim() > 2 or name in ("b_enc", "log_threshold")
           else v[i : i + 1] for name, v in params.items() if name != "threshold"}  # fmt: skip
    sae = SparseAutoencoder(arch, **one, coefficient=torch.zeros(1), k=torch.tensor([max(k, 1)]),
                            mask=torch.ones(1, n_latents, dtype=torch.bool))  # fmt: skip
    sae.training = False
    return sae


def export(capsys, *argv):
    code = main(["sae-export", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_sae_directory_instance_exports_and_saelens_computes_what_ours_does(
    sae_dir, tmp_path, capsys
):
    from sae_lens import SAE

    folder, sae_run = sae_dir
    i = 3  # toy instance 0, width 5, k 2
    inst = sae_run.instances[i]
    assert (inst.n_latents, inst.k) == (5, 2)
    out = tmp_path / "exported"
    code, text, err = export(capsys, folder, "--out", out, "--instance", i)
    assert code == 0, err
    assert f"the topk SAE instance 3 of {folder} (5 latents, k = 2)" in text and str(out) in text
    loaded = SAE.load_from_disk(str(out), device="cpu")
    assert type(loaded).__name__ == "TopKSAE" and (loaded.cfg.d_in, loaded.cfg.d_sae) == (2, 5)
    h = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    mine = ours("topk", sae_run.params, i, 5, 2).encode(h[None])[0]
    with torch.no_grad():
        theirs = loaded.encode(h)
    assert torch.allclose(theirs, mine, atol=1e-5)
    assert ((theirs > 0).sum(-1) <= 2).all() and (theirs > 0).any()
    # instance 0 is the default, and another SAE (width 3, k 1)
    code, _, err = export(capsys, folder, "--out", tmp_path / "first")
    assert code == 0, err
    assert json.loads((tmp_path / "first" / "cfg.json").read_text())["d_sae"] == 3


def test_a_leaderboard_sae_exports_and_saelens_computes_what_ours_does(
    leaderboard, tmp_path, capsys
):
    from sae_lens import SAE

    folder, result = leaderboard
    out = tmp_path / "exported"
    args = (folder, "--out", out, "--architecture", "jumprelu", "--target-l0", 4)
    code, text, err = export(capsys, *args)
    assert code == 0, err
    assert f"the jumprelu SAE at target L0 4 of {folder} (16 latents, L0 " in text
    loaded = SAE.load_from_disk(str(out), device="cpu")
    assert type(loaded).__name__ == "JumpReLUSAE" and (loaded.cfg.d_in, loaded.cfg.d_sae) == (8, 16)
    params = result.params["jumprelu"]
    h = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = loaded.encode(h)
    # target 4 is the architecture's second instance, not its first
    assert torch.allclose(theirs, ours("jumprelu", params, 1, 16, 0).encode(h[None])[0], atol=1e-5)
    assert not torch.allclose(theirs, ours("jumprelu", params, 0, 16, 0).encode(h[None])[0],
                              atol=1e-3)  # fmt: skip
    assert 0 < (theirs > 0).float().mean() < 0.9


def test_the_leaderboard_keeps_every_sae_and_reads_them_back(leaderboard, tmp_path, capsys):
    folder, result = leaderboard
    raw = json.loads((folder / "results.json").read_text())
    assert [(r["architecture"], r["instance"], r["target_l0"]) for r in raw["rows"]] == [
        ("topk", 0, 2), ("topk", 1, 4), ("jumprelu", 0, 2), ("jumprelu", 1, 4)]  # fmt: skip
    for arch in ARCHS:
        back = bench.load_bench_params(folder, arch)
        assert set(back) == set(result.params[arch])
        assert all(torch.equal(back[k], v) for k, v in result.params[arch].items())
        assert back["W_enc"].shape == (2, 16, 8)
    assert "log_threshold" in bench.load_bench_params(folder, "jumprelu")
    loaded = bench.load_bench(folder)
    assert loaded.rows == raw["rows"] and loaded.params == {}
    # a folder written before the weights were kept still loads and redraws its table
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    (old / "weights.safetensors").unlink()
    raw["rows"] = [{k: v for k, v in r.items() if k != "instance"} for r in raw["rows"]]
    (old / "results.json").write_text(json.dumps(raw))
    assert "| topk |" in bench.table(bench.load_bench(old))
    with pytest.raises(RunDirError, match="holds no SAE weights"):
        bench.load_bench_params(old, "topk")


@pytest.mark.parametrize(
    ("source", "args", "words"),
    [
        ("sae", ["--instance", "8"], "--instance 8 is out of range: {src} holds SAE instances "
         "0..7"),
        ("sae", ["--instance", "-1"], "--instance -1 is out of range"),
        ("sae", ["--architecture", "topk"], "--architecture applies to a leaderboard; {src} is "
         "an SAE directory: choose with --instance"),
        ("lb", ["--architecture", "relu", "--target-l0", "2"], "unknown architecture 'relu'; "
         "known: relu_l1, topk, jumprelu, batchtopk, matryoshka"),
        ("lb", ["--architecture", "topk", "--target-l0", "3"], "{src} has no topk SAE at target "
         "L0 3; it holds topk at 2, 4; jumprelu at 2, 4"),
        ("lb", ["--architecture", "matryoshka", "--target-l0", "2"], "{src} has no matryoshka "
         "SAE at target L0 2; it holds topk at 2, 4; jumprelu at 2, 4"),
        ("lb", ["--architecture", "topk"], "{src} is an SAE leaderboard: choose an SAE with "
         "--architecture and --target-l0 (it holds topk at 2, 4; jumprelu at 2, 4)"),
        ("lb", ["--instance", "0"], "--instance applies to an SAE directory"),
        ("old", ["--architecture", "topk", "--target-l0", "2"], "{src} holds no SAE weights "
         "(written before leaderboards kept them); run the leaderboard again"),
        ("other", [], "{src} is neither an SAE directory (superposition sae RUN --out DIR) nor "
         "an SAE leaderboard"),
        ("missing", [], "{src} does not exist"),
        ("toy", [], "{src} is a toy-model run, not an SAE directory; train SAEs on it with "
         "`superposition sae RUN --out DIR` and export those"),
        ("sae", ["--out-exists"], "already exists; export to a new folder"),
    ],
)  # fmt: skip
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(
    sae_dir, leaderboard, tmp_path, capsys, source, args, words
):
    sources = {"sae": sae_dir[0], "lb": leaderboard[0], "other": tmp_path / "other",
               "missing": tmp_path / "missing", "old": tmp_path / "old",
               "toy": sae_dir[0].parent / "toy"}  # fmt: skip
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not an SAE")
    shutil.copytree(leaderboard[0], tmp_path / "old")
    (tmp_path / "old" / "weights.safetensors").unlink()
    out = tmp_path / "out"
    if args == ["--out-exists"]:
        args = []
        out.mkdir()
        (out / "kept.txt").write_text("mine")
    src = sources[source]
    code, text, err = export(capsys, src, "--out", out, *args)
    assert code == 2 and words.format(src=src) in err and err.count("\n") == 1, err
    assert err.startswith("error: ")
    assert text == ""
    assert not out.exists() or [p.name for p in out.iterdir()] == ["kept.txt"]
