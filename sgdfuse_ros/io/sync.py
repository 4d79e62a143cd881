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
StampJumpCallback = Callable[[str, float], None]  # (topic, seconds back)

THERMAL, RGB = 0, 1
TOPIC_NAMES = ("thermal", "rgb")

# A topic's stamps stepping back by more than this (or the sync slop, if larger) start a new
# time line; smaller steps are stamping jitter and pair as usual. One camera's stamps only go
# back on a restart or a clock step, and a looped bag of a fraction of a second must count.
STAMP_JUMP_TOLERANCE_S = 0.1


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message in integer nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class PairSynchronizer(Protocol):
    """What the node and the bag tool need from a synchronizer."""

    backend: str
    received: list[int]
    pairs: int
    stamp_jumps_back: dict[str, int]
    on_stamp_jump: StampJumpCallback | None

    def add_thermal(self, msg: Any) -> None: ...
    def add_rgb(self, msg: Any) -> None: ...
    def reset(self) -> None: ...
    def queued(self) -> int: ...
    def unmatched(self) -> int: ...


class SyncCounters:
    """Counters and stamp-jump detection shared by both backends.

    unmatched = received - 2·pairs - still queued. A topic whose header stamps step back by
    more than the tolerance (a camera driver restarting, a bag looped without /clock) starts a
    new time line: the queued messages of the old one are dropped so they never pair with the
    new ones, while the other topic's messages already on the new time line are kept, so the
    first pair after the jump is not lost. Detection needs no clock, so it works on wall-clock
    and sim time alike.
    """

    def __init__(self, slop: float) -> None:
        self.received = [0, 0]
        self.pairs = 0
        self.resets = 0
        self.stamp_jumps_back = {name: 0 for name in TOPIC_NAMES}
        self.on_stamp_jump: StampJumpCallback | None = None  # told once per detected jump
        self.jump_tolerance_ns = int(round(max(STAMP_JUMP_TOLERANCE_S, slop) * 1e9))
        self._last_stamp: list[int | None] = [None, None]

    def _jump_back_ns(self, index: int, stamp: int) -> int:
        """How far this topic's stamps jumped back (0: no jump); counts a jump. Call locked."""
        last = self._last_stamp[index]
        self._last_stamp[index] = stamp
        if last is None or last - stamp <= self.jump_tolerance_ns:
            return 0
        self.stamp_jumps_back[TOPIC_NAMES[index]] += 1
        self.resets += 1
        return last - stamp

    def _report_jump(self, index: int, back_ns: int) -> None:
        """Tell the owner (outside the lock: the callback may log or count)."""
        if back_ns and self.on_stamp_jump is not None:
            self.on_stamp_jump(TOPIC_NAMES[index], back_ns / 1e9)

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
        super().__init__(slop)
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
            back_ns = self._jump_back_ns(index, stamp)
            if back_ns:
                self._drop_old_time_line(index, stamp)
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
        self._report_jump(index, back_ns)
        if pair is not None:
            self._callback(*pair)

    def _drop_old_time_line(self, index: int, stamp: int) -> None:
        """After topic ``index`` jumped back to ``stamp``: its queue is all old time line; the
        other queue keeps what is not later than the new stamp (already on the new line).
        Dropped messages count as unmatched through received - 2·pairs - queued."""
        self._queues[index].clear()
        limit = stamp + self.jump_tolerance_ns
        self._queues[1 - index] = [item for item in self._queues[1 - index] if item[0] <= limit]

    def reset(self) -> None:
        """Forget queued messages and the last stamps (node reactivated)."""
        with self._lock:
            self.resets += 1
            for queue in self._queues:
                queue.clear()
            self._last_stamp = [None, None]

    def queued(self) -> int:
        with self._lock:
            return len(self._queues[0]) + len(self._queues[1])
