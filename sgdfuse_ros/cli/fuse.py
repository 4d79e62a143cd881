"""``sgdfuse fuse``: fuse one pair or two folders paired by file name."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sgdfuse_ros.cli.common import add_pipeline_arguments, batch_pipeline


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fuse", help="fuse an IR/VIS pair or two folders paired by file name"
    )
    parser.add_argument("--ir", type=Path, required=True, help="infrared image or folder")
    parser.add_argument("--vi", type=Path, required=True, help="visible image or folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--save-intermediate", action="store_true", help="also write priors, F1, mosaic"
    )
    # Batch runs build TensorRT plans before the first frame: every frame is fused by the
    # backend that was asked for.
    add_pipeline_arguments(parser, defaults={"engine_build": "blocking"})
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sgdfuse_ros.tools.fuse_files import fuse_paths

    pipeline = batch_pipeline(args)
    try:
        report = fuse_paths(
            pipeline, args.ir, args.vi, args.out, save_intermediate=args.save_intermediate
        )
    finally:
        pipeline.close()
    print(report.summary())
    return 0 if report.fused else 1
