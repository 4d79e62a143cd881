"""Publish a rosbag2's messages and /clock over DDS, for tests and machines without the ros2 CLI.

``ros2 bag play`` stays the user path on a ROS machine. Messages go out as the recorded CDR
bytes (no deserialization), paced by their log times divided by ``rate``; /clock carries the
bag time, so a node with ``use_sim_time`` sees the recording's time line. Looping restarts the
bag time, i.e. the clock jumps back, exactly like ``ros2 bag play --loop``.
"""

from __future__ import annotations

import importlib
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from sgdfuse_ros.errors import BagError
from sgdfuse_ros.io.bag import open_bag_reader
from sgdfuse_ros.io.topic_names import check_topic_name

_STAMPED_TYPES = {
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "sensor_msgs/msg/CameraInfo",
}


def message_class(msgtype: str) -> type:
    """rclpy message class for a ``pkg/msg/Name`` type string."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def cdr_header_stamp(raw: bytes) -> int | None:
    """Header stamp (ns) of a serialized message whose first field is std_msgs/Header."""
    if len(raw) < 12:
        return None
    little_endian = raw[1] == 1
    sec, nanosec = struct.unpack_from("<iI" if little_endian else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


@dataclass
class ReplayReport:
    messages: int = 0
    loops: int = 0
    # topic -> [(header stamp ns, wall time.time() at publish)]
    published: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))


class BagReplayer:
    """Replays one bag through publishers created on ``node`` (which need not be spinning)."""

    def __init__(
        self,
        node: Node,
        bag: str | Path,
        rate: float = 1.0,
        publish_clock: bool = True,
        clock_hz: float = 50.0,
        topics: Iterable[str] | None = None,
        remaps: dict[str, str] | None = None,
        qos: str = "reliable",
        depth: int = 10,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"replay rate must be > 0, got {rate}")
        self.node = node
        self.bag = Path(bag)
        self.rate = rate
        self.clock_period = 1.0 / clock_hz
        self.remaps = dict(remaps or {})
        reliability = (
            ReliabilityPolicy.RELIABLE if qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
        )
        profile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability)
        wanted = set(topics) if topics else None
        with open_bag_reader(self.bag) as reader:
            self._connections = [
                c for c in reader.connections if wanted is None or c.topic in wanted
            ]
        if not self._connections:
            raise ValueError(f"no topics to replay in {self.bag}")
        self._publishers: dict[str, Any] = {}
        self._msgtypes: dict[str, str] = {}
        for connection in self._connections:
            target = self.remaps.get(connection.topic, connection.topic)
            try:
                check_topic_name(target)
            except ValueError as exc:
                raise BagError(
                    f"{exc} (topic of {self.bag}); replay it with --remap {target}:=<valid name>"
                ) from None
            if target not in self._publishers:
                self._publishers[target] = node.create_publisher(
                    message_class(connection.msgtype), target, profile
                )
                self._msgtypes[target] = connection.msgtype
        self._clock_pub = None
        if publish_clock:
            from rosgraph_msgs.msg import Clock

            self._clock_pub = node.create_publisher(Clock, "/clock", 10)

    @property
    def topics(self) -> list[str]:
        return list(self._publishers)

    def wait_for_subscribers(
        self, topics: Iterable[str] | None = None, timeout: float = 60.0
    ) -> bool:
        """Wait until each given topic (default: every image topic) has a matched subscriber.

        Reliable volatile publishers drop what they send before discovery completes, so tests
        wait here instead of sleeping a fixed time.
        """
        names = (
            list(topics)
            if topics is not None
            else [topic for topic, msgtype in self._msgtypes.items() if "Image" in msgtype]
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._publishers[name].get_subscription_count() > 0 for name in names):
                return True
            time.sleep(0.05)
        return False

    def _publish_clock(self, bag_time_ns: int) -> None:
        if self._clock_pub is None:
            return
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        self._clock_pub.publish(
            Clock(clock=Time(sec=bag_time_ns // 1_000_000_000, nanosec=bag_time_ns % 1_000_000_000))
        )

    def play(
        self,
        loops: int = 1,
        stop: threading.Event | None = None,
        report: ReplayReport | None = None,
        before_publish: Callable[[str, int | None], None] | None = None,
    ) -> ReplayReport:
        """Play the bag ``loops`` times (0 = until ``stop`` is set); returns what was published.

        ``before_publish(topic, header_stamp)`` is called before each message and may block: the
        demo and the tests use it to keep at most one frame pair in flight on a slow machine,
        so every recorded pair reaches the fusion instead of being dropped as stale.
        """
        report = report if report is not None else ReplayReport()
        stop = stop or threading.Event()
        loop = 0
        while (loops == 0 or loop < loops) and not stop.is_set():
            with open_bag_reader(self.bag) as reader:
                wanted = {c.id for c in self._connections}
                connections = [c for c in reader.connections if c.id in wanted]
                start_wall: float | None = None
                start_bag = 0
                for connection, log_time, raw in reader.messages(connections=connections):
                    if stop.is_set():
                        break
                    if start_wall is None:
                        start_wall, start_bag = time.monotonic(), log_time
                    self._wait_until(start_wall, start_bag, log_time, stop)
                    topic = self.remaps.get(connection.topic, connection.topic)
                    stamp = cdr_header_stamp(raw) if connection.msgtype in _STAMPED_TYPES else None
                    if before_publish is not None:
                        before_publish(topic, stamp)
                    self._publish_clock(log_time)
                    self._publishers[topic].publish(bytes(raw))
                    report.messages += 1
                    if stamp is not None:
                        report.published[topic].append((stamp, time.time()))
            loop += 1
            report.loops = loop
        return report

    def _wait_until(
        self, start_wall: float, start_bag: int, log_time: int, stop: threading.Event
    ) -> None:
        """Sleep until a message is due, publishing /clock in between (bag time advances)."""
        due = start_wall + (log_time - start_bag) / 1e9 / self.rate
        while not stop.is_set():
            now = time.monotonic()
            if now >= due:
                return
            bag_now = start_bag + int((now - start_wall) * self.rate * 1e9)
            self._publish_clock(bag_now)
            stop.wait(min(self.clock_period, due - now))

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until reliable subscribers acknowledged everything published.

        A process that exits right after its last publish loses the messages still in flight.
        """
        from rclpy.duration import Duration

        return all(
            publisher.wait_for_all_acked(Duration(seconds=timeout_s))
            for publisher in self._publishers.values()
        )

    def destroy(self) -> None:
        for publisher in self._publishers.values():
            self.node.destroy_publisher(publisher)
        if self._clock_pub is not None:
            self.node.destroy_publisher(self._clock_pub)
        self._publishers = {}
        self._clock_pub = None


def replay_bag_cli(
    bag: Path,
    rate: float = 1.0,
    loops: int = 1,
    publish_clock: bool = True,
    topics: list[str] | None = None,
    remaps: dict[str, str] | None = None,
    qos: str = "reliable",
    wait_for_subscribers_s: float = 0.0,
) -> int:
    """``sgdfuse bag replay``: own rclpy context, Ctrl-C stops."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node("sgdfuse_bag_replay")
    try:
        replayer = BagReplayer(
            node, bag, rate=rate, publish_clock=publish_clock, topics=topics, remaps=remaps, qos=qos
        )
        if wait_for_subscribers_s > 0 and not replayer.wait_for_subscribers(
            timeout=wait_for_subscribers_s
        ):
            node.get_logger().warning("not every image topic has a subscriber; playing anyway")
        node.get_logger().info(f"replaying {bag}: " + ", ".join(replayer.topics))
        report = replayer.play(loops=loops)
        if not replayer.flush():
            node.get_logger().warning("some subscribers did not acknowledge the last messages")
        node.get_logger().info(f"published {report.messages} messages in {report.loops} loop(s)")
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
