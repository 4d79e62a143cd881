"""``sgdfuse demo``: the synthetic sequence (or real pairs) through the real node."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sgdfuse_ros.cli.common import add_pipeline_arguments, options_from_args, positive_int


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="fuse the built-in synthetic sequence (or --data DIR)"
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--frames", type=positive_int, default=20)
    parser.add_argument("--height", type=positive_int, default=480)
    parser.add_argument("--width", type=positive_int, default=640)
    parser.add_argument(
        "--data", type=Path, default=None, help="folder with ir/ and vi/: real pairs"
    )
    parser.add_argument(
        "--library", action="store_true", help="fuse in-process instead of through the ROS 2 node"
    )
    add_pipeline_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sgdfuse_ros.tools.demo import DemoRequest, run_demo

    request = DemoRequest(
        out=args.out,
        frames=args.frames,
        height=args.height,
        width=args.width,
        data=args.data,
        library=args.library,
    )
    return run_demo(request, options_from_args(args))
