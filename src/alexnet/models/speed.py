"""Model-side speed options: memory format, compilation, concurrent towers (precision:
:mod:`twogpu.precision`).

None of these changes the network of Krizhevsky et al. (2012, section 3); they change how it runs.
Parameter names (and so checkpoints) stay the same. The trainer calls, once, after building the
model and before building the optimizer::

    model = prepare_for_speed(model, channels_last=cfg.train.channels_last, compile=cfg.train.compile)

and, in each step (its input comes from ``ImagePipeline.to_model_input``, made channels_last
there; :func:`to_input` does the same for a plain tensor, as the benchmarks use it)::

    with twogpu.precision.autocast(device, cfg.train.precision):
        logits = model(x)

Every function here is also correct on the CPU (the tests run them there).
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet.models.model import AlexNet


def prepare_for_speed(
    model: nn.Module,
    *,
    channels_last: bool = False,
    compile: bool = False,
    tower_streams: bool = True,
    compile_mode: str | None = None,
) -> nn.Module:
    """Apply the speed options in place and return ``model`` (same object, same state-dict keys).

    * ``channels_last``: 4-D weights in NHWC order (faster convolutions on GPUs and, for the LRN's
      1×1 window convolution, on the CPU). Feed inputs with :func:`to_input` to match.
    * ``compile``: ``torch.compile`` each tower's segments between crossings (two-tower model), or
      the whole forward (grouped twin, one tower), in place, so ``state_dict`` keys do not change.
    * ``tower_streams``: when both towers of a two-tower model share one CUDA device, tower b's
      segments run on a second CUDA stream, concurrently with tower a's between crossings. (On two
      devices the towers already run concurrently: each device has its own stream and the step
      never waits on the host.)
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile and any(p.device.type == "cpu" for p in model.parameters()):
        from alexnet.models import native

        native.load()  # compiled code uses the fused LRN only if loaded first
    if isinstance(model, AlexNet):
        model.use_side_stream(tower_streams)
        if compile:
            model.compile_segments(compile_mode)
    elif compile:
        model.compile(mode=compile_mode)  # in place: keys keep their names
    return model


def to_input(x: torch.Tensor, device: torch.device | str, *, channels_last: bool = False) -> torch.Tensor:
    """Host-to-device copy of a batch that overlaps with compute: non-blocking (the loader should
    pin memory: ``pin_memory=True``), in channels_last order when asked. No host synchronisation."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.to(device, non_blocking=True, memory_format=fmt)


def tune_cpu_allocator(enable: bool = True) -> bool:
    """Keep freed host memory in the process heap instead of returning it to the kernel (glibc).

    glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``,
    so each such tensor costs a page fault per 4 KiB page when first written. At batch 32 the
    grouped twin's conv1/LRN1 maps are 37 MiB (torchvision's largest are 25 MiB, under the
    threshold), so a CPU step spends a large share of its time zeroing fresh pages. This sets
    ``M_MMAP_MAX = 0`` (large blocks come from the heap) and a 1 GiB ``M_TRIM_THRESHOLD`` (freed
    blocks are reused). Process-wide and irreversible for the process; returns False where glibc's
    ``mallopt`` is unavailable (not Linux/glibc). Opt-in: it raises the resident memory kept.
    """
    if not enable:
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))
