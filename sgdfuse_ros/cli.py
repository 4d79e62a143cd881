"""`sgdfuse` command line: fuse | eval | demo | bag | export | bench.

Each subcommand lives with the code it drives; this file only wires argparse to it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import BackendUnavailableError, InputError, WeightsError


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The FusionPipeline options shared by fuse, demo and bench."""
    parser.add_argument(
        "--weights", type=Path, default=None, help="weights file (default: shipped)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="diffusion steps K (default: weights')"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "onnxruntime", "tensorrt"),
        help="inference backend",
    )
    parser.add_argument(
        "--prior-backend",
        default="auto",
        choices=("auto", "sam", "classical"),
        help="semantic priors",
    )
    parser.add_argument("--sam-model-type", default="vit_b", choices=("vit_b", "vit_l", "vit_h"))
    parser.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint (.pth) path")
    parser.add_argument(
        "--allow-untrained",
        action="store_true",
        help="run with random weights (labelled) if none exist",
    )
    parser.add_argument(
        "--fp16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="half precision (default: on CUDA only)",
    )
    parser.add_argument(
        "--engine-dir", default=None, help="ONNX / TensorRT cache (default: user cache)"
    )


def pipeline_from_args(args: argparse.Namespace, **extra: object):
    """The pipeline for a batch command: with tensorrt, missing plans are built before the
    first frame (blocking), so every frame is fused by the backend that was asked for."""
    from .pipeline import FusionPipeline

    return FusionPipeline(
        weights=args.weights,
        device=args.device,
        steps=args.steps,
        prior_backend=args.prior_backend,
        sam_model_type=args.sam_model_type,
        sam_checkpoint=args.sam_checkpoint,
        backend=args.backend,
        allow_untrained=args.allow_untrained,
        fp16=args.fp16,
        engine_dir=args.engine_dir,
        engine_build="blocking",
        **extra,
    )


def cmd_fuse(args: argparse.Namespace) -> int:
    from .fuse_files import fuse_paths

    pipeline = pipeline_from_args(args, resize_mismatched=args.resize)
    report = fuse_paths(
        pipeline, args.ir, args.vi, args.out, save_intermediate=args.save_intermediate
    )
    print(report.summary())
    return 0 if report.fused else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_dirs, format_markdown_table

    summary = evaluate_dirs(args.ir, args.vi, list(args.fused), args.out)
    print(format_markdown_table(summary))
    print(f"per-image CSV, metrics.md and summary.json written to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgdfuse", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    fuse = sub.add_parser("fuse", help="fuse an IR/VIS pair or two folders paired by file name")
    fuse.add_argument("--ir", type=Path, required=True, help="infrared image or folder")
    fuse.add_argument("--vi", type=Path, required=True, help="visible image or folder")
    fuse.add_argument("--out", type=Path, required=True, help="output folder")
    fuse.add_argument(
        "--save-intermediate", action="store_true", help="also write priors, F1, mosaic"
    )
    fuse.add_argument(
        "--resize", action="store_true", help="resize IR to VIS size when they differ"
    )
    add_pipeline_arguments(fuse)
    fuse.set_defaults(func=cmd_fuse)

    ev = sub.add_parser("eval", help="EN SD SF AG MI SCD VIF Qabf SSIM of fused folders")
    ev.add_argument("--ir", type=Path, required=True)
    ev.add_argument("--vi", type=Path, required=True)
    ev.add_argument("--fused", type=Path, action="append", required=True, help="repeatable")
    ev.add_argument("--out", type=Path, required=True)
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser("demo", help="fuse the built-in synthetic sequence (or --data DIR)")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"))
    demo.add_argument("--frames", type=int, default=20)
    demo.add_argument("--height", type=int, default=480)
    demo.add_argument("--width", type=int, default=640)
    demo.add_argument("--data", type=Path, default=None, help="folder with ir/ and vi/: real pairs")
    demo.add_argument(
        "--library", action="store_true", help="fuse in-process instead of through the ROS 2 node"
    )
    add_pipeline_arguments(demo)
    demo.set_defaults(func=cmd_demo)

    from .bag import add_bag_command  # sgdfuse bag fuse | replay | synth

    add_bag_command(sub)
    from .bench import add_bench_command  # sgdfuse bench
    from .deploy.export import add_export_command  # sgdfuse export --onnx DIR [--engines]

    add_export_command(sub)
    add_bench_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (
        WeightsError,
        BackendUnavailableError,
        InputError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        print(f"sgdfuse {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
