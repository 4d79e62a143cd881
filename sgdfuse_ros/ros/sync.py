"""The node's synchronizer choice: ``message_filters`` where it imports, else the package's own.

``message_filters.ApproximateTimeSynchronizer`` (a system ROS install, or the upstream wheel)
is fed from the node's own subscriptions through ``SimpleFilter`` inputs, so both backends
take messages the same way and the same tests run against both.
"""

from __future__ import annotations

import threading
from typing import Any

from sgdfuse_ros.io.sync import (
    RGB,
    THERMAL,
    ApproximateTimePairSync,
    PairCallback,
    PairSynchronizer,
    SyncCounters,
    stamp_ns,
)


class MessageFiltersPairSync(SyncCounters):
    """message_filters.ApproximateTimeSynchronizer fed from the node's own subscriptions."""

    backend = "message_filters"

    def __init__(self, queue_size: int, slop: float, callback: PairCallback) -> None:
        super().__init__(slop)
        import message_filters

        if queue_size < 1:
            raise ValueError(f"sync queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"sync slop must be >= 0 seconds, got {slop}")
        self._inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
        self._sync = message_filters.ApproximateTimeSynchronizer(
            self._inputs, int(queue_size), float(slop)
        )
        self._sync.registerCallback(self._on_pair)
        self._callback = callback
        self._guard = threading.Lock()

    def _on_pair(self, thermal: Any, rgb: Any) -> None:
        self.pairs += 1
        self._callback(thermal, rgb)

    def add_thermal(self, msg: Any) -> None:
        self._add(THERMAL, msg)

    def add_rgb(self, msg: Any) -> None:
        self._add(RGB, msg)

    def _add(self, index: int, msg: Any) -> None:
        stamp = stamp_ns(msg)
        with self._guard:
            self.received[index] += 1
            back_ns = self._jump_back_ns(index, stamp)
            if back_ns:
                self._drop_old_time_line(index, stamp)
            self._inputs[index].signalMessage(msg)
        self._report_jump(index, back_ns)

    def _drop_old_time_line(self, index: int, stamp: int) -> None:
        """The same rule as the package's own backend, on message_filters' {stamp: msg} queues."""
        limit = stamp + self.jump_tolerance_ns
        with self._sync.lock:
            self._sync.queues[index].clear()
            other = self._sync.queues[1 - index]
            for queued_stamp in [s for s in other if s > limit]:
                del other[queued_stamp]

    def reset(self) -> None:
        """Forget queued messages and the last stamps (node reactivated)."""
        with self._guard:
            self.resets += 1
            with self._sync.lock:
                for queue in self._sync.queues:
                    queue.clear()
            self._last_stamp = [None, None]

    def queued(self) -> int:
        with self._sync.lock:
            return sum(len(queue) for queue in self._sync.queues)


def message_filters_available() -> bool:
    """True where message_filters (a system ROS install) can be imported."""
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


def make_pair_sync(
    queue_size: int, slop: float, callback: PairCallback, backend: str = "auto"
) -> PairSynchronizer:
    """Build a synchronizer: ``auto`` prefers message_filters, else the package's own."""
    if backend not in ("auto", "message_filters", "sgdfuse_ros"):
        raise ValueError(
            f"unknown sync backend {backend!r}; use auto, message_filters or sgdfuse_ros"
        )
    if backend == "message_filters" or (backend == "auto" and message_filters_available()):
        return MessageFiltersPairSync(queue_size, slop, callback)
    return ApproximateTimePairSync(queue_size, slop, callback)
