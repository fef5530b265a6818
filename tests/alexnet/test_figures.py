"""Figures 3 and 4 (alexnet.commands.figures): valid PNG files of the expected sizes, drawn from plain
tensors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.config import Config, ModelConfig, config_to_dict
from alexnet.evaluation.features import fc7_features
from alexnet.evaluation.pictures import (
    BAR_CORRECT,
    kernel_grid,
    line_height,
    nearest_neighbours,
    neighbour_grid,
    top5_panel,
    write_png,
)
from alexnet.models.model import AlexNet
from twogpu.checkpoint import save_checkpoint


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.verify()  # a truncated or corrupt file raises here
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        return np.asarray(im)


def test_kernel_grid_png_size_and_layout(tmp_path):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(48, 3, 11, 11, generator=g), torch.randn(48, 3, 11, 11, generator=g)
    cols, scale, pad, gap = 16, 4, 2, 8
    arr = kernel_grid([a, b], columns=cols, scale=scale, pad=pad, tower_gap=gap)
    png = read_png(write_png(arr, tmp_path / "fig3.png"))
    rows = 48 // cols  # 3 rows of 16 per tower
    cell = 11 * scale
    assert png.shape == (2 * (rows * (cell + pad) + pad) + gap, cols * (cell + pad) + pad, 3)
    np.testing.assert_array_equal(png, arr)

    # Tower b's first kernel sits below tower a's block: min-max normalised over its own values,
    # each weight repeated scale x scale times.
    y0 = rows * (cell + pad) + pad + gap + pad
    tile = png[y0 : y0 + cell, pad : pad + cell].astype(np.float64)
    w = b[0].permute(1, 2, 0).numpy().astype(np.float64)  # (11, 11, 3)
    expect = np.round((w - w.min()) / (w.max() - w.min()) * 255)
    np.testing.assert_array_equal(tile[::scale, ::scale], expect)
    np.testing.assert_array_equal(tile[scale - 1 :: scale, scale - 1 :: scale], expect)
    # Tower a's last kernel (index 47: row 2, column 15) is in the top block.
    y, x = pad + 2 * (cell + pad), pad + 15 * (cell + pad)
    w = a[47].permute(1, 2, 0).numpy().astype(np.float64)
    np.testing.assert_array_equal(
        png[y : y + cell : scale, x : x + cell : scale], np.round((w - w.min()) / (w.max() - w.min()) * 255)
    )


def test_kernel_grid_one_tower_uneven_rows():
    arr = kernel_grid([torch.randn(20, 3, 11, 11)], columns=8, scale=2, pad=1)
    assert arr.shape == (3 * (22 + 1) + 1, 8 * (22 + 1) + 1, 3)  # ceil(20 / 8) = 3 rows


def test_top5_panel_size_and_red_bar(tmp_path):
    n, side, classes, k, margin = 3, 64, 10, 5, 6
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8)
    probs = torch.softmax(torch.randn(n, classes), 1)
    probs[0] = torch.tensor([0.02] * 9 + [0.82])  # image 0: correct label (9) ranked first
    labels = torch.tensor([9, 0, 0])
    probs[1] = torch.tensor([0.0] + [1 / 9] * 9)  # image 1: correct label 0 not in the top 5
    names = [f"class {i}" for i in range(classes)]
    arr = top5_panel(images, probs, labels, names, k=k, columns=2, margin=margin)
    png = read_png(write_png(arr, tmp_path / "fig4l.png"))
    line = line_height()
    tile_w, tile_h = side + 2 * margin, margin + side + (k + 1) * line + margin
    assert png.shape == (2 * tile_h, 2 * tile_w, 3)
    # Each image is pasted unchanged at the top of its tile.
    np.testing.assert_array_equal(
        png[margin : margin + side, margin : margin + side], images[0].permute(1, 2, 0).numpy()
    )
    red = np.all(png == np.array(BAR_CORRECT, dtype=np.uint8), axis=2)
    # Image 0: its correct label leads with p = 0.82, so the first bar is red up to 82% of the width
    # (the label text is drawn over its left part).
    red_cols = np.flatnonzero(
        red[margin + side + line : margin + side + 2 * line, margin : margin + side].any(0)
    )
    assert abs((red_cols.max() + 1) - 0.82 * side) <= 1
    assert red[:tile_h, :tile_w].any()
    # Image 1: the correct label is outside the top 5, so no red anywhere in its tile.
    assert not red[:tile_h, tile_w:].any()


def test_nearest_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(1)
    q, pool = torch.randn(4, 7, generator=g), torch.randn(30, 7, generator=g)
    idx = nearest_neighbours(q, pool, 6)
    for i in range(4):
        dists = [
            math.sqrt(sum((float(q[i, d]) - float(pool[j, d])) ** 2 for d in range(7))) for j in range(30)
        ]
        assert idx[i].tolist() == sorted(range(30), key=lambda j: dists[j])[:6]


def test_neighbour_grid_places_the_chosen_images(tmp_path):
    side, pad, gap = 16, 4, 12
    queries = torch.randint(0, 256, (2, 3, side, side), dtype=torch.uint8)
    pool = torch.randint(0, 256, (10, 3, side, side), dtype=torch.uint8)
    idx = torch.tensor([[3, 1, 7], [0, 9, 2]])
    png = read_png(write_png(neighbour_grid(queries, pool, idx, pad=pad, gap=gap), tmp_path / "fig4r.png"))
    assert png.shape == (2 * (side + pad) + pad, 4 * (side + pad) + pad + gap, 3)
    hwc = lambda t: t.permute(1, 2, 0).numpy()  # noqa: E731
    y1 = pad + side + pad
    np.testing.assert_array_equal(png[y1 : y1 + side, pad : pad + side], hwc(queries[1]))
    x2 = pad + gap + 2 * (side + pad)  # second neighbour of query 1 = pool[9]
    np.testing.assert_array_equal(png[y1 : y1 + side, x2 : x2 + side], hwc(pool[9]))


@pytest.mark.parametrize("towers", [2, 1])
def test_fc7_features_are_what_fc8_sees(towers):
    torch.manual_seed(0)
    model = AlexNet(num_classes=6, devices=("cpu", "cpu"), towers=towers).eval()
    x = torch.randn(2, 3, 224, 224) * 50
    feats, logits = fc7_features(model, x)
    assert feats.shape == (2, 4096)
    if towers == 2:  # fc8 split: tower a computes classes 0..2, tower b 3..5, each from all 4096
        expect = torch.cat([model.a.fc8(feats), model.b.fc8(feats)], 1)
    else:
        expect = model.a.fc8(feats)
    torch.testing.assert_close(logits, expect)
    assert (feats >= 0).all()  # after the ReLU


@pytest.mark.slow
def test_make_figures_end_to_end(tmp_path):
    pytest.importorskip("alexnet.data.pipeline")
    from alexnet.commands.figures import make_figures

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.jpg"
                )
    cfg = Config(model=ModelConfig(num_classes=2))
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(0)
    save_checkpoint(
        {"model": AlexNet(num_classes=2).state_dict(), "config": config_to_dict(cfg), "epoch": 1, "step": 10},
        ckpt,
    )
    paths = make_figures(
        ckpt, root, n_images=3, n_queries=2, n_neighbours=3, max_train=8, thumb=32, batch_size=2
    )
    assert [p.name for p in paths] == [
        "figure3_conv1_kernels.png",
        "figure4_left_top5.png",
        "figure4_right_neighbours.png",
    ]
    assert all(p.parent == tmp_path / "run" / "figures" for p in paths)
    assert read_png(paths[0]).shape == (2 * (3 * 46 + 2) + 8, 16 * 46 + 2, 3)
    assert read_png(paths[2]).shape == (2 * 36 + 4, 4 * 36 + 4 + 12, 3)
    assert list((tmp_path / "run" / "figures").glob("events.out.tfevents.*"))
