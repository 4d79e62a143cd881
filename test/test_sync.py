"""Approximate-time pairing: the same behaviour tests for the package's own synchronizer and
message_filters (the latter where it imports).

Messages are real ``sensor_msgs/Image`` with ``builtin_interfaces/Time`` stamps where the ROS
messages import: the real ``ApproximateTimeSynchronizer`` converts each stamp with
``rclpy.time.Time.from_msg``, which refuses anything else."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sgdfuse_ros.ros.sync import (
    ApproximateTimePairSync,
    MessageFiltersPairSync,
    make_pair_sync,
    message_filters_available,
)

BACKENDS = [
    pytest.param(ApproximateTimePairSync, id="sgdfuse_ros"),
    pytest.param(
        MessageFiltersPairSync,
        id="message_filters",
        marks=pytest.mark.skipif(
            not message_filters_available(),
            reason="message_filters not importable (PyPI ROS wheels have none)",
        ),
    ),
]
MS = 1_000_000


try:
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
except ImportError:  # no ROS messages: only the package's own backend runs (it reads sec/nanosec)
    Time = Image = None


def msg(stamp_ns: int, tag: str = "") -> Any:
    """An image message stamped ``stamp_ns``; ``tag`` travels as the header's frame_id."""
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    if Image is None:
        stamp = SimpleNamespace(sec=sec, nanosec=nanosec)
        return SimpleNamespace(header=SimpleNamespace(stamp=stamp, frame_id=tag))
    image = Image()
    image.header.stamp = Time(sec=sec, nanosec=nanosec)
    image.header.frame_id = tag
    return image


class Recorder:
    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def __call__(self, thermal: Any, rgb: Any) -> None:
        self.pairs.append((thermal.header.frame_id, rgb.header.frame_id))


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest):
    def build(queue_size: int = 10, slop: float = 0.05):
        recorder = Recorder()
        return request.param(queue_size, slop, recorder), recorder

    return build


def test_exact_and_close_stamps_pair(make) -> None:
    sync, rec = make(slop=0.02)
    sync.add_thermal(msg(1000 * MS, "t0"))
    sync.add_rgb(msg(1000 * MS, "r0"))
    sync.add_rgb(msg(1100 * MS, "r1"))
    sync.add_thermal(msg(1110 * MS, "t1"))  # 10 ms apart: within slop
    assert rec.pairs == [("t0", "r0"), ("t1", "r1")]
    assert sync.pairs == 2 and sync.unmatched() == 0


def test_stamps_further_apart_than_slop_never_pair(make) -> None:
    sync, rec = make(slop=0.02)
    sync.add_thermal(msg(1000 * MS, "t0"))
    sync.add_rgb(msg(1050 * MS, "r0"))  # 50 ms apart
    assert rec.pairs == []
    assert sync.received == [1, 1] and sync.queued() == 2


def test_jittered_streams_pair_in_order(make) -> None:
    sync, rec = make(slop=0.01)
    for index in range(20):
        base = 1000 * MS + index * 33 * MS
        # thermal arrives first on even frames, RGB first on odd ones; 0-4 ms offsets
        first, second = (("t", base + (index % 5) * MS), ("r", base))
        if index % 2:
            first, second = second, first
        for kind, stamp in (first, second):
            (sync.add_thermal if kind == "t" else sync.add_rgb)(msg(stamp, f"{kind}{index}"))
    assert rec.pairs == [(f"t{i}", f"r{i}") for i in range(20)]


def test_queue_size_bounds_waiting_messages(make) -> None:
    sync, rec = make(queue_size=3, slop=0.001)
    for index in range(10):
        sync.add_thermal(msg(1000 * MS + index * 100 * MS, f"t{index}"))
    assert sync.queued() <= 3
    assert sync.unmatched() == 10 - sync.queued()
    sync.add_rgb(msg(1000 * MS + 9 * 100 * MS, "r9"))
    assert rec.pairs == [("t9", "r9")]


def test_stamps_going_back_clear_the_queues(make) -> None:
    """A looped bag: the old queue content must not pair with the new time line, while the
    RGB frame already on the new line pairs with the first thermal frame after the jump."""
    sync, rec = make(slop=0.05)
    sync.add_thermal(msg(5000 * MS, "late-thermal"))
    sync.add_rgb(msg(1000 * MS, "r-first"))
    sync.add_thermal(msg(1010 * MS, "t-restart"))  # thermal stamps jumped back: reset
    assert sync.resets >= 1
    sync.add_rgb(msg(5020 * MS, "r-second"))
    assert ("late-thermal", "r-second") not in rec.pairs
    assert rec.pairs == [("t-restart", "r-first")]


