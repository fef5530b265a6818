"""Two fake GPUs on a CPU-only machine: the harness of the simulated two-GPU suite (issue 11).

``SimulatedGPUs`` runs the project's real code with tensors on ``cuda:0``/``cuda:1`` that have shapes,
dtypes and devices but no data (PyTorch's ``FakeTensorMode``: an op mixing devices raises), and a
``TorchDispatchMode`` (:class:`DeviceLog`) that sees every aten op with its devices. It provides:

* narrow stubs of the few ``torch.cuda`` calls the project makes, installed in the project's modules
  only (their module-level name ``torch`` is replaced by a view of torch whose ``cuda`` is the stub;
  patching ``torch.cuda.is_available`` itself would make torch initialise CUDA and abort);
* a backward pass driven node by node (autograd's engine refuses fake CUDA tensors): the
  ``grad_fn`` graph is run in topological order and every gradient's device is checked against
  the device autograd expects;
* checkpoints written for real (fake tensors become zeros; a tensor not on the CPU is recorded);
* data loading run outside the fake mode (decoding images needs real arrays);
* the guard on GPU-to-GPU copies (:mod:`twogpu.peer_check`) run outside the fake mode with
  :class:`HostCopies`, real bytes on the host standing in for each copy (a copy that corrupts the
  data between the two fake GPUs can be asked for).

What it proves: placement, devices of every op, where copies happen and how many bytes they move,
which random streams each device draws from. What it does not: numerics (no data), CUDA streams
and their synchronisation, NCCL, compiled GPU kernels, memory or speed.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch

try:  # private PyTorch APIs: skip with a message, not an obscure failure, if an upgrade removes one
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

    FakeTensorMode().fake_tensor_converter.tensor_memo.items  # noqa: B018 - used to let Module.to swap fakes
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    _probe = torch.ones(1, requires_grad=True).sum().grad_fn
    _probe._input_metadata[0].shape, _probe._input_metadata[0].device  # noqa: B018
except (ImportError, AttributeError, IndexError) as e:  # pragma: no cover - depends on the torch version
    pytest.skip(
        f"simulated two-GPU suite needs PyTorch's FakeTensorMode, TorchDispatchMode and autograd "
        f"node metadata, which torch {torch.__version__} does not provide as expected ({e})",
        allow_module_level=True,
    )

aten = torch.ops.aten
COPY_OPS = {aten._to_copy.default, aten.copy_.default}
RANDOM_OPS = {
    aten.bernoulli_.float,
    aten.bernoulli.default,
    aten.bernoulli_.Tensor,
    aten.normal_.default,
    aten.uniform_.default,
    aten.randn.default,
    aten.randn.generator,
    aten.rand.default,
    aten.native_dropout.default,
}


@dataclass
class Copy:
    """One copy between two devices."""

    source: torch.device
    target: torch.device
    nbytes: int
    phase: str  # "forward" or "backward"
    site: str  # crossing site ("conv3", ...), "feed", or "" (elsewhere)
    direction: str  # "a->b" / "b->a" for crossings, "" otherwise

    @property
    def device_to_device(self) -> bool:
        return self.source.type == self.target.type == "cuda" and self.source != self.target


@dataclass
class RandomDraw:
    op: str
    device: torch.device
    stream: Any  # the seed installed in that device's generator (CUDA) or the generator's seed


def _frames() -> Iterator[types.FrameType]:
    f = sys._getframe(2)
    while f is not None:
        yield f
        f = f.f_back


def _where() -> tuple[str, str]:
    """(site, direction) of the crossing or feed on the Python stack, or ("", "")."""
    exchange, placement = sys.modules["twogpu.exchange"], sys.modules["twogpu.placement"]
    for f in _frames():
        code = f.f_code
        if code is exchange.cross.__code__:
            loc = f.f_locals
            return loc["site"], f"{loc['source']}->{loc['target']}"
        if code is exchange.Cross.backward.__code__:
            r = f.f_locals["ctx"].record
            return (r.site, f"{r.target}->{r.source}") if r is not None else ("?", "?")
        if code is placement.feed.__code__:
            return "feed", ""
    return "", ""


class DeviceLog(TorchDispatchMode):
    """Sees every aten op: records copies between devices, ops mixing devices and random draws."""

    def __init__(self, cuda: FakeCuda) -> None:
        super().__init__()
        self.cuda = cuda
        self.phase = "forward"
        self.copies: list[Copy] = []
        self.mixed: list[str] = []
        self.draws: list[RandomDraw] = []
        self.ops = 0
        self.calls: Counter = Counter()  # (aten op, device of its first tensor output) → calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        if func is aten._local_scalar_dense.default and isinstance(args[0], FakeTensor):
            return False if args[0].dtype == torch.bool else 0  # .item() of a tensor without data
        out = func(*args, **kwargs)
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.calls[(func.overloadpacket.__name__, str(outs[0].device) if outs else "")] += 1
        tensors = [t for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        # a 0-dim CPU tensor is a scalar argument, which CUDA kernels accept (PyTorch's own rule); a
        # meta tensor holds nothing (to_empty allocates its like on a device)
        devices = {
            t.device
            for t in tensors
            if not (t.device.type == "cpu" and t.dim() == 0) and t.device.type != "meta"
        }
        if len(devices) > 1:
            if func in COPY_OPS:
                src = args[1] if func is aten.copy_.default else args[0]
                dst = args[0] if func is aten.copy_.default else out
                site, direction = _where()
                self.copies.append(
                    Copy(
                        src.device, dst.device, dst.numel() * dst.element_size(), self.phase, site, direction
                    )
                )
            else:
                self.mixed.append(f"{func}: {sorted(map(str, devices))}")
        if func in RANDOM_OPS:
            dev = out.device if isinstance(out, torch.Tensor) else args[0].device
            gen = kwargs.get("generator")
            stream = (
                gen.initial_seed()
                if isinstance(gen, torch.Generator)
                else self.cuda.seed_of(dev)
                if dev.type == "cuda"
                else "cpu-global"
            )
            self.draws.append(RandomDraw(str(func), dev, stream))
        return out


class _Stream:
    def __init__(self, device: Any = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cuda:0")

    def wait_stream(self, other: Any) -> None: ...
    def synchronize(self) -> None: ...


class _Event:
    """``torch.cuda.Event``: the trainer times each tower's step with a pair of them (no real time)."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.recorded = False

    def record(self, stream: Any = None) -> None:
        self.recorded = True

    def synchronize(self) -> None: ...

    def elapsed_time(self, end: _Event) -> float:
        return 0.0


