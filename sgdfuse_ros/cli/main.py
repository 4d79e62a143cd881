"""`sgdfuse` command line: fuse | eval | demo | bag | export | bench.

Each subcommand is one module of this package (``add_parser`` + ``run``); this module only
puts them together and turns the package's typed errors into one-line messages.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sgdfuse_ros.cli import bag, bench, demo, export, fuse
from sgdfuse_ros.cli import eval as eval_command
from sgdfuse_ros.errors import BackendUnavailableError, InputError, WeightsError

SUBCOMMANDS = (fuse, eval_command, demo, bag, export, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgdfuse", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
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
