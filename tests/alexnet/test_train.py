"""Training end to end on a tiny dataset made in tmp_path: interrupt + resume, layouts, dashboards."""

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tinydata import make_tiny_dataset

from alexnet.config import load_config
from alexnet.training.train import train
from twogpu.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(tmp_path: Path, data: Path, name: str = "tiny", *extra: str):
    return load_config(
        None,
        [
            f'data.root="{data}"',
            f'train.runs_dir="{tmp_path / "runs"}"',
            f'train.name="{name}"',
            "train.batch_size=2",
            "train.epochs=2",
            "train.log_every=1",
            "data.workers=0",
            'train.devices=["cpu", "cpu"]',
            "train.dashboard_images=2",
            "train.checkpoint_minutes=0.0",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data"))


def _models_equal(p1: Path, p2: Path) -> None:
    a, b = load_checkpoint(p1), load_checkpoint(p2)
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["optimizer"]["momentum"]:
        assert torch.equal(a["optimizer"]["momentum"][k], b["optimizer"]["momentum"][k]), k
    assert a["schedule"] == b["schedule"]


@pytest.mark.slow
def test_cli_sigterm_then_resume_matches_uninterrupted_run(tmp_path, tiny_data):
    """An uninterrupted run (in this process) against the CLI interrupted by SIGTERM mid-epoch and
    resumed with --resume: the final weights, momentum and schedule are bit-identical."""
    ref = train(tiny_config(tmp_path, tiny_data, "ref"), dashboards=False, log=lambda s: None)
    assert ref.status == "finished" and ref.step == 8

    args = [
        sys.executable,
        "-m",
        "alexnet",
        "train",
        str(tiny_data),
        "--set",
        f'train.runs_dir="{tmp_path / "runs"}"',
        "--set",
        'train.name="cut"',
        "--set",
        "train.batch_size=2",
        "--set",
        "train.epochs=2",
        "--set",
        "train.log_every=1",
        "--set",
        "data.workers=0",
        "--set",
        'train.devices=["cpu", "cpu"]',
        "--set",
        "train.checkpoint_minutes=0.0",
        "--set",
        "train.dashboard_images=0",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    out = []
    for line in proc.stdout:
        out.append(line)
        if "step 2/4" in line:  # second step of the first epoch done
            proc.send_signal(signal.SIGTERM)
            break
    out += proc.stdout.readlines()
    assert proc.wait(timeout=120) == 0, "".join(out)
    text = "".join(out)
    assert "SIGTERM received" in text
    hint = re.search(r"resume with: (.*)$", text, re.MULTILINE).group(1)
    program = shlex.split(hint)[0]  # e.g. .venv/bin/alexnet: no activated venv needed
    assert os.sep in program and (ROOT / program).is_file() and " train --config " in hint, hint
    cut = load_checkpoint(tmp_path / "runs" / "cut" / "checkpoints" / "last.pt")
    assert 2 <= cut["step"] < 8, text

    # a second start without --resume must not overwrite the run
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env)
    assert again.returncode == 2 and "--resume" in again.stderr

    # the hint, run as typed in a fresh shell: PATH without the virtual environment
    bindir = str(Path(sys.executable).parent)
    fresh = {**env, "PATH": os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != bindir)}
    done = subprocess.run(shlex.split(hint), cwd=ROOT, capture_output=True, text=True, env=fresh, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed from" in done.stdout
    _models_equal(
        tmp_path / "runs" / "ref" / "checkpoints" / "last.pt",
        tmp_path / "runs" / "cut" / "checkpoints" / "last.pt",
    )
    ref_lines = (tmp_path / "runs" / "ref" / "metrics.jsonl").read_text().splitlines()
    cut_lines = (tmp_path / "runs" / "cut" / "metrics.jsonl").read_text().splitlines()
    assert len(ref_lines) == len(cut_lines) == 2


@pytest.mark.slow
def test_grouped_twin_and_two_towers_train_alike(tmp_path, tiny_data):
    """Without dropout and lighting noise the grouped twin and the two-tower model take the same
    steps; both write checkpoints in the two-tower layout."""
    # seed 1: with seed 0's initial weights one activation sits on a ReLU / max-pool tie that the two
    # summation orders break differently (conv1's momentum then differs by 2e-3 of its largest
    # value); seeds 1, 2 and 3 agree to 3e-6
    common = (
        "train.max_steps=2",
        "model.dropout=0.0",
        "data.lighting_std=0.0",
        "train.epochs=1",
        "train.seed=1",
    )
    train(tiny_config(tmp_path, tiny_data, "grouped", *common), dashboards=False, log=lambda s: None)
    train(
        tiny_config(tmp_path, tiny_data, "towers", "train.grouped_when_single_device=false", *common),
        dashboards=False,
        log=lambda s: None,
    )
    g = load_checkpoint(tmp_path / "runs" / "grouped" / "checkpoints" / "last.pt")
    t = load_checkpoint(tmp_path / "runs" / "towers" / "checkpoints" / "last.pt")
    assert g["model"].keys() == t["model"].keys() and "b.conv1.weight" in g["model"]
    for k in g["model"]:
        torch.testing.assert_close(g["model"][k], t["model"][k], rtol=1e-4, atol=1e-6)
        mg, mt = g["optimizer"]["momentum"][k], t["optimizer"]["momentum"][k]
        assert mt.abs().max() > 0, k  # both steps moved every tensor
        torch.testing.assert_close(mg, mt, rtol=1e-3, atol=1e-3 * float(mt.abs().max()))
    assert g["model"]["a.conv2.weight"].shape == (128, 48, 5, 5)
    assert g["config"]["model"]["num_classes"] == 2 and g["classes"] == ["blue", "red"]


@pytest.mark.slow
def test_event_files_hold_the_dashboards(tmp_path, tiny_data, capfd):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tmp_path, tiny_data, "tb", "train.epochs=2")
    lines: list[str] = []
    train(cfg, log=lines.append)
    run = tmp_path / "runs" / "tb"
    # the progress lines name the errors as metrics.jsonl does; the last line points at this run
    progress = [s for s in lines if s.startswith("epoch ") and " done: " not in s]
    assert len(progress) == 8 and all(
        re.search(r"  top1_err [01]\.\d{3}  top5_err [01]\.\d{3}  ", s) for s in progress
    )
    assert (
        lines[-1].startswith(f"dashboards: {run} ") and f"--checkpoint {run}/checkpoints/best.pt" in lines[-1]
    )
    # resuming from an older checkpoint rewrites the later epoch's embedding without complaint
    train(cfg, resume=str(run / "checkpoints" / "step-00000004.pt"), log=lambda s: None)
    assert "Embedding dir exists" not in capfd.readouterr().out
    acc = EventAccumulator(str(run), size_guidance={"tensors": 0, "images": 0, "histograms": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in (
        "train/loss",
        "train/top1_err",
        "train/top5_err",
        "train/lr",
        "speed/images_per_s",
        "speed/data_wait_share",
        "speed/step_time_s_tower_a",
        "speed/step_time_s_tower_b",
        "memory_mib/cpu",
        "error/train_top1_err",
        "error/val_top1_err",
        "error/val_top5_err",
        "hparam/val_top1_err",
    ):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 9))  # log_every=1, 8 steps, once each
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("error/val_top1_err")] == pytest.approx(
        [m["val_top1_err"] for m in metrics]
    )
    for tag in ("conv1_kernels/tower_a", "conv1_kernels/tower_b", "validation/top5"):
        assert tag in tags["images"], tag
    for tower in "ab":
        for layer in ("conv1", "conv3", "fc7"):
            assert f"weights/{tower}/{layer}.weight" in tags["histograms"]
            assert f"grads/{tower}/{layer}.weight" in tags["histograms"]
    assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")
    assert "config/text_summary" in tags["tensors"]
    # the projector lists each epoch's fc7 embedding once: 2 × 4 = 8 validation images (16 × 2 asked,
    # all 4 there are), 4096 values each
    projector = (run / "projector_config.pbtxt").read_text()
    assert [projector.count(f'tensor_name: "fc7:{s:05d}"') for s in (4, 8)] == [1, 1]
    rows = (run / "00008" / "fc7" / "tensors.tsv").read_text().splitlines()
    assert len(rows) == 4 and all(len(r.split("\t")) == 4096 for r in rows)
    # config.toml is the resolved config: read back, it is the same configuration
    assert load_config(str(run / "config.toml")) == dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, num_classes=2)
    )


def test_make_train_2gpu_without_gpus_points_to_train_1gpu(tmp_path):
    if torch.cuda.is_available() and torch.cuda.device_count() >= 2:
        pytest.skip("two GPUs are present")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(
        ["make", "-o", ".venv/.installed", "train-2gpu", f"DATA={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "make train-1gpu" in r.stderr and "GPU" in r.stderr
