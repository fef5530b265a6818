"""Asking for CUDA where there is none ends in one clear line, never a traceback (issue 11, item 4)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "--checkpoint", "missing.pt", "--device", "cuda:0", "photo.jpg"],
        ["figures", "--checkpoint", "missing.pt", "--device", "cuda:0", "data"],
    ],
)
def test_cli_device_without_cuda_is_one_line(command, capsys):
    """The device is checked before any work (here: before the checkpoint is even looked for)."""
    from alexnet.cli import main

    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda:0" in err[0] and "CUDA is not available" in err[0], err


def test_cli_device_that_is_no_device_is_one_line(capsys):
    from alexnet.cli import main

    assert main(["predict", "--checkpoint", "missing.pt", "--device", "gpu0", "photo.jpg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device: 'gpu0' is not a device name" in err[0], err


def test_bench_with_cuda_devices_without_cuda_is_one_line(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            "--devices",
            "cuda:0",
            "cuda:1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bench.py: error: --devices cuda:0 cuda:1" in lines[0], r.stderr
    assert "CUDA is not available" in lines[0] and not list(tmp_path.iterdir())


def test_make_train_2gpu_with_replicas_checks_before_torchrun(tmp_path):
    """NPROC=4 replicas need 8 GPUs: one message before torchrun starts, not four plus its traceback."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "train-2gpu", "NPROC=4", f"DATA={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "torchrun" not in r.stdout + r.stderr and "ChildFailedError" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "needs 8 GPUs, but 0 CUDA device(s) are visible" in errors[0], r.stderr
    assert "make train-1gpu" in errors[0]
