"""Run ``fusion_node`` as a separate process on a private DDS domain (demo, benchmark, tests).

The demo and the benchmark publish on /thermal/image_raw and /rgb/image_raw; on a robot's
network that would mix with the real cameras. They therefore run on a random ROS_DOMAIN_ID
with discovery limited to this machine unless the caller picks a domain. No rclpy import here.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def isolated_ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """A copy of os.environ on a private domain (random 1..100 unless given), localhost only."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random.randint(1, 100))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy; the range above replaces it
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


def fusion_node_command() -> list[str]:
    """The installed ``fusion_node`` executable (next to this Python, on PATH, or colcon's lib/)."""
    beside_python = Path(sys.executable).parent / "fusion_node"
    if beside_python.is_file():
        return [str(beside_python)]
    found = shutil.which("fusion_node")
    if found:
        return [found]
    return [sys.executable, "-m", "sgdfuse_ros.ros.entry"]


def start_fusion_node(
    ros_arguments: list[str], env: dict[str, str], log_path: str | Path
) -> subprocess.Popen:
    """Start ``fusion_node <ros_arguments>`` with stdout and stderr in ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    try:
        return subprocess.Popen(
            fusion_node_command() + list(ros_arguments),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    finally:
        log_file.close()  # the child keeps its own descriptor


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGINT (a clean rclpy shutdown), then SIGKILL after ``timeout``; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return int(process.returncode)


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB (Linux /proc), None when unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None
