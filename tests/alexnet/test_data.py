"""Datasets, decoding of every bad-input kind, and the ImagePipeline contract (paper section 2)."""

import io
import logging
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.config import DataConfig
from alexnet.data import augment
from alexnet.data.folders import DataError, validate_dataset
from alexnet.data.images import BadImage, load_image
from alexnet.data.pipeline import ImagePipeline


# ------------------------------------------------------------------------------------ helpers
def noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, img: Image.Image, fmt: str = "JPEG", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def make_dataset(root: Path, classes=("cat", "dog", "eel"), train=6, val=2, size=(60, 80)) -> Path:
    for split, n in (("train", train), ("val", val)):
        for k, c in enumerate(classes):
            for i in range(n):
                arr = noise(*size, seed=hash((split, k, i)) % 1000)
                arr[..., k % 3] = 40 * k + 5 * i  # distinguishable per sample
                save(root / split / c / f"{c}{i}.jpg", Image.fromarray(arr))
    return root


def pipeline(root, **kw) -> ImagePipeline:
    cfg = dict(root=str(root), workers=0)
    cfg.update(kw.pop("cfg", {}))
    return ImagePipeline(DataConfig(**cfg), batch_size=kw.pop("batch_size", 4), seed=kw.pop("seed", 0), **kw)


def png16_rgb(path: Path, value: int, w=40, h=30) -> Path:
    """A 16-bit RGB PNG written by hand (PIL cannot write one)."""
    row = b"\0" + struct.pack(">H", value) * 3 * w

    def chunk(tag, data):
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * h))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- preprocessing
def test_shorter_side_256_then_central_crop_matches_a_two_step_reference(tmp_path):
    arr = noise(300, 420, seed=3)
    arr = np.asarray(
        Image.fromarray(arr)
        .resize((420, 300))
        .filter(__import__("PIL.ImageFilter").ImageFilter.GaussianBlur(3))
    )
    p = save(tmp_path / "a.png", Image.fromarray(arr), "PNG")
    got = load_image(p, 256).astype(np.float64)
    # Reference: resize the whole image (shorter side 256), then cut the central 256 square.
    w = round(420 * 256 / 300)
    ref = np.asarray(Image.fromarray(arr).resize((w, 256), Image.Resampling.BILINEAR))
    left = (w - 256) // 2
    ref = ref[:, left : left + 256].astype(np.float64)
    assert got.shape == (256, 256, 3)
    assert np.abs(got - ref).mean() < 2.0


def test_256_square_input_is_unchanged(tmp_path):
    arr = noise(256, 256)
    p = save(tmp_path / "a.png", Image.fromarray(arr), "PNG")
    np.testing.assert_array_equal(load_image(p), arr)
    np.testing.assert_array_equal(load_image(p, 256, (5, 20, 227)), arr[5:232, 20:247])


def test_a_window_equals_the_same_window_of_the_whole_preprocessed_image(tmp_path):
    from PIL import ImageFilter

    arr = np.asarray(Image.fromarray(noise(310, 470, seed=4)).filter(ImageFilter.GaussianBlur(1)))
    p = save(tmp_path / "a.png", Image.fromarray(arr), "PNG")
    whole = load_image(p).astype(int)
    for top, left in ((0, 0), (29, 29), (3, 17), (14, 14)):
        win = load_image(p, 256, (top, left, 227)).astype(int)
        assert np.abs(win - whole[top : top + 227, left : left + 227]).max() <= 1


# ------------------------------------------------------------------------------ bad inputs
def _jpeg_bytes(arr):
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "JPEG")
    return b.getvalue()


@pytest.mark.parametrize(
    "kind,make",
    [
        ("truncated", lambda p: p.write_bytes(_jpeg_bytes(noise(300, 300))[:9000])),
        (
            "corrupt",
            lambda p: p.write_bytes(
                (lambda j, i: j[: i + 2] + b"\0" * 10 + j[i + 12 :])(
                    _jpeg_bytes(noise(300, 300)), _jpeg_bytes(noise(300, 300)).find(b"\xff\xda")
                )
            ),
        ),
        ("not-an-image", lambda p: p.write_text("this is a text file with an image extension\n" * 20)),
        ("not-an-image", lambda p: p.write_bytes(b"")),
    ],
)
def test_undecodable_files_raise_badimage_of_their_kind(tmp_path, kind, make):
    p = tmp_path / "bad.jpg"
    make(p)
    with pytest.raises(BadImage) as e:
        load_image(p)
    assert e.value.kind == kind and e.value.path == str(p)


