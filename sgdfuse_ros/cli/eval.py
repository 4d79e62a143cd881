"""``sgdfuse eval``: the nine fusion metrics of fused folders against their sources, and
optionally a detector's AP@0.5 on the fused folders and both sources."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sgdfuse_ros.cli.common import non_negative_int


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help="EN SD SF AG MI SCD VIF Qabf SSIM (and detection AP) of fused folders"
    )
    parser.add_argument("--ir", type=Path, required=True)
    parser.add_argument("--vi", type=Path, required=True)
    parser.add_argument("--fused", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("--out", type=Path, required=True)
    group = parser.add_argument_group(
        "detection", "AP@0.5 of a TFLite SSD detector (needs `pip install ai-edge-litert`)"
    )
    group.add_argument("--detector", type=Path, default=None, help="TFLite SSD model (.tflite)")
    group.add_argument(
        "--det-labels", type=Path, default=None, help="YOLO label folder (<name>.txt per image)"
    )
    group.add_argument(
        "--det-classes",
        type=Path,
        default=None,
        help="the detector's class-id file (default: coco_labels.txt beside the model)",
    )
    group.add_argument("--det-samples", type=int, default=1000, help="bootstrap resamples")
    group.add_argument("--det-seed", type=non_negative_int, default=0, help="bootstrap seed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sgdfuse_ros.tools.evaluate import evaluate_dirs, format_markdown_table
    from sgdfuse_ros.tools.fuse_files import check_output_folder

    check_output_folder(args.out)  # before minutes of metrics
    detection = None
    if (args.detector is None) != (args.det_labels is None):
        raise ValueError("--detector and --det-labels go together")
    if args.detector is not None:
        from sgdfuse_ros.imaging import require_folder
        from sgdfuse_ros.tools.detection import DetectionSettings, TFLiteDetector

        require_folder(args.det_labels, "--det-labels folder")  # before minutes of metrics

        detection = DetectionSettings(
            TFLiteDetector(args.detector, labels=args.det_classes),
            args.det_labels,
            samples=args.det_samples,
            seed=args.det_seed,
        )
    summary = evaluate_dirs(args.ir, args.vi, list(args.fused), args.out, detection=detection)
    print(format_markdown_table(summary))
    if detection is not None:
        print((args.out / "metrics.md").read_text().split("## Detection", 1)[1].strip())
        detection.detector.close()
    print(f"per-image CSV, metrics.md and summary.json written to {args.out}")
    return 0
