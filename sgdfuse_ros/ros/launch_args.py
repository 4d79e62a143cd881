"""What ``launch/fusion.launch.py`` passes to ``fusion_node``, as plain Python.

launch/launch_ros have no PyPI wheels, so the launch file itself cannot run everywhere. It
resolves its launch arguments to strings and hands them to these functions; a test calls the
same functions and runs ``fusion_node --ros-args ...`` with the result, so the command line
tested on a bare machine is the one the launch file produces on a robot. No rclpy here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sgdfuse_ros.io.topic_names import check_topic_name
from sgdfuse_ros.ros.shutdown import STOP_WITH_PARENT_ENV

PACKAGE = "sgdfuse_ros"
EXECUTABLE = "fusion_node"
NODE_NAME = "sgdfuse_fusion"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument(
        "params_file", "", "Node parameter file; empty = the package's config/sgdfuse.yaml."
    ),
    LaunchArgument("namespace", "", "Namespace of the node (relative topics follow it)."),
    LaunchArgument("node_name", NODE_NAME, "Name of the node."),
    LaunchArgument("thermal_topic", "/thermal/image_raw", "Thermal image input topic."),
    LaunchArgument("rgb_topic", "/rgb/image_raw", "RGB image input topic."),
    LaunchArgument("thermal_info_topic", "/thermal/camera_info", "Thermal camera info topic."),
    LaunchArgument("rgb_info_topic", "/rgb/camera_info", "RGB camera info topic."),
    LaunchArgument("fused_topic", "/fused/image", "Fused image output topic."),
    LaunchArgument("fused_info_topic", "/fused/camera_info", "Fused camera info output topic."),
    LaunchArgument("use_sim_time", "false", "Use /clock (bag replay) instead of the wall clock."),
    LaunchArgument(
        "device",
        "",
        "Override the device parameter (cpu, cuda, cuda:N); empty "
        "keeps the parameter file's value.",
    ),
    LaunchArgument("steps", "", "Override the diffusion steps K; empty keeps the file's value."),
    LaunchArgument("log_level", "info", "Log level: debug, info, warn, error."),
)

# node-relative name -> launch argument holding its target
_REMAPPED_TOPICS = (
    ("thermal/image_raw", "thermal_topic"),
    ("rgb/image_raw", "rgb_topic"),
    ("thermal/camera_info", "thermal_info_topic"),
    ("rgb/camera_info", "rgb_info_topic"),
    ("fused/image", "fused_topic"),
    ("fused/camera_info", "fused_info_topic"),
)


def with_defaults(values: dict[str, str] | None = None) -> dict[str, str]:
    """Launch argument values, defaults filled in; unknown names are an error."""
    values = dict(values or {})
    known = {argument.name for argument in LAUNCH_ARGUMENTS}
    unknown = set(values) - known
    if unknown:
        raise ValueError("unknown launch arguments: " + ", ".join(sorted(unknown)))
    filled = {
        argument.name: values.get(argument.name, argument.default) for argument in LAUNCH_ARGUMENTS
    }
    problems = [problem for problem in map(_check, filled.items()) if problem]
    if problems:
        raise ValueError("; ".join(problems))
    return filled


LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "fatal")


_TOPIC_ARGUMENTS = frozenset(argument for _, argument in _REMAPPED_TOPICS)


def _check(item: tuple[str, str]) -> str | None:
    """Why a launch argument value is unusable, or None. Caught here, the mistake is one clear
    line from `ros2 launch`; otherwise launch_ros silently skips a missing parameter file, and a
    bad value ends in an int() error from launch or a traceback from the node."""
    name, value = item
    if name == "params_file" and value and not Path(value).is_file():
        return f"params_file:={value}: no such file"
    if name == "steps" and value and not (value.isdigit() and int(value) >= 0):
        return f"steps:={value}: expected a whole number >= 0 (or empty for the file's value)"
    if name == "use_sim_time" and yaml.safe_load(value or "null") not in (True, False):
        return f"use_sim_time:={value}: expected true or false"
    if name == "log_level" and value.lower() not in LOG_LEVELS:
        return f"log_level:={value}: expected one of {', '.join(LOG_LEVELS)}"
    if name in _TOPIC_ARGUMENTS:
        try:
            check_topic_name(value)
        except ValueError as error:  # rcl's own error names neither the argument nor the rule
            return f"{name}:={value}: {error}"
    return None


def default_params_file() -> Path:
    """config/sgdfuse.yaml of the installed package (colcon), else of the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE)) / "config" / "sgdfuse.yaml"
        if installed.is_file():
            return installed
    except Exception:  # noqa: BLE001 - no ament index entry (pip install): use the source tree
        pass
    source = Path(__file__).resolve().parents[2] / "config" / "sgdfuse.yaml"
    if source.is_file():
        return source
    raise FileNotFoundError("cannot find sgdfuse_ros config/sgdfuse.yaml (installed or source)")


def params_file(values: dict[str, str]) -> str:
    return values["params_file"] or str(default_params_file())


def remappings(values: dict[str, str]) -> list[tuple[str, str]]:
    """(node topic, target) pairs; every topic is remapped so the namespace never moves them."""
    return [(topic, values[argument]) for topic, argument in _REMAPPED_TOPICS]


def parameter_overrides(values: dict[str, str]) -> dict[str, Any]:
    """Parameters set from launch arguments, typed the way launch_ros types them (YAML)."""
    overrides: dict[str, Any] = {"use_sim_time": yaml.safe_load(values["use_sim_time"])}
    if values["device"]:
        overrides["device"] = values["device"]
    if values["steps"]:
        overrides["steps"] = int(values["steps"])
    return overrides


def write_overrides_file(overrides: dict[str, Any], path: str | Path) -> Path:
    """The parameter file launch_ros writes for a parameters dict (applies to any node)."""
    path = Path(path)
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": overrides}}))
    return path


def node_ros_arguments(values: dict[str, str], overrides_file: str | Path) -> list[str]:
    """``--ros-args ...`` for ``fusion_node``: name, namespace, both parameter files (the
    overrides last, so they win), remappings and log level — what the launch file's Node gives."""
    arguments = ["--ros-args", "-r", f"__node:={values['node_name']}"]
    if values["namespace"]:
        arguments += ["-r", f"__ns:={_absolute(values['namespace'])}"]
    arguments += ["--params-file", params_file(values), "--params-file", str(overrides_file)]
    for source, target in remappings(values):
        arguments += ["-r", f"{source}:={target}"]
    arguments += ["--log-level", values["log_level"]]
    return arguments


# The node stops when launch has gone (launch dies on SIGTERM without stopping it): shutdown.py
NODE_ENVIRONMENT = {STOP_WITH_PARENT_ENV: "1"}


class NodeFailedError(RuntimeError):
    """fusion_node ended on its own with a failure."""


def fail_launch_if_node_failed(event: Any, context: Any) -> None:
    """OnProcessExit handler for the launch file (``event.returncode``, ``context.is_shutdown``).

    launch exits 0 when its only node dies, so a supervisor (systemd, a robot's bring-up script)
    would never restart it. Raising here makes launch log one error line naming the node and
    exit 1. An exit during launch's own shutdown (Ctrl-C, SIGTERM) is not a failure.
    """
    if event.returncode != 0 and not context.is_shutdown:
        raise NodeFailedError(
            f"{EXECUTABLE} exited with code {event.returncode} (its log line above says why); "
            "ros2 launch exits 1"
        )


def _absolute(namespace: str) -> str:
    return namespace if namespace.startswith("/") else "/" + namespace
