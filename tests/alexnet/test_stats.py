"""`alexnet stats`: mean image and RGB covariance eigen-decomposition (paper sections 2, 4.1)."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.data.folders import DataError
from alexnet.data.stats import compute_stats, load_stats, published_stats, resolve_stats, save_stats


def make_folder(root, n_per_class=3, size=256):
    """256×256 lossless PNGs (so decoding is exact) with class-dependent colour casts."""
    arrays = []
    for k, c in enumerate(("a", "b")):
        (root / "train" / c).mkdir(parents=True)
        for i in range(n_per_class):
            rng = np.random.default_rng(10 * k + i)
            base = rng.integers(0, 256, (size, size, 1))
            arr = np.clip(base + rng.integers(-40, 41, (size, size, 3)) + [30 * k, 0, -20], 0, 255).astype(
                np.uint8
            )
            Image.fromarray(arr).save(root / "train" / c / f"{i}.png")
            arrays.append(arr)
    return np.stack(arrays)


def test_mean_image_and_covariance_equal_a_direct_numpy_computation(tmp_path):
    arrays = make_folder(tmp_path).astype(np.float64)  # (6, 256, 256, 3)
    (tmp_path / "train" / "a" / "junk.jpg").write_text("not an image")  # skipped, not counted
    stats, skipped = compute_stats(tmp_path / "train", workers=0, batch_size=4)
    assert stats.images == 6 and list(skipped.values()) == ["not-an-image"]
    np.testing.assert_allclose(stats.mean, arrays.mean(0).transpose(2, 0, 1), atol=1e-4)
    cov = np.cov((arrays / 255.0).reshape(-1, 3), rowvar=False, bias=True)
    lam, vec = np.linalg.eigh(cov)
    lam, vec = lam[::-1], vec[:, ::-1]
    np.testing.assert_allclose(stats.eigval, lam, rtol=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(stats.eigvec * vec, axis=0)), 1.0, atol=1e-4)  # same directions
    assert np.all(np.diff(stats.eigval) <= 0)


def test_seeded_sample(tmp_path):
    make_folder(tmp_path, n_per_class=4)
    a, _ = compute_stats(tmp_path / "train", sample=3, seed=1, workers=0)
    b, _ = compute_stats(tmp_path / "train", sample=3, seed=1, workers=0)
    assert a.images == 3 and np.array_equal(a.mean, b.mean)


def test_save_load_roundtrip_and_bad_files(tmp_path):
    s = published_stats(256)
    path = save_stats(s, tmp_path / "s.pt")
    t = load_stats(path)
    assert np.array_equal(t.mean, s.mean) and np.array_equal(t.eigvec, s.eigvec)
    torch.load(path, weights_only=True)
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(DataError, match="bad.pt"):
        load_stats(tmp_path / "bad.pt")
    with pytest.raises(DataError, match="does not exist"):
        resolve_stats(str(tmp_path / "missing.pt"), tmp_path, 256)
    save_stats(published_stats(128), tmp_path / "small.pt")
    with pytest.raises(DataError, match="128-pixel mean image"):
        resolve_stats(str(tmp_path / "small.pt"), tmp_path, 256)


def test_fallback_warns_and_uses_published_values(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        s = resolve_stats("", tmp_path, 256)
    assert s.images == 0 and "published" in caplog.text
    np.testing.assert_allclose(s.eigval, [0.2175, 0.0188, 0.0045])
    np.testing.assert_allclose(s.mean.mean(axis=(1, 2)), [0.485 * 255, 0.456 * 255, 0.406 * 255], rtol=1e-6)
    # The published eigenvectors are orthonormal columns.
    np.testing.assert_allclose(s.eigvec.T @ s.eigvec, np.eye(3), atol=2e-3)


def test_cli_writes_stats_next_to_the_data(tmp_path, capsys):
    arrays = make_folder(tmp_path, n_per_class=1)
    assert main(["stats", str(tmp_path), "--workers", "0"]) == 0
    s = resolve_stats("", tmp_path, 256)  # found where the loader looks
    np.testing.assert_allclose(s.mean, arrays.mean(0).transpose(2, 0, 1), atol=1e-4)
    (tmp_path / "stats.pt").unlink()
    assert main(["stats", str(tmp_path / "train"), "--workers", "0"]) == 0  # the train folder itself
    np.testing.assert_allclose(resolve_stats("", tmp_path, 256).mean, s.mean)  # written to the same place
    assert main(["stats", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
