"""``alexnet prepare``: ImageNet's official files into the folder layout, and a pre-resized copy.

Two jobs (paper section 2 for the size):

* ``alexnet prepare SRC DST`` — SRC holds the official ILSVRC-2012 files. The training archive
  (``ILSVRC2012_img_train.tar``, one inner tar per wnid) becomes ``DST/train/<wnid>/``; the flat
  validation images (``ILSVRC2012_img_val.tar``, or a folder given with ``--val-dir``) become
  ``DST/val/<wnid>/`` using the ground truth of the devkit (``ILSVRC2012_devkit_t12.tar.gz`` or its
  extracted folder: ``data/ILSVRC2012_validation_ground_truth.txt`` + ``data/meta.mat``), of
  torchvision's ``meta.bin``, or of a label file (``--val-labels``: lines ``<file> <wnid>``, the
  same with a sorted-class index, or Kaggle's ``LOC_val_solution.csv``). ``DST/meta.bin`` is
  written in torchvision's format so the class names are known offline. Resumable: finished
  classes are marked and skipped, and files already in place are not written again. The user's
  files are never moved or deleted (flat val images are hard-linked or copied).

* ``alexnet prepare --resize 256 SRC DST`` — every image of SRC (any folder tree) is brought to
  the paper's preprocessing, shorter side 256 and the central 256×256 square, and written as a
  JPEG at the same relative path in DST (non-JPEG sources get ``.jpg`` appended), in parallel.
  Each file is written to a temporary name and renamed, so an interrupted run leaves no partial
  images and a rerun continues where it stopped. Epochs then decode small JPEGs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from alexnet.commands._args import add_workers_arg, whole_number
from alexnet.commands._console import progress
from alexnet.commands.prepare._matlab import read_mat_v5
from alexnet.data.folders import DataError, find_classes, require_folder, require_output_folder
from alexnet.data.images import IMAGE_EXTENSIONS, BadImage, SkippedImages, is_image_name, load_image

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
DONE = ".complete"


# ---------------------------------------------------------------------------------------- resize
def _resized_name(rel: str) -> str:
    return rel if os.path.splitext(rel)[1].lower() in (".jpg", ".jpeg") else rel + ".jpg"


def _resize_one(job: tuple[str, str, int, int]) -> tuple[str, str, str]:
    """Worker: one file. Returns (status, path, detail) with status 'written' or a bad kind."""
    src, dst, size, quality = job
    from PIL import Image

    try:
        arr = load_image(src, size)
    except BadImage as e:
        return e.kind, src, e.detail
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{dst}.tmp{os.getpid()}"
    Image.fromarray(arr).save(tmp, "JPEG", quality=quality)
    os.replace(tmp, dst)
    return "written", src, ""


def _walk_images(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            os.path.relpath(os.path.join(dirpath, f), root) for f in sorted(filenames) if is_image_name(f)
        ]
    return found


def resize_tree(
    src: str | Path,
    dst: str | Path,
    *,
    size: int = 256,
    workers: int = -1,
    quality: int = 95,
    show_progress: bool = True,
) -> dict[str, int]:
    """Write the ``size``×``size`` preprocessed copy of every image under ``src`` into ``dst``.

    Returns counts: ``written``, ``existing`` (already done by an earlier run), ``skipped`` (bad inputs).
    """
    src, dst = Path(src), Path(dst)
    require_folder(src, "source folder")
    require_output_folder(dst, "destination")
    if src.resolve() == dst.resolve():
        raise DataError(f"--resize writes a copy: the destination must differ from the source {src}")
    rels = _walk_images(src)
    if not rels:
        raise DataError(f"source folder {src} has no images")
    todo = [(str(src / r), str(dst / _resized_name(r)), size, quality) for r in rels]
    existing = sum(1 for j in todo if os.path.exists(j[1]))
    todo = [j for j in todo if not os.path.exists(j[1])]
    for extra in ("meta.bin",):  # class names travel with the copy
        if (src / extra).is_file() and not (dst / extra).exists():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / extra, dst / extra)
    counts = {"written": 0, "existing": existing, "skipped": 0}
    skipped = SkippedImages()
    workers = (os.cpu_count() or 1) if workers == -1 else workers
    if workers > 1:
        pool = ProcessPoolExecutor(workers)
        results: Iterable = pool.map(_resize_one, todo, chunksize=32)
    else:
        pool, results = None, map(_resize_one, todo)
    try:
        if show_progress:
            results = progress(results, total=len(todo), desc=f"resize {src} -> {dst}")
        for status, path, detail in results:
            if status == "written":
                counts["written"] += 1
            elif skipped.record(path, status, detail):
                counts["skipped"] += 1
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return counts


# ------------------------------------------------------------------------------ ground truth
def devkit_ground_truth(devkit: str | Path) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """(wnid -> class names, wnid of each validation image in file-name order) from the devkit
    archive or its extracted folder: the format of torchvision's ``meta.bin``."""
    devkit = Path(devkit)
    if devkit.is_dir():
        base = devkit / "data" if (devkit / "data").is_dir() else next(devkit.glob("*/data"), devkit / "data")
        meta, truth = (
            (base / "meta.mat").read_bytes(),
            (base / "ILSVRC2012_validation_ground_truth.txt").read_text(),
        )
    elif devkit.is_file():
        with _readable(devkit), tarfile.open(devkit) as tar:

            def member(suffix: str) -> bytes:
                for m in tar.getmembers():
                    if m.name.endswith(suffix):
                        return tar.extractfile(m).read()  # type: ignore[union-attr]
                raise DataError(f"{devkit}: no {suffix} inside")

            meta, truth = (
                member("data/meta.mat"),
                member("data/ILSVRC2012_validation_ground_truth.txt").decode(),
            )
    else:
        raise DataError(f"devkit {devkit} does not exist")
    try:
        synsets = read_mat_v5(meta)["synsets"]
    except (ValueError, KeyError, struct.error, zlib.error) as e:
        raise DataError(f"{devkit}: cannot read meta.mat ({e})") from None
    leaves = [s for s in synsets if int(s["num_children"]) == 0]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): s["WNID"] for s in leaves}
    wnid_to_classes = {s["WNID"]: tuple(s["words"].split(", ")) for s in leaves}
    val_wnids = [id_to_wnid[int(line)] for line in truth.split()]
    return wnid_to_classes, val_wnids


