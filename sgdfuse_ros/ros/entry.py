"""The ``fusion_node`` executable's entry point, kept free of heavy imports.

The signal handlers (shutdown.py) go in before rclpy, numpy and the node's modules load: that
takes a second or more on a small computer, and a Ctrl-C in that time would otherwise be a
KeyboardInterrupt traceback and a "process has died" in ``ros2 launch``.
"""

from __future__ import annotations

import sys

from sgdfuse_ros.ros.shutdown import SHUTDOWN, watch_parent


def fusion_node(args: list[str] | None = None) -> int:
    SHUTDOWN.install()
    watch_parent(SHUTDOWN)
    from sgdfuse_ros.ros.node import main

    return main(args)


if __name__ == "__main__":
    sys.exit(fusion_node())
