"""Pipeline flags generated from ``PipelineOptions``: every option is a flag of every command
that builds a pipeline, with the same name, help and choices."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any

from sgdfuse_ros.options import PipelineOptions

ALIASES = {"prior_backend": ("--prior",), "resize_mismatched": ("--resize",)}


def _number(text: str, kind: type, minimum: float, above: bool) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
    if value != value or (value <= minimum if above else value < minimum):  # NaN too
        raise argparse.ArgumentTypeError(f"must be {'>' if above else '>='} {minimum}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts and sizes: refused by the parser when below 1."""
    return _number(text, int, 1, above=False)


def non_negative_int(text: str) -> int:
    """argparse type for seeds, warm-up counts and "0 = forever" loops."""
    return _number(text, int, 0, above=False)


def positive_float(text: str) -> float:
    """argparse type for rates and durations that must be above zero."""
    return _number(text, float, 0, above=True)


def non_negative_float(text: str) -> float:
    """argparse type for waits and tolerances where zero means "none"."""
    return _number(text, float, 0, above=False)


def ros_topic_name(text: str) -> str:
    """argparse type for a topic written to a bag or published: a valid ROS 2 name."""
    from sgdfuse_ros.io.topic_names import check_topic_name

    try:
        return check_topic_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_pipeline_arguments(
    parser: argparse.ArgumentParser,
    *,
    defaults: dict[str, Any] | None = None,
    exclude: Iterable[str] = (),
) -> None:
    """One flag per ``PipelineOptions`` field (``--prior-refresh-every`` …), minus ``exclude``."""
    defaults = defaults or {}
    skipped = set(exclude)
    group = parser.add_argument_group("pipeline options")
    for item in dataclasses.fields(PipelineOptions):
        if item.name in skipped:
            continue
        flags = (f"--{item.name.replace('_', '-')}", *ALIASES.get(item.name, ()))
        default = defaults.get(item.name, item.default)
        kwargs: dict[str, Any] = {
            "dest": item.name,
            "default": default,
            "help": item.metadata["help"],
        }
        kind = str(item.type)
        if kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        elif kind == "bool | None":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = int if kind.startswith("int") else str
            if item.metadata["choices"]:
                kwargs["choices"] = item.metadata["choices"]
        if default is not None and "action" not in kwargs:
            kwargs["help"] += f" (default: {default})"
        group.add_argument(*flags, **kwargs)


def options_from_args(args: argparse.Namespace, **changes: Any) -> PipelineOptions:
    """The ``PipelineOptions`` among parsed arguments, with ``changes`` applied."""
    return PipelineOptions.from_mapping({**vars(args), **changes})


def batch_pipeline(args: argparse.Namespace, **changes: Any) -> Any:
    """The pipeline for a batch command (fuse, bag fuse, demo --library)."""
    from sgdfuse_ros.pipeline import FusionPipeline

    return FusionPipeline(options_from_args(args, **changes))
