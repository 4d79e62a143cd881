"""Do the semantic priors matter? The same weights fused with four kinds of prior maps.

    python -m training.priors_ablation --val ../shared/data/val/msrs100 \
        --detector ../shared/detection/mobilenet_ssd_v2_coco_quant_postprocess.tflite \
        --det-labels ../shared/detection/msrs100_labels --out runs/priors_ablation \
        --table training/results/priors_ablation_msrs100.md

Variants (all through :class:`~sgdfuse_ros.pipeline.FusionPipeline`, the code of `sgdfuse
fuse`):
  * ``computed``: the pipeline's own prior backend (what a user gets);
  * ``zero``: all-zero maps for both modalities;
  * ``gt_objects``: the dataset's segmentation labels (``<val>/labels``) turned into object
    masks, 1 on the classes in ``--object-classes`` (MSRS: 1 car, 2 person, 3 bike), 0
    elsewhere, for both maps. With the object term the heads read M_ir as "keep the infrared
    pixel" and M_vis as "keep the visible one", so one mask for both asks for both at once;
  * ``gt_infrared``: the object masks as M_ir only, M_vis computed: perfect segmentation of the
    warm objects the infrared prior stands for (people, cars, bikes), the visible prior as a
    user gets it. This is the upper bound for the IR prior's part.
Each is scored with the nine metrics (`sgdfuse eval`) and a detector's AP@0.5; differences to
``computed`` get a paired bootstrap interval over images (the same resampled images for both
variants), and a difference is called real only when the interval excludes zero.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np

from sgdfuse_ros.imaging import ir_to_unit, pair_files, read_pair
from sgdfuse_ros.metrics import METRIC_NAMES
from sgdfuse_ros.model_io import DEFAULT_WEIGHTS
from sgdfuse_ros.tools.detection import (
    DetectionInput,
    TFLiteDetector,
    bootstrap_weights,
    evaluate_detection,
    percentile_interval,
)
from sgdfuse_ros.tools.evaluate import CSV_NAME, evaluate_dirs
from sgdfuse_ros.tools.fuse_files import fuse_paths, priors_from_folder

LOG = logging.getLogger("sgdfuse_ros.training")
MSRS_OBJECT_CLASSES = (1, 2, 3)  # car, person, bike in the MSRS segmentation labels
VARIANTS = ("computed", "zero", "gt_objects", "gt_infrared")
STAMP_NAME = "fused_with.json"


def write_object_masks(label_dir: Path, out_dir: Path, object_classes: tuple[int, ...]) -> Path:
    """Segmentation label images (class id per pixel) → 0/255 object masks, one per stem."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = sorted(label_dir.glob("*.png"))
    if not labels:
        raise FileNotFoundError(f"no segmentation label images in {label_dir}")
    for path in labels:
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if label is None or label.ndim != 2:
            raise ValueError(f"{path} is not a single-channel label image")
        mask = np.isin(label, object_classes).astype(np.uint8) * 255
        cv2.imwrite(str(out_dir / f"{path.stem}.png"), mask)
    return out_dir


def masks_as_infrared_prior(masks, backend, val: Path):
    """Given priors for ``fuse_paths``: the object mask of a pair as M_ir, ``backend``'s M_vis."""
    pairs = {stem: (ir, vi) for stem, ir, vi in pair_files(val / "ir", val / "vi")[0]}

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        m_ir, _ = masks(name)
        ir, vis = read_pair(*pairs[name])
        _, m_vis = backend.compute(ir_to_unit(ir), vis)
        return m_ir, m_vis

    return load


def fusion_stamp(
    weights: Path, steps: int, priors: dict[str, object], variant: str
) -> dict[str, object]:
    """What a variant folder was fused with: the weights' content, K, the prior backend's
    settings and the variant."""
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    return {"weights_sha256": digest, "steps": steps, "priors": priors, "variant": variant}


