"""`alexnet train` as data-parallel replicas under torchrun (gloo, CPU): only rank 0 writes and prints
(each line once), the global batch is batch_size × replicas, and a checkpoint of a 2-replica run
resumes in 1 process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tinydata import make_tiny_dataset

from alexnet.config import load_config
from alexnet.training.train import train
from twogpu.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_replicas_then_resume_in_one_process(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", train_n=4, val_n=2)  # 8 training images
    runs = tmp_path / "runs"
    sets = [
        f'data.root="{data}"',
        f'train.runs_dir="{runs}"',
        'train.name="ddp"',
        "train.batch_size=2",
        "train.epochs=2",
        "data.workers=0",
        'train.devices=["cpu", "cpu"]',
        "train.dashboard_images=0",
        "train.checkpoint_minutes=0.0",
        "train.keep_last=1",
        "train.dist_timeout_s=120.0",
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "alexnet",
        "train",
    ]
    once = ["optim.schedule=\"milestones\"", "optim.milestones=[1]"]  # a drop after epoch 1
    for s in sets + once + ["train.epochs=1"]:  # the last --set of a key wins
        cmd += ["--set", s]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert any(line.endswith("2 replica(s), backend gloo, global batch 4") for line in lines), run.stdout
    assert sorted(line.split(" (")[0] for line in lines if line.startswith("replica ")) == [
        "replica 0",
        "replica 1",
    ]
    assert "replica 1: replica 1" not in run.stdout  # each replica names itself once
    for start in ("devices:", "data-parallel:", "epoch 1/1  step", "epoch 1 done", "learning rate divided"):
        assert sum(line.startswith(start) for line in lines) == 1, (start, run.stdout)
    ckpt = load_checkpoint(runs / "ddp" / "checkpoints" / "last.pt")
    # 8 images, 2 per replica per step, 2 replicas: 2 steps make the epoch, 8 images seen.
    assert (ckpt["epoch"], ckpt["step"], ckpt["images_seen"], ckpt["world_size"]) == (1, 2, 8, 2)
    assert len(list((runs / "ddp" / "checkpoints").glob("step-*.pt"))) == 1  # one writer

    cfg = load_config(None, sets + once)  # one process, epochs=2: continues the same run
    result = train(cfg, resume="auto", dashboards=False, log=lambda s: None)
    assert result.status == "finished" and result.epoch == 2
    after = load_checkpoint(runs / "ddp" / "checkpoints" / "last.pt")
    assert (after["step"], after["images_seen"], after["world_size"]) == (2 + 4, 16, 1)