def stream(sync, start_ms: int, frames: int, prefix: str, rgb_first: bool = False) -> None:
    """``frames`` pairs 100 ms apart from ``start_ms``, tagged ``{prefix}t{i}`` / ``{prefix}r{i}``."""
    for index in range(frames):
        stamp = (start_ms + 100 * index) * MS
        steps = [(sync.add_thermal, "t"), (sync.add_rgb, "r")]
        for add, kind in reversed(steps) if rgb_first else steps:
            add(msg(stamp, f"{prefix}{kind}{index}"))


@pytest.mark.parametrize("rgb_first", [False, True], ids=["thermal-first", "rgb-first"])
def test_first_pair_after_stamps_jump_back_is_matched(make, rgb_first: bool) -> None:
    """A camera driver restart or a bag replayed without /clock: both topics' stamps restart.

    Each topic's jump is detected and counted once, and the first pair on the new time line
    is fused: no pair is lost to the reset."""
    sync, rec = make(slop=0.05)
    jumps: list[tuple[str, float]] = []
    sync.on_stamp_jump = lambda topic, back_s: jumps.append((topic, round(back_s, 3)))
    stream(sync, 100_000, 3, "old-")
    stream(sync, 5_000, 3, "new-", rgb_first)
    assert rec.pairs == [(f"old-t{i}", f"old-r{i}") for i in range(3)] + [
        (f"new-t{i}", f"new-r{i}") for i in range(3)
    ]
    assert sync.stamp_jumps_back == {"thermal": 1, "rgb": 1}
    order = ["rgb", "thermal"] if rgb_first else ["thermal", "rgb"]
    assert jumps == [(topic, 95.2) for topic in order]
    assert sync.unmatched() == 0 and sync.queued() == 0


def test_old_time_line_never_pairs_with_the_new_one(make) -> None:
    """Old-time-line messages still queued for the other topic are dropped at the jump."""
    sync, rec = make(slop=0.05)
    sync.add_thermal(msg(100_000 * MS, "old-t0"))
    sync.add_rgb(msg(100_000 * MS, "old-r0"))
    sync.add_rgb(msg(100_100 * MS, "old-r1"))  # waits for a thermal frame that never comes
    sync.add_thermal(msg(5_000 * MS, "new-t0"))  # thermal restarts first
    sync.add_thermal(msg(100_100 * MS, "late-old-t1"))  # out of place: a jump forward, no pair
    sync.add_rgb(msg(5_000 * MS, "new-r0"))
    assert ("late-old-t1", "old-r1") not in rec.pairs
    assert sync.stamp_jumps_back["thermal"] >= 1


def test_a_step_back_within_the_tolerance_is_not_a_jump(make) -> None:
    """Jittery stamping (a late frame, an NTP slew) must not flush the queues."""
    sync, rec = make(slop=0.05)
    sync.add_thermal(msg(10_000 * MS, "t0"))
    sync.add_thermal(msg(9_920 * MS, "t-late"))  # 80 ms back: below the 100 ms tolerance
    sync.add_rgb(msg(10_000 * MS, "r0"))
    assert rec.pairs == [("t0", "r0")]
    assert sync.stamp_jumps_back == {"thermal": 0, "rgb": 0}


def test_reset_forgets_queued_messages(make) -> None:
    sync, rec = make(slop=0.05)
    sync.add_thermal(msg(1000 * MS, "t0"))
    sync.reset()
    sync.add_rgb(msg(1000 * MS, "r0"))
    assert rec.pairs == []
    assert sync.unmatched() >= 1


def test_invalid_settings_are_rejected(make) -> None:
    with pytest.raises(ValueError):
        make(queue_size=0)
    with pytest.raises(ValueError):
        make(slop=-1.0)


def test_factory_picks_a_backend() -> None:
    chosen = make_pair_sync(5, 0.05, Recorder(), "auto")
    expected = "message_filters" if message_filters_available() else "sgdfuse_ros"
    assert chosen.backend == expected
    assert make_pair_sync(5, 0.05, Recorder(), "sgdfuse_ros").backend == "sgdfuse_ros"
    with pytest.raises(ValueError):
        make_pair_sync(5, 0.05, Recorder(), "exact")
