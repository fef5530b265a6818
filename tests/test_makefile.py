"""The make targets a user types: `make help` lists each one, `make gpu-check` without a GPU says
so once and leaves nothing for git to report, and the install's native build prints no warning."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _make(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`make` in the repository, the install step taken as done (``-o``: never rebuilt)."""
    return subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _targets() -> list[str]:
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M)
    return phony.group(1).split()


def test_make_help_lists_every_target_with_one_line():
    r = _make("help")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for target in _targets():
        described = [line for line in lines if line.split()[:2] == ["make", target]]
        assert len(described) == 1 and len(described[0].split()) > 2, (target, r.stdout)
    assert len(lines) == len(_targets())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_make_gpu_check_without_a_gpu_says_so_once_and_leaves_nothing_untracked(tmp_path):
    out = _make("gpu-check", f"OUT={tmp_path}")
    said = (out.stdout + out.stderr).count("no CUDA device is visible")
    assert out.returncode != 0 and said == 1, out.stdout + out.stderr
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # the default folder is one git ignores
    folder = re.search(r"gpu_check\.py (\S+)", _make("-n", "gpu-check").stdout).group(1)
    assert subprocess.run(["git", "check-ignore", "-q", folder + "/summary.txt"], cwd=ROOT).returncode == 0, (
        folder
    )


def test_the_native_build_line_of_make_install_prints_no_warning():
    """`python -m alexnet.models.native` warned (runpy: the package imports the module first)."""
    dry = subprocess.run(
        ["make", "-s", "-n", "--always-make", ".venv/.installed"], cwd=ROOT, capture_output=True, text=True
    )
    (line,) = [line for line in dry.stdout.splitlines() if "native" in line]
    line = line.replace(".venv/bin/python", sys.executable, 1)
    r = subprocess.run(["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "alexnet native LRN and max-pool:" in r.stdout, r.stdout + r.stderr
    assert "Warning" not in r.stderr, r.stderr
