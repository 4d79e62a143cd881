"""Bad input against the running fusion_node process: each case is logged (rate-limited),
counted in /diagnostics, the node stays alive and the next good pair is fused."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from node_rig import WAIT, NodeRigBase  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from sgdfuse_ros.io.image_codec import encode_array, image_message  # noqa: E402
from sgdfuse_ros.ros import launch_args  # noqa: E402
from sgdfuse_ros.ros.client import FusionObserver  # noqa: E402
from sgdfuse_ros.ros.process import (  # noqa: E402
    isolated_ros_environment,
    start_fusion_node,
    stop_process,
)

H, W = 64, 80
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def image(array: np.ndarray, encoding: str, stamp_s: int, offset_ns: int = 0) -> Image:
    """An Image message of ``array`` stamped ``stamp_s`` s + ``offset_ns`` ns."""
    msg = image_message(Image, encode_array(array, encoding))
    msg.header.stamp.sec = stamp_s
    msg.header.stamp.nanosec = offset_ns
    msg.header.frame_id = "rgb_optical"
    return msg


class BadInputRig(NodeRigBase):
    """fusion_node with reliable input QoS, a short watchdog and a long log throttle period."""

    def __init__(self, tmp: Path) -> None:
        self.domain = random.randint(1, 100)
        values = launch_args.with_defaults()
        overrides = {
            **launch_args.parameter_overrides(values),
            "allow_untrained": True,
            "input_qos": "reliable",
            "watchdog.timeout": 1.5,
            "log_throttle_period": 600.0,
            "diagnostics.period": 0.3,
        }
        overrides_file = launch_args.write_overrides_file(overrides, tmp / "overrides.yaml")
        self.log = tmp / "fusion_node.log"
        self.process = start_fusion_node(
            launch_args.node_ros_arguments(values, overrides_file),
            isolated_ros_environment(self.domain),
            self.log,
        )
        self.observer = FusionObserver(domain_id=self.domain)
        node = self.observer.node
        self.thermal = node.create_publisher(Image, "/thermal/image_raw", RELIABLE)
        self.rgb = node.create_publisher(Image, "/rgb/image_raw", RELIABLE)
        deadline = time.monotonic() + 120.0
        while not (self.thermal.get_subscription_count() and self.rgb.get_subscription_count()):
            assert time.monotonic() < deadline, "fusion_node never subscribed:\n" + self.log_text()
            assert self.process.poll() is None, self.log_text()
            time.sleep(0.05)
        self.stamp = 100
        self.rng = np.random.default_rng(0)

    def next_stamp(self) -> int:
        self.stamp += 1  # one second apart: never within the sync slop of another frame
        return self.stamp

    def good_pair(self) -> tuple[Image, Image]:
        stamp = self.next_stamp()
        return (
            image(self.rng.integers(0, 256, (H, W), dtype=np.uint8), "mono8", stamp),
            image(self.rng.integers(0, 256, (H, W, 3), dtype=np.uint8), "rgb8", stamp),
        )

    def wait_log(self, pattern: str) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            text = self.log_text()
            if re.search(pattern, text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"no log line matching {pattern!r}:\n{self.log_text()}")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadInputRig]:
    running = BadInputRig(tmp_path_factory.mktemp("bad_input"))
    running.assert_recovers()  # warm: a good pair is fused before any bad input
    yield running
    running.observer.close()
    assert stop_process(running.process) == 0, running.log_text()


def test_library_notices_are_node_log_lines(rig: BadInputRig) -> None:
    # The classical-priors notice comes from Python logging in the library: it reaches the
    # operator as a node line with severity and name, not as a bare stderr line.
    line = rig.wait_log(r"no SAM checkpoint configured")
    assert re.search(
        r"\[WARN\] \[[\d.]+\] \[[^\]]*sgdfuse_fusion\]: no SAM checkpoint configured", line
    )


def test_unknown_encoding_logged_once_and_counted(rig: BadInputRig) -> None:
    for _ in range(4):
        thermal, rgb = rig.good_pair()
        thermal.encoding = "yuv422"
        rig.send(thermal, rgb)
    assert rig.wait_counter("bad_input.thermal:unknown_encoding", 4) == 4
    text = rig.wait_log(r"skipping thermal input \(unknown_encoding\)")
    assert len(re.findall(r"skipping thermal input \(unknown_encoding\)", text)) == 1  # throttled
    assert "WARN" in text
    rig.assert_recovers()


def test_negative_stamp_is_bad_input_not_a_crash(rig: BadInputRig) -> None:
    # rclpy's Time refuses negative seconds: handed to message_filters it ended the node.
    thermal, rgb = rig.good_pair()
    thermal.header.stamp.sec = -5
    rig.send(thermal, rgb)
    rig.wait_counter("bad_input.thermal:bad_stamp")
    rig.wait_log(r"skipping thermal input \(bad_stamp\): header stamp -5 s is negative")
    assert rig.process.poll() is None, rig.log_text()
    rig.assert_recovers()


def test_truncated_data(rig: BadInputRig) -> None:
    thermal, rgb = rig.good_pair()
    rgb.data = bytes(rgb.data)[: len(rgb.data) // 2]
    rig.send(thermal, rgb)
    rig.wait_counter("bad_input.rgb:truncated")
    rig.wait_log(r"skipping rgb input \(truncated\)")
    rig.assert_recovers()


def test_zero_size_image(rig: BadInputRig) -> None:
    thermal, rgb = rig.good_pair()
    thermal.height, thermal.width, thermal.step = 0, 0, 0
    thermal.data = b""
    rig.send(thermal, rgb)
    rig.wait_counter("bad_input.thermal:empty")
    rig.wait_log(r"skipping thermal input \(empty\)")
    rig.assert_recovers()


def test_mismatched_sizes_without_registration(rig: BadInputRig) -> None:
    stamp = rig.next_stamp()
    rig.send(
        image(np.zeros((32, 40), np.uint8), "mono8", stamp),
        image(np.zeros((H, W, 3), np.uint8), "rgb8", stamp),
    )
    rig.wait_counter("bad_input.pair:size_mismatch")
    rig.wait_log(r"skipping pair input \(size_mismatch\).*registration")
    rig.assert_recovers()


def test_nan_in_32fc1(rig: BadInputRig) -> None:
    stamp = rig.next_stamp()
    values = np.full((H, W), 25.0, np.float32)
    values[3, 4] = np.nan
    rig.send(image(values, "32FC1", stamp), image(np.zeros((H, W, 3), np.uint8), "rgb8", stamp))
    rig.wait_counter("bad_input.thermal:non_finite")
    rig.wait_log(r"skipping thermal input \(non_finite\).*NaN")
    rig.assert_recovers()


def test_one_topic_silent(rig: BadInputRig) -> None:
    deadline = time.monotonic() + 4.0  # watchdog.timeout is 1.5 s
    while time.monotonic() < deadline:
        rig.send(None, rig.good_pair()[1])
        time.sleep(0.2)
    rig.wait_counter("silent_topic.thermal")
    rig.wait_log(r"thermal topic /thermal/image_raw has been silent")
    rig.assert_recovers()


def test_best_effort_publisher_meets_reliable_subscription(rig: BadInputRig) -> None:
    best_effort = rig.observer.node.create_publisher(
        Image, "/thermal/image_raw", QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    )
    try:
        thermal, _ = rig.good_pair()
        best_effort.publish(thermal)
        rig.wait_counter("incompatible_qos.thermal")
        rig.wait_log(r"incompatible RELIABILITY")
    finally:
        rig.observer.node.destroy_publisher(best_effort)
    rig.assert_recovers()


def test_traffic_on_both_topics_that_never_syncs(rig: BadInputRig) -> None:
    deadline = time.monotonic() + 4.0  # stamps 0.5 s apart, slop 0.05 s: nothing pairs
    while time.monotonic() < deadline:
        thermal, rgb = rig.good_pair()
        thermal.header.stamp.nanosec = 500_000_000
        rig.send(thermal, rgb)
        time.sleep(0.2)
    rig.wait_counter("no_sync")
    rig.wait_log(r"both image topics carry traffic but nothing synced.*latest stamps differ")
    rig.assert_recovers()