def test_corrupt_png_data_is_reported(tmp_path):
    b = io.BytesIO()
    Image.fromarray(noise(200, 200)).save(b, "PNG")
    data = bytearray(b.getvalue())
    i = data.find(b"IDAT")
    data[i + 10 : i + 200] = bytes(range(190))
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    with pytest.raises(BadImage) as e:
        load_image(p)
    assert e.value.kind == "corrupt"


def _centre(img):
    return img[100:156, 100:156].reshape(-1, 3).mean(0)


def test_grayscale_jpeg_becomes_gray_rgb(tmp_path):
    p = save(tmp_path / "g.jpg", Image.new("L", (300, 260), 90))
    out = load_image(p)
    assert out.shape == (256, 256, 3)
    np.testing.assert_allclose(_centre(out), [90, 90, 90], atol=2)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = save(tmp_path / "c.jpg", Image.new("CMYK", (300, 260), (0, 255, 255, 0)))  # pure red ink-wise
    np.testing.assert_allclose(_centre(load_image(p)), [255, 0, 0], atol=6)


def test_palette_png_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (300, 300), 1)
    pal.putpalette([0, 0, 0, 20, 200, 30] + [0] * 762)
    np.testing.assert_allclose(
        _centre(load_image(save(tmp_path / "p.png", pal, "PNG"))), [20, 200, 30], atol=1
    )
    pal.info["transparency"] = 1
    np.testing.assert_allclose(
        _centre(load_image(save(tmp_path / "pt.png", pal, "PNG", transparency=1))), [255, 255, 255], atol=1
    )


def test_rgba_and_la_pngs_are_composited_over_white(tmp_path):
    arr = np.zeros((300, 300, 4), np.uint8)
    arr[..., 0] = 200
    arr[:, 150:, 3] = 255  # left half transparent, right half opaque red
    out = load_image(save(tmp_path / "a.png", Image.fromarray(arr, "RGBA"), "PNG"))
    np.testing.assert_allclose(out[128, 10], [255, 255, 255], atol=1)
    np.testing.assert_allclose(out[128, 245], [200, 0, 0], atol=1)
    la = Image.fromarray(np.dstack([np.full((300, 300), 50, np.uint8), np.zeros((300, 300), np.uint8)]), "LA")
    np.testing.assert_allclose(
        _centre(load_image(save(tmp_path / "la.png", la, "PNG"))), [255, 255, 255], atol=1
    )


def test_16_bit_pngs_are_scaled_not_clipped(tmp_path):
    gray = Image.fromarray(np.full((120, 140), 40000, np.uint16))
    p = save(tmp_path / "g16.png", gray, "PNG")
    assert Image.open(p).mode.startswith("I")
    np.testing.assert_allclose(_centre(load_image(p)), [40000 / 257] * 3, atol=1.5)
    np.testing.assert_allclose(
        _centre(load_image(png16_rgb(tmp_path / "rgb16.png", 40000))), [40000 / 257] * 3, atol=1.5
    )


def test_small_images_are_upscaled_and_extreme_aspect_ratios_keep_the_central_square(tmp_path):
    small = load_image(save(tmp_path / "s.png", Image.new("RGB", (7, 9), (10, 120, 230)), "PNG"))
    assert small.shape == (256, 256, 3)
    np.testing.assert_allclose(_centre(small), [10, 120, 230], atol=1)
    arr = np.zeros((20, 4000, 3), np.uint8)
    arr[..., 0] = 255
    arr[:, 1900:2100] = (0, 255, 0)  # only the middle is green
    wide = load_image(save(tmp_path / "w.png", Image.fromarray(arr), "PNG"))
    assert wide.shape == (256, 256, 3)
    np.testing.assert_allclose(wide.reshape(-1, 3).mean(0), [0, 255, 0], atol=1)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, :100] = (255, 0, 0)
    arr[:, 100:] = (0, 0, 255)  # stored: red left, blue right
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # display rotated 90° clockwise: red on top
    p = save(tmp_path / "r.jpg", img, exif=exif.tobytes(), quality=95)
    out = load_image(p).astype(int)
    assert out[10, 60, 0] > 200 and out[10, 60, 2] < 50  # top: red
    assert out[245, 60, 2] > 200 and out[245, 60, 0] < 50  # bottom: blue


