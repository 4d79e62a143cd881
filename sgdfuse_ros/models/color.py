"""YCbCr conversion in torch: the networks fuse luminance and keep the visible image's chroma."""

from __future__ import annotations

import torch


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """B×3×H×W RGB in [0, 1] → B×3×H×W YCbCr in [0, 1] (BT.601 full range, chroma centred at 0.5)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    return torch.cat([y, cb, cr], dim=1)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`, clamped to [0, 1]."""
    y, cb, cr = ycbcr[:, 0:1], ycbcr[:, 1:2] - 0.5, ycbcr[:, 2:3] - 0.5
    r = y + 1.403 * cr
    g = y - 0.714 * cr - 0.344 * cb
    b = y + 1.773 * cb
    return torch.cat([r, g, b], dim=1).clamp(0.0, 1.0)


def with_luminance(y: torch.Tensor, vis_rgb: torch.Tensor) -> torch.Tensor:
    """RGB image whose luminance is ``y`` (B×1×H×W) and whose chroma is the visible image's."""
    ycbcr = rgb_to_ycbcr(vis_rgb)
    return ycbcr_to_rgb(torch.cat([y, ycbcr[:, 1:]], dim=1))
