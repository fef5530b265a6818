"""Checkpoints carry a format number (twogpu.checkpoint.FORMAT); a checkpoint of another format, or
of none, is refused by every reader with one line naming both formats: the CLI exits 2."""

from pathlib import Path

import pytest
import torch
from tinydata import make_tiny_dataset

from alexnet.cli import main
from alexnet.config import config_to_dict, load_config
from alexnet.evaluation.checkpoints import model_from_state
from alexnet.models.model import AlexNet
from twogpu.checkpoint import FORMAT, CheckpointError, save_atomic


@pytest.fixture(scope="module")
def data3(tmp_path_factory) -> Path:
    return make_tiny_dataset(
        tmp_path_factory.mktemp("d3"), classes=("blue", "green", "red"), train_n=2, val_n=2
    )


def _state(data: Path, fmt: int | None) -> dict:
    cfg = load_config(None, [f'data.root="{data}"', "model.num_classes=3", "data.workers=0"])
    state = {
        "model": AlexNet(devices=("cpu", "cpu"), preset=cfg.model, seed=0).state_dict(),
        "config": config_to_dict(cfg),
        "step": 4,
        "epoch": 1,
        "classes": ["blue", "green", "red"],
    }
    return state if fmt is None else {**state, "format": fmt}


def test_the_cli_refuses_a_checkpoint_without_format_in_one_line(tmp_path, data3, capsys):
    """Other format numbers: tests/twogpu/test_checkpoint.py."""
    path = save_atomic(_state(data3, None), tmp_path / "old.pt")  # as written before formats existed
    found = 0
    for argv in (
        ["evaluate", "--checkpoint", str(path), str(data3)],
        ["predict", "--checkpoint", str(path), str(data3 / "val" / "blue")],
        [
            "train",
            str(data3),
            "--resume",
            str(path),
            "--set",
            f'train.runs_dir="{tmp_path / "runs"}"',
            "--set",
            'train.devices=["cpu", "cpu"]',
            "--set",
            "data.workers=0",
            "--set",
            "train.batch_size=2",
        ],
    ):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        err = err.strip().splitlines()[-1]  # after the library's warnings (no stats.pt in data3)
        assert err.startswith(f"alexnet {argv[0]}: error: "), err
        assert f"checkpoint {path} has format {found}" in err, err
        assert f"this version reads format {FORMAT}" in err, err


def test_a_state_without_format_is_refused_by_model_from_state(data3):
    with pytest.raises(CheckpointError, match=f"has format 0 .*reads format {FORMAT}"):
        model_from_state(_state(data3, None), source="hand-made")
    model, cfg = model_from_state(_state(data3, FORMAT), source="hand-made")
    assert cfg.model.num_classes == 3 and not model.training
    assert isinstance(model, AlexNet) and torch.is_tensor(model.state_dict()["a.conv1.weight"])
