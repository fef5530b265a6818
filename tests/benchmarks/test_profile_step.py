"""benchmarks/profile_step.py: the per-operator table of docs/cpu-profile.md (and, on a GPU, of
docs/performance.md), its --help, and a clear exit where a GPU is asked for and none is there."""

import subprocess
import sys

import pytest
import torch
from benchscripts import load_benchmark, script

SCRIPT = script("profile_step")


def test_help_names_every_option():
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == ""
    for option in (
        "--device",
        "--precision",
        "--batch",
        "--rounds",
        "--infer",
        "--raw",
        "--no-channels-last",
    ):
        assert option in r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_a_gpu_asked_for_without_one_is_one_line_and_exit_2():
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cuda:0"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "profile_step: cuda:0 asked for, but no CUDA device is visible"


def test_cpu_table_rows_add_up_to_the_step():
    """One small round on the CPU (its own process: it sets threads, the allocator and the precision
    flags): every model's column, the operators and '(other operators)' add up to the step row, and
    the CPU table has no GPU wall-time row."""
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--batch", "2", "--rounds", "1", "--top", "3", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| operator | two-tower ms | grouped ms | torchvision ms |")
    body, step = rows[1:-1], rows[-1]
    assert step.startswith("| **step** |") and len(body) == 3 + 1 and "wall time" not in out
    for col in (1, 2, 3):
        parts = [float(r.split("|")[col + 1].strip()) for r in body]
        total = float(step.split("|")[col + 1].strip().strip("*"))
        assert sum(parts) == pytest.approx(total, abs=0.05 * (len(parts) + 1))  # each printed to 0.1
        assert total > 0


def test_the_gpu_wall_row_gives_times_and_no_share():
    """On a GPU the table adds the unprofiled wall time per step, with no share beside it (profiled
    sums and overlapping streams are not a fraction of it)."""
    ps = load_benchmark("profile_step")
    ops = {m: {"aten::mm": 2.0, "aten::add_": 1.0} for m in ps.MODELS}
    totals = {m: 3.0 for m in ps.MODELS}
    table = ps.markdown(ops, totals, 1, wall={"two-tower": 2.5, "grouped": 3.5, "torchvision": 4.0})
    last = table.splitlines()[-1]
    assert last.startswith("| wall time per step, unprofiled | 2.5 | 3.5 | 4.0 |") and "%" not in last
    assert "| (other operators) | 1.0 | 1.0 | 1.0 |" in table
