"""Header stamps jumping back on wall-clock time (a camera driver restarting, a bag replayed
without /clock) against the running fusion_node process: the jump is logged and counted per
topic, the first pair on the new time line is fused and the no-sync watchdog stays quiet."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from test_ros_bad_input import BadInputRig  # noqa: E402

PAIR_WAIT = 20.0


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadInputRig]:
    running = BadInputRig(tmp_path_factory.mktemp("stamp_jumps"))
    running.assert_recovers()
    yield running
    running.observer.close()
    from sgdfuse_ros.ros.process import stop_process

    assert stop_process(running.process) == 0, running.log_text()


def fused(rig: BadInputRig, stamp_s: int) -> bool:
    """True once the pair stamped ``stamp_s`` comes out fused."""
    observer = rig.observer
    return observer.wait_for(
        lambda: any(item.stamp == stamp_s * 1_000_000_000 for item in observer.fused), PAIR_WAIT
    )


def test_restarted_camera_clock_loses_no_pair(rig: BadInputRig) -> None:
    for _ in range(2):
        rig.assert_recovers()  # the old time line, stamps around 100 s
    time.sleep(2.0)  # the cameras restart: longer than watchdog.timeout (1.5 s)
    rig.stamp = 10  # their stamps restart 90 s earlier
    missing = []
    for _ in range(3):
        thermal, rgb = rig.good_pair()
        rig.send(thermal, rgb)
        if not fused(rig, rgb.header.stamp.sec):
            missing.append(rgb.header.stamp.sec)
        time.sleep(2.0)  # a slow camera: a lost pair would leave nothing synced > 1.5 s
    assert missing == [], rig.log_text()
    assert rig.wait_counter("stamp_jumps_back.thermal") == 1
    assert rig.wait_counter("stamp_jumps_back.rgb") == 1
    rig.wait_log(r"thermal stamps jumped back by 9\d\.\d+ s")
    rig.wait_log(r"rgb stamps jumped back by 9\d\.\d+ s")
    observer = rig.observer
    assert observer.counter("no_sync") == 0, rig.log_text()
    assert observer.counter("unmatched") == 0, observer.diagnostics
    assert observer.counter("clock_jumps_back") == 0  # wall clock: the ROS clock never jumped
    assert "nothing synced" not in rig.log_text()
