"""Stopping the node: SIGINT / SIGTERM, once or repeated, to the node or its process group, in
each state (starting, loading the models, active and idle, fusing), through `ros2 launch` and
with the bare executable. Every case: exit 0, one shutdown line naming the state, no
traceback, nothing published after the request, and launch never reports "process has died".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from launch_helpers import (  # noqa: E402
    SHUTDOWN_LINE,
    LaunchedFusion,
    random_domain,
    stamped_pair,
)
from sensor_msgs.msg import Image  # noqa: E402

from sgdfuse_ros.ros.client import FusionObserver  # noqa: E402
from sgdfuse_ros.ros.process import isolated_ros_environment  # noqa: E402

THERMAL, RGB = "/shutdown_test/thermal", "/shutdown_test/rgb"
H, W = 192, 256  # big enough that a frame is usually in flight while frames stream
STATE_IN_LOG = {
    "starting": "while starting",
    "configuring": "while configuring",
    "idle": "while active",
    "fusing": "while active",
}
_SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


@dataclass(frozen=True)
class Case:
    state: str
    signum: int
    times: int
    to_group: bool

    def __str__(self) -> str:
        target = "group" if self.to_group else "node"
        return f"{self.state}-{signal.Signals(self.signum).name}x{self.times}-{target}"


LAUNCH_CASES = [
    Case("starting", signal.SIGINT, 2, True),  # a terminal's Ctrl-C: launch forwards a second
    Case("configuring", signal.SIGINT, 3, True),  # Ctrl-C pressed again while models load
    Case("idle", signal.SIGTERM, 1, False),  # a service manager stopping the node
    Case("fusing", signal.SIGINT, 2, True),
]
DIRECT_CASES = [
    Case("starting", signal.SIGTERM, 2, False),
    Case("configuring", signal.SIGINT, 1, False),
    Case("idle", signal.SIGINT, 3, True),
    Case("fusing", signal.SIGTERM, 2, True),
]


def handlers_installed(pid: int) -> bool:
    """Python catches SIGINT from the start; SIGTERM is caught once shutdown.py's handlers are
    in, which is the earliest moment a signal can be asked to shut down cleanly."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & _SIGTERM_BIT)
    except OSError:
        return False
    return False


