"""benchmarks/bench_loader.py: per-worker loader rates on raw-size and prepared 256×256 images (issue 18)."""

import json
import math
import os
import subprocess

import pytest
import torch
from benchscripts import load_benchmark, script
from tinydata import make_tiny_dataset

from alexnet.commands.prepare import resize_tree

SCRIPT = script("bench_loader")


def _load():
    return load_benchmark("bench_loader")


def test_loader_benchmark_reports_per_worker_rates_and_workers_needed(tmp_path):
    """Per-worker images/s and the workers needed for 10,000 images/s, for raw and prepared images,
    written to OUT/loader.json."""
    bench = _load()
    root = make_tiny_dataset(tmp_path / "d", train_n=4, val_n=1)
    prepared = tmp_path / "p"
    resize_tree(root, prepared, size=256, workers=1, show_progress=False)
    r = bench.bench_loader(
        root, prepared=prepared, workers=(0, 1), batch_size=2, batches=3, repeats=1, out=tmp_path / "out"
    )
    assert set(r["datasets"]) == {"raw", "prepared"}
    assert r["datasets"]["prepared"]["mean_image_size"] == [256, 256]
    for data in r["datasets"].values():
        zero, one = data["results"]
        assert zero["workers"] == 0 and one["workers"] == 1
        assert zero["ours_img_s"] > 0 and zero["torchvision_img_s"] > 0
        assert zero["ratio"] == pytest.approx(zero["ours_img_s"] / zero["torchvision_img_s"])
        assert one["ours_img_s_per_worker"] == one["ours_img_s"]
        assert data["per_worker_img_s"] == zero["ours_img_s"]  # the fewest workers measured
        assert data["workers_for_10000_img_s"] == math.ceil(10_000 / zero["ours_img_s"])
    # --out is a folder, as for benchmarks/bench.py
    assert json.loads((tmp_path / "out" / "loader.json").read_text())["datasets"] == r["datasets"]


def test_bench_py_reads_what_bench_loader_writes_into_its_out_folder(tmp_path, monkeypatch):
    """bench.py passes its --out folder to bench_loader.py and reads OUT/loader.json back (the two
    scripts once disagreed: a folder for one, a file for the other)."""
    bench_py = load_benchmark("bench")
    loader = _load()
    raw = make_tiny_dataset(tmp_path / "d", train_n=2, val_n=1)
    small = ["--data", str(raw), "--batch-size", "2", "--batches", "2", "--repeats", "1"]

    def run_in_process(cmd, **_kw):  # bench.py's command line, on tiny data instead of generated images
        assert cmd[1] == str(SCRIPT)
        code = loader.main([*cmd[2:], *small])
        return subprocess.CompletedProcess(cmd, code, "", "")

    monkeypatch.setattr(bench_py.subprocess, "run", run_in_process)
    result = bench_py.loader_section(torch.device("cpu"), True, tmp_path / "results")
    assert "skipped" not in result, result
    assert json.loads((tmp_path / "results" / "loader.json").read_text()) == result
    assert result["datasets"]["raw"]["results"][0]["workers"] == os.cpu_count()  # bench.py asks for -1


def test_rates_are_timed_after_one_warm_up_batch_per_worker():
    """The workers start together and deliver their first batches together: the clock starts after
    ``warmup`` batches (one per worker) and counts the images of the next ``count`` only."""
    bench = _load()
    sizes = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    seen = []

    def consume(b):
        seen.append(b)
        return b

    rate, images = bench._timed(iter(sizes), 4, consume, warmup=3)
    assert seen == [1, 2, 3, 4, 5, 6, 7] and images == 4 + 5 + 6 + 7 and rate > 0
    assert bench.timed_batches(16) == 96 and bench.timed_batches(1) == 12 and bench.timed_batches(4, 5) == 5
