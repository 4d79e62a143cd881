"""Several processes over DDS: a replayed bag (with /clock) → the real fusion_node → /fused/image.

The node runs as its own process with the real pipeline and ``use_sim_time``; this process
replays a synthetic bag and watches the output. At most one frame pair is in flight (the
replay waits for each fused frame), so the test checks the data path, not the machine's speed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from sgdfuse_ros.io.bag import DEFAULT_RGB_TOPIC, read_topic_images, write_synthetic_bag  # noqa: E402
from sgdfuse_ros.ros import launch_args  # noqa: E402
from sgdfuse_ros.ros.client import FusionObserver  # noqa: E402
from sgdfuse_ros.ros.process import (  # noqa: E402
    isolated_ros_environment,
    start_fusion_node,
    stop_process,
)
from sgdfuse_ros.ros.replay import BagReplayer  # noqa: E402

FRAMES, H, W = 6, 64, 80
WAIT = 60.0


class NodeUnderTest:
    def __init__(self, tmp: Path) -> None:
        self.domain = random.randint(1, 100)
        self.bag = write_synthetic_bag(tmp / "bag", num_frames=FRAMES, height=H, width=W, fps=10.0)
        values = launch_args.with_defaults({"use_sim_time": "true"})
        overrides = {
            **launch_args.parameter_overrides(values),
            "allow_untrained": True,
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
        self.replayer = BagReplayer(self.observer.node, self.bag)
        if not self.replayer.wait_for_subscribers(timeout=120.0):
            raise AssertionError("fusion_node never subscribed:\n" + self.log.read_text())

    def replay(self, loops: int = 1) -> tuple[list[int], list[int]]:
        """Replay with one pair in flight; returns (published RGB stamps, fused stamps)."""
        observer = self.observer
        baseline = observer.fused_count()
        published: list[int] = []

        def one_in_flight(topic: str, stamp: int | None) -> None:
            if topic == DEFAULT_RGB_TOPIC and stamp is not None:
                if published:
                    observer.wait_for(
                        lambda: observer.fused_count() - baseline >= len(published), WAIT
                    )
                published.append(stamp)

        self.replayer.play(loops=loops, stop=threading.Event(), before_publish=one_in_flight)
        observer.wait_for(lambda: observer.fused_count() - baseline >= len(published), WAIT)
        return published, [item.stamp for item in observer.fused[baseline:]]

    def close(self) -> int:
        self.observer.close()
        return stop_process(self.process)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeUnderTest]:
    running = NodeUnderTest(tmp_path_factory.mktemp("e2e"))
    yield running
    assert running.close() == 0, running.log.read_text()


def test_every_replayed_pair_is_fused_with_its_stamp(node: NodeUnderTest) -> None:
    published, fused = node.replay()
    bag_stamps = [stamp for stamp, _ in read_topic_images(node.bag, DEFAULT_RGB_TOPIC)]
    assert published == bag_stamps and len(bag_stamps) == FRAMES
    assert fused == bag_stamps  # every pair, in order, with the RGB stamp
    last = node.observer.fused[-1]
    assert (last.width, last.height, last.encoding) == (W, H, "rgb8")
    assert last.frame_id == "rgb_optical_frame"
    assert node.process.poll() is None


def test_use_sim_time_is_honoured(node: NodeUnderTest) -> None:
    """With the wall clock, source stamp → publish would be the age of the recording (years);
    on the replayed /clock it is the time since the frame's bag time."""
    observer = node.observer
    assert observer.wait_for(lambda: observer.counter("fused") >= FRAMES, WAIT)
    latency = observer.diagnostic("latency_end_to_end_ms_p50")
    assert latency not in (None, "n/a")
    assert abs(float(latency)) < 60_000.0


def test_looped_bag_keeps_fusing(node: NodeUnderTest) -> None:
    published, fused = node.replay(loops=2)
    assert len(published) == 2 * FRAMES
    assert fused == published  # the second loop's stamps restart: clock jumped back
    observer = node.observer
    assert observer.wait_for(lambda: observer.counter("clock_jumps_back") >= 1, WAIT), (
        observer.diagnostics
    )
    # the stamps themselves went back on both topics: counted, and no pair lost (above)
    for topic in ("thermal", "rgb"):
        assert observer.wait_for(
            lambda topic=topic: observer.counter(f"stamp_jumps_back.{topic}") >= 1, WAIT
        ), observer.diagnostics
    assert observer.counter("no_sync") == 0, node.log.read_text()
    assert node.process.poll() is None