def process_running(pid: int) -> bool:
    """True while ``pid`` runs: an ended child that its parent has not reaped yet is a zombie,
    which ``os.kill(pid, 0)`` would still find."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class FrameStream:
    """Thermal + RGB pairs at ~10 Hz from a thread, with real stamps, until stopped."""

    def __init__(self, observer: FusionObserver) -> None:
        self.thermal_pub = observer.node.create_publisher(Image, THERMAL, 10)
        self.rgb_pub = observer.node.create_publisher(Image, RGB, 10)
        self._clock = observer.node.get_clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            thermal, rgb = stamped_pair(self._clock.now().nanoseconds, index % 4, H, W)
            try:
                self.thermal_pub.publish(thermal)
                self.rgb_pub.publish(rgb)
            except Exception:  # noqa: BLE001 - observer context closing
                return
            index += 1
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class DirectFusionNode:
    """The bare executable in a session of its own, as a service manager would start it."""

    def __init__(self, log_path: Path, domain_id: int) -> None:
        self.log_path = log_path
        arguments = [
            "--ros-args",
            "-p",
            "steps:=1",
            "-r",
            f"thermal/image_raw:={THERMAL}",
            "-r",
            f"rgb/image_raw:={RGB}",
            "-r",
            "fused/image:=/fused/image",
        ]
        env = isolated_ros_environment(domain_id)
        env["RCUTILS_COLORIZED_OUTPUT"] = "0"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sgdfuse_ros.ros.entry", *arguments],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(predicate, timeout: float, what: str, output) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{output()}"
        time.sleep(0.005)


def run_case(
    case: Case, node_pid, group_pid, output, observer: FusionObserver
) -> tuple[float, FrameStream | None]:
    """Bring the node to ``case.state`` and send the signals: the monotonic time of the first,
    and the frame stream still running (state "fusing")."""
    stream = None
    if case.state == "starting":
        wait_until(lambda: handlers_installed(node_pid()), 60.0, "signal handlers", output)
        assert "loading the models" not in output()
    elif case.state == "configuring":
        wait_until(lambda: "loading the models" in output(), 120.0, "configure", output)
        assert "pipeline loaded" not in output()
    elif case.state == "idle":
        wait_until(lambda: "active:" in output(), 180.0, "activation", output)
        time.sleep(1.0)  # a diagnostics period passes: timers and executor are running
    else:
        stream = FrameStream(observer)
        wait_until(
            lambda: (
                stream.thermal_pub.get_subscription_count() > 0
                and stream.rgb_pub.get_subscription_count() > 0
            ),
            180.0,
            "subscriptions",
            output,
        )
        stream.start()
        try:
            assert observer.wait_for(lambda: observer.fused_count() >= 2, 120.0), output()
        except AssertionError:
            stream.stop()
            raise
    sent_at = time.monotonic()
    target = group_pid() if case.to_group else node_pid()
    for press in range(case.times):
        if press:
            time.sleep(0.3)
            if not process_running(node_pid()):
                # a press after the node has ended tests ros2 launch's own exit, not ours
                break
        try:
            if case.to_group:
                os.killpg(target, case.signum)
            else:
                os.kill(target, case.signum)
        except ProcessLookupError:
            break
    return sent_at, stream


def check_output(case: Case, output: str) -> None:
    lines = [line for line in output.splitlines() if SHUTDOWN_LINE.search(line)]
    assert len(lines) == 1, output
    assert signal.Signals(case.signum).name in lines[0], lines[0]
    assert STATE_IN_LOG[case.state] in lines[0], lines[0]
    if case.state == "fusing":
        assert "frame in flight" in lines[0], lines[0]
    for bad in ("Traceback", "KeyboardInterrupt", "context is invalid", "fusion failed"):
        assert bad not in output, output
    assert "process has died" not in output, output


def fused_after(observer: FusionObserver, moment_wall: float) -> int:
    return sum(1 for arrival in observer.fused if arrival.received > moment_wall)


@pytest.mark.parametrize("case", LAUNCH_CASES, ids=str)
def test_ros2_launch_stops_cleanly(case: Case, launch_install: Path, tmp_path: Path) -> None:
    domain = random_domain()
    launched = LaunchedFusion(
        launch_install,
        {"thermal_topic": THERMAL, "rgb_topic": RGB, "steps": "1"},
        tmp_path / "launch.log",
        domain,
    )
    observer = FusionObserver(domain_id=domain)
    stream = None
    try:
        sent_at, stream = run_case(
            case, launched.node_pid, lambda: launched.process.pid, launched.output, observer
        )
        sent_wall = time.time() - (time.monotonic() - sent_at)
        # a node-only signal: launch ends by itself once its only process has ended
        exit_code = launched.wait(60.0)
        output = launched.output()
        assert exit_code == 0, output
        check_output(case, output)
        assert "process has finished cleanly" in output, output
        assert fused_after(observer, sent_wall + 0.5) == 0, "published after the shutdown request"
    finally:
        if stream is not None:
            stream.stop()
        observer.close()
        launched.kill()


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
def test_fusion_node_stops_cleanly(case: Case, tmp_path: Path) -> None:
    domain = random_domain()
    node = DirectFusionNode(tmp_path / "node.log", domain)
    observer = FusionObserver(domain_id=domain)
    stream = None
    try:
        sent_at, stream = run_case(
            case, lambda: node.process.pid, lambda: node.process.pid, node.output, observer
        )
        sent_wall = time.time() - (time.monotonic() - sent_at)
        try:
            exit_code = node.process.wait(30.0)
        except subprocess.TimeoutExpired:
            pytest.fail("fusion_node did not exit within 30 s:\n" + node.output())
        output = node.output()
        assert exit_code == 0, output
        check_output(case, output)
        assert fused_after(observer, sent_wall + 0.5) == 0, "published after the shutdown request"
        # prompt: launch escalates to SIGTERM after 5 s and SIGKILL after 10 s
        assert time.monotonic() - sent_at < 10.0
    finally:
        if stream is not None:
            stream.stop()
        observer.close()
        if node.process.poll() is None:
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(10.0)


def test_a_parameter_of_the_wrong_type_ends_in_one_line_and_exit_1(tmp_path: Path) -> None:
    """rclpy refuses it while the node is built: a traceback there used to be all the user saw."""
    env = isolated_ros_environment(random_domain())
    result = subprocess.run(
        [sys.executable, "-m", "sgdfuse_ros.ros.entry", "--ros-args", "-p", "steps:=abc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "steps" in errors[0], output


# ------------------------------------------------------------------ the launcher goes away
def _node_under_a_parent(log_path: Path, domain_id: int, stop_with_parent: bool):
    """fusion_node started by a short-lived parent process, as launch starts it; the node's
    output goes to ``log_path`` itself, so it survives the parent. Returns (parent, node pid)."""
    env = isolated_ros_environment(domain_id)
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    if stop_with_parent:
        env["SGDFUSE_STOP_WITH_PARENT"] = "1"
    starter = (
        "import subprocess, sys, time\n"
        "log = open(sys.argv[1], 'wb')\n"
        "node = subprocess.Popen([sys.executable, '-m', 'sgdfuse_ros.ros.entry', '--ros-args',"
        " '-p', 'steps:=1'], stdout=log, stderr=subprocess.STDOUT)\n"
        "print(node.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", starter, str(log_path)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return parent, int(parent.stdout.readline())


@pytest.mark.parametrize("stop_with_parent", [True, False], ids=["launch-file", "by-hand"])
def test_node_stops_when_its_launcher_dies(tmp_path: Path, stop_with_parent: bool) -> None:
    """ros2 launch dies on SIGTERM or SIGKILL without stopping its node. Started the launch
    file's way (SGDFUSE_STOP_WITH_PARENT=1) the orphan stops cleanly within a second or two;
    started by hand it keeps running (nohup, a terminal that is closed: the user's choice)."""
    log_path = tmp_path / "node.log"
    parent, node_pid = _node_under_a_parent(log_path, random_domain(), stop_with_parent)
    output = lambda: log_path.read_text(errors="replace")  # noqa: E731
    try:
        wait_until(lambda: "active:" in output(), 180.0, "activation", output)
        parent.kill()  # SIGKILL: nothing can be forwarded
        parent.wait(10.0)
        killed_at = time.monotonic()
        if stop_with_parent:
            wait_until(lambda: not process_running(node_pid), 15.0, "the orphan to stop", output)
            lines = [line for line in output().splitlines() if "shut down on" in line]
            assert len(lines) == 1, output()
            assert (
                f"shut down on parent exit (launcher pid {parent.pid} ended) while active"
                in (lines[0])
            )
            assert "Traceback" not in output()
            assert time.monotonic() - killed_at < 10.0
        else:
            time.sleep(3.0)
            assert process_running(node_pid), output()
            assert "shut down on" not in output()
    finally:
        if process_running(node_pid):
            os.kill(node_pid, signal.SIGKILL)


def test_sigterm_to_ros2_launch_alone_does_not_orphan_the_node(
    launch_install: Path, tmp_path: Path
) -> None:
    """Upstream launch ends on SIGTERM without stopping its processes (it says "using SIGTERM
    can result in orphaned processes"); the node started by our launch file stops by itself."""
    launched = LaunchedFusion(
        launch_install,
        {"thermal_topic": THERMAL, "rgb_topic": RGB, "steps": "1"},
        tmp_path / "launch.log",
        random_domain(),
    )
    try:
        node_pid = launched.node_pid()
        wait_until(lambda: "active:" in launched.output(), 180.0, "activation", launched.output)
        launched.process.send_signal(signal.SIGTERM)  # to launch only, not its group
        launched.wait(30.0)
        wait_until(lambda: not process_running(node_pid), 15.0, "the node to stop", launched.output)
    finally:
        launched.kill()
        if process_running(node_pid):
            os.kill(node_pid, signal.SIGKILL)