# --------------------------------------------------------------------------------- validation
def test_dataset_errors_are_clear_and_early(tmp_path):
    with pytest.raises(DataError, match="data.root is not set"):
        validate_dataset("")
    with pytest.raises(DataError, match="does not exist"):
        validate_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        validate_dataset(tmp_path / "empty")
    root = make_dataset(tmp_path / "d", train=1, val=1)
    (root / "val" / "eel").rename(root / "val" / "emu")
    with pytest.raises(DataError, match=r"differ.*only in .*train: eel.*only in .*val: emu"):
        validate_dataset(root)
    (root / "val" / "emu").rename(root / "val" / "eel")
    (root / "train" / "fox").mkdir()
    with pytest.raises(DataError, match=r"without images: fox"):
        validate_dataset(root)
    (root / "train" / "fox").rmdir()
    import shutil

    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match=r"validation folder .*val does not exist"):
        pipeline(root)


def test_a_root_one_level_too_deep_gets_did_you_mean(tmp_path):
    root = make_dataset(tmp_path / "d", train=1, val=1)
    for split in ("train", "val"):
        with pytest.raises(DataError) as e:
            validate_dataset(root / split)
        assert f"Did you mean {root}?" in str(e.value)
        assert f"{split}/{split}" not in str(e.value)
    (root / "train" / "cat").rename(tmp_path / "cat")  # an ordinary missing split gets no hint
    with pytest.raises(DataError) as e:
        validate_dataset(tmp_path / "cat")
    assert "Did you mean" not in str(e.value)


def test_evaluation_needs_only_the_validation_folder(tmp_path):
    root = make_dataset(tmp_path / "d", train=1, val=1)
    import shutil

    shutil.rmtree(root / "train")
    with pytest.raises(DataError, match="training folder .*train does not exist"):
        validate_dataset(root)
    assert validate_dataset(root, need_train=False) == ["cat", "dog", "eel"]
    p = ImagePipeline(DataConfig(root=str(root), workers=0), batch_size=2, seed=0, need_train=False)
    assert p.train_samples == [] and len(p.val_samples) == 3


def test_pipeline_basics(tmp_path):
    p = pipeline(make_dataset(tmp_path))
    assert p.classes == ["cat", "dog", "eel"] and p.class_names == p.classes and p.num_classes == 3
    assert p.steps_per_epoch() == 18 // 4
    batches = list(p.train_batches(0))
    assert len(batches) == 4
    b = batches[0]
    assert b.images.dtype == torch.uint8 and b.images.shape == (4, 3, 224, 224)
    assert b.labels.dtype == torch.int64 and b.crops.shape == (4, 3)
    seen = torch.cat([x.labels for x in batches])
    assert len(seen) == 16 and set(seen.tolist()) <= {0, 1, 2}


def _epoch(p, epoch, start=0):
    bs = list(p.train_batches(epoch, start))
    return (
        torch.cat([b.images for b in bs]),
        torch.cat([b.labels for b in bs]),
        torch.cat([b.crops for b in bs]),
    )


