"""``sgdfuse bench``: latency, throughput and memory per backend, K and prior interval."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sgdfuse_ros.cli.common import (
    add_pipeline_arguments,
    non_negative_float,
    non_negative_int,
    options_from_args,
    positive_float,
    positive_int,
)
from sgdfuse_ros.deploy import BACKENDS


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from sgdfuse_ros.tools import bench

    parser = subparsers.add_parser(
        "bench",
        help="latency, throughput and memory per backend, K and prior interval",
        description=(bench.__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("--height", type=positive_int, default=480)
    parser.add_argument("--width", type=positive_int, default=640)
    parser.add_argument(
        "--steps", type=positive_int, nargs="+", default=[1], help="diffusion steps K"
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        dest="backends",
        choices=BACKENDS,
        help="backends to compare (default: torch onnxruntime, + tensorrt on CUDA)",
    )
    parser.add_argument(
        "--frames", type=positive_int, default=10, help="timed frames per case and round"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="interleaved rounds (median over all)"
    )
    parser.add_argument("--warmup", type=non_negative_int, default=2)
    parser.add_argument(
        "--prior-every",
        type=positive_int,
        nargs="+",
        default=[1],
        help="recompute priors every N frames",
    )
    parser.add_argument(
        "--rate", type=positive_float, default=30.0, help="simulated input rate (Hz)"
    )
    parser.add_argument(
        "--stream-seconds", type=non_negative_float, default=5.0, help="0: the shortest stream"
    )
    parser.add_argument(
        "--background-load",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="run N busy processes during the measurement (other nodes sharing the CPU)",
    )
    parser.add_argument("--data", help="folder with ir/ and vi/ frames (default: synthetic)")
    parser.add_argument("--quality", help="folder with ir/ vi/ pairs: add the quality-vs-K table")
    parser.add_argument(
        "--quality-pairs", type=positive_int, help="use only the first N quality pairs"
    )
    parser.add_argument(
        "--quality-backend",
        choices=BACKENDS,
        help="backend for the quality table, one of --backend (default: the last)",
    )
    parser.add_argument(
        "--compare-weights",
        nargs="+",
        default=[],
        metavar="FILE",
        help="also run every case with these weights files, in the same rounds "
        "(a new default's cost against the old one's under the same load)",
    )
    parser.add_argument("--json", type=Path, help="write the full report here")
    # Backend, K and the prior interval are the cases compared (above); the rest of the
    # pipeline options apply to every case. Plans are built before timing starts.
    add_pipeline_arguments(
        parser,
        defaults={"engine_build": "blocking"},
        exclude=("backend", "steps", "prior_refresh_every"),
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgdfuse_ros.tools.bench import BenchConfig, format_tables, run_bench

    if args.json is not None and args.json.is_dir():  # found out before the run, not after
        raise IsADirectoryError(f"--json {args.json} is a folder; name the report file")
    for path in args.compare_weights:  # a typo must not become an "unavailable" row
        if not Path(path).is_file():
            raise FileNotFoundError(f"--compare-weights {path} is not a file")
    fields = BenchConfig.__dataclass_fields__
    config = BenchConfig(
        # args.steps is the list of K compared; the pipeline's own steps stays unset.
        pipeline=options_from_args(args, steps=None),
        **{k: v for k, v in vars(args).items() if k in fields and k != "pipeline"},
    )
    report = run_bench(config)
    print(format_tables(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nreport written to {args.json}")
    return 0
