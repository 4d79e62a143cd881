"""A small rclpy observer of a running fusion node: fused frames and /diagnostics as they arrive.

The node demo, the node benchmark and the multi-process tests all need the same thing: send
frames, then wait (with a deadline, not a fixed sleep) until fused frames or diagnostic
counters show up. The observer spins in its own thread and rclpy context, so its owner can
block on conditions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from sgdfuse_ros.io.image_codec import image_to_array
from sgdfuse_ros.io.sync import stamp_ns


@dataclass
class FusedArrival:
    stamp: int  # header stamp, ns
    received: float  # time.time() at arrival
    frame_id: str
    encoding: str
    width: int
    height: int
    image: np.ndarray | None = None


class FusionObserver:
    """Owns an rclpy context on ``domain_id`` with a node subscribed to the fusion outputs."""

    def __init__(
        self,
        domain_id: int | None = None,
        name: str = "sgdfuse_observer",
        fused_topic: str = "/fused/image",
        keep_images: bool = False,
        diagnostics_name: str | None = None,
    ) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.keep_images = keep_images
        self.diagnostics_name = diagnostics_name
        self.fused: list[FusedArrival] = []
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_level: int | None = None
        self.diagnostics_message = ""
        self.diagnostics_count = 0
        self._condition = threading.Condition()
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE
        )
        self.node.create_subscription(Image, fused_topic, self._on_fused, qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self._executor.spin_once(timeout_sec=0.1)
        except Exception:  # noqa: BLE001 - context shut down while waiting
            pass

    def _on_fused(self, msg: Image) -> None:
        arrival = FusedArrival(
            stamp=stamp_ns(msg),
            received=time.time(),
            frame_id=msg.header.frame_id,
            encoding=msg.encoding,
            width=msg.width,
            height=msg.height,
            image=image_to_array(msg) if self.keep_images else None,
        )
        with self._condition:
            self.fused.append(arrival)
            self._condition.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if self.diagnostics_name is not None and self.diagnostics_name not in status.name:
                continue
            if "fusion" not in status.name:
                continue
            with self._condition:
                self.diagnostics = {item.key: item.value for item in status.values}
                level = status.level
                self.diagnostics_level = level[0] if isinstance(level, bytes) else int(level)
                self.diagnostics_message = status.message
                self.diagnostics_count += 1
                self._condition.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked on every arrival) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.2))
        return True

    def fused_count(self) -> int:
        with self._condition:
            return len(self.fused)

    def counter(self, key: str) -> int:
        """An integer diagnostic value (0 while absent)."""
        with self._condition:
            value = self.diagnostics.get(key, "0")
        try:
            return int(value)
        except ValueError:
            return 0

    def diagnostic(self, key: str) -> str | None:
        with self._condition:
            return self.diagnostics.get(key)

    def close(self) -> None:
        try:
            self.node.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)
            self._thread.join(5.0)

    def __enter__(self) -> FusionObserver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