def test_batches_do_not_depend_on_the_number_of_workers(tmp_path):
    root = make_dataset(tmp_path)
    a = _epoch(pipeline(root), 1)
    b = _epoch(pipeline(root, cfg={"workers": 2}), 1)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_order_and_crops_are_deterministic_and_change_with_epoch_and_seed(tmp_path):
    root = make_dataset(tmp_path)
    a, b = _epoch(pipeline(root), 0), _epoch(pipeline(root), 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = _epoch(pipeline(root), 1)
    assert not torch.equal(a[2], c[2])
    d = _epoch(pipeline(root, seed=5), 0)
    assert not torch.equal(a[2], d[2])


def test_crops_are_the_ones_derived_from_seed_epoch_index(tmp_path):
    p = pipeline(make_dataset(tmp_path))
    order = augment.epoch_permutation(0, 3, len(p.train_samples))
    b = next(p.train_batches(3))
    for k in range(4):
        idx = int(order[k])
        assert tuple(b.crops[k].tolist()) == augment.train_crop(0, 3, idx, 256, 224)
        assert b.labels[k] == p.train_samples[idx][1]
        # The worker resamples only the window; resize-all-then-crop gives the same within rounding.
        ref = augment.crop_view(load_image(p.train_samples[idx][0]), tuple(b.crops[k].tolist()), 224)
        assert (b.images[k].int() - torch.from_numpy(ref).int()).abs().max() <= 1


def test_start_step_resumes_mid_epoch_without_decoding_the_skipped_batches(tmp_path, monkeypatch):
    root = make_dataset(tmp_path)
    full = _epoch(pipeline(root), 2)
    p = pipeline(root)
    import alexnet.data.pipeline as data

    calls = []
    real = data.load_image
    monkeypatch.setattr(data, "load_image", lambda path, *a: calls.append(path) or real(path, *a))
    tail = _epoch(p, 2, start=3)
    assert len(calls) == 4  # only the last batch was decoded
    for x, y in zip(full, tail):
        assert torch.equal(x[12:], y)


def test_ranks_get_disjoint_shards_of_the_same_permutation(tmp_path):
    root = make_dataset(tmp_path, train=8)  # 24 images
    shards = []
    for rank in range(2):
        p = pipeline(root, batch_size=3, rank=rank, world_size=2)
        assert p.steps_per_epoch() == 4
        shards.append(_epoch(p, 0)[2])
    order = augment.epoch_permutation(0, 0, 24)
    for rank in range(2):
        expected = [augment.train_crop(0, 0, int(i), 256, 224) for i in order[rank::2]]
        assert [tuple(c) for c in shards[rank].tolist()] == expected


def test_val_views_and_sharding(tmp_path):
    root = make_dataset(tmp_path, val=3)
    p = pipeline(root)
    centre = list(p.val_batches(batch_size=4))
    assert [len(b.labels) for b in centre] == [4, 4, 1]
    assert all(tuple(c) == (16, 16, 0) for b in centre for c in b.crops.tolist())
    assert torch.cat([b.labels for b in centre]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    ten = next(p.val_batches(ten_view=True, batch_size=2))
    assert ten.images.shape == (2, 10, 3, 224, 224) and ten.crops.shape == (2, 10, 3)
    assert [tuple(c) for c in ten.crops[0].tolist()] == augment.ten_views(256, 224)
    shard = [pipeline(root, rank=r, world_size=2).val_indices() for r in range(2)]
    assert sorted(shard[0] + shard[1]) == list(range(9)) and not set(shard[0]) & set(shard[1])
    limited = p.val_indices(limit=4)
    assert len(limited) == 4 and limited == sorted(limited) and limited == p.val_indices(limit=4)


def test_to_model_input_subtracts_the_saved_mean_image(tmp_path):
    from alexnet.data.stats import Stats, save_stats

    root = make_dataset(tmp_path)
    mean = np.random.default_rng(0).uniform(0, 255, (3, 256, 256)).astype(np.float32)
    save_stats(
        Stats(mean, np.array([0.2, 0.02, 0.004], np.float32), np.eye(3, dtype=np.float32), 5, ""),
        root / "stats.pt",
    )
    p = pipeline(root)
    b = next(p.train_batches(0))
    x = p.to_model_input(b, torch.device("cpu"), train=False)
    for k in range(len(b.labels)):
        t, l, f = b.crops[k].tolist()
        m = mean[:, t : t + 224, l : l + 224]
        ref = b.images[k].numpy().astype(np.float32) - (m[:, :, ::-1] if f else m)
        np.testing.assert_allclose(x[k].numpy(), ref, atol=1e-4)
    p.stats = Stats(np.zeros_like(mean), p.stats.eigval, p.stats.eigvec, 0, "replaced")  # e.g. a checkpoint's
    z = p.to_model_input(b, torch.device("cpu"), train=False)
    assert torch.equal(z, b.images.float())
    y = p.to_model_input(b, torch.device("cpu"), train=True, generator=torch.Generator().manual_seed(0))
    diff = (y - z)[:, :, :2, :2]  # lighting: a constant RGB offset per image
    assert diff.abs().max() > 0 and torch.allclose(diff, diff[:, :, :1, :1].expand_as(diff), atol=1e-3)


def test_bad_inputs_are_skipped_counted_and_logged_once(tmp_path, caplog):
    root = make_dataset(tmp_path, train=4, val=1)
    bad = root / "train" / "cat"
    (bad / "zz_text.jpg").write_text("not an image")
    (bad / "zz_trunc.jpg").write_bytes(_jpeg_bytes(noise(300, 300))[:5000])
    (root / "train" / "dog" / "zz_gray.png").write_bytes(b"")
    save(root / "train" / "dog" / "zz_cmyk.jpg", Image.new("CMYK", (80, 60), (0, 255, 255, 0)))  # convertible
    p = pipeline(root, batch_size=2)
    assert p.bad_input_summary() == ""
    with caplog.at_level(logging.WARNING, logger="alexnet.data.pipeline"):
        n0 = sum(len(b.labels) for b in p.train_batches(0))
        n1 = sum(len(b.labels) for b in p.train_batches(1))
    assert n0 == n1 == 16 - 3  # 16 files, 3 unusable, the CMYK one kept
    for name in ("zz_text.jpg", "zz_trunc.jpg", "zz_gray.png"):
        assert (
            sum(name in r.getMessage() and r.getMessage().startswith("skipping") for r in caplog.records) == 1
        )
    # epochs counted from 1, as the trainer's progress lines count them ("epoch 1/90 ...")
    assert sum("epoch 1: skipped 3" in r.getMessage() for r in caplog.records) == 1
    assert sum("epoch 2: skipped 3" in r.getMessage() for r in caplog.records) == 1
    assert p.bad_input_summary() == "skipped 3 unusable file(s): 2 not-an-image, 1 truncated"


def test_missing_stats_fall_back_to_published_values_with_a_warning(tmp_path, caplog):
    from alexnet.data.stats import IMAGENET_EIGVAL

    with caplog.at_level(logging.WARNING, logger="alexnet.data.stats"):
        p = pipeline(make_dataset(tmp_path, train=2, val=1))
    assert any("published" in r.getMessage() and "per-channel mean" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(p.stats.eigval, IMAGENET_EIGVAL)
    np.testing.assert_allclose(p.stats.mean[:, 7, 9], [123.675, 116.28, 103.53], rtol=1e-6)


def test_too_few_images_for_a_batch_is_an_early_error(tmp_path):
    with pytest.raises(DataError, match="fewer than one batch"):
        pipeline(make_dataset(tmp_path, train=1, val=1), batch_size=8)


def test_imagenet_class_names_follow_sorted_wnids(tmp_path):
    from alexnet.data.classes import class_names, imagenet_categories

    wnids = [f"n{10000000 + 7 * i:08d}" for i in range(1000)]
    names = class_names(wnids)
    assert names[0] == "tench" and names[1] == "goldfish" and names[-1] == "toilet tissue"
    assert names == imagenet_categories()
    assert class_names(["a", "b"]) == ["a", "b"]
    assert class_names(wnids[:10]) == wnids[:10]  # a subset cannot be named without meta.bin
    torch.save(({wnids[0]: ("kit fox", "Vulpes macrotis"), wnids[1]: ("ox",)}, []), tmp_path / "meta.bin")
    assert class_names(wnids[:2], tmp_path) == ["kit fox", "ox"]


def test_images_too_large_to_decode_safely_are_skipped(tmp_path):
    p = tmp_path / "huge.png"
    png16_rgb(p, 0, w=1, h=1)  # then claim 20000×10000 pixels in IHDR
    data = bytearray(p.read_bytes())
    ihdr = struct.pack(">IIBBBBB", 20000, 10000, 16, 2, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    p.write_bytes(bytes(data))
    with pytest.raises(BadImage) as e:
        load_image(p)
    assert e.value.kind == "too-large"


@pytest.mark.cuda
def test_device_path_equals_the_cpu_path(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from alexnet.data.stats import Stats, save_stats

    root = make_dataset(tmp_path)
    mean = np.random.default_rng(0).uniform(0, 255, (3, 256, 256)).astype(np.float32)
    save_stats(
        Stats(mean, np.array([0.2, 0.02, 0.004], np.float32), np.eye(3, dtype=np.float32), 5, ""),
        root / "stats.pt",
    )
    p = pipeline(root, device="cuda")
    for b in (next(p.train_batches(0)), next(p.val_batches(ten_view=True, batch_size=2))):
        cpu = p.to_model_input(b, torch.device("cpu"), train=False)
        gpu = p.to_model_input(b, torch.device("cuda"), train=False)
        assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-4)


STUCK_LOADER = """
import functools, os, signal, sys, time
import torch
from alexnet.data.workers import worker_init
signal.signal(signal.SIGTERM, signal.SIG_IGN)      # workers ignore SIGTERM, as under the trainer

class Stuck(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        with open(sys.argv[1], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)                               # a read that never returns

init = functools.partial(worker_init, parent=os.getpid()) if sys.argv[2] == "armed" else worker_init
next(iter(torch.utils.data.DataLoader(Stuck(), num_workers=1, worker_init_fn=init)))
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state  # a zombie has ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("mode", ["armed", "unarmed"])
def test_stuck_loader_worker_ends_with_a_killed_run(tmp_path, mode):
    pid_file = tmp_path / "worker.pid"
    proc = subprocess.Popen([sys.executable, "-c", STUCK_LOADER, str(pid_file), mode])
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    proc.kill()  # the run dies without any cleanup
    proc.wait()
    deadline = time.monotonic() + (10 if mode == "armed" else 2)
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        # armed: the kernel killed the worker; unarmed (the control): it would outlive the run
        assert _alive(worker) == (mode == "unarmed")
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
