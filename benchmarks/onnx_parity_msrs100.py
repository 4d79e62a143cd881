"""ONNX Runtime vs torch on real pairs: how far apart are the fused images?

Fuses every pair of a folder (ir/, vi/) with the torch and the onnxruntime backends of
FusionPipeline (same weights, same classical priors) and prints the largest and mean absolute
differences of the fused uint8 images and of the float outputs, per K.

    python benchmarks/onnx_parity_msrs100.py ../shared/data/val/msrs100 --steps 1 3 [--limit N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sgdfuse_ros.pipeline import FusionPipeline
from sgdfuse_ros.tools.bench import iter_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[1])
    parser.add_argument("--limit", type=int)
    parser.add_argument("--weights")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    common = dict(weights=args.weights, prior_backend="classical")
    pipes = {b: FusionPipeline(backend=b, **common) for b in ("torch", "onnxruntime")}
    pairs = iter_pairs(args.data, args.limit)
    rows = []
    for k in args.steps:
        u8_max = u8_mean = float_max = 0.0
        over_one = 0
        for ir, vis in pairs:
            ir_unit = ir.astype(np.float32) / 255.0
            m_ir, m_vis = pipes["torch"].priors.compute(ir_unit, vis)
            nchw = lambda a: np.ascontiguousarray(  # noqa: E731
                a.transpose(2, 0, 1)[None] if a.ndim == 3 else a[None, None], dtype=np.float32
            )
            inputs = (nchw(ir_unit), nchw(vis.astype(np.float32) / 255.0), nchw(m_ir), nchw(m_vis))
            outs = {b: p.runner.run(*inputs, k)[0] for b, p in pipes.items()}
            float_max = max(float_max, float(np.abs(outs["torch"] - outs["onnxruntime"]).max()))
            fused = {  # the pipeline's own float → uint8 conversion
                b: np.clip(o * 255.0 + 0.5, 0, 255).astype(np.int16) for b, o in outs.items()
            }
            diff = np.abs(fused["torch"] - fused["onnxruntime"])
            u8_max = max(u8_max, float(diff.max()))
            u8_mean += float(diff.mean()) / len(pairs)
            over_one += int((diff > 1).sum())
        rows.append(
            {
                "steps": k,
                "pairs": len(pairs),
                "float_max_abs": float_max,
                "uint8_max_abs": u8_max,
                "uint8_mean_abs": u8_mean,
                "pixels_over_1_level": over_one,
            }
        )
        print(json.dumps(rows[-1]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
