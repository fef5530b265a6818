"""`alexnet prepare`: official archives into the folder layout, and the resumable --resize copy."""

import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import alexnet.commands.prepare as prepare
from alexnet.cli import main
from alexnet.data.classes import class_names
from alexnet.data.folders import DataError, validate_dataset
from alexnet.data.images import load_image


def jpeg(seed: int, size=(90, 70)) -> bytes:
    """A smooth random image (so JPEG recompression changes it little)."""
    cells = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    b = io.BytesIO()
    Image.fromarray(cells).resize(size, Image.Resampling.BICUBIC).save(b, "JPEG", quality=95)
    return b.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------------ a MATLAB v5 writer
def _el(kind: int, data: bytes) -> bytes:
    return struct.pack("<II", kind, len(data)) + data + b"\0" * (-len(data) % 8)


def _matrix(cls: int, dims, body: bytes) -> bytes:
    head = (
        _el(6, struct.pack("<II", cls, 0)) + _el(5, struct.pack("<" + "i" * len(dims), *dims)) + _el(1, b"")
    )
    return _el(14, head + body)


def _char(s: str) -> bytes:
    return _matrix(4, (1, len(s)), _el(4, s.encode("utf-16-le")))  # miUINT16 characters


def _num(v: int) -> bytes:
    return _matrix(6, (1, 1), _el(4, struct.pack("<H", v)))  # double class stored as uint16