class FakeCuda:
    """The ``torch.cuda`` the project's modules see: two devices, per-device generator states."""

    Stream = _Stream
    Event = _Event

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.states: dict[int, torch.Tensor] = {}
        self.seeded: list[tuple[int, int]] = []  # (device index, seed) for every seeding
        self.calls: list[str] = []

    # --- devices
    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return self.count

    def is_initialized(self) -> bool:
        return True

    def synchronize(self, device: Any = None) -> None:
        self.calls.append("synchronize")

    def max_memory_allocated(self, device: Any = None) -> int:
        return 0

    peer = False
    """What :meth:`can_device_access_peer` answers (tests set it)."""

    def can_device_access_peer(self, device: int, peer_device: int) -> bool:
        self.calls.append(f"can_device_access_peer({device}, {peer_device})")
        return self.peer

    def set_device(self, device: Any) -> None:
        self.calls.append(f"set_device({device})")

    def current_stream(self, device: Any = None) -> _Stream:
        return _Stream(device)

    @contextlib.contextmanager
    def stream(self, s: Any) -> Iterator[None]:
        yield

    # --- random generators: a state is a real int64 tensor holding the seed it was made from
    @staticmethod
    def state_for(seed: int) -> torch.Tensor:
        with unset_fake_temporarily():
            return torch.tensor([seed], dtype=torch.int64)

    def seed_of(self, device: torch.device) -> int | None:
        s = self.states.get(device.index or 0)
        if s is None or isinstance(s, FakeTensor) or s.dtype != torch.int64:
            return None
        with unset_fake_temporarily():
            return int(s[0])

    def get_rng_state(self, device: int | str | torch.device = 0) -> torch.Tensor:
        i = torch.device("cuda", device).index if isinstance(device, int) else torch.device(device).index or 0
        return self.states.setdefault(i, self.state_for(-1 - i))

    def set_rng_state(self, state: torch.Tensor, device: int | str | torch.device = 0) -> None:
        i = device if isinstance(device, int) else torch.device(device).index or 0
        self.states[i] = state

    def get_rng_state_all(self) -> list[torch.Tensor]:
        return [self.get_rng_state(i) for i in range(self.count)]

    def manual_seed(self, seed: int) -> None:  # torch.cuda.manual_seed: the current device (0)
        self.seeded.append((0, seed))
        self.states[0] = self.state_for(seed)

    def manual_seed_all(self, seed: int) -> None:
        for i in range(self.count):
            self.seeded.append((i, seed))
            self.states[i] = self.state_for(seed)


