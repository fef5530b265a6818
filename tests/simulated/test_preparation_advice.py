"""A CUDA run (two fake GPUs) on images that are not 256×256 is told once, at the start, what
they cost and how to prepare them (issue 18, item 3); see fakegpu.py for the harness."""

from __future__ import annotations

import pytest
from fakegpu import SimulatedGPUs  # noqa: E402  (skips this module if torch lacks what it needs)
from tinydata import make_tiny_dataset

from alexnet.commands.prepare import resize_tree
from alexnet.config import load_config
from alexnet.training.train import train

pytestmark = pytest.mark.simulated_cuda


def _advice_lines(tmp_path, data) -> list[str]:
    cfg = load_config(
        None,
        [
            f'data.root="{data}"',
            f'train.runs_dir="{tmp_path / "runs"}"',
            "train.batch_size=2",
            "train.max_steps=2",
            "train.log_every=1",
            "data.workers=0",
            'train.devices=["cuda:0", "cuda:1"]',
            "eval.batch_size=2",
            "train.checkpoint_minutes=0.0",
        ],
    )
    lines: list[str] = []
    with SimulatedGPUs():
        result = train(cfg, dashboards=False, log=lines.append)
    assert result.step == 2, result.message
    return [line for line in lines if "alexnet prepare --resize 256" in line]


def test_raw_images_on_gpus_get_one_line_of_advice_at_the_start(tmp_path):
    data = make_tiny_dataset(tmp_path / "raw", train_n=2, val_n=1)
    advice = _advice_lines(tmp_path, data)
    assert len(advice) == 1, advice
    assert "training images are not 256×256" in advice[0] and "per worker" in advice[0]


def test_prepared_images_on_gpus_get_none(tmp_path):
    raw = make_tiny_dataset(tmp_path / "raw", train_n=2, val_n=1)
    resize_tree(raw, tmp_path / "prepared", size=256, workers=1, show_progress=False)
    assert _advice_lines(tmp_path, tmp_path / "prepared") == []
