"""`sgdfuse bag replay` as its own process: every message and /clock reach a subscriber over DDS,
remapping works, and looping restarts the bag time."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from sgdfuse_ros.io.bag import read_topic_images, write_image_bag  # noqa: E402
from sgdfuse_ros.ros.process import isolated_ros_environment  # noqa: E402


def test_replay_cli_publishes_messages_and_clock(tmp_path: Path) -> None:
    import numpy as np
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from sgdfuse_ros.io.bag import timed_frames

    rng = np.random.default_rng(0)
    pairs = [
        (
            rng.integers(0, 256, (16, 20), dtype=np.uint8),
            rng.integers(0, 256, (16, 20, 3), dtype=np.uint8),
        )
        for _ in range(4)
    ]
    bag = tmp_path / "bag"
    write_image_bag(bag, timed_frames(pairs, fps=20.0))
    expected = [stamp for stamp, _ in read_topic_images(bag, "/rgb/image_raw")]

    domain = random.randint(1, 100)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("replay_listener", context=context)
    stamps: list[int] = []
    clocks: list[int] = []
    lock = threading.Lock()

    def on_image(msg: Image) -> None:
        with lock:
            stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)

    def on_clock(msg: Clock) -> None:
        with lock:
            clocks.append(msg.clock.sec * 1_000_000_000 + msg.clock.nanosec)

    node.create_subscription(Image, "/renamed/rgb", on_image, 10)
    node.create_subscription(Clock, "/clock", on_clock, 100)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    command = [
        sys.executable,
        "-m",
        "sgdfuse_ros.cli",
        "bag",
        "replay",
        str(bag),
        "--loop",
        "2",
        "--remap",
        "/rgb/image_raw:=/renamed/rgb",
        "--wait-for-subscribers",
        "60",
        "--topics",
        "/rgb/image_raw",
    ]
    process = subprocess.Popen(
        command,
        env=isolated_ros_environment(domain),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90.0
        while process.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        end = time.monotonic() + 2.0
        while time.monotonic() < end and len(stamps) < 2 * len(expected):
            executor.spin_once(timeout_sec=0.05)
        output = process.communicate(timeout=30)[0]
        assert process.returncode == 0, output
    finally:
        if process.poll() is None:
            process.kill()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert stamps == expected * 2, output
    assert clocks and min(clocks) >= expected[0] - 1
    jumps_back = sum(1 for a, b in zip(clocks, clocks[1:], strict=False) if b < a)
    assert jumps_back == 1  # the second loop restarts the bag time
