"""Approximate-time pairing of the thermal and RGB streams.

The package's own approximate-time synchronizer and the small interface it shares with the
``message_filters`` adapter in ``sgdfuse_ros.ros.sync`` (``add_thermal``, ``add_rgb``, ``reset``,
counters). Offline bag fusion uses it directly; the node picks either backend. Nothing here
needs rclpy: stamps are read from ``msg.header.stamp`` (``sec``/``nanosec``), which rclpy and
rosbags messages both carry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

PairCallback = Callable[[Any, Any], None]

THERMAL, RGB = 0, 1


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message in integer nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class PairSynchronizer(Protocol):
    """What the node and the bag tool need from a synchronizer."""

    backend: str
    received: list[int]
    pairs: int

    def add_thermal(self, msg: Any) -> None: ...
    def add_rgb(self, msg: Any) -> None: ...
    def reset(self) -> None: ...
    def queued(self) -> int: ...
    def unmatched(self) -> int: ...


class SyncCounters:
    """Counters shared by both backends; unmatched = received - 2·pairs - still queued."""

    def __init__(self) -> None:
        self.received = [0, 0]
        self.pairs = 0
        self.resets = 0
        self._last_stamp: list[int | None] = [None, None]

    def _stamp_went_back(self, index: int, stamp: int) -> bool:
        """True when a topic's stamps go backwards (a looped bag or a restarted clock).

        A camera's stamps on one topic are monotonic, so any step back means the queued
        messages belong to another time line and could pair wrongly with the new ones.
        """
        last = self._last_stamp[index]
        self._last_stamp[index] = stamp
        return last is not None and stamp < last

    def queued(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def unmatched(self) -> int:
        return max(0, sum(self.received) - 2 * self.pairs - self.queued())


class ApproximateTimePairSync(SyncCounters):
    """The package's own approximate-time synchronizer for two streams.

    Each arriving message is matched against the other stream's queue: the queued message
    with the closest stamp within ``slop`` seconds forms a pair. The pair and everything older
    on both queues is removed, because with newest-pair-only processing an older frame can
    never be useful again. Queues keep at most ``queue_size`` messages each.
    """

    backend = "sgdfuse_ros"

    def __init__(self, queue_size: int, slop: float, callback: PairCallback) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"sync queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ValueError(f"sync slop must be >= 0 seconds, got {slop}")
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop * 1e9))
        self._callback = callback
        self._queues: list[list[tuple[int, Any]]] = [[], []]
        self._lock = threading.Lock()

    def add_thermal(self, msg: Any) -> None:
        self._add(THERMAL, msg)

    def add_rgb(self, msg: Any) -> None:
        self._add(RGB, msg)

    def _add(self, index: int, msg: Any) -> None:
        stamp = stamp_ns(msg)
        pair: tuple[Any, Any] | None = None
        with self._lock:
            self.received[index] += 1
            if self._stamp_went_back(index, stamp):
                self._clear_locked()
            other = self._queues[1 - index]
            best: int | None = None
            for position, (other_stamp, _) in enumerate(other):
                delta = abs(other_stamp - stamp)
                if delta <= self.slop_ns and (best is None or delta < abs(other[best][0] - stamp)):
                    best = position
            if best is None:
                mine = self._queues[index]
                mine.append((stamp, msg))
                mine.sort(key=lambda item: item[0])
                del mine[: max(0, len(mine) - self.queue_size)]
            else:
                other_stamp, other_msg = other[best]
                del other[: best + 1]
                # this stream's queued messages are older than the new one: no longer useful
                self._queues[index] = [item for item in self._queues[index] if item[0] > stamp]
                self.pairs += 1
                pair = (msg, other_msg) if index == THERMAL else (other_msg, msg)
        if pair is not None:
            self._callback(*pair)

    def _clear_locked(self) -> None:
        self.resets += 1
        for queue in self._queues:
            queue.clear()
        # messages cleared here count as unmatched through received - 2·pairs - queued

    def reset(self) -> None:
        """Forget queued messages and the last stamps (clock jumped back, node reactivated)."""
        with self._lock:
            self._clear_locked()
            self._last_stamp = [None, None]

    def queued(self) -> int:
        with self._lock:
            return len(self._queues[0]) + len(self._queues[1])
