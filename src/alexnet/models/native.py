"""Native CPU kernels, compiled on first use: the fused LRN of section 3.3 (``csrc/lrn_cpu.cpp``)
and the NCHW max-pooling of section 3.4 (``csrc/max_pool_cpu.cpp``).

The sources are compiled into one library once per machine, PyTorch version and source text
with the system C++ compiler against the installed PyTorch headers (about 20 s on two cores;
``make install`` does it up front), cached as a shared library, and loaded with
``torch.ops.load_library``. It registers
``torch.ops.alexnet_native.lrn_forward`` / ``lrn_backward`` (CPU, float32/float64; ``relu=True``
normalises ``max(x, 0)``: the ReLU below the LRN fused, forward and backward) and
``max_pool_forward`` / ``max_pool_backward`` (CPU, float32/float64, NCHW: the same maxima and
gradients as ``F.max_pool2d``, several times faster than PyTorch's NCHW kernel), and
``lrn_max_pool_forward`` (the LRN, then max-pooling, in one pass over channels_last maps, forward only:
inference).

Nothing here is required: without a compiler, or with ``ALEXNET_NATIVE=0``, :func:`load` returns
False once, with a warning that says why, and the LRN and the pooling run their PyTorch paths
(same numbers, slower on the CPU).

Environment: ``ALEXNET_NATIVE=0`` disables the kernels; ``ALEXNET_NATIVE_CACHE`` overrides the
cache folder (default ``$XDG_CACHE_HOME/alexnet-twogpu/native`` or ``~/.cache/...``); ``CXX``
names the compiler.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

SOURCES = tuple(Path(__file__).with_name("csrc") / name for name in ("lrn_cpu.cpp", "max_pool_cpu.cpp"))
NAMESPACE = "alexnet_native"

BUILD_TIMEOUT_S = 300
_state: dict[str, object] = {}  # "ok": bool, "reason": str, "path": Path — one attempt per process


class NativeBuildError(RuntimeError):
    """The kernel could not be compiled or loaded; the message holds the compiler's output."""


