"""Fusions made without a network, to read a learned model's nine metrics and detection against.

    python -m training.reference_fusions --val ../shared/data/val/msrs100 --out runs/reference
    sgdfuse eval --ir …/ir --vi …/vi --fused <our folder> --fused runs/reference/max \
        --fused runs/reference/additive --fused runs/reference/ir_objects --out … [--detector …]

Writes one folder per rule (luminance combined, the visible image's chroma kept, as the
learned fusion does):

* ``max``: per pixel the brighter of the two sources, the max-intensity loss's own target;
  no source value is changed, so the fidelity metrics (MI, VIF, Qabf) score it highly;
* ``additive``: visible luminance plus the infrared's departure from its median, so both
  sources stay everywhere; the contrast and correlation metrics (SD, SCD) score it highly;
* ``ir_objects``: the infrared pixel where the classical infrared prior finds a warm object,
  the visible luminance elsewhere: what the semantic priors alone make of a pair;
* ``mean`` on request.

No rule has a parameter fitted to any data. ``training/results/fusion_quality.md`` §7 reads
the metrics of a learned model between these rules.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from sgdfuse_ros.imaging import ir_to_unit, read_pair, write_rgb
from sgdfuse_ros.semantics import PriorBackend, build_prior_backend
from sgdfuse_ros.tools.evaluate import BASELINE_RULES
from training.datasets import ProblemReport, find_pairs
from training.evaluation import write_baselines

PRIOR_RULES = ("ir_objects",)
DEFAULT_RULES = ("max", "additive", "ir_objects")


def ir_objects_fuse(ir: np.ndarray, vis: np.ndarray, backend: PriorBackend) -> np.ndarray:
    """RGB uint8: luminance ``M_ir·IR + (1 − M_ir)·Y_vis`` with the backend's soft infrared map,
    the visible chroma kept. ``ir`` H×W uint8 or uint16, ``vis`` H×W×3 RGB uint8."""
    ir_unit = ir_to_unit(ir)
    m_ir, _ = backend.compute(ir_unit, vis)
    ycrcb = cv2.cvtColor(vis, cv2.COLOR_RGB2YCrCb)
    luma = m_ir * (ir_unit * 255.0) + (1.0 - m_ir) * ycrcb[..., 0].astype(np.float32)
    ycrcb[..., 0] = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def write_ir_objects(val: Path, folder: Path, backend: PriorBackend) -> Path:
    for pair in find_pairs(val, ProblemReport()):
        ir, vis = read_pair(pair.ir, pair.vi)
        write_rgb(folder / f"{pair.stem}.png", ir_objects_fuse(ir, vis, backend))
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--val", type=Path, required=True, help="folder with ir/ and vi/")
    p.add_argument("--out", type=Path, required=True, help="one sub-folder per rule")
    p.add_argument(
        "--rules",
        nargs="+",
        choices=(*BASELINE_RULES, *PRIOR_RULES),
        default=list(DEFAULT_RULES),
    )
    args = p.parse_args(argv)
    if not find_pairs(args.val, ProblemReport()):
        raise ValueError(f"no IR/VIS pairs in {args.val}")

    luminance_rules = tuple(r for r in args.rules if r in BASELINE_RULES)
    folders = write_baselines(args.val, args.out, rules=luminance_rules)
    if "ir_objects" in args.rules:
        backend = build_prior_backend("classical")
        folders.append(write_ir_objects(args.val, args.out / "ir_objects", backend))
        backend.close()
    for folder in folders:
        print(f"{folder.name}: {sum(1 for _ in folder.glob('*.png'))} images in {folder}")
    return 0


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.reference_fusions")
