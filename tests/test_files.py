"""superposition.files: folders and files appear whole or not at all, and bad input is named."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from superposition import files
from superposition.errors import RunDirError

# --------------------------------------------------------------------------------------------------
# atomic folders


def test_atomic_folder_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out"
    with files.atomic_folder(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.tmp-")
        (tmp / "a.txt").write_text("a")
        assert not target.exists()  # nothing is visible before the block ends
    assert (target / "a.txt").read_text() == "a"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out"]


def test_atomic_folder_leaves_nothing_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="crash"), files.atomic_folder(tmp_path / "out") as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("simulated crash")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_keeps_the_old_one_until_the_new_one_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), files.atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("simulated crash")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with files.atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old one was deleted


def test_stale_temporary_folders_go_but_a_live_writers_stay(tmp_path: Path) -> None:
    dead = tmp_path / ".out.tmp-999999999-dead"  # no such process
    dead.mkdir()
    alive = tmp_path / f".out.tmp-{os.getppid()}-busy"  # our parent: alive, another process
    alive.mkdir()
    with files.atomic_folder(tmp_path / "out"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", alive.name])


# --------------------------------------------------------------------------------------------------
# atomic files


def test_atomic_file_keeps_the_suffix_and_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    with files.atomic_file(target) as tmp:
        assert tmp.suffix == ".png" and tmp.name.startswith(".figure.tmp-")
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_atomic_file_leaves_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("simulated crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_file_refuses_a_writer_that_wrote_nothing(tmp_path: Path) -> None:
    with (
        pytest.raises(RunDirError, match="nothing was written"),
        files.atomic_file(tmp_path / "x.txt"),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_failed_fsync_leaves_the_old_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        files.write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# --------------------------------------------------------------------------------------------------
# JSON


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("atomic", [True, False])
def test_json_round_trip(tmp_path: Path, compact: bool, atomic: bool) -> None:
    doc = {"loss": [0.5, 0.25], "name": "é", "groups": [{"best": 1}], "none": None}
    files.write_json(tmp_path / "doc.json", doc, compact_values=compact, atomic=atomic)
    text = (tmp_path / "doc.json").read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert files.read_json(tmp_path / "doc.json") == doc
    if compact:  # one line per top-level key
        assert text.splitlines()[1] == '  "loss": [0.5, 0.25],'


def test_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        files.write_json(tmp_path / "doc.json", {"loss": math.nan})
    assert list(tmp_path.iterdir()) == []


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "metrics.json"
    bad.write_text('{"loss": [1, 2,\n')
    with pytest.raises(RunDirError) as info:
        files.read_json(bad)
    message = str(info.value)
    assert str(bad) in message and "is not valid JSON" in message and "line 2" in message


def test_unreadable_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"missing\.json cannot be read \(FileNotFoundError\)"):
        files.read_json(tmp_path / "missing.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(RunDirError, match=r"binary\.json cannot be read \(UnicodeDecodeError\)"):
        files.read_json(binary)


def test_jsonable_makes_plain_json() -> None:
    value = {
        1: (1.5, math.nan, -math.inf),
        "t": torch.tensor([[1.0, math.nan]]),
        "scalar": torch.tensor(3),
        "path": Path("a/b"),
        "flags": [True, None, "s"],
    }
    out = files.jsonable(value)
    assert out == {
        "1": [1.5, None, None],
        "t": [[1.0, None]],
        "scalar": 3,
        "path": str(Path("a/b")),
        "flags": [True, None, "s"],
    }
    json.dumps(out, allow_nan=False)  # strict JSON


# --------------------------------------------------------------------------------------------------
# safetensors


def test_safetensors_round_trip(tmp_path: Path) -> None:
    W = torch.randn(2, 5, 3).transpose(1, 2)  # not contiguous: written all the same
    steps = torch.arange(4)
    files.write_safetensors(tmp_path / "w.safetensors", {"W": W, "steps": steps})
    back = files.read_safetensors(tmp_path / "w.safetensors")
    assert torch.equal(back["W"], W) and torch.equal(back["steps"], steps)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_corrupt_safetensors_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(RunDirError, match=r"weights\.safetensors is corrupt or not a safetensors"):
        files.read_safetensors(bad)


def test_safetensors_refuses_what_is_not_a_tensor(tmp_path: Path) -> None:
    tensors = {"W": torch.zeros(2), "x": 3}
    with pytest.raises(RunDirError, match=r"w\.safetensors: 'x' is of type int, not a tensor"):
        files.write_safetensors(tmp_path / "w.safetensors", tensors)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------


def test_importing_files_loads_no_torch() -> None:
    code = "import sys, superposition.files; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stale_temporary_files_go_but_a_live_writers_stay(tmp_path: Path) -> None:
    target = tmp_path / "results.csv"
    dead = tmp_path / ".results.tmp-999999999-0badc0de.csv"  # no such process
    alive = tmp_path / f".results.tmp-{os.getppid()}-0badc0de.csv"  # our parent's
    other = tmp_path / ".notes.tmp-999999999-0badc0de.csv"  # another file's: not ours to judge
    for p in (dead, alive, other):
        p.write_text("half")
    files.write_text(target, "whole")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["results.csv", alive.name, other.name])
    # a resumed sweep sweeps its whole folder: files and folders of dead writers, any name
    (tmp_path / ".0003.tmp-999999999-0badc0de").mkdir()
    (tmp_path / ".results.csv.tmp-999999999-0badc0de").write_text("half")
    files.remove_stale_in(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["results.csv", alive.name])


@pytest.mark.parametrize(
    "text, words",
    [
        ("[" * 65 + "]" * 65, "nests arrays and objects 65 deep; at most 64"),
        ('["[[[[", {"a": "]]]"}]', None),  # brackets inside strings do not count
        ("1" * 101, "a number of 101 characters"),
        ("-1e400", "the number -1e400, too large for a float"),
        ("[1, Infinity]", "has Infinity, which is not a JSON number"),
        ("NaN", "has NaN, which is not a JSON number"),
    ],
)
def test_parse_json_bounds_depth_digits_and_range(text: str, words: str | None) -> None:
    if words is None:
        assert files.parse_json(text, "doc") == ["[[[[", {"a": "]]]"}]
        return
    with pytest.raises(RunDirError) as info:
        files.parse_json(text, "somewhere/doc.json")
    assert str(info.value).startswith("somewhere/doc.json ") and words in str(info.value)


def test_read_json_refuses_a_file_over_the_size_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.json"
    big.write_text("[" + "0, " * 100 + "0]")
    monkeypatch.setattr(files, "MAX_JSON_BYTES", 100)
    with pytest.raises(RunDirError, match=r"big\.json is 303 bytes long; JSON of at most 100"):
        files.read_json(big)


def test_safetensors_shapes_reads_the_header_alone(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    files.write_safetensors(path, {"W": torch.zeros(2, 3, 4), "b": torch.zeros(2, 3)})
    assert files.safetensors_shapes(path) == {"W": (2, 3, 4), "b": (2, 3)}
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(RunDirError, match="bad header"):
        files.safetensors_shapes(path)


@pytest.mark.parametrize(
    "name, plain",
    [("run-1", True), ("a b", True), ("", False), (".", False), ("..", False), (".hidden", False),
     ("../../x", False), ("a/b", False), ("a\\b", False), ("a\0b", False)],
)  # fmt: skip
def test_is_plain_name(name: str, plain: bool) -> None:
    assert files.is_plain_name(name) is plain
