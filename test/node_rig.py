"""What the DDS test rigs share: a running fusion_node process, its log, an observer and two
image publishers. Importable without rclpy (the subclasses import it where they run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WAIT = 60.0  # seconds a rig waits for a fused frame or a counter


class NodeRigBase:
    """Subclasses set ``process``, ``log``, ``observer``, ``thermal`` and ``rgb`` and define
    ``good_pair()`` (a fresh, well-formed thermal + RGB pair)."""

    wait_s: float = WAIT

    process: Any
    log: Path
    observer: Any
    thermal: Any
    rgb: Any

    def good_pair(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, thermal: Any, rgb: Any) -> None:
        if thermal is not None:
            self.thermal.publish(thermal)
        if rgb is not None:
            self.rgb.publish(rgb)

    def assert_recovers(self) -> None:
        """The node is alive and fuses the next good pair (by its stamp)."""
        thermal, rgb = self.good_pair()
        self.send(thermal, rgb)
        stamp_ns = rgb.header.stamp.sec * 1_000_000_000
        observer = self.observer
        assert observer.wait_for(
            lambda: any(item.stamp == stamp_ns for item in observer.fused), self.wait_s
        ), self.log_text()
        assert self.process.poll() is None

    def wait_counter(self, key: str, at_least: int = 1) -> int:
        observer = self.observer
        observer.wait_for(lambda: observer.counter(key) >= at_least, self.wait_s)
        value = observer.counter(key)
        assert value >= at_least, (key, observer.diagnostics, self.log_text()[-3000:])
        return value
