"""``sgdfuse eval``: the nine fusion metrics of fused folders against their sources."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("eval", help="EN SD SF AG MI SCD VIF Qabf SSIM of fused folders")
    parser.add_argument("--ir", type=Path, required=True)
    parser.add_argument("--vi", type=Path, required=True)
    parser.add_argument("--fused", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("--out", type=Path, required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sgdfuse_ros.tools.evaluate import evaluate_dirs, format_markdown_table

    summary = evaluate_dirs(args.ir, args.vi, list(args.fused), args.out)
    print(format_markdown_table(summary))
    print(f"per-image CSV, metrics.md and summary.json written to {args.out}")
    return 0
