"""Section 6's error counts, one helper for training, evaluation and the dashboards: an error
count means the same thing everywhere."""

from __future__ import annotations

import torch


def topk_mistakes(
    scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)
) -> dict[str, torch.Tensor]:
    """Section 6's top-1 and top-5 error counts: ``{"top1": n1, "top5": n5}``, how many images have
    their label outside the k highest of ``scores`` (N, classes) — logits or probabilities, the
    order is the same. k is clipped to the number of classes. Counts are 0-d int64 tensors on the
    scores' device; ``top<k>_err`` is a count divided by the images (metrics, logs, dashboards)."""
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # (N, kmax)
    hit = top == labels[:, None]  # (N, kmax)
    return {f"top{k}": (~hit[:, : min(k, kmax)].any(1)).sum() for k in ks}
