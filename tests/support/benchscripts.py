"""The scripts of ``benchmarks/`` as modules, for their tests (they are scripts, not a package;
importable from any test: setup.cfg puts tests/support on the path)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def script(name: str) -> Path:
    """``benchmarks/<name>.py``."""
    return BENCHMARKS / f"{name}.py"


def load_benchmark(name: str) -> ModuleType:
    """A fresh module of ``benchmarks/<name>.py``, registered under ``name`` (a dataclass looks its
    module up there, as gpu_check's ``_Sizes`` does)."""
    spec = importlib.util.spec_from_file_location(name, script(name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
