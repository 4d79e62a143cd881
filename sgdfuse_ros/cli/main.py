"""`sgdfuse` command line: fuse | eval | demo | bag | export | bench.

Each subcommand is one module of this package (``add_parser`` + ``run``); this module only
puts them together and turns the package's typed errors into one-line messages.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from sgdfuse_ros.cli import bag, bench, demo, export, fuse
from sgdfuse_ros.cli import eval as eval_command
from sgdfuse_ros.errors import BackendUnavailableError, BagError, InputError, WeightsError

SUBCOMMANDS = (fuse, eval_command, demo, bag, export, bench)
# What bad paths, files, bags and values raise: one line for the operator, not a traceback.
# (ConfigError of training configs is a ValueError.)
USER_ERRORS = (WeightsError, BackendUnavailableError, BagError, InputError, OSError, ValueError)


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
    with warnings.catch_warnings():  # restores the process's warning display afterwards
        warnings.showwarning = show_warning
        try:
            return int(args.func(args) or 0)
        except USER_ERRORS as exc:
            command = " ".join(filter(None, (args.command, getattr(args, "bag_command", None))))
            print(f"sgdfuse {command}: error: {error_line(exc)}", file=sys.stderr)
            return 2


def run_tool(main: Callable[[], int], name: str) -> NoReturn:
    """Run a ``python -m training.<tool>`` main with the same one-line errors as ``sgdfuse``."""
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            code = int(main() or 0)
        except USER_ERRORS as exc:
            print(f"{name}: error: {error_line(exc)}", file=sys.stderr)
            code = 2
    raise SystemExit(code)


def show_warning(
    message: Warning | str, category: type[Warning], *_: object, file: Any = None, **__: object
) -> None:
    """A warning as an operator reads it: ``warning: <message>`` on one line, without Python's
    file:line and echoed source line."""
    print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr)


def error_line(exc: BaseException) -> str:
    """What an operator needs from a typed error, on one line.

    Commands raise these for bad paths, files, bags and values; an OSError from the system
    (permission denied, disk full, a path of the wrong kind) reads "<reason>: <path>".
    """
    if isinstance(exc, FileExistsError) and exc.filename and Path(exc.filename).is_file():
        message = f"{exc.filename} is a file where a folder is needed"
    elif isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.strerror}: {exc.filename}"
    else:
        message = str(exc)
    return " ".join(message.split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