def fuse_variant(pipeline, val: Path, folder: Path, given, stamp: dict[str, object]) -> Path:
    """Fuse the validation pairs into ``folder`` unless every pair is there already, fused as
    ``stamp`` says (``fused_with.json``: weights, K, prior settings, variant): a folder fused
    otherwise is fused again, never reused."""
    expected = {p.stem for p in (val / "ir").iterdir()}
    stamp_file = folder / STAMP_NAME
    if (
        folder.is_dir()
        and expected <= {p.stem for p in folder.glob("*.png")}
        and stamp_file.is_file()
        and json.loads(stamp_file.read_text()) == stamp
    ):
        LOG.info("reusing %s", folder)
        return folder
    stamp_file.unlink(missing_ok=True)
    report = fuse_paths(pipeline, val / "ir", val / "vi", folder, given_priors=given)
    LOG.info("%s: %s", folder.name, report.summary().splitlines()[0])
    stamp_file.write_text(json.dumps(stamp, indent=1))
    return folder


def read_per_image(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """per_image.csv of `sgdfuse eval` → {method: {image: {metric: value}}}."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            values = {name: float(row[name]) for name in METRIC_NAMES}
            table.setdefault(row["method"], {})[row["image"]] = values
    return table


def paired_metric_differences(
    per_image: dict[str, dict[str, dict[str, float]]],
    reference: str,
    samples: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, dict[str, dict[str, float | bool | list[float]]]]:
    """Mean difference (method − reference) of every metric with a paired bootstrap interval."""
    result = {}
    for method, rows in per_image.items():
        if method == reference:
            continue
        common = sorted(rows.keys() & per_image[reference].keys())
        diffs = np.array(
            [[rows[s][m] - per_image[reference][s][m] for m in METRIC_NAMES] for s in common]
        )
        spread = np.vstack(
            [
                block @ diffs / len(common)
                for block in bootstrap_weights(np.arange(len(common)), len(common), samples, seed)
            ]
        )
        per_metric = {}
        for column, name in enumerate(METRIC_NAMES):
            low, high = percentile_interval(spread[:, column], confidence)
            per_metric[name] = {
                "difference": float(diffs[:, column].mean()),
                "ci": [low, high],
                "real": bool(low > 0 or high < 0),
            }
        result[method] = per_metric
    return result


def difference_cell(diff: dict) -> str:
    text = f"{diff['difference']:+.4f} [{diff['ci'][0]:+.4f}, {diff['ci'][1]:+.4f}]"
    return f"**{text}**" if diff["real"] else text


def difference_table(diffs: dict[str, dict[str, dict]], first_column: str) -> list[str]:
    """Markdown rows of ``paired_metric_differences``: one row per method, mean [CI] per metric."""
    return [
        f"| {first_column} | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---:|" * len(METRIC_NAMES),
        *(
            f"| {name} | " + " | ".join(difference_cell(d[m]) for m in METRIC_NAMES) + " |"
            for name, d in diffs.items()
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--val", type=Path, required=True, help="folder with ir/, vi/ and labels/")
    p.add_argument("--detector", type=Path, required=True, help="TFLite SSD detector")
    p.add_argument("--det-labels", type=Path, required=True, help="YOLO detection labels")
    p.add_argument("--out", type=Path, default=Path("runs/priors_ablation"))
    p.add_argument("--table", type=Path, default=Path("training/results/priors_ablation.md"))
    p.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--prior-backend", default="auto", help="the 'computed' variant's backend")
    p.add_argument(
        "--object-classes",
        type=int,
        nargs="+",
        default=list(MSRS_OBJECT_CLASSES),
        help="segmentation label ids counted as objects (MSRS: 1 car, 2 person, 3 bike)",
    )
    p.add_argument(
        "--reuse-computed", type=Path, default=None, help="folder already fused by `sgdfuse fuse`"
    )
    p.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes for the nine metrics")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from sgdfuse_ros.pipeline import FusionPipeline

    pipeline = FusionPipeline(
        weights=args.weights, steps=args.steps, prior_backend=args.prior_backend
    )
    masks = write_object_masks(
        args.val / "labels", args.out / "gt_object_masks", tuple(args.object_classes)
    )

    def zeros(name: str) -> tuple[np.ndarray, np.ndarray]:
        """All-zero maps of the pair's size (read from its IR image)."""
        (ir_path,) = [p for p in (args.val / "ir").iterdir() if p.stem == name]
        ir = cv2.imread(str(ir_path), cv2.IMREAD_GRAYSCALE)
        if ir is None:
            raise FileNotFoundError(f"cannot read {ir_path}")
        empty = np.zeros(ir.shape, np.float32)
        return empty, empty

    gt_masks = priors_from_folder(masks)
    gt_infrared = masks_as_infrared_prior(gt_masks, pipeline.priors, args.val)
    fused = args.out / "fused"
    weights = args.weights or DEFAULT_WEIGHTS

    def variant(name: str, given) -> Path:
        stamp = fusion_stamp(weights, pipeline.default_steps, pipeline.priors.settings(), name)
        return fuse_variant(pipeline, args.val, fused / name, given, stamp)

    folders = {
        "computed": args.reuse_computed or variant("computed", None),
        "zero": variant("zero", zeros),
        "gt_objects": variant("gt_objects", gt_masks),
        "gt_infrared": variant("gt_infrared", gt_infrared),
    }
    pipeline.close()
    # Name the reused folder "computed" too, so every table row is a variant name.
    if folders["computed"].name != "computed":
        link = fused / "computed"
        if link.is_symlink() or not link.exists():
            link.unlink(missing_ok=True)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(folders["computed"].resolve())
        folders["computed"] = link

    summary = evaluate_dirs(
        args.val / "ir",
        args.val / "vi",
        [folders[v] for v in VARIANTS],
        args.out / "eval",
        workers=args.workers,
    )
    per_image = read_per_image(args.out / "eval" / CSV_NAME)
    metric_diffs = paired_metric_differences(per_image, "computed", args.samples, args.seed)

    detector = TFLiteDetector(args.detector)
    detection = evaluate_detection(
        [DetectionInput(v, folders[v]) for v in VARIANTS],
        args.det_labels,
        detector,
        out_dir=args.out / "eval",
        samples=args.samples,
        seed=args.seed,
        reference="computed",
    )
    detector.close()

    mask_fraction = np.mean(
        [cv2.imread(str(m), cv2.IMREAD_GRAYSCALE).mean() / 255.0 for m in masks.glob("*.png")]
    )
    command = "python -m training.priors_ablation " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    lines = [
        f"# Priors ablation ({args.val.name})",
        "",
        f"Weights: `{args.weights or 'shipped default'}`, K = {args.steps}; the `computed` "
        f"priors come from the `{pipeline.priors.name}` backend. `gt_objects`: segmentation "
        f"label ids {args.object_classes} → 1 (both maps), "
        f"{100 * mask_fraction:.1f} % of the pixels on average; `gt_infrared`: those masks as "
        f"M_ir, M_vis computed. Bootstrap: {args.samples} "
        f"resamples of the images, seed {args.seed}, 95 % percentile intervals.",
        "",
        "## Nine metrics (means; higher is better)",
        "",
        "| variant | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---:|" * len(METRIC_NAMES),
    ]
    for variant in VARIANTS:
        values = summary[variant]
        lines.append(
            f"| {variant} | "
            + " | ".join("–" if math.isnan(values[m]) else f"{values[m]:.4f}" for m in METRIC_NAMES)
            + " |"
        )
    lines += [
        "",
        "Paired differences to `computed` (mean [95 % CI]; **bold** = interval excludes 0):",
        "",
        *difference_table(metric_diffs, "variant"),
    ]
    lines += ["", "## Detection", "", detection.markdown(), "Command:", "", f"    {command}", ""]
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text("\n".join(lines))
    import json

    (args.out / "priors_ablation.json").write_text(
        json.dumps(
            {
                "metrics": summary,
                "metric_differences": metric_diffs,
                "detection": detection.to_dict(),
            },
            indent=2,
        )
        + "\n"
    )
    LOG.info("wrote %s", args.table)
    return 0


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.priors_ablation")
