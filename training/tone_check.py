"""What a tone curve alone does to the nine metrics, and what it costs in noise.

    python -m training.tone_check --val ../shared/data/val/msrs100 \
        --fused runs/det_in/ours_K1 --out runs/tone \
        --compare LSAFusion=../shared/data/val/msrs100_peers/LSAFusion_gray

Writes three tone-mapped copies of a folder of fused images (luminance changed, chroma kept):

* ``night_lift``: a gamma per image that lifts a frame darker than ``--lift-to`` to that mean
  grey level (what a brightened night output looks like);
* ``clahe``: OpenCV's contrast-limited adaptive histogram equalisation (clip 2, 8×8 tiles);
* ``equalize``: global histogram equalisation.

Then prints, for the input, its copies and every ``--compare`` folder, the mean grey level by
day and by night, the share of saturated pixels and the noise in flat regions (the standard
deviation of the 3×3 high-pass of the output where the visible image is flat). Score the copies
with ``sgdfuse eval --fused <out>/<variant> … --detector …``: none of these adds information, so
any metric a copy gains is a tone-curve gain, and the detector and the noise column show its
price (``training/results/fusion_quality.md`` §6).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from sgdfuse_ros.imaging import pair_files, require_folder
from sgdfuse_ros.metrics import to_luminance
from sgdfuse_ros.tools.detection import time_of_day
from training.compare_mosaic import find_image, labelled_folder

ToneCurve = Callable[[np.ndarray], np.ndarray]  # uint8 luminance plane -> uint8 plane


def night_lift(target_mean: float) -> ToneCurve:
    """A per-image gamma (found by bisection) that moves a darker frame's mean to target_mean."""

    def apply(luma: np.ndarray) -> np.ndarray:
        unit = luma.astype(np.float64) / 255.0
        if unit.mean() * 255.0 >= target_mean:
            return luma
        low, high = 0.02, 1.0
        for _ in range(40):
            gamma = (low + high) / 2
            low, high = (
                (gamma, high) if (unit**gamma).mean() * 255.0 > target_mean else (low, gamma)
            )
        return np.clip(np.round(unit**gamma * 255.0), 0, 255).astype(np.uint8)

    return apply


def tone_curves(lift_to: float) -> dict[str, ToneCurve]:
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return {"night_lift": night_lift(lift_to), "clahe": clahe.apply, "equalize": cv2.equalizeHist}


def apply_to_luminance(bgr: np.ndarray, curve: ToneCurve) -> np.ndarray:
    """The curve applied to the Y of YCrCb, chroma unchanged (grey images stay grey)."""
    ycrcb = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
    ycrcb[..., 0] = curve(ycrcb[..., 0])
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


def flat_region(visible_bgr: np.ndarray) -> np.ndarray:
    """Where the visible image is flat (little 9×9-averaged Laplacian): noise shows there."""
    visible = to_luminance(cv2.cvtColor(visible_bgr, cv2.COLOR_BGR2RGB)).astype(np.float32)
    return cv2.blur(np.abs(cv2.Laplacian(visible, cv2.CV_32F)), (9, 9)) < 2.0


def flat_noise(luma: np.ndarray, flat: np.ndarray) -> float:
    """Std of the 3×3 high-pass of ``luma`` over the ``flat`` pixels (NaN if there are none)."""
    high_pass = luma.astype(np.float32) - cv2.blur(luma.astype(np.float32), (3, 3))
    return float(high_pass[flat].std()) if flat.any() else float("nan")


def read_bgr(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image


def tone_statistics(folder: Path, flat_regions: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean grey by day / night (NaN without MSRS-style names), saturated share (≥ 250, %) and flat-region noise of a folder
    (``flat_regions``: each pair's ``flat_region``, computed once for every folder)."""
    by_time: dict[str | None, list[float]] = {"day": [], "night": [], None: []}
    saturated, noise = [], []
    for stem, flat in flat_regions.items():
        path = find_image(folder, stem)
        luma = to_luminance(cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB))
        if luma.shape != flat.shape:
            raise ValueError(
                f"{path} is {luma.shape[1]}×{luma.shape[0]}, its sources are "
                f"{flat.shape[1]}×{flat.shape[0]}"
            )
        by_time[time_of_day(stem)].append(float(luma.mean()))
        saturated.append(float((luma >= 250).mean() * 100.0))
        noise.append(flat_noise(luma, flat))
    return {
        "day": float(np.mean(by_time["day"])) if by_time["day"] else float("nan"),
        "night": float(np.mean(by_time["night"])) if by_time["night"] else float("nan"),
        "saturated": float(np.mean(saturated)),
        "noise": float(np.nanmean(noise)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--val", type=Path, required=True, help="folder with ir/ and vi/")
    p.add_argument("--fused", type=Path, required=True, help="folder of <stem>.png fused images")
    p.add_argument("--out", type=Path, required=True, help="writes <out>/<variant>/<stem>.png")
    p.add_argument("--lift-to", type=float, default=70.0, help="night_lift's target mean grey")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=FOLDER")
    args = p.parse_args(argv)
    if not 0 < args.lift_to < 255:
        raise SystemExit(f"--lift-to {args.lift_to}: a mean grey level between 0 and 255")
    pairs, _ = pair_files(args.val / "ir", args.val / "vi")
    if not pairs:
        raise SystemExit(f"no IR/VIS pairs in {args.val}")
    require_folder(args.fused, "--fused folder")
    curves = tone_curves(args.lift_to)
    rows = {"input": args.fused, **{name: args.out / name for name in curves}}
    for name in curves:
        rows[name].mkdir(parents=True, exist_ok=True)
    for stem, _, _ in pairs:  # every pair's fused image, whatever its format; copies as PNG
        image = read_bgr(find_image(args.fused, stem))
        for name, curve in curves.items():
            cv2.imwrite(str(rows[name] / f"{stem}.png"), apply_to_luminance(image, curve))
    rows.update(labelled_folder(item, "--compare") for item in args.compare)
    flat_regions = {stem: flat_region(read_bgr(vi_path)) for stem, _, vi_path in pairs}
    print("| images | mean grey, day | mean grey, night | saturated % | flat-region noise |")
    print("|---|---:|---:|---:|---:|")
    for name, folder in rows.items():
        s = tone_statistics(folder, flat_regions)
        day, night = (f"{s[t]:.1f}" if s[t] == s[t] else "–" for t in ("day", "night"))  # NaN: –
        print(f"| {name} | {day} | {night} | {s['saturated']:.2f} | {s['noise']:.3f} |")
    return 0


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.tone_check")
