"""benchmarks/gpu_check.py: a failed step or a missing GPU is a non-zero exit with a clear message
(it used to exit 0 even when every step failed), and its checks run (rehearsed on the CPU)."""

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    """The real check code on the CPU: layouts given the reference's weights equal it to rounding,
    and one given weights 1 % off in one tower's conv3 (planted in the second model built: the
    (cuda:0, cpu) layout) is caught."""
    gc = load()
    copy = gc._load_same_weights
    calls = []

    def load_with_a_bug(model, reference):
        copy(model, reference)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                model.a.conv3.weight.mul_(1.01)

    monkeypatch.setattr(gc, "_load_same_weights", load_with_a_bug)
    result = gc.check_equality("cpu")
    rows = result["layouts"]
    assert set(rows) == {"same-device", "same-device+side-stream", "device+cpu"}
    for name in ("same-device", "same-device+side-stream"):
        assert rows[name]["forward_max_rel"] < 1e-5 and rows[name]["grad_max_rel"] < 1e-4
    assert rows["device+cpu"]["grad_max_rel"] > 1e-3
    assert len(result["failed"]) == 1 and result["failed"][0].startswith("device+cpu")
