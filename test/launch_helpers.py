"""The package as a user runs it: `colcon build`, `. install/setup.bash`, `ros2 launch ...`.

Shared by the launch and shutdown tests. `ros2 launch` runs in a session of its own, so a
"Ctrl-C" can go to its whole process group the way a terminal sends it; its output (launch's
and the node's) goes to one file the tests read.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHUTDOWN_LINE = re.compile(r"shut down on (SIGINT|SIGTERM|shutdown)")


def launch_system_missing() -> str | None:
    """Why `ros2 launch` cannot run here, or None when it can."""
    for module in ("launch", "launch_ros", "ros2launch", "ros2cli", "rclpy"):
        if importlib.util.find_spec(module) is None:
            return (
                f"the ROS 2 launch system is not installed ({module} missing): source a ROS 2 "
                "installation, or `pip install --no-deps ../shared/ros-wheels/*.whl` plus the "
                "packages its README lists"
            )
    if ros2_executable() is None:
        return "the `ros2` command is not installed (ros2cli)"
    if colcon_executable() is None:
        return "colcon is not installed (pip install colcon-common-extensions)"
    return None


def ros2_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "ros2"
    return str(beside_python) if beside_python.is_file() else shutil.which("ros2")


def colcon_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "colcon"
    return str(beside_python) if beside_python.is_file() else shutil.which("colcon")


def colcon_build(work: Path) -> Path:
    """`colcon build --packages-select sgdfuse_ros` of this checkout into ``work``; the
    install base (the folder holding setup.bash)."""
    colcon = colcon_executable()
    assert colcon is not None
    result = subprocess.run(
        [
            colcon,
            "--log-base",
            str(work / "log"),
            "build",
            "--base-paths",
            str(ROOT),
            "--build-base",
            str(work / "build"),
            "--install-base",
            str(work / "install"),
            "--packages-select",
            "sgdfuse_ros",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "install"


def sourced_environment(domain_id: int) -> dict[str, str]:
    """The caller's environment on a private DDS domain, ready for `. install/setup.bash`.

    Without a system ROS the PyPI ROS wheels keep their ament index in the Python prefix, so
    AMENT_PREFIX_PATH starts there (the README's bare-machine step); this Python's bin/ comes
    first on PATH so `ros2` and the node run with the interpreter running the tests.
    """
    from sgdfuse_ros.ros.process import isolated_ros_environment

    env = isolated_ros_environment(domain_id)
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    return env


class LaunchedFusion:
    """`ros2 launch sgdfuse_ros fusion.launch.py <arguments>` from a sourced workspace."""

    def __init__(
        self, install: Path, arguments: dict[str, str], log_path: Path, domain_id: int
    ) -> None:
        self.log_path = log_path
        self.domain_id = domain_id
        command = " ".join(f"{name}:={value}" for name, value in arguments.items())
        script = (
            f'set +u; . "{install}/setup.bash"; set -u; '
            f"exec ros2 launch sgdfuse_ros fusion.launch.py {command}"
        )
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", script],
                env=sourced_environment(domain_id),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, like a terminal's foreground job
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.output()):
                return True
            if self.process.poll() is not None:
                return bool(re.search(pattern, self.output()))
            time.sleep(0.05)
        return False

    def node_pid(self, timeout: float = 60.0) -> int:
        """The pid of fusion_node as launch reports it."""
        assert self.wait_for_output(r"fusion_node-1\]: process started with pid \[\d+\]", timeout)
        found = re.search(r"fusion_node-1\]: process started with pid \[(\d+)\]", self.output())
        assert found is not None
        return int(found.group(1))

    def signal_group(self, signum: int = signal.SIGINT, times: int = 1, gap: float = 0.0) -> None:
        """What a terminal does on Ctrl-C (``times`` presses): the signal to the whole group."""
        for press in range(times):
            if press:
                time.sleep(gap)
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                return

    def wait(self, timeout: float = 90.0) -> int:
        """Exit code of `ros2 launch`; kills the group (and fails) if it hangs."""
        try:
            return int(self.process.wait(timeout))
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10.0)
            pytest.fail(f"ros2 launch did not exit within {timeout} s:\n{self.output()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10.0)


def random_domain() -> int:
    return random.randint(1, 100)


def stamped_pair(stamp_ns: int, seed: int, height: int = 64, width: int = 80) -> tuple:
    """A mono8 thermal and an rgb8 Image with real builtin_interfaces stamps: thermal 5 ms after
    the RGB frame (within sync.slop) so the fused header can only be the RGB one."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image

    from sgdfuse_ros.io.image_codec import encode_array

    rng = np.random.default_rng(seed)
    messages = []
    for encoding, shape, offset_ns in (
        ("mono8", (height, width), 5_000_000),
        ("rgb8", (height, width, 3), 0),
    ):
        fields = encode_array(rng.integers(0, 256, shape, dtype=np.uint8), encoding)
        msg = Image(height=fields.height, width=fields.width, encoding=encoding, step=fields.step)
        msg.data = fields.data
        sec, nanosec = divmod(stamp_ns + offset_ns, 1_000_000_000)
        msg.header.stamp = Time(sec=sec, nanosec=nanosec)
        msg.header.frame_id = "rgb_optical" if encoding == "rgb8" else "thermal_optical"
        messages.append(msg)
    return messages[0], messages[1]


def node_is_discovered(node, name: str, namespace: str, timeout: float = 20.0) -> bool:
    """Whether ``node`` sees ``namespace/name`` in the ROS graph within ``timeout``. Node names
    travel on their own discovery topic, so they can arrive after the subscriptions do."""
    deadline = time.monotonic() + timeout
    while (name, namespace) not in node.get_node_names_and_namespaces():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for_subscribers(publishers: Iterable, launched: LaunchedFusion, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    publishers = list(publishers)
    while not all(publisher.get_subscription_count() for publisher in publishers):
        assert launched.process.poll() is None, launched.output()
        assert time.monotonic() < deadline, "fusion_node never subscribed:\n" + launched.output()
        time.sleep(0.05)
