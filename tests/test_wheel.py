"""A real install (issue 17, item 2): the wheel built from this working tree, installed with ``--no-deps``
into a fresh virtual environment, works from a folder outside the repository with no ``PYTHONPATH``.

The environment reuses the project's installed dependencies (torch, torchvision, ...) through a folder
of links to the project's site-packages, leaving out the project's own distribution: its
``alexnet_twogpu`` metadata and the ``__editable__`` finder of ``make install`` (``.pth`` files are not
linked, so no finder runs). The test first checks that ``import alexnet`` fails there, so that what
passes afterwards is the wheel, not the source tree. Every package folder of the source tree (each
``__init__.py``) and the C++ source of the native LRN must be in the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = {"alexnet": Path("src/alexnet"), "twogpu": Path("twogpu")}
#: top-level folders of a checkout that are not the package's source (built or written by runs)
_NOT_SOURCE = {
    ".git",
    ".venv",
    "build",
    "dist",
    "data",
    "runs",
    "bench-results",
    "gpu-check",
    ".pytest_cache",
}

pytestmark = pytest.mark.slow


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    if Path(folder) == ROOT:
        skipped |= _NOT_SOURCE & set(names)
    return skipped


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def build_wheel(source: Path, out: Path) -> Path:
    """``pip wheel`` of ``source`` (a copy: building writes ``build/`` and ``*.egg-info`` beside it)."""
    out.mkdir()
    done = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        cwd=out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def fresh_venv(path: Path) -> Path:
    """A virtual environment that sees the project's dependencies but not the project; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    own = Path(sysconfig.get_paths()["purelib"])
    deps = path / "deps"
    deps.mkdir()
    for entry in own.iterdir():
        if entry.suffix == ".pth" or entry.name.startswith(("__editable__", "alexnet_twogpu")):
            continue
        (deps / entry.name).symlink_to(entry)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], path)
    (Path(purelib.stdout.strip()) / "project-deps.pth").write_text(f"{deps}\n")
    return python


def install_and_use(wheel: Path, venv: Path, outside: Path) -> None:
    """Installs ``wheel`` into ``venv`` and runs the commands a user would, from ``outside``."""
    python = fresh_venv(venv)
    before = _run([str(python), "-c", "import alexnet"], outside)
    assert "No module named 'alexnet'" in before.stderr, "the source tree is visible in the fresh venv"

    done = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], outside)
    assert done.returncode == 0, done.stdout + done.stderr

    imports = _run(
        [
            str(python),
            "-c",
            "import alexnet, twogpu, alexnet.config, alexnet.commands.evaluate; "
            "print(alexnet.__file__); print(twogpu.__file__)",
        ],
        outside,
    )
    assert imports.returncode == 0, imports.stderr
    for line in imports.stdout.split():
        assert Path(line).is_relative_to(venv), f"imported from {line}, not from the installed wheel"

    alexnet = venv / "bin" / "alexnet"
    helped = _run([str(alexnet), "--help"], outside)
    assert helped.returncode == 0, helped.stderr
    assert "summary" in helped.stdout and "train" in helped.stdout
    summary = _run([str(alexnet), "summary"], outside)
    assert summary.returncode == 0, summary.stderr
    assert "60,965,224" in summary.stdout  # the paper's parameter count (section 3.5)


def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_ignore, symlinks=True)
    wheel = build_wheel(source, tmp_path / "wheel")

    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {
        (top / init.parent.relative_to(ROOT / folder) / "__init__.py").as_posix()
        for top, folder in ((Path(t), f) for t, f in PACKAGE_ROOTS.items())
        for init in (ROOT / folder).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert packages - names == set(), "packages missing from the wheel"
    assert "alexnet/models/csrc/lrn_cpu.cpp" in names  # the native kernels compile from the installed copy
    assert "alexnet/models/csrc/max_pool_cpu.cpp" in names

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    install_and_use(wheel, tmp_path / "venv", outside)
