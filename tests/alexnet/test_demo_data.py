"""`alexnet demo-data`: deterministic, in the folder layout, varied, and separable."""

import numpy as np
from PIL import Image

from alexnet.cli import main
from alexnet.commands.demo_data import CLASSES, make_demo_data
from alexnet.data.folders import validate_dataset
from alexnet.data.images import load_image
from alexnet.data.stats import load_stats


def files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.jpg"))


def test_layout_determinism_and_variety(tmp_path):
    counts = make_demo_data(
        tmp_path / "a", seed=3, train_per_class=3, val_per_class=1, workers=1, stats=False
    )
    assert counts == {"classes": 10, "train": 30, "val": 10}
    assert validate_dataset(tmp_path / "a") == sorted(CLASSES)
    make_demo_data(tmp_path / "b", seed=3, train_per_class=3, val_per_class=1, workers=2, stats=False)
    make_demo_data(tmp_path / "c", seed=4, train_per_class=3, val_per_class=1, workers=1, stats=False)
    names = files(tmp_path / "a")
    assert len(names) == 40 and names == files(tmp_path / "b")
    same = [(tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names]
    other = [(tmp_path / "a" / n).read_bytes() == (tmp_path / "c" / n).read_bytes() for n in names]
    assert all(same) and not any(other)
    sizes = set()
    for n in names:
        im = Image.open(tmp_path / "a" / n)
        assert im.format == "JPEG" and im.mode == "RGB" and min(im.size) >= 200
        sizes.add(im.size)
    ratios = [w / h for w, h in sizes]
    assert len(sizes) > 30 and min(ratios) < 0.9 and max(ratios) > 1.1


def test_classes_are_separable_by_a_trivial_colour_classifier(tmp_path):
    """Nearest class-mean of a hue × brightness histogram of the saturated pixels (plus the share of
    dark and of bright grey pixels), from 8 training images per class and tested on 4, must beat
    chance (10 %) by far: the data carries a learnable signal."""
    make_demo_data(tmp_path, seed=0, train_per_class=8, val_per_class=4, workers=2, stats=False)

    def features(split):
        xs, ys = [], []
        for k, c in enumerate(sorted(CLASSES)):
            for p in sorted((tmp_path / split / c).glob("*.jpg")):
                hsv = np.asarray(Image.fromarray(load_image(p, 64)).convert("HSV")).reshape(-1, 3).astype(int)
                sat = hsv[:, 1] > 100
                h = np.bincount((hsv[sat, 0] * 18 // 256) * 2 + (hsv[sat, 2] > 150), minlength=36)
                grey = [np.sum(~sat & (hsv[:, 2] < 50)), np.sum(~sat & (hsv[:, 2] > 200))]
                xs.append(np.sqrt(np.concatenate([h, grey]) / len(hsv))), ys.append(k)
        return np.array(xs), np.array(ys)

    x, y = features("train")
    xv, yv = features("val")
    centroids = np.stack([x[y == k].mean(0) for k in range(10)])
    pred = np.argmin(((xv[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == yv).mean() >= 0.7


def test_cli_writes_data_and_stats(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo-data",
                "--out",
                str(out),
                "--train-per-class",
                "2",
                "--val-per-class",
                "1",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "10 classes, 20 training and 10 validation images" in capsys.readouterr().out
    assert len(files(out)) == 30
    assert load_stats(out / "stats.pt").images == 20  # the statistics of the 20 training images
