"""benchmarks/gpu_check.py: a failed step or a missing GPU is a non-zero exit with a clear message
(it used to exit 0 even when every step failed), and its checks run (rehearsed on the CPU)."""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from benchscripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


def load():
    return load_benchmark("gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_without_a_gpu_it_says_so_and_exits_2(tmp_path):
    r = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "no CUDA device is visible" in r.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["passed"] is False and report["steps"] == {}
    assert "nothing was checked" in (tmp_path / "summary.txt").read_text()


def test_a_failed_step_fails_the_check(tmp_path, monkeypatch, capsys):
    gc = load()
    outcomes = iter(["passed", "failed"])
    monkeypatch.setattr(
        gc,
        "_run_step",
        lambda name, cmd, out, limit: {"status": next(outcomes), "exit": 0, "seconds": 0.1, "log": ""},
    )
    assert gc.main([str(tmp_path), "--device", "cpu", "--only", "equality", "bf16"]) == 1
    assert "overall: FAILED" in (tmp_path / "summary.txt").read_text()
    outcomes = iter(["passed", "passed"])
    assert gc.main([str(tmp_path), "--device", "cpu", "--only", "equality", "bf16"]) == 0


def test_step_limits_fit_in_five_minutes():
    assert sum(load().BUDGET_S.values()) <= 300


def test_equality_check_rehearsed_on_the_cpu(monkeypatch):
    """The real check code on the CPU: each layout, in float64 and in fp32, given the reference's
    weights, equals the CPU's float64 to rounding (float64) or to the CPU's own fp32 error (fp32); one
    given weights 1 % off in one tower's conv3 (planted in the (cuda:0, cpu) layout's two models, the
    sixth and seventh built after the float64 reference) fails in both precisions."""
    gc = load()
    copy = gc._load_same_weights
    calls = []

    def load_with_a_bug(model, reference):
        copy(model, reference)
        calls.append(1)
        if len(calls) >= 6:
            with torch.no_grad():
                model.a.conv3.weight.mul_(1.01)

    monkeypatch.setattr(gc, "_load_same_weights", load_with_a_bug)
    result = gc.check_equality("cpu")
    rows = result["layouts"]
    layouts = ("same-device", "same-device+side-stream", "device+cpu")
    assert set(rows) == {"cpu-fp32"} | {f"{n}/{p}" for n in layouts for p in ("float64", "fp32")}
    cpu32 = rows["cpu-fp32"]
    assert 0 < cpu32["grad_max_rel"] < 1e-3 and 0 < cpu32["forward_max_rel"] < 1e-5
    for name in layouts[:2]:
        assert (
            rows[f"{name}/float64"]["forward_max_rel"] < 1e-12
            and rows[f"{name}/float64"]["grad_max_rel"] < 1e-12
        )
        assert rows[f"{name}/fp32"]["grad_max_rel"] == pytest.approx(cpu32["grad_max_rel"], rel=0.5)
    assert (
        rows["device+cpu/float64"]["grad_max_rel"] > 1e-3 and rows["device+cpu/fp32"]["grad_max_rel"] > 1e-3
    )
    assert [f.split(":")[0] for f in result["failed"]] == ["device+cpu float64", "device+cpu fp32"]


def test_steady_figures_leave_out_the_warm_up_window():
    """Images/s and the data-wait share over the windows after the first, weighted by their time
    (worked by hand: 8 + 24 images in 0.5 + 1.5 s), peak memory over all windows."""
    gc = load()

    def window(rate, step_s, steps, wait, mem):
        return {
            "images_per_s": rate,
            "step_time_s": step_s,
            "window_steps": steps,
            "data_wait_share": wait,
            "memory_mib/cuda:0": mem,
        }

    figures = gc._steady(
        [
            window(1.0, 10.0, 2, 0.9, 900.0),
            window(16.0, 0.25, 2, 0.5, 500.0),
            window(16.0, 0.5, 3, 0.1, 700.0),
        ]
    )
    assert figures["images_per_s"] == pytest.approx(32 / 2.0)
    assert figures["data_wait_share"] == pytest.approx((0.5 * 0.5 + 0.1 * 1.5) / 2.0)
    assert figures["timed_steps"] == 5 and figures["step_time_s"] == pytest.approx(2.0 / 5)
    assert figures["peak_memory_mib"] == {"cuda:0": 900.0}
    # warm-up of 4 steps (the workers' queued batches): the first two windows left out
    later = gc._steady(
        [
            window(1.0, 10.0, 2, 0.9, 900.0),
            window(16.0, 0.25, 2, 0.5, 500.0),
            window(16.0, 0.5, 3, 0.1, 700.0),
        ],
        warm_up=4,
    )
    assert later["images_per_s"] == pytest.approx(24 / 1.5) and later["data_wait_share"] == pytest.approx(0.1)
    assert later["timed_steps"] == 3


def test_train_steps_leave_out_the_batches_the_workers_queued():
    """The warm-up covers the first progress window and every batch the workers can have made ahead
    (two per worker, the DataLoader's prefetch_factor): 16 workers on a GPU host, 32 steps."""
    gc = load()
    assert gc.warm_up_steps(8, 16) == 32 and gc.warm_up_steps(8, 2) == 8 and gc.warm_up_steps(2, 2) == 4
    assert torch.utils.data.DataLoader(list(range(4)), num_workers=1).prefetch_factor == gc.PREFETCH


def test_data_step_prepares_256_pixel_squares_linked_to_the_training_size(tmp_path, monkeypatch):
    from PIL import Image

    gc = load()
    sizes = gc._Sizes(
        unique_per_class=1, train_per_class=3, val_per_class=1, batch=2, log_every=1, loader_batches=2
    )
    monkeypatch.setattr(gc, "_sizes", lambda device: sizes)
    result = gc.check_data("cpu", tmp_path)
    root = tmp_path / gc.DATA
    train = sorted((root / "train").rglob("*.jpg"))
    val = sorted((root / "val").rglob("*.jpg"))
    assert result["failed"] == [] and result["train_images"] == len(train) == 30
    assert result["unique_train_images"] == 10 and result["val_images"] == len(val) == 10
    assert len({p.stat().st_ino for p in train}) == 10  # copies are links to the generated images
    assert {Image.open(p).size for p in train + val} == {(256, 256)}
    assert (root / "stats.pt").is_file() and not (tmp_path / "_raw").exists()


def test_train_and_loader_steps_rehearsed_on_the_cpu(tmp_path):
    """The new steps in their own processes on the CPU (small sizes): the data step is added for
    them, every figure is in the JSON and beside the moonshot in the summary, and the generated data
    and the runs' folders are gone at the end. (Both layouts and both precisions: the other two
    train steps are the same code with the other pairings.)"""
    gc = load()
    steps = ["train-towers-bf16", "train-grouped-fp32", "loader"]
    assert gc.main([str(tmp_path), "--device", "cpu", "--only", *steps]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report["steps"]) == ["data", *steps] and report["passed"] is True
    for name, layout, precision in (
        ("train-towers-bf16", "towers", "bf16"),
        ("train-grouped-fp32", "grouped", "fp32"),
    ):
        r = report["steps"][name]["result"]
        assert (r["layout"], r["precision"], r["failed"]) == (layout, precision, [])
        assert (
            r["steps"] == 5 and r["batch_size"] == 2 and r["side_stream"] is False
        )  # no CUDA stream on the CPU
        # 5 steps in windows of 2, 2, 1; the warm-up leaves out the first window, or the first two
        warm_up = gc.warm_up_steps(2, os.cpu_count() or 1)
        assert r["warm_up_steps"] == warm_up and r["timed_steps"] == (3 if warm_up <= 2 else 1)
        assert r["images_per_s"] > 0 and 0 <= r["data_wait_share"] <= 1
        assert r["moonshot_share"] == pytest.approx(r["images_per_s"] / 10_000)
        assert set(r["peak_memory_mib"]) == {"cpu"} and r["peak_memory_mib"]["cpu"] > 0
        assert r["run_seconds"] > 0
    loader = report["steps"]["loader"]["result"]
    assert loader["warm_up_batches"] == os.cpu_count() and loader["timed_batches"] == 4
    assert loader["workers"] == (os.cpu_count() or 1) and loader["images_per_s"] > 0
    assert loader["per_worker_images_per_s"] == pytest.approx(loader["images_per_s"] / loader["workers"])
    assert loader["workers_for_moonshot"] == math.ceil(10_000 / loader["per_worker_images_per_s"])
    summary = (tmp_path / "summary.txt").read_text()
    assert "moonshot: 10,000 training images/s" in summary
    assert summary.count("x the moonshot; waiting for data") == 2
    assert f"loader, {loader['workers']} workers:" in summary and "workers for 10,000 img/s" in summary
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in left if n.startswith("_")], left
