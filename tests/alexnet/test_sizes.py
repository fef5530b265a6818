"""The start-of-run advice to prepare 256×256 images for GPU training (issue 18, item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tinydata import make_tiny_dataset

from alexnet.commands.prepare import resize_tree
from alexnet.config import DataConfig, load_config
from alexnet.data.pipeline import ImagePipeline
from alexnet.data.sizes import preparation_advice, sampled_sizes
from alexnet.training.train import train

CUDA = (torch.device("cuda:0"), torch.device("cuda:1"))  # device objects only: no GPU is touched
CPU = (torch.device("cpu"), torch.device("cpu"))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """48×64 JPEGs: what a loader must resize every epoch."""
    return make_tiny_dataset(tmp_path_factory.mktemp("raw"), train_n=3, val_n=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, raw):
    """The same images as `alexnet prepare --resize 256` writes them."""
    dst = tmp_path_factory.mktemp("prepared") / "data"
    resize_tree(raw, dst, size=256, workers=1, show_progress=False)
    return dst


def _pipeline(root, workers: int = 3) -> ImagePipeline:
    return ImagePipeline(DataConfig(root=str(root), workers=workers), batch_size=1, seed=0)


def test_cuda_run_on_raw_images_is_told_the_cost_and_the_command(raw):
    advice = preparation_advice(_pipeline(raw), CUDA)
    assert advice is not None
    assert "not 256×256" in advice and "6 of 6 sampled, e.g. 64×48" in advice, advice
    assert "about 210 images/s per worker" in advice and "about 390" in advice, advice
    assert "3 worker(s) feed at most ~630 images/s" in advice, advice
    assert "10,000 images/s needs ~48 workers instead of ~26" in advice, advice
    assert advice.endswith(f"alexnet prepare --resize 256 {raw} {raw}-256"), advice
    assert "\n" not in advice
    # one tower on a GPU is enough: its loader feeds that GPU
    assert preparation_advice(_pipeline(raw), (torch.device("cuda:0"), torch.device("cpu")))


def test_no_advice_on_the_cpu_or_on_prepared_images(raw, prepared):
    assert preparation_advice(_pipeline(raw), CPU) is None
    assert preparation_advice(_pipeline(prepared), CUDA) is None


def test_one_odd_file_among_prepared_ones_is_reported(prepared, tmp_path):
    root = tmp_path / "mixed"
    resize_tree(prepared, root, size=256, workers=1, show_progress=False)
    odd = sorted((root / "train").rglob("*.jpg"))[0]
    Image.fromarray(np.zeros((300, 256, 3), np.uint8)).save(odd)  # 256 wide, 300 high: not square
    advice = preparation_advice(_pipeline(root), CUDA)
    assert advice is not None and "1 of 6 sampled, e.g. 256×300" in advice and str(odd) in advice


def test_the_check_reads_a_few_headers_spread_over_the_classes(tmp_path):
    root = make_tiny_dataset(tmp_path / "d", classes=("blue", "red", "green"), train_n=40, val_n=1)
    samples = _pipeline(root).train_samples
    sizes = sampled_sizes(samples, n=16)
    assert len(sizes) == 16
    assert {p.split("/")[-2] for p, _ in sizes} == {"blue", "green", "red"}
    assert {wh for _, wh in sizes} == {(64, 48)}
    unreadable = tmp_path / "broken.jpg"
    unreadable.write_bytes(b"not a jpeg")
    read = sampled_sizes([(str(unreadable), 0), *samples[:2]], n=3)
    assert read == [(samples[0][0], (64, 48)), (samples[1][0], (64, 48))]  # the unreadable file left out


def test_a_cpu_training_run_prints_no_advice(raw, tmp_path):
    cfg = load_config(
        None,
        [
            f'data.root="{raw}"',
            f'train.runs_dir="{tmp_path}"',
            "train.batch_size=2",
            "train.max_steps=1",
            "data.workers=0",
            'train.devices=["cpu", "cpu"]',
            "train.checkpoint_minutes=0.0",
        ],
    )
    lines: list[str] = []
    train(cfg, dashboards=False, log=lines.append)
    assert lines and not [line for line in lines if "alexnet prepare" in line], lines
