"""The command line, as a user runs it."""

import re
import subprocess
import sys
from pathlib import Path

from alexnet.cli import main


def test_python_dash_m_and_summary(capsys):
    out = subprocess.run(
        [sys.executable, "-m", "alexnet", "summary"], capture_output=True, text=True, check=True
    )
    assert "total: 60,965,224 parameters" in out.stdout
    # what `summary --help` promises: each tower's layers with channels, kernel and stride (section 3.5)
    assert out.stdout.count("(conv1): Conv2d(3, 48, kernel_size=(11, 11), stride=(4, 4))") == 2
    assert (
        "channels, kernels, strides"
        in subprocess.run(
            [sys.executable, "-m", "alexnet", "summary", "--help"], capture_output=True, text=True, check=True
        ).stdout
    )


def test_crossings_command(capsys):
    assert main(["crossings", "--batch-size", "128"]) == 0
    assert "489,376 B per image" in capsys.readouterr().out


def test_config_error_exits_2_with_message(capsys):
    assert main(["config", "--set", "optim.lr=fast"]) == 2
    assert "optim.lr: expected a number" in capsys.readouterr().err


def test_the_readmes_grep_for_the_crossings_works_as_written():
    """The README's command that lists every crossing runs from the repository root and finds the
    model's exchanges (a grep over the folder `src` alone would exit 2: it is a directory)."""
    root = Path(__file__).resolve().parents[2]
    command = re.search(r"`(grep [^`]*)`", (root / "README.md").read_text()).group(1)
    out = subprocess.run(["bash", "-c", command], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (
        sum(
            'site="' in line
            for line in out.stdout.splitlines()
            if line.startswith("src/alexnet/models/model.py")
        )
        >= 4
    )


def test_output_into_a_closed_pipe_ends_quietly():
    """`alexnet config --explain | head -1`: the reader closes the pipe early; no BrokenPipeError
    traceback."""
    out = subprocess.run(
        ["bash", "-c", f"'{sys.executable}' -m alexnet config --explain | head -1"],
        capture_output=True,
        text=True,
    )
    assert out.stdout.count("\n") == 1
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