def cache_dir() -> Path:
    """Where compiled kernels are kept (``ALEXNET_NATIVE_CACHE``, else the user cache folder)."""
    if os.environ.get("ALEXNET_NATIVE_CACHE"):
        return Path(os.environ["ALEXNET_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alexnet-twogpu" / "native"


def compiler() -> str | None:
    """The C++ compiler: ``$CXX``, else the first of c++, g++, clang++ on PATH."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"]) or os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _isa_flags() -> list[str]:
    """AVX2 + FMA where PyTorch itself detected them (its own kernels then use them too); the
    baseline instruction set elsewhere. AVX-512 is not asked for: it measured slower here."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return ["-mavx2", "-mfma"]
    return []


def compile_command(sources: tuple[Path, ...], output: Path, cxx: str) -> list[str]:
    """The compiler invocation: optimised, IEEE arithmetic (no fast-math), OpenMP as PyTorch's own
    parallel backend, linked against the installed PyTorch."""
    root = Path(torch.__file__).parent
    lib = root / "lib"
    flags = [
        "-O3",
        "-std=c++20",
        "-fPIC",
        "-shared",
        "-fno-math-errno",
        "-fno-trapping-math",  # as PyTorch builds: lets the fused ReLU's select vectorise; same results
        "-w",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        *_isa_flags(),
    ]
    if torch._C.has_openmp:
        flags.append("-fopenmp")
    return [
        cxx,
        *flags,
        f"-I{root / 'include'}",
        *map(str, sources),
        "-o",
        str(output),
        f"-L{lib}",
        "-lc10",
        "-ltorch_cpu",
        f"-Wl,-rpath,{lib}",
    ]


def library_path(cxx: str | None = None) -> Path:
    """The cached library for these sources, PyTorch, Python, machine and flags."""
    cxx = cxx or compiler() or "c++"
    key = hashlib.sha256()
    for source in SOURCES:
        key.update(source.read_bytes())
    for part in (
        torch.__version__,
        sys.version,
        platform.machine(),
        cxx,
        " ".join(compile_command((Path("s"),), Path("o"), cxx)),
    ):
        key.update(part.encode())
    return cache_dir() / f"kernels-{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the kernels into the cache (atomically: concurrent processes cannot see half a
    file) and return its path. Raises :class:`NativeBuildError` with the compiler's output."""
    cxx = compiler()
    if cxx is None:
        raise NativeBuildError("no C++ compiler found (set CXX, or install g++ or clang++)")
    out = library_path(cxx)
    if out.exists() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(out.parent):  # several ranks starting at once compile once
        if out.exists() and not force:
            return out
        fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            try:
                proc = subprocess.run(
                    compile_command(SOURCES, Path(tmp), cxx),
                    capture_output=True,
                    text=True,
                    timeout=BUILD_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired:
                raise NativeBuildError(f"compiling the kernels took over {BUILD_TIMEOUT_S} s") from None
            if proc.returncode != 0:
                names = ", ".join(s.name for s in SOURCES)
                raise NativeBuildError(f"compiling {names} failed:\n{(proc.stderr or proc.stdout)[-3000:]}")
            os.chmod(tmp, 0o755)  # mkstemp makes it private; a shared cache must be readable
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.build.lock`` (POSIX ``flock``; no lock where unavailable)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / ".build.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format the kernels return (as ``layout_of`` in lrn_cpu.cpp)."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _register_fakes() -> None:
    """Shape-and-layout-only versions of the ops, so ``torch.compile`` can trace through them."""

    def fake_forward(x, size, alpha, beta, k, groups, relu=False):
        return torch.empty_like(x, memory_format=_layout(x))

    def fake_backward(grad, x, size, alpha, beta, k, groups, relu=False):
        return torch.empty_like(x, memory_format=_layout(x))

    def fake_pool(x, kernel, stride):
        n, c, h, w = x.shape
        shape = (n, c, (h - kernel) // stride + 1, (w - kernel) // stride + 1)
        return x.new_empty(shape), x.new_empty(shape, dtype=torch.uint8)

    def fake_pool_backward(grad, argmax, height, width, kernel, stride):
        return grad.new_empty((*grad.shape[:2], height, width))

    fakes = (
        ("lrn_forward", fake_forward),
        ("lrn_backward", fake_backward),
        ("max_pool_forward", fake_pool),
        ("max_pool_backward", fake_pool_backward),
    )
    for name, fake in fakes:
        try:
            torch.library.register_fake(f"{NAMESPACE}::{name}")(fake)
        except RuntimeError:  # already registered in this process
            pass


def _ops_present() -> bool:
    try:
        ops = getattr(torch.ops, NAMESPACE)
        return ops.lrn_forward is not None and ops.max_pool_forward is not None
    except (AttributeError, RuntimeError):
        return False


def disabled() -> bool:
    """Whether ``ALEXNET_NATIVE`` turns the kernels off (0, false, no, off)."""
    return os.environ.get("ALEXNET_NATIVE", "1").strip().lower() in ("0", "false", "no", "off")


def loaded() -> bool:
    """Whether the kernels were loaded in this process (no build, no I/O)."""
    return bool(_state.get("ok"))


def load(warn: bool = True) -> bool:
    """Make the native ops available (building them if needed). True on success; on failure False,
    with one warning per process naming the reason (the LRN and the pooling then run their PyTorch
    paths)."""
    if "ok" in _state:
        return bool(_state["ok"])
    if disabled():
        _state.update(ok=False, reason=f"disabled by ALEXNET_NATIVE={os.environ['ALEXNET_NATIVE']}")
        return False
    try:
        if not _ops_present():
            path = build()
            torch.ops.load_library(str(path))
            _state["path"] = path
        _register_fakes()
        _state.update(ok=True, reason="")
    except (NativeBuildError, OSError, RuntimeError) as exc:
        _state.update(ok=False, reason=str(exc) or type(exc).__name__)
        if warn:
            warnings.warn(
                f"alexnet: the native CPU kernels (LRN, max-pooling) are unavailable ({_first_line()}); "
                "using PyTorch's (same results, slower on the CPU)",
                RuntimeWarning,
                stacklevel=2,
            )
    return bool(_state["ok"])


def status() -> str:
    """One line for logs and benchmarks: which LRN and pooling kernels the CPU uses, and why."""
    if load(warn=False):
        return f"fused native kernels ({_state.get('path', 'loaded')})"
    return f"eager PyTorch ({_first_line()})"


def _first_line() -> str:
    return (str(_state.get("reason", "")).splitlines() or ["unknown reason"])[0]


def main() -> int:
    """``python -m alexnet.models.native``: build (or find) the kernel and report; exit 0 either way
    (the kernel is optional), 1 only with ``--strict`` when it is unavailable."""
    start = time.perf_counter()
    ok = load(warn=False)
    took = time.perf_counter() - start
    print(f"alexnet native LRN and max-pool: {status()} [{took:.1f} s]")
    if not ok and "--verbose" in sys.argv:
        print(_state["reason"], file=sys.stderr)
    return 1 if (not ok and "--strict" in sys.argv) else 0


if __name__ == "__main__":
    raise SystemExit(main())
