"""Atomic checkpoint files, retention, and clear errors for damaged files."""

import os

import pytest
import torch

from twogpu import checkpoint as ck
from twogpu.checkpoint import CheckpointDir, CheckpointError, load_checkpoint, save_atomic, save_checkpoint


def _state(step):
    return {
        "model": {"a.w": torch.full((3,), float(step))},
        "step": step,
        "config": {"train": {"name": "x"}},
        "rng": [3, [1, 2, 3], None],
    }


def test_round_trip(tmp_path):
    path = save_checkpoint(_state(4), tmp_path / "c.pt")
    back = load_checkpoint(path)
    assert back["step"] == 4 and torch.equal(back["model"]["a.w"], torch.full((3,), 4.0))
    assert back["rng"] == [3, [1, 2, 3], None]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(_state(1), tmp_path / "c.pt")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(2), path)
    assert os.listdir(tmp_path) == ["c.pt"]  # no temp file left behind
    assert load_checkpoint(path)["step"] == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_file_gives_clear_error_naming_it(tmp_path, damage):
    path = save_checkpoint(_state(1), tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 10, "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert ("truncated or corrupt" in str(info.value)) or ("empty" in str(info.value))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


class Evil:
    """Not a tensor or plain value: weights_only loading must refuse it."""


def test_arbitrary_objects_are_refused(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")


def test_keep_last_best_and_last(tmp_path):
    d = CheckpointDir(tmp_path, keep_last=2)
    for step in (10, 20, 30, 40):
        d.save(_state(step), step, is_best=(step == 20))
    assert [p.name for p in d.step_files()] == ["step-00000030.pt", "step-00000040.pt"]
    assert load_checkpoint(d.last)["step"] == 40
    assert load_checkpoint(d.best)["step"] == 20  # survives pruning of step-20
    assert not d.last.is_symlink() and not d.best.is_symlink()


def test_latest_loadable_skips_a_corrupt_last(tmp_path, caplog):
    d = CheckpointDir(tmp_path, keep_last=3)
    for step in (1, 2):
        d.save(_state(step), step)
    # damage the newest step file (last.pt is a link to it, so it is damaged too)
    newest = d.step_files()[-1]
    newest.unlink()
    newest.write_bytes(b"junk")
    d.last.unlink()
    d.last.write_bytes(b"junk")
    path, state = d.latest_loadable()
    assert path.name == "step-00000001.pt" and state["step"] == 1
    assert any("last.pt" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert CheckpointDir(tmp_path / "empty").latest_loadable() is None


def test_resuming_an_older_step_sets_newer_files_aside(tmp_path):
    ckpts = CheckpointDir(tmp_path, keep_last=3)
    for step in (10, 20, 30):
        ckpts.save({"step": step}, step)
    moved = ckpts.set_aside_after(10)
    assert [p.name for p in moved] == ["step-00000020.pt", "step-00000030.pt"]
    assert all(p.exists() for p in moved) and moved[0].parent.name.startswith("abandoned-")
    ckpts.save({"step": 11}, 11)  # retention no longer deletes the new file as 'older'
    assert [p.name for p in ckpts.step_files()] == ["step-00000010.pt", "step-00000011.pt"]


@pytest.mark.parametrize("saved", [None, 0, 2])
def test_a_checkpoint_of_another_format_is_refused_naming_both(tmp_path, saved):
    """Written without a format number (format 0) or with another number: refused, the message naming
    the file, its format and the one this version reads."""
    state = _state(3) if saved is None else {**_state(3), "format": saved}
    save_atomic(state, tmp_path / "old.pt")
    found = 0 if saved is None else saved
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "old.pt")
    assert f"checkpoint {tmp_path / 'old.pt'} has format {found}" in str(info.value)
    assert f"this version reads format {ck.FORMAT}" in str(info.value)


def test_every_saved_checkpoint_carries_the_format(tmp_path):
    assert load_checkpoint(save_checkpoint(_state(1), tmp_path / "c.pt"))["format"] == ck.FORMAT
    d = CheckpointDir(tmp_path / "run")
    assert torch.load(d.save({"step": 5}, 5), weights_only=True)["format"] == ck.FORMAT


def test_a_dict_that_is_no_checkpoint_is_named_so(tmp_path):
    torch.save({"mean": torch.zeros(3)}, tmp_path / "stats.pt")
    with pytest.raises(CheckpointError, match=r"stats.pt is not a checkpoint"):
        load_checkpoint(tmp_path / "stats.pt")
