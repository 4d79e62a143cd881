"""How much the source-fidelity metrics (MI, VIF, Qabf) reward reproducing source pixels exactly.

    python -m training.metric_sensitivity --val ../shared/data/val/msrs100 --every 10 \
        --fused runs/exp/A/eval/fused/stage1_F1

Scores plain per-pixel max fusion as it is, with Gaussian noise of 1 and 3 grey levels, and
blurred (3×3, σ 0.8), next to an optional folder of fused images, on every ``--every``-th pair.
A network that re-synthesises every pixel carries an error of about a grey level everywhere;
this table shows what that alone costs on each metric, whatever the fusion looks like.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from sgdfuse_ros import metrics

MEASURED = metrics.METRIC_NAMES


def perturbations(seed: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Named changes of an 8-bit luminance plane (results rounded and clipped to 8 bits)."""
    rng = np.random.default_rng(seed)

    def noisy(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda f: np.clip(np.round(f + rng.normal(0.0, sigma, f.shape)), 0, 255)

    return {
        "max": lambda f: f,
        "max + noise σ=1": noisy(1.0),
        "max + noise σ=3": noisy(3.0),
        "max, blurred 3×3": lambda f: cv2.GaussianBlur(f.astype(np.float32), (3, 3), 0.8).round(),
    }


def read_luminance(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return metrics.to_luminance(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--val", required=True, help="folder with ir/ and vi/")
    p.add_argument("--every", type=int, default=10, help="use every n-th pair")
    p.add_argument("--fused", type=Path, help="optional folder of <stem>.png fused images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    names = sorted(path.name for path in (Path(args.val) / "ir").iterdir())[:: args.every]
    changes = perturbations(args.seed)
    scores: dict[str, list[list[float]]] = {name: [] for name in [*changes, "fused"]}
    for name in names:
        ir = read_luminance(Path(args.val) / "ir" / name)
        vis = read_luminance(Path(args.val) / "vi" / name)
        candidates = {label: change(np.maximum(ir, vis)) for label, change in changes.items()}
        if args.fused is not None:
            candidates["fused"] = read_luminance(args.fused / f"{Path(name).stem}.png")
        for label, fused in candidates.items():
            scores[label].append(list(metrics.compute_luminance_metrics(ir, vis, fused).values()))
    print(f"{len(names)} pairs of {args.val}\n")
    print("| fusion | " + " | ".join(MEASURED) + " |")
    print("|---|" + "---:|" * len(MEASURED))
    for label, rows in scores.items():
        if rows:
            means = np.mean(rows, axis=0)
            print(f"| {label} | " + " | ".join(f"{v:.4f}" for v in means) + " |")
    return 0


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.metric_sensitivity")
