"""The paper's pictures as arrays (Krizhevsky et al. 2012, section 6.1): Figure 3's kernel grid, Figure 4's
top-5 panels and fc7 nearest-neighbour rows. They take plain tensors and return uint8 ``(H, W, 3)``
arrays, so the ``figures`` command and the training dashboards draw the same pictures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
BAR = (90, 120, 200)
BAR_CORRECT = (220, 30, 30)  # the paper's red bar for the correct label
BAR_TRACK = (225, 225, 225)


def _font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # FreeType font bundled with Pillow >= 10.1
    except (TypeError, OSError):
        return ImageFont.load_default()


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8 tensor → (H, W, 3) uint8 array."""
    if image.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    return image.detach().cpu().permute(1, 2, 0).numpy()


def resize_images(images: torch.Tensor, side: int) -> torch.Tensor:
    """(N, 3, H, W) uint8 → (N, 3, side, side) uint8, antialiased bilinear."""
    x = F.interpolate(images.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------------------- figure 3
def kernel_grid(
    towers: Sequence[torch.Tensor], columns: int = 16, scale: int = 4, pad: int = 2, tower_gap: int = 8
) -> np.ndarray:
    """Figure 3: each tower's conv1 kernels ``(K, 3, h, w)`` as a block of ``columns`` per row, tower a's
    block above tower b's, separated by ``tower_gap`` pixels. Every kernel is min-max normalised on its
    own (over its three colour planes together) and upscaled ``scale`` times (nearest neighbour).

    Size: width = columns·(w·scale + pad) + pad; each block is rows·(h·scale + pad) + pad high with
    rows = ceil(K / columns). Returns (H, W, 3) uint8."""
    if not towers:
        raise ValueError("kernel_grid needs the conv1 weights of at least one tower")
    _, _, kh, kw = towers[0].shape
    ch, cw = kh * scale, kw * scale
    width = columns * (cw + pad) + pad
    blocks = []
    for weights in towers:
        if weights.dim() != 4 or weights.shape[1] != 3:
            raise ValueError(f"expected conv1 weights (K, 3, h, w), got {tuple(weights.shape)}")
        w = weights.detach().float().cpu()
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
        w = (w - lo) / (hi - lo).clamp_min(1e-12)  # each kernel in [0, 1]
        w = w.repeat_interleave(scale, 2).repeat_interleave(scale, 3)  # (K, 3, ch, cw)
        tiles = (w * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (K, ch, cw, 3)
        rows = math.ceil(len(tiles) / columns)
        block = np.full((rows * (ch + pad) + pad, width, 3), BACKGROUND, dtype=np.uint8)
        for i, tile in enumerate(tiles):
            r, c = divmod(i, columns)
            y, x = pad + r * (ch + pad), pad + c * (cw + pad)
            block[y : y + ch, x : x + cw] = tile
        blocks.append(block)
    gap = np.full((tower_gap, width, 3), BACKGROUND, dtype=np.uint8)
    out = [blocks[0]]
    for block in blocks[1:]:
        out += [gap, block]
    return np.concatenate(out, axis=0)


def conv1_weights(model: nn.Module) -> list[torch.Tensor]:
    """conv1 weights of each tower, a first (one entry for the one-tower ablation)."""
    return [tower.conv1.weight for tower in model.towers()]


# ---------------------------------------------------------------------------------- figure 4 left
def _fit(text: str, font, width: float) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def top5_panel(
    images: torch.Tensor,
    probs: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    k: int = 5,
    columns: int = 4,
    margin: int = 6,
    font_size: int = 12,
) -> np.ndarray:
    """Figure 4 (left): each image with its correct label under it and the ``k`` most probable labels
    as bars whose length is the probability; the correct label's bar is red.

    ``images`` (N, 3, S, S) uint8, ``probs`` (N, classes) softmax outputs, ``labels`` (N,). Each tile is
    S + 2·margin wide and margin + S + (k + 1)·line + margin high (``line`` = the font's line height);
    tiles are laid out ``columns`` per row. Returns (H, W, 3) uint8."""
    n, _, side, _ = images.shape
    if probs.shape[0] != n or labels.shape[0] != n:
        raise ValueError(f"{n} images but {probs.shape[0]} probability rows and {labels.shape[0]} labels")
    k = min(k, probs.shape[1])
    font = _font(font_size)
    line = line_height(font_size)
    tile_w, tile_h = side + 2 * margin, margin + side + (k + 1) * line + margin
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    canvas = Image.new("RGB", (cols * tile_w, rows * tile_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    top_p, top_i = probs.detach().float().cpu().topk(k, dim=1)
    for j in range(n):
        r, c = divmod(j, cols)
        x0, y0 = c * tile_w + margin, r * tile_h + margin
        canvas.paste(Image.fromarray(_to_hwc(images[j])), (x0, y0))
        y = y0 + side
        truth = int(labels[j])
        draw.text((x0, y), _fit(class_names[truth], font, side), fill=TEXT, font=font)
        for p, i in zip(top_p[j].tolist(), top_i[j].tolist()):
            y += line
            colour = BAR_CORRECT if i == truth else BAR
            draw.rectangle([x0, y + 1, x0 + side - 1, y + line - 2], fill=BAR_TRACK)
            if p > 0:
                draw.rectangle([x0, y + 1, x0 + max(1, round(p * side)) - 1, y + line - 2], fill=colour)
            draw.text((x0 + 2, y), _fit(class_names[i], font, side - 4), fill=TEXT, font=font)
    return np.asarray(canvas)


def across_classes(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` images spread over the classes, as the paper's Figure 4 shows them: one
    (seeded) random image of each of ``n`` different classes; when there are fewer classes than
    ``n``, then a second image of each, and so on."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    seen: dict[int, int] = {}
    rank = []  # how many of its class came before, in `order`
    for i in order.tolist():
        c = int(labels[i])
        rank.append(seen.get(c, 0))
        seen[c] = rank[-1] + 1
    by_rank = sorted(range(len(order)), key=lambda j: rank[j])  # stable: random class order per round
    return order[by_rank[:n]]


def line_height(font_size: int = 12) -> int:
    """Pixel height of one text line in :func:`top5_panel`."""
    font = _font(font_size)
    return font.getbbox("Hg")[3] + 4


# --------------------------------------------------------------------------------- figure 4 right
def nearest_neighbours(queries: torch.Tensor, pool: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (Q, k) of the ``k`` rows of ``pool`` (M, D) nearest to each row of ``queries`` (Q, D) in
    Euclidean distance, nearest first."""
    if pool.shape[0] == 0:
        raise ValueError("no training features to search")
    d = torch.cdist(queries.double(), pool.double())  # (Q, M)
    return d.topk(min(k, pool.shape[0]), dim=1, largest=False).indices


def neighbour_grid(
    queries: torch.Tensor, pool: torch.Tensor, indices: torch.Tensor, pad: int = 4, gap: int = 12
) -> np.ndarray:
    """Figure 4 (right): one row per query, the query image first, then after a ``gap`` its nearest
    training images ``pool[indices[q]]``. ``queries`` (Q, 3, S, S) and ``pool`` (M, 3, S, S) uint8.
    Size: width = (k + 1)·(S + pad) + pad + gap, height = Q·(S + pad) + pad."""
    q, _, side, _ = queries.shape
    if pool.shape[2:] != queries.shape[2:]:
        raise ValueError(
            f"queries {tuple(queries.shape[2:])} and pool images {tuple(pool.shape[2:])} differ in size"
        )
    k = indices.shape[1]
    width = (k + 1) * (side + pad) + pad + gap
    out = np.full((q * (side + pad) + pad, width, 3), BACKGROUND, dtype=np.uint8)
    for r in range(q):
        y = pad + r * (side + pad)
        out[y : y + side, pad : pad + side] = _to_hwc(queries[r])
        for c, i in enumerate(indices[r].tolist()):
            x = pad + gap + (c + 1) * (side + pad)
            out[y : y + side, x : x + side] = _to_hwc(pool[i])
    return out


# ------------------------------------------------------------------------------------------ files
def write_png(array: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
    return path