def read_label_file(path: str | Path, classes: list[str] | None = None) -> dict[str, str]:
    """File stem -> wnid from a label file: ``name wnid``, ``name index`` (index into the sorted
    ``classes``), or Kaggle's ``LOC_val_solution.csv`` (``ImageId,wnid x y x y ...``)."""
    mapping = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = re.split(r"[,\s]+", line.strip())
        if len(parts) < 2 or parts[0].lower() in ("imageid", "file", "filename"):
            continue
        stem, label = Path(parts[0]).stem, parts[1]
        if re.fullmatch(r"n\d{8}", label):
            mapping[stem] = label
        elif label.isdigit() and classes:
            mapping[stem] = classes[int(label)]
        else:
            raise DataError(f"{path}:{n}: cannot read a wnid or class index from {line!r}")
    return mapping


def _place(src: Path, dst: Path) -> None:
    """Hard-link (or copy) ``src`` to ``dst`` unless it is already there; never moves user files."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def sort_val(flat: str | Path, dst_val: str | Path, truth: dict[str, str]) -> int:
    """Place the flat validation images into ``dst_val/<wnid>/``; returns how many were placed."""
    flat, dst_val = Path(flat), Path(dst_val)
    files = sorted(p for p in flat.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    missing = [p.name for p in files if p.stem not in truth]
    if missing:
        raise DataError(f"no ground truth for {len(missing)} file(s) of {flat}, e.g. {missing[0]}")
    for p in progress(files, total=len(files), desc="val"):
        _place(p, dst_val / truth[p.stem] / p.name)
    return len(files)


# ----------------------------------------------------------------------------------- archives
def extract_train(tar_path: str | Path, dst_train: str | Path) -> int:
    """``ILSVRC2012_img_train.tar`` (one ``<wnid>.tar`` per class) → ``dst_train/<wnid>/``, resumable
    per class (a class is extracted to a temporary folder, then renamed and marked complete)."""
    dst_train = Path(dst_train)
    done = 0
    with _readable(tar_path), _leave_nothing_if_failed(dst_train), tarfile.open(tar_path) as outer:
        members = [m for m in outer if m.isfile() and m.name.endswith(".tar")]
        for m in progress(members, total=len(members), desc="train", unit="class"):
            wnid = Path(m.name).stem
            final = dst_train / wnid
            if (final / DONE).exists():
                continue
            for stale in dst_train.glob(f".{wnid}.*"):  # left by an interrupted run
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{wnid}.", dir=dst_train))
            with _removed_if_failed(tmp):  # never half a class
                with tarfile.open(fileobj=io.BufferedReader(outer.extractfile(m))) as inner:  # type: ignore[arg-type]
                    inner.extractall(tmp, filter="data")
            if final.exists():
                shutil.rmtree(final)  # an unfinished earlier attempt
            os.replace(tmp, final)
            (final / DONE).touch()
            done += 1
    return done


@contextlib.contextmanager
def _readable(archive: str | Path) -> Iterator[None]:
    """An archive that cannot be read to its end (a download that stopped early, a damaged file) as
    one :class:`DataError` naming it, instead of tarfile's traceback."""
    try:
        yield
    except (tarfile.ReadError, EOFError, zlib.error) as e:
        reason = str(e).splitlines()[-1].removeprefix("- method tar: ")
        raise DataError(f"{archive} is incomplete or damaged ({reason}): download it again") from None
    except tarfile.TarError as e:  # e.g. a member that the "data" filter refuses
        raise DataError(f"{archive}: {e}") from None


