"""Arithmetic precision of a run: one explicit setting, applied to PyTorch's backends and to autocast.

* ``"fp32"``: IEEE float32 everywhere — the paper's arithmetic (Krizhevsky et al. 2012 trained in
  single precision). PyTorch by default runs cuDNN convolutions in TF32 on Ampere and newer GPUs
  (10-bit mantissa inputs), so "fp32" switches TF32 off for cuDNN convolutions and for matmuls.
  Use it for every equality check against the CPU.
* ``"tf32"``: float32 tensors, but cuDNN convolutions and matmuls may use TF32 tensor cores
  (Ampere+). Faster; results differ from fp32 by about 1e-3 relative.
* ``"bf16"``: ``torch.autocast`` to bfloat16 on CUDA devices (convolutions and matmuls in bf16; the
  layers that protect themselves — the LRN and spatial normalisation — and the loss in float32);
  TF32 stays off for what autocast leaves in float32. On the CPU a bf16 run computes in fp32.

The backend flags are process-wide: :func:`configure` sets them once at the start of a run (or a
benchmark) and returns a sentence to log.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager as ContextManager
from typing import Literal

import torch

Precision = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")

_DESCRIPTION = {
    "fp32": "fp32 (IEEE float32; TF32 off for cuDNN convolutions and matmuls: the paper's arithmetic)",
    "tf32": "tf32 (float32 tensors; cuDNN convolutions and matmuls may use TF32 tensor cores)",
    "bf16": "bf16 (autocast to bfloat16 on CUDA for convolutions and matmuls; normalisations and the "
    "loss in float32, TF32 off; the CPU computes in fp32)",
}


def check(precision: str, key: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ``ValueError`` naming ``key``."""
    if precision not in PRECISIONS:
        raise ValueError(f"{key} must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


def configure(precision: str) -> str:
    """Set the TF32 flags of cuDNN convolutions and CUDA matmuls for ``precision`` (process-wide)
    and return a sentence describing the setting, to log at the start of a run."""
    mode = "tf32" if check(precision) == "tf32" else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9: the new flags only
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
        torch.backends.cudnn.rnn.fp32_precision = mode
    else:  # older torch: the legacy flags
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        torch.backends.cudnn.allow_tf32 = mode == "tf32"
    return _DESCRIPTION[precision]


def tf32_enabled() -> dict[str, bool]:
    """Whether cuDNN convolutions and CUDA matmuls may use TF32 now (for logs and tests)."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return {
            "cudnn_conv": torch.backends.cudnn.conv.fp32_precision == "tf32",
            "cuda_matmul": torch.backends.cuda.matmul.fp32_precision == "tf32",
        }
    return {
        "cudnn_conv": bool(torch.backends.cudnn.allow_tf32),
        "cuda_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
    }


def autocast(device: torch.device | str, precision: str, *, on_cpu: bool = False) -> ContextManager:
    """The autocast context of ``precision`` on ``device``: bf16 autocast on a CUDA device for
    ``"bf16"``, nothing otherwise (fp32 and tf32 differ only in the backend flags; a CPU tower
    computes in fp32 unless ``on_cpu``, which benchmarks use to time bf16 on the CPU)."""
    kind = torch.device(device).type
    if check(precision) == "bf16" and (kind == "cuda" or (on_cpu and kind == "cpu")):
        return torch.autocast(kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()
