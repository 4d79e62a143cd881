"""ROS 2 topic names, checked without rclpy: by the bag tools, the launch file and the CLI
before a bad name reaches rcl, whose own errors name neither the argument nor the rule."""

from __future__ import annotations

import re

_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_topic_name(name: str) -> str:
    """``name`` if it is a valid ROS 2 topic name, else ValueError saying why (rclpy would
    refuse it only when a publisher is made, e.g. when the bag is replayed)."""
    body = name[2:] if name.startswith("~/") else name.removeprefix("/")
    tokens = body.split("/")
    if not body or not all(_NAME_TOKEN.fullmatch(t) for t in tokens) or "__" in body:
        raise ValueError(
            f"invalid ROS topic name {name!r}: use /-separated tokens of letters, digits and "
            "single underscores, not starting with a digit (e.g. /fused/image)"
        )
    return name