def meta_mat(synsets, compressed: bool) -> bytes:
    """The devkit's meta.mat layout: a struct array 'synsets' (N×1) with the fields we read."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "num_children"]
    names = b"".join(f.encode().ljust(32, b"\0") for f in fields)
    body = _el(5, struct.pack("<i", 32)) + _el(1, names)
    for sid, wnid, words, children in synsets:
        body += _num(sid) + _char(wnid) + _char(words) + _num(children)
    head = _el(6, struct.pack("<II", 2, 0)) + _el(5, struct.pack("<ii", len(synsets), 1)) + _el(1, b"synsets")
    var = _el(14, head + body)
    if compressed:
        z = zlib.compress(var)
        var = struct.pack("<II", 15, len(z)) + z
    return b"MATLAB 5.0 MAT-file test".ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM" + var


SYNSETS = [
    (1, "n02000002", "second thing, other", 0),
    (2, "n01000001", "first thing", 0),
    (3, "n00000009", "entity", 2),
]


def official_files(src: Path, compressed=True) -> None:
    src.mkdir(parents=True)
    with tarfile.open(src / prepare.TRAIN_TAR, "w") as outer:
        for k, wnid in enumerate(["n01000001", "n02000002"]):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as t:
                for i in range(2):
                    add(t, f"{wnid}_{i}.JPEG", jpeg(10 * k + i))
            add(outer, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(src / prepare.VAL_TAR, "w") as t:
        for i in range(1, 5):
            add(t, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg(100 + i))
    with tarfile.open(src / prepare.DEVKIT, "w:gz") as t:
        add(t, "ILSVRC2012_devkit_t12/data/meta.mat", meta_mat(SYNSETS, compressed))
        add(t, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", b"2\n1\n1\n2\n")


@pytest.mark.parametrize("compressed", [True, False])
def test_devkit_ground_truth_is_read_without_scipy(tmp_path, compressed):
    official_files(tmp_path / "src", compressed)
    wnid_to_classes, val = prepare.devkit_ground_truth(tmp_path / "src" / prepare.DEVKIT)
    assert wnid_to_classes == {"n02000002": ("second thing", "other"), "n01000001": ("first thing",)}
    assert val == ["n01000001", "n02000002", "n02000002", "n01000001"]


def test_official_archives_become_the_folder_layout_and_resume(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "imagenet"
    official_files(src)
    counts = prepare.prepare_imagenet(src, dst)
    assert counts == {"train_classes": 2, "val_images": 4}
    assert validate_dataset(dst) == ["n01000001", "n02000002"]
    assert sorted(p.name for p in (dst / "val" / "n01000001").iterdir()) == [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000004.JPEG",
    ]
    assert len(list((dst / "train" / "n02000002").glob("*.JPEG"))) == 2
    assert class_names(["n01000001", "n02000002"], dst) == ["first thing", "second thing"]
    # A rerun extracts nothing again; an interrupted class (no marker, stale temp folder) is redone.
    assert prepare.prepare_imagenet(src, dst)["train_classes"] == 0
    (dst / "train" / "n02000002" / prepare.DONE).unlink()
    (dst / "train" / "n02000002" / "n02000002_1.JPEG").unlink()
    (dst / "train" / ".n02000002.stale").mkdir()
    assert prepare.prepare_imagenet(src, dst)["train_classes"] == 1
    assert len(list((dst / "train" / "n02000002").glob("*.JPEG"))) == 2
    assert not (dst / "train" / ".n02000002.stale").exists()


def test_flat_val_folder_with_a_label_file_is_sorted_and_left_in_place(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(1, 4):
        (flat / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(jpeg(i))
    labels = tmp_path / "LOC_val_solution.csv"
    labels.write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01000001 1 2 3 4\n"
        "ILSVRC2012_val_00000002,n02000002 1 1 1 1\nILSVRC2012_val_00000003,n01000001 0 0 1 1\n"
    )
    assert (
        main(
            [
                "prepare",
                str(tmp_path / "src"),
                str(tmp_path / "out"),
                "--val-dir",
                str(flat),
                "--val-labels",
                str(labels),
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "out" / "val" / "n01000001").iterdir())) == 2
    assert len(list(flat.iterdir())) == 3  # the user's files stay
    idx = tmp_path / "val.txt"  # Caffe style: sorted-class index
    idx.write_text("ILSVRC2012_val_00000001.JPEG 1\n")
    assert prepare.read_label_file(idx, ["n01000001", "n02000002"]) == {
        "ILSVRC2012_val_00000001": "n02000002"
    }
    bad = tmp_path / "bad.txt"
    bad.write_text("x.JPEG dog\n")
    with pytest.raises(DataError, match="bad.txt:1"):
        prepare.read_label_file(bad)


def test_val_without_ground_truth_is_a_clear_error(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.JPEG").write_bytes(jpeg(0))
    assert main(["prepare", str(tmp_path), str(tmp_path / "out" / "imagenet"), "--val-dir", str(flat)]) == 2
    assert "need ground truth" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # failed after creating it: removed again


def test_a_failing_prepare_leaves_nothing_behind(tmp_path, capsys):
    dst = tmp_path / "new" / "imagenet"
    for src in (tmp_path / "typo", tmp_path):  # missing, and holding no ImageNet files
        assert main(["prepare", str(src), str(dst)]) == 2
        assert not (tmp_path / "new").exists()
    assert "source folder" in capsys.readouterr().err
    # and training on that destination then says what is wrong with it
    assert main(["train", str(dst), "--set", 'train.devices=["cpu","cpu"]']) == 2
    assert f"dataset root {dst} does not exist" in capsys.readouterr().err
    # a later failure never deletes what an earlier run prepared
    (dst / "train" / "n01").mkdir(parents=True)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.JPEG").write_bytes(jpeg(0))
    assert main(["prepare", str(tmp_path), str(dst), "--val-dir", str(flat)]) == 2
    assert (dst / "train" / "n01").is_dir()


# --------------------------------------------------------------------------------- --resize
def make_tree(root: Path) -> None:
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(3):
            (root / "train" / c / f"{i}.JPEG").write_bytes(jpeg(i, size=(300 + 20 * i, 200)))
    Image.new("RGBA", (400, 300), (0, 200, 0, 255)).save(root / "train" / "a" / "p.png")
    (root / "train" / "b" / "broken.jpg").write_text("no")
    (root / "train" / "b" / "notes.txt").write_text("ignored")


def test_resize_writes_the_preprocessed_256_copy(tmp_path):
    make_tree(tmp_path / "src")
    counts = prepare.resize_tree(tmp_path / "src", tmp_path / "dst", workers=1, show_progress=False)
    assert counts == {"written": 7, "existing": 0, "skipped": 1}
    out = Image.open(tmp_path / "dst" / "train" / "a" / "1.JPEG")
    assert out.size == (256, 256) and out.format == "JPEG"
    assert (tmp_path / "dst" / "train" / "a" / "p.png.jpg").is_file()
    ref = load_image(tmp_path / "src" / "train" / "a" / "1.JPEG").astype(float)
    assert np.abs(np.asarray(out, float) - ref).mean() < 1.5  # same image, JPEG-recompressed
    assert not list((tmp_path / "dst").rglob("*.tmp*"))


def test_resize_is_resumable_after_an_interruption(tmp_path, monkeypatch):
    make_tree(tmp_path / "src")
    real, calls = prepare._resize_one, []

    def dies_on_the_fourth(job):
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(prepare, "_resize_one", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        prepare.resize_tree(tmp_path / "src", tmp_path / "dst", workers=1, show_progress=False)
    monkeypatch.setattr(prepare, "_resize_one", real)
    done = sorted(p.relative_to(tmp_path / "dst") for p in (tmp_path / "dst").rglob("*") if p.is_file())
    assert len(done) == 3
    counts = prepare.resize_tree(tmp_path / "src", tmp_path / "dst", workers=1, show_progress=False)
    assert counts == {"written": 4, "existing": 3, "skipped": 1}
    assert prepare.resize_tree(tmp_path / "src", tmp_path / "dst", workers=2, show_progress=False) == {
        "written": 0,
        "existing": 7,
        "skipped": 1,
    }


def test_resize_refuses_to_overwrite_its_source(tmp_path):
    make_tree(tmp_path / "src")
    assert main(["prepare", "--resize", "256", str(tmp_path / "src"), str(tmp_path / "src")]) == 2


@pytest.mark.parametrize("keep", [100, 700, 0.5])
def test_a_truncated_train_archive_is_one_line_and_leaves_nothing(tmp_path, capsys, keep):
    """A download that stopped (cut inside the first header, inside a class, half way): one line
    naming the archive, no traceback, and no empty DST/train (nor DST) left behind."""
    src, dst = tmp_path / "src", tmp_path / "imagenet"
    official_files(src)
    whole = (src / prepare.TRAIN_TAR).read_bytes()
    (src / prepare.TRAIN_TAR).write_bytes(whole[: int(keep * len(whole)) if keep < 1 else keep])
    assert main(["prepare", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"{src / prepare.TRAIN_TAR} is incomplete or damaged" in err and "download it again" in err
    assert not dst.exists()


def test_an_interrupted_extraction_leaves_no_half_class(tmp_path, monkeypatch, capsys):
    """Ctrl-C inside a class: that class's partial folder goes, classes done earlier stay, and a
    fresh destination is not left behind."""
    src, dst = tmp_path / "src", tmp_path / "imagenet"
    official_files(src)
    extractall = tarfile.TarFile.extractall

    def interrupted(self, path, *args, **kwargs):
        (Path(path) / "part.JPEG").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", interrupted)
    assert main(["prepare", str(src), str(dst)]) == 130
    assert not dst.exists()
    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)
    assert prepare.prepare_imagenet(src, dst)["train_classes"] == 2
    (dst / "train" / "n02000002" / prepare.DONE).unlink()  # as if the second class was never finished
    monkeypatch.setattr(tarfile.TarFile, "extractall", interrupted)
    assert main(["prepare", str(src), str(dst)]) == 130
    assert len(list((dst / "train" / "n01000001").glob("*.JPEG"))) == 2
    assert [p.name for p in (dst / "train").iterdir() if p.name.startswith(".")] == []


def test_a_truncated_val_archive_or_devkit_is_one_line(tmp_path, capsys):
    src = tmp_path / "src"
    official_files(src)
    (src / prepare.TRAIN_TAR).unlink()
    for name in (prepare.VAL_TAR, prepare.DEVKIT):
        official = (src / name).read_bytes()
        (src / name).write_bytes(official[: len(official) // 2])
        assert main(["prepare", str(src), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and f"{src / name} is incomplete or damaged" in err, err
        # no half-extracted validation images; the class names read from the devkit are kept
        left = [p.name for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else []
        assert left in ([], ["meta.bin"]), left
        (src / name).write_bytes(official)


def test_a_file_where_a_folder_belongs_is_named_as_such(tmp_path, capsys):
    a_file = tmp_path / "imagenet.tar"
    a_file.write_bytes(b"")
    for argv in (
        ["prepare", str(a_file), str(tmp_path / "out")],
        ["prepare", str(a_file), str(tmp_path / "out"), "--resize", "256"],
        ["prepare", str(tmp_path), str(tmp_path / "out"), "--val-dir", str(a_file)],
        ["prepare", str(tmp_path), str(a_file), "--val-dir", str(tmp_path)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{a_file} is a file, not a folder" in err and "does not exist" not in err, err