@contextlib.contextmanager
def _removed_if_failed(folder: Path) -> Iterator[None]:
    """Remove ``folder`` (ours, being filled) if the block fails."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@contextlib.contextmanager
def _leave_nothing_if_failed(folder: Path) -> Iterator[None]:
    """Create ``folder`` (and its missing parents) for the block; if the block fails, remove those of
    them that are still empty — a failed command leaves nothing behind, and never deletes work done."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for p in created:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()  # only if empty
        raise


def prepare_imagenet(
    src: str | Path,
    dst: str | Path,
    *,
    val_dir: str | Path | None = None,
    val_labels: str | Path | None = None,
    devkit: str | Path | None = None,
) -> dict[str, int]:
    """Official ILSVRC-2012 files in ``src`` → ``dst/train/<wnid>/`` and ``dst/val/<wnid>/``. Problems
    with the inputs are found before ``dst`` is created; a failure later leaves no empty folders."""
    src, dst = Path(src), Path(dst)
    if val_dir is None:
        require_folder(src, "source folder")
    else:
        require_folder(Path(val_dir), "--val-dir")
    require_output_folder(dst, "destination")
    if not ((src / TRAIN_TAR).is_file() or (src / VAL_TAR).is_file() or val_dir or (dst / "train").is_dir()):
        raise DataError(f"{src} holds neither {TRAIN_TAR} nor {VAL_TAR}, and no --val-dir was given")
    with _leave_nothing_if_failed(dst):
        return _prepare_imagenet(src, dst, val_dir=val_dir, val_labels=val_labels, devkit=devkit)


def _prepare_imagenet(
    src: Path,
    dst: Path,
    *,
    val_dir: str | Path | None,
    val_labels: str | Path | None,
    devkit: str | Path | None,
) -> dict[str, int]:
    import torch

    counts = {"train_classes": 0, "val_images": 0}
    if (src / TRAIN_TAR).is_file():
        counts["train_classes"] = extract_train(src / TRAIN_TAR, dst / "train")
    # Ground truth for val, and class names (meta.bin).
    wnid_to_classes, val_wnids = None, None
    devkit = Path(devkit) if devkit else (src / DEVKIT if (src / DEVKIT).exists() else None)
    if devkit is not None:
        wnid_to_classes, val_wnids = devkit_ground_truth(devkit)
    elif (src / "meta.bin").is_file():
        wnid_to_classes, val_wnids = torch.load(src / "meta.bin", weights_only=True)
    if wnid_to_classes is not None and not (dst / "meta.bin").exists():
        torch.save((wnid_to_classes, val_wnids), dst / "meta.bin")
    flat = Path(val_dir) if val_dir else None
    if flat is None and (src / VAL_TAR).is_file():
        flat = dst / ".val_flat"
        if not (flat / DONE).exists():
            with _readable(src / VAL_TAR), _removed_if_failed(flat), tarfile.open(src / VAL_TAR) as tar:
                tar.extractall(flat, filter="data")
            (flat / DONE).touch()
    if flat is not None:
        if val_labels:
            classes = find_classes(dst / "train") if (dst / "train").is_dir() else None
            truth = read_label_file(val_labels, classes)
        elif val_wnids is not None:
            names = sorted(p.stem for p in flat.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if len(names) != len(val_wnids):
                raise DataError(f"{flat} has {len(names)} images but the ground truth lists {len(val_wnids)}")
            truth = dict(zip(names, val_wnids))
        else:
            raise DataError(
                f"validation images in {flat} need ground truth: pass --devkit "
                f"(ILSVRC2012_devkit_t12.tar.gz), put {DEVKIT} or meta.bin in {src}, or --val-labels FILE"
            )
        counts["val_images"] = sort_val(flat, dst / "val", truth)
        if flat == dst / ".val_flat":
            shutil.rmtree(flat)  # our own extraction, now linked into val/
    return counts


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src",
        metavar="SRC",
        help="folder with the official ILSVRC-2012 files, or (with --resize) any dataset",
    )
    p.add_argument("dst", metavar="DST", help="output dataset root")
    p.add_argument(
        "--resize",
        type=whole_number(1),
        default=None,
        metavar="N",
        help="write an N×N copy of SRC (shorter side N, central square) instead; resumable",
    )
    p.add_argument(
        "--val-dir", default=None, help="folder of flat validation images (instead of the val archive)"
    )
    p.add_argument(
        "--val-labels",
        default=None,
        help="label file for the flat val images: '<file> <wnid>' lines, "
        "'<file> <index>', or LOC_val_solution.csv",
    )
    p.add_argument("--devkit", default=None, help="ILSVRC2012_devkit_t12.tar.gz or its extracted folder")
    add_workers_arg(p, "for --resize")
    p.add_argument(
        "--quality",
        type=whole_number(1, 100),
        default=95,
        metavar="Q",
        help="JPEG quality of --resize, 1 to 100 (above 95 the files grow for little gain)",
    )


def run(args: argparse.Namespace) -> int:
    if args.resize is not None:
        counts = resize_tree(args.src, args.dst, size=args.resize, workers=args.workers, quality=args.quality)
    else:
        counts = prepare_imagenet(
            args.src, args.dst, val_dir=args.val_dir, val_labels=args.val_labels, devkit=args.devkit
        )
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0
