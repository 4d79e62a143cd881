"""The GPU-relevant size of a model: parameters per part and multiply-accumulates per frame.

MACs come from torch's FLOP counter (``torch.utils.flop_counter``: convolutions, linear layers,
matrix products, attention; one MAC is two FLOPs). Element-wise work (norms, activations,
interpolation) is not counted, as in the usual papers' tables. The count runs on the ``meta``
device: shapes only, no memory and no arithmetic, so it costs milliseconds at any frame size
and leaves a process's memory figures alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .sgdfuse import SGDFuse, pad_to_multiple

META = torch.device("meta")


def count_macs(fn: Callable[[], Any]) -> int:
    """Multiply-accumulates that ``fn()`` performs in the layers torch's FLOP counter knows."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return counter.get_total_flops() // 2


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_size(
    model: SGDFuse, height: int, width: int, steps: Sequence[int] | None = None
) -> dict[str, Any]:
    """Parameters of Stage I, the U-Net and each K's head, and MACs per part and per frame for
    each K at ``height``×``width`` (padded as the runners pad)."""
    steps = tuple(steps or model.supported_steps)
    with META:  # the same architecture without weights: MACs depend on shapes only
        ghost = SGDFuse(model.config).eval()
    multiple = model.config.unet.size_multiple
    ir, vis, m_ir, m_vis = (
        pad_to_multiple(torch.zeros(1, c, height, width, device=META), multiple)
        for c in (1, 3, 1, 1)
    )
    stage1 = count_macs(lambda: ghost.stage1(ir, vis))
    f1 = torch.zeros_like(vis)
    i0 = ghost.make_i0(f1, m_ir, m_vis)
    per_k = {}
    for k in steps:
        unet = count_macs(lambda k=k: ghost.diffusion_features(i0, k))
        features = ghost.diffusion_features(i0, k)
        head = count_macs(
            lambda k=k, features=features: ghost.head_luminance(k, features, f1, ir, vis)
        )
        per_k[k] = {"unet_macs": unet, "head_macs": head, "frame_macs": stage1 + unet + head}
    heads = {k: parameter_count(model.heads[str(k)]) for k in model.supported_steps}
    return {
        "height": height,
        "width": width,
        "params": {
            "stage1": parameter_count(model.stage1),
            "unet": parameter_count(model.unet),
            "heads": heads,
            "total": parameter_count(model),
        },
        "stage1_macs": stage1,
        "steps": per_k,
    }
