"""Parameters and GMAC of each shipped SGDFuse config at 640×480 (prints a Markdown table).

GMAC come from torch's FLOP counter (convolutions, matmuls, attention) divided by two;
element-wise work is not counted, as in the usual papers' tables.

    python benchmarks/model_size.py [--height 480 --width 640]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from sgdfuse_ros.models.sgdfuse import PRESETS, SGDFuse, pad_to_multiple


def gmac(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        fn()
    return counter.get_total_flops() / 2e9


def parameters(module: torch.nn.Module) -> float:
    """Parameter count in millions."""
    return sum(p.numel() for p in module.parameters()) / 1e6


def table_row(name: str, model: SGDFuse, h: int, w: int) -> str:
    m = model.config.unet.size_multiple
    ir, vis, mask = (pad_to_multiple(torch.rand(1, c, h, w), m) for c in (1, 3, 1))
    f1 = torch.rand_like(vis)
    s1 = gmac(lambda: model.stage1(ir, vis))
    s2 = {k: gmac(lambda k=k: model.stage2(f1, mask, mask, ir, vis, k)) for k in (1, 3)}
    return (
        f"| {name} | {parameters(model.stage1):.3f} M | {parameters(model.unet):.3f} M | "
        f"{parameters(model.heads):.3f} M | {parameters(model):.3f} M | {s1:.1f} | {s2[1]:.1f} | {s2[3]:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    args = parser.parse_args()
    print(
        "| config | Stage I params | U-Net params | heads params (K=1,2,3) | total params "
        "| Stage I GMAC | Stage II GMAC K=1 | Stage II GMAC K=3 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, make in PRESETS.items():
        print(table_row(name, SGDFuse(make()).eval(), args.height, args.width))


if __name__ == "__main__":
    main()
