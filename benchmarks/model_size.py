"""Parameters and GMAC of each shipped SGDFuse config at 640×480 (prints a Markdown table).

The counts are ``sgdfuse_ros.models.size.model_size`` (torch's FLOP counter: convolutions,
matmuls, attention, divided by two; element-wise work is not counted, as in the usual papers'
tables), the same figures ``sgdfuse bench`` reports for the weights it runs.

    python benchmarks/model_size.py [--height 480 --width 640]
"""

from __future__ import annotations

import argparse

import torch

from sgdfuse_ros.models.sgdfuse import PRESETS, SGDFuse
from sgdfuse_ros.models.size import model_size


def table_row(name: str, model: SGDFuse, h: int, w: int) -> str:
    size = model_size(model, h, w, steps=(1, 3))
    params = {part: count / 1e6 for part, count in size["params"].items() if part != "heads"}
    heads = sum(size["params"]["heads"].values()) / 1e6
    stage2 = {k: (s["unet_macs"] + s["head_macs"]) / 1e9 for k, s in size["steps"].items()}
    return (
        f"| {name} | {params['stage1']:.3f} M | {params['unet']:.3f} M | {heads:.3f} M | "
        f"{params['total']:.3f} M | {size['stage1_macs'] / 1e9:.1f} | {stage2[1]:.1f} | {stage2[3]:.1f} |"
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
        with torch.device("meta"):  # counts need shapes only, not 69 M random weights
            model = SGDFuse(make())
        print(table_row(name, model, args.height, args.width))


if __name__ == "__main__":
    main()