class _CudaGenerator:
    """``torch.Generator(device="cuda:i")``: records its seed; its state is :meth:`FakeCuda.state_for`."""

    def __init__(self, cuda: FakeCuda, device: torch.device) -> None:
        self.cuda, self.device, self.seed = cuda, device, None

    def manual_seed(self, seed: int) -> _CudaGenerator:
        self.seed = int(seed)
        self.cuda.seeded.append((self.device.index or 0, self.seed))
        return self

    def get_state(self) -> torch.Tensor:
        return FakeCuda.state_for(self.seed if self.seed is not None else 0)

    def set_state(self, state: torch.Tensor) -> _CudaGenerator:
        self.seed = (
            int(state[0]) if state.dtype == torch.int64 and not isinstance(state, FakeTensor) else None
        )
        return self

    def initial_seed(self) -> int:
        return self.seed or 0


class TorchView(types.ModuleType):
    """``torch`` as one project module sees it in the simulation: everything real except ``cuda``,
    CUDA generators, autocast (torch's own turns itself off without a driver) and checkpoint I/O."""

    def __init__(self, sim: SimulatedGPUs) -> None:
        super().__init__("torch")
        self._sim = sim
        self.cuda = sim.cuda

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def Generator(self, device: Any = "cpu") -> Any:  # noqa: N802 - torch's name
        dev = torch.device(device)
        if dev.type == "cuda":
            # the lighting generator draws (fake) numbers; a host generator stands in, its seed recorded
            g = _CudaGenerator(self._sim.cuda, dev)
            self._sim.cuda_generators.append(g)
            return _HostStandIn(g)
        return torch.Generator(device)

    @contextlib.contextmanager
    def autocast(
        self,
        device_type: str,
        dtype: torch.dtype | None = None,
        enabled: bool = True,
        cache_enabled: bool | None = None,
    ) -> Iterator[None]:
        if device_type != "cuda":
            with torch.autocast(device_type, dtype=dtype, enabled=enabled):
                yield
            return
        prev = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
        torch.set_autocast_enabled("cuda", enabled)
        if dtype is not None:
            torch.set_autocast_dtype("cuda", dtype)
        torch.autocast_increment_nesting()
        try:
            yield
        finally:
            if torch.autocast_decrement_nesting() == 0:
                torch.clear_autocast_cache()
            torch.set_autocast_enabled("cuda", prev[0])
            torch.set_autocast_dtype("cuda", prev[1])

    def save(self, obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        real = self._sim.materialise(obj)
        with unset_fake_temporarily():
            torch.save(real, f, *args, **kwargs)

    def load(self, *args: Any, **kwargs: Any) -> Any:
        with unset_fake_temporarily():
            return torch.load(*args, **kwargs)


class _HostStandIn(torch.Generator):
    """A host generator passed where a CUDA generator is (fake tensors do not check it)."""

    def __new__(cls, g: _CudaGenerator) -> _HostStandIn:
        self = super().__new__(cls)
        self._cuda_gen = g
        return self

    def __init__(self, g: _CudaGenerator) -> None:
        super().__init__()

    def manual_seed(self, seed: int) -> _HostStandIn:
        self._cuda_gen.manual_seed(seed)
        super().manual_seed(seed)
        return self

    def get_state(self) -> torch.Tensor:
        return self._cuda_gen.get_state()

    def set_state(self, state: torch.Tensor) -> _HostStandIn:
        with unset_fake_temporarily():
            self._cuda_gen.set_state(state)
        return self


PROJECT_MODULES = (
    "twogpu.peer_check",
    "twogpu.placement",
    "twogpu.rng",
    "twogpu.trainer",
    "twogpu.checkpoint",
    "twogpu.timing",
    "twogpu.precision",
    "alexnet.training.train",
    "alexnet.models.model",
    "alexnet.models.speed",
    "alexnet.commands.evaluate",
    "alexnet.commands.predict",
)
"""Modules whose ``torch`` is replaced by :class:`TorchView` (not the data pipeline: it would pin
memory for a GPU that does not exist)."""


def drive_backward(
    root: torch.Tensor, gradient: torch.Tensor | None, log: DeviceLog, wrong_device: list[str]
) -> None:
    """``root.backward(gradient)`` without autograd's engine: call each ``grad_fn`` node once all its
    consumers have sent their gradients (topological order), check each gradient's device against
    the device autograd expects (the engine raises there), and accumulate leaf gradients."""
    if root.grad_fn is None:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    deps: dict[Any, int] = defaultdict(int)
    seen, stack = {root.grad_fn}, [root.grad_fn]
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is not None:
                deps[nxt] += 1
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
    if gradient is None:
        gradient = torch.ones_like(root)
    inbox: dict[Any, dict[int, torch.Tensor]] = defaultdict(dict)
    inbox[root.grad_fn][0] = gradient
    ready = [root.grad_fn]
    log.phase = "backward"
    no_grad = torch.no_grad()  # the engine runs backward with grad mode off
    no_grad.__enter__()
    try:
        while ready:
            node = ready.pop()
            got = inbox.pop(node, {})
            meta = node._input_metadata
            grads = [
                got.get(i) if got.get(i) is not None else torch.zeros(m.shape, dtype=m.dtype, device=m.device)
                for i, m in enumerate(meta)
            ]
            # C++ nodes are callable; a custom autograd.Function's node runs through .apply
            outs = (
                node.apply(*grads)
                if isinstance(node, torch.autograd.function.BackwardCFunction)
                else node(*grads)
            )
            if not isinstance(outs, tuple):
                outs = (outs,)
            for (nxt, slot), g in zip(node.next_functions, outs):
                if nxt is None:
                    continue
                if g is not None:
                    want = nxt._input_metadata[slot] if nxt._input_metadata else None
                    if want is not None:
                        if g.device != want.device:
                            wrong_device.append(
                                f"{node.name()} -> {nxt.name()}: gradient on {g.device}, "
                                f"expected {want.device}"
                            )
                        if tuple(g.shape) != tuple(want.shape):
                            g = g.sum_to_size(want.shape)
                        if g.dtype != want.dtype:
                            g = g.to(want.dtype)
                    box = inbox[nxt]
                    box[slot] = g if box.get(slot) is None else box[slot] + g
                deps[nxt] -= 1
                if deps[nxt] == 0:
                    ready.append(nxt)
    finally:
        no_grad.__exit__(None, None, None)
        log.phase = "forward"


class HostCopies:
    """The copies of :mod:`twogpu.peer_check` (``hop(tensor, source, target)``) with real bytes: each
    a copy on the host, recorded; with ``corrupt``, a copy between two different GPUs comes back
    with one byte changed (what the machines of PyTorch issue 84803 and its kin do)."""

    def __init__(self, corrupt: bool = False) -> None:
        self.corrupt = corrupt
        self.hops: list[tuple[str, str]] = []

    def __call__(self, t: torch.Tensor, source: torch.device, target: torch.device) -> torch.Tensor:
        self.hops.append((str(source), str(target)))
        out = t.clone()
        if self.corrupt and source.type == target.type == "cuda" and source != target:
            out[len(out) // 2] += 1
        return out


class SimulatedGPUs:
    """``with SimulatedGPUs() as sim:`` run project code with towers on fake ``cuda:0``/``cuda:1``;
    ``peer_copies`` stands in for the copies of the guard on GPU-to-GPU copies (default: intact)."""

    def __init__(self, peer_copies: HostCopies | None = None) -> None:
        self.peer_copies = peer_copies or HostCopies()
        self.cuda = FakeCuda()
        self.log = DeviceLog(self.cuda)
        self.cuda_generators: list[_CudaGenerator] = []
        self.wrong_gradient_device: list[str] = []
        self.checkpoint_not_on_cpu: list[str] = []
        self._stack = contextlib.ExitStack()

    # --- checkpoint I/O
    def materialise(self, obj: Any, where: str = "") -> Any:
        """Fake tensors → real CPU zeros of the same shape and dtype (recording any tensor not on the
        CPU: a checkpoint must load without GPUs)."""
        if isinstance(obj, FakeTensor):
            if obj.device.type != "cpu":
                self.checkpoint_not_on_cpu.append(f"{where}: {obj.device}")
            with unset_fake_temporarily():  # one zero, broadcast: the file stays small
                return torch.zeros((), dtype=obj.dtype).expand(obj.shape)
        if isinstance(obj, torch.Tensor) and obj.device.type != "cpu":
            self.checkpoint_not_on_cpu.append(f"{where}: {obj.device}")
        if isinstance(obj, dict):
            return {k: self.materialise(v, f"{where}.{k}") for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.materialise(v, f"{where}[{i}]") for i, v in enumerate(obj))
        return obj

    # --- context
    def __enter__(self) -> SimulatedGPUs:
        import importlib

        mp = pytest.MonkeyPatch()
        self._stack.callback(mp.undo)
        view = TorchView(self)
        for name in PROJECT_MODULES:
            mp.setattr(importlib.import_module(name), "torch", view)
        sim = self

        def backward(tensor, gradient=None, retain_graph=None, create_graph=False, inputs=None):
            drive_backward(tensor, gradient, sim.log, sim.wrong_gradient_device)

        mp.setattr(torch.Tensor, "backward", backward)
        fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        swap = torch.utils.swap_tensors

        def swap_fake(t1, t2):
            """Module.to / to_empty swap a fake parameter for a new one; the fake mode's memo holds weak
            references to both, which swap_tensors refuses: drop them from the memo (it only maps
            real tensors already converted to their fakes) and swap."""
            if isinstance(t1, FakeTensor) or isinstance(t2, FakeTensor):
                memo = fake_mode.fake_tensor_converter.tensor_memo
                for key, value in list(memo.items()):
                    if value is t1 or value is t2:
                        del memo[key]
            return swap(t1, t2)

        mp.setattr(torch.utils, "swap_tensors", swap_fake)
        from alexnet.data.pipeline import ImagePipeline

        for method in ("train_batches", "val_batches"):
            mp.setattr(ImagePipeline, method, _outside_fake_mode(getattr(ImagePipeline, method)))
        from twogpu import peer_check, record_crossings

        check_peer_copies = peer_check.check_peer_copies

        def check_with_host_copies(a, b):
            """The real guard, its copies carried by :class:`HostCopies` (fake tensors hold no bytes)."""
            with unset_fake_temporarily():
                return check_peer_copies(a, b, hop=sim.peer_copies)

        mp.setattr(peer_check, "check_peer_copies", check_with_host_copies)

        # every crossing carries its record, so a gradient copy can be traced to its site
        self.crossings = self._stack.enter_context(record_crossings())
        self._stack.enter_context(fake_mode)
        self._stack.enter_context(self.log)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    # --- what happened
    def device_to_device(self) -> list[Copy]:
        return [c for c in self.log.copies if c.device_to_device]


def _outside_fake_mode(method):
    """Run a batch generator with the fake mode off: image decoding needs real arrays."""

    def wrapper(*args, **kwargs):
        with unset_fake_temporarily():
            it = iter(method(*args, **kwargs))
        while True:
            with unset_fake_temporarily():
                try:
                    batch = next(it)
                except StopIteration:
                    return
            yield batch

    return wrapper
