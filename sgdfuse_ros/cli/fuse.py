"""``sgdfuse fuse``: fuse one pair or two folders paired by file name."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sgdfuse_ros.cli.common import add_pipeline_arguments, batch_pipeline
from sgdfuse_ros.errors import InputError


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
    parser.add_argument(
        "--priors-dir",
        type=Path,
        default=None,
        help="fuse with the prior maps in DIR instead of computing them: <name>_prior_ir.png + "
        "<name>_prior_vis.png (as --save-intermediate writes) or one <name>.png for both "
        "(8-bit, 255 = object)",
    )
    # Batch runs build TensorRT plans before the first frame: every frame is fused by the
    # backend that was asked for.
    add_pipeline_arguments(parser, defaults={"engine_build": "blocking"})
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sgdfuse_ros.tools.fuse_files import check_fuse_paths, fuse_paths, priors_from_folder

    check_fuse_paths(args.ir, args.vi, args.out)
    given = priors_from_folder(args.priors_dir) if args.priors_dir else None
    pipeline = batch_pipeline(args)
    try:
        report = fuse_paths(
            pipeline,
            args.ir,
            args.vi,
            args.out,
            save_intermediate=args.save_intermediate,
            given_priors=given,
        )
    finally:
        pipeline.close()
    print(report.summary())
    if report.failed:
        total = len(report.fused) + len(report.failed)
        raise InputError(f"{len(report.failed)} of {total} pair(s) failed (see above)")
    return 0
