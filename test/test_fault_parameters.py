"""Issue 14, fault 4: parameter files with values of the wrong type or unknown names.

Before: `device: 5` stopped fusion_node with a message that did not name the file; `sync.slop: 0`
or an integer homography (exact integers where doubles are declared) stopped it too;
`steps: 2.0` layered on the shipped file started it with the stale steps 0 (the weights'
default) and `steps: "3"` likewise, silently; unknown names (`registraton:`, `sync.slopp`) were
ignored; a missing or broken file was an rcl traceback. Now exact conversions are made, anything
else is one log line naming the parameter, the expected type, the value given and the file,
exit code 1. The node runs as `fusion_node --ros-args --params-file ...` (and with the command
line of launch/fusion.launch.py); the rules themselves are tested without a process.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sgdfuse_ros.ros import launch_args
from sgdfuse_ros.ros.parameters import DEFAULTS
from sgdfuse_ros.ros.process import fusion_node_command, isolated_ros_environment, stop_process

# The unit tests import the checking code where they use it, so the node-level tests above them
# also run against the code before the fix (the reproduction).

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "sgdfuse.yaml"
START_TIMEOUT = 180.0


def _domain() -> int:
    return int(os.environ.get("ROS_DOMAIN_ID") or random.randint(1, 100))


def write_params(path: Path, parameters: dict[str, Any], key: str = "/**") -> Path:
    """A parameter file as a user writes it: nested groups, values typed by YAML."""
    path.write_text(yaml.safe_dump({key: {"ros__parameters": parameters}}))
    return path


def refused_start(arguments: list[str]) -> tuple[int, list[str]]:
    """Run fusion_node to its end; its exit code and its non-empty output lines."""
    result = subprocess.run(
        fusion_node_command() + arguments,
        env=isolated_ros_environment(_domain()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    return result.returncode, [line for line in output.splitlines() if line.strip()]


def started_line(arguments: list[str], log: Path, pattern: str) -> str:
    """Start fusion_node, wait for the log line matching ``pattern``, stop it (exit 0)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            fusion_node_command() + arguments,
            env=isolated_ros_environment(_domain()),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        found = None
        while found is None and time.monotonic() < deadline and process.poll() is None:
            found = re.search(pattern, log.read_text(errors="replace"))
            time.sleep(0.1)
        found = found or re.search(pattern, log.read_text(errors="replace"))
        assert found is not None, f"exit code {process.poll()}:\n{log.read_text()}"
    finally:
        exit_code = stop_process(process)
    assert exit_code == 0, log.read_text()
    return found.group(0)


def layered(tmp_path: Path, parameters: dict[str, Any]) -> tuple[list[str], Path]:
    """`--params-file <shipped> --params-file <user's file>`: the user's file layered on top."""
    user = write_params(tmp_path / "robot.yaml", {"allow_untrained": True, **parameters})
    return [
        "--ros-args",
        "--params-file",
        str(SHIPPED),
        "--params-file",
        str(user),
    ], user


def assert_one_line(exit_code: int, lines: list[str], *expected: str) -> None:
    assert exit_code == 1, lines
    assert len(lines) == 1, "\n".join(lines)
    assert "Traceback" not in lines[0]
    for text in expected:
        assert text in lines[0], (text, lines[0])


# --------------------------------------------------------------- the node, started directly
def test_integer_for_a_double_is_taken_exactly(tmp_path: Path) -> None:
    arguments, _ = layered(tmp_path, {"sync": {"slop": 0}})
    line = started_line(arguments, tmp_path / "node.log", r"active: .*")
    assert "slop=0.0s" in line, line


def test_integer_homography_is_taken_as_doubles(tmp_path: Path) -> None:
    arguments, _ = layered(
        tmp_path,
        {"registration": {"mode": "homography", "homography": [1, 0, 0, 0, 1, 0, 0, 0, 1]}},
    )
    line = started_line(arguments, tmp_path / "node.log", r"active: .*")
    assert "registration=homography" in line, line


def test_whole_double_steps_layered_on_the_shipped_file_is_taken(tmp_path: Path) -> None:
    arguments, _ = layered(tmp_path, {"steps": 2.0})
    line = started_line(arguments, tmp_path / "node.log", r"pipeline loaded .*")
    assert "steps=2 " in line, line  # not the shipped file's stale 0 ("default")


def test_quoted_steps_layered_on_the_shipped_file_is_refused(tmp_path: Path) -> None:
    arguments, user = layered(tmp_path, {"steps": "3"})
    assert_one_line(
        *refused_start(arguments), "parameter steps", "expected integer", "string '3'", str(user)
    )


def test_fractional_steps_is_refused(tmp_path: Path) -> None:
    arguments, user = layered(tmp_path, {"steps": 2.5})
    assert_one_line(
        *refused_start(arguments), "parameter steps", "expected integer", "double 2.5", str(user)
    )


def test_string_parameter_given_an_integer_is_refused_naming_the_file(tmp_path: Path) -> None:
    arguments, user = layered(tmp_path, {"device": 5})
    assert_one_line(
        *refused_start(arguments), "parameter device", "expected string", "integer 5", str(user)
    )


def test_unknown_names_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    arguments, user = layered(
        tmp_path, {"registraton": {"mode": "homography"}, "sync": {"slopp": 0.1}}
    )
    assert_one_line(
        *refused_start(arguments),
        "registraton.mode",
        "did you mean registration.mode?",
        "sync.slopp",
        "did you mean sync.slop?",
        str(user),
    )


def test_unknown_name_in_a_section_naming_the_node_is_refused(tmp_path: Path) -> None:
    user = write_params(tmp_path / "robot.yaml", {"stesp": 1}, key="/robot1/sgdfuse_fusion")
    arguments = ["--ros-args", "-r", "__ns:=/robot1", "--params-file", str(user)]
    assert_one_line(*refused_start(arguments), "stesp", "did you mean steps?", str(user))


def test_wrong_type_given_with_dash_p_is_refused(tmp_path: Path) -> None:
    exit_code, lines = refused_start(["--ros-args", "-p", "device:=5"])
    assert_one_line(exit_code, lines, "parameter device", "expected string", "integer 5", "-p")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "No such file", id="missing"),
        pytest.param("/**:\n  ros__parameters:\n    steps: [1, 2\n", "not valid YAML", id="yaml"),
        pytest.param(
            "/**:\n  ros__parameters:\n    registration:\n      homography: [1, 0.5]\n",
            "write every number with a decimal point",
            id="mixed-list",
        ),
    ],
)
def test_missing_or_broken_parameter_file_is_one_line(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "robot.yaml"
    if content is not None:
        path.write_text(content)
    assert_one_line(*refused_start(["--ros-args", "--params-file", str(path)]), expected, str(path))


# ------------------------------------------------ the launch file's command line (launch_args)
def _launch_command_line(tmp_path: Path, user: Path, **arguments: str) -> list[str]:
    values = launch_args.with_defaults({"params_file": str(user), **arguments})
    overrides = launch_args.write_overrides_file(
        launch_args.parameter_overrides(values), tmp_path / "launch_overrides.yaml"
    )
    return launch_args.node_ros_arguments(values, overrides)


def test_launch_params_file_with_exact_conversions_starts(tmp_path: Path) -> None:
    """launch's params_file replaces the shipped file; its overrides file (use_sim_time,
    steps:=...) is layered last and holds names the node knows."""
    shipped = yaml.safe_load(SHIPPED.read_text())
    tree = shipped["/**"]["ros__parameters"]
    tree.update(allow_untrained=True, steps=2.0)
    tree["sync"]["slop"] = 0
    user = tmp_path / "robot.yaml"
    user.write_text(yaml.safe_dump(shipped))
    line = started_line(
        _launch_command_line(tmp_path, user), tmp_path / "node.log", r"pipeline loaded .*"
    )
    assert "steps=2 " in line, line


def test_launch_params_file_with_a_typo_is_one_line(tmp_path: Path) -> None:
    user = write_params(tmp_path / "robot.yaml", {"sync": {"slopp": 0.1}})
    exit_code, lines = refused_start(_launch_command_line(tmp_path, user, steps="1"))
    assert_one_line(exit_code, lines, "sync.slopp", "did you mean sync.slop?", str(user))


def test_ros2_launch_with_a_params_file(launch_install: Path, tmp_path: Path) -> None:
    """The real `ros2 launch ... params_file:=...` (launch_ros adds its own overrides file):
    a typo is the node's one line, launch's "process has died ... exit code 1" and ros2 launch's
    own exit code 1; exact conversions start the node."""
    from launch_helpers import LaunchedFusion

    typo = write_params(tmp_path / "typo.yaml", {"sync": {"slopp": 0.1}})
    launched = LaunchedFusion(
        launch_install, {"params_file": str(typo)}, tmp_path / "typo.log", _domain()
    )
    exit_code = launched.wait(120.0)
    output = launched.output()
    node_lines = [line for line in output.splitlines() if "[sgdfuse_fusion]" in line]
    assert len(node_lines) == 1, output
    assert f"sync.slopp in {typo} (did you mean sync.slop?)" in node_lines[0], output
    assert "exit code 1" in output and "Traceback" not in output, output
    # ros2 launch itself fails, so a supervisor sees it (launch's default would be 0)
    assert exit_code == 1, output
    assert "fusion_node exited with code 1 (its log line above says why)" in output, output

    shipped = yaml.safe_load(SHIPPED.read_text())
    shipped["/**"]["ros__parameters"].update(allow_untrained=True, steps=2.0)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(shipped))
    launched = LaunchedFusion(
        launch_install, {"params_file": str(good)}, tmp_path / "good.log", _domain()
    )
    try:
        assert launched.wait_for_output(r"pipeline loaded .*steps=2 ", START_TIMEOUT), (
            launched.output()
        )
    finally:
        launched.signal_group()
        assert launched.wait() == 0, launched.output()


# ------------------------------------------------------------------------- the rules, unit
@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("sync.slop", 0, 0.0),
        ("sync.slop", 0.25, 0.25),
        ("registration.homography", [1, 0, 0, 0, 1, 0, 0, 0, 1], [1.0, 0, 0, 0, 1, 0, 0, 0, 1]),
        ("thermal.agc.fixed_range", [0, 4096], [0.0, 4096.0]),
        ("steps", 2.0, 2),
        ("steps", 3, 3),
        ("device", "cuda:0", "cuda:0"),
        ("autostart", False, False),
    ],
)
def test_exact_conversions(name: str, given: Any, expected: Any) -> None:
    from sgdfuse_ros.ros.parameter_files import GivenValue
    from sgdfuse_ros.ros.parameters import coerce_value

    value = coerce_value(GivenValue(name, given, "robot.yaml"))
    assert value == expected and type(value) is type(DEFAULTS[name])
    if isinstance(value, list):
        assert all(type(item) is float for item in value)


@pytest.mark.parametrize(
    ("name", "given", "words"),
    [
        ("steps", "3", ["expected integer", "string '3'", "without quotes"]),
        ("steps", 2.5, ["expected integer", "double 2.5"]),
        ("steps", True, ["expected integer", "bool true"]),
        ("sync.slop", "fast", ["expected double", "string 'fast'"]),
        ("sync.slop", 2**60 + 1, ["expected double", "integer"]),  # not exact as a double
        ("device", 5, ["expected string", "integer 5"]),
        ("autostart", 1, ["expected bool", "integer 1"]),
        ("registration.homography", ["a", "b"], ["expected double array", "string array"]),
        ("registration.homography", [], ["expected double array", "empty array"]),
        ("registration.homography", 1.0, ["expected double array", "double 1.0"]),
    ],
)
def test_wrong_types_name_parameter_expected_given_and_source(
    name: str, given: Any, words: list[str]
) -> None:
    from sgdfuse_ros.ros.parameter_files import GivenValue, ParameterFileError
    from sgdfuse_ros.ros.parameters import coerce_value

    with pytest.raises(ParameterFileError) as raised:
        coerce_value(GivenValue(name, given, "/cfg/robot.yaml"))
    message = str(raised.value)
    assert "\n" not in message
    for text in [f"parameter {name}", "/cfg/robot.yaml", *words]:
        assert text in message, (text, message)


def test_unknown_names_get_suggestions_and_rclpy_names_are_known() -> None:
    from sgdfuse_ros.ros.parameter_files import GivenValue, ParameterFileError
    from sgdfuse_ros.ros.parameters import check_given_values

    given = [
        GivenValue("registraton.mode", "homography", "a.yaml"),
        GivenValue("sync.slopp", 0.1, "b.yaml"),
        GivenValue("zzz", 1, "-p"),
        GivenValue("use_sim_time", True, "a.yaml"),
    ]
    with pytest.raises(ParameterFileError) as raised:
        check_given_values(given, also_known=["use_sim_time"])
    message = str(raised.value)
    assert "registraton.mode in a.yaml (did you mean registration.mode?)" in message
    assert "sync.slopp in b.yaml (did you mean sync.slop?)" in message
    assert "zzz in -p" in message and "zzz in -p (" not in message  # nothing close
    assert "use_sim_time" not in message
    assert check_given_values(given[3:], also_known=["use_sim_time"]) == {}


def test_arguments_outside_ros_args_are_not_parameter_files(tmp_path: Path) -> None:
    from sgdfuse_ros.ros.parameter_files import ParameterSources

    user = write_params(tmp_path / "robot.yaml", {"steps": 2})
    sources = ParameterSources.from_arguments(
        ["fusion_node", "--params-file", "not-ros.yaml", "--ros-args", "--params-file",
         str(user), "-p", "sync.slop:=0", "-p", "other_node:steps:=3", "--", "-p", "x:=1"]
    )  # fmt: skip
    assert [parameter_file.path for parameter_file in sources.files] == [str(user)]
    assert sources.assignments == (("/**", "sync.slop", 0), ("/other_node", "steps", 3))
    given = sources.values_for("/sgdfuse_fusion")
    assert given["steps"].value == 2 and given["steps"].source == str(user)
    assert given["sync.slop"].source == "-p"


def test_node_key_wildcards() -> None:
    from sgdfuse_ros.ros.parameter_files import node_key_matches

    assert node_key_matches("/**", "/robot1/sgdfuse_fusion")
    assert node_key_matches("/**/sgdfuse_fusion", "/sgdfuse_fusion")
    assert node_key_matches("/*/sgdfuse_fusion", "/robot1/sgdfuse_fusion")
    assert not node_key_matches("/*/sgdfuse_fusion", "/sgdfuse_fusion")
    assert node_key_matches("/*", "/sgdfuse_fusion")
    assert not node_key_matches("/*", "/robot1/sgdfuse_fusion")
    assert not node_key_matches("/other", "/sgdfuse_fusion")


# ------------------------------ the rcl emulation against rcl itself (rclpy's merged overrides)
RCL_SCALARS = """\
/**:
  ros__parameters:
    bools: [yes, On, n]
    b1: Y
    i_hex: 0x1F
    i_oct: 010
    i_neg: -42
    d_exp: 1e3
    d_dot: .5
    d_inf: -.inf
    s_plain: cuda:0
    s_quoted: "3"
    s_single: '0.5'
    s_null: null
    nested:
      deeper:
        value: 2.0
    ints: [1, 2, 3]
    doubles: [1.0, 2.5]
/robot1/sgdfuse_fusion:
  ros__parameters:
    only_in_robot1: 1
"""


@pytest.mark.parametrize("namespace", ["/", "/robot1", "/a/b"])
def test_reading_matches_rcl(tmp_path: Path, namespace: str) -> None:
    from sgdfuse_ros.ros.parameter_files import ParameterSources

    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    first = tmp_path / "first.yaml"
    first.write_text(RCL_SCALARS)
    # layered the way rclpy resolves sections: in order of first appearance, later files
    # overwrite, so the node's own section in the first file still beats /** of the second
    second = write_params(tmp_path / "second.yaml", {"only_in_robot1": 5, "i_neg": 7})
    arguments = ["--ros-args", "--params-file", str(first), "--params-file", str(second),
                 "-p", "i_oct:=9", "-p", "sgdfuse_fusion:d_dot:=0.75", "-p", "other:i_hex:=1"]  # fmt: skip
    context = rclpy.Context()
    rclpy.init(args=arguments, context=context)
    try:
        node = rclpy.create_node("sgdfuse_fusion", namespace=namespace, context=context)
        expected = {name: p.value for name, p in node._parameter_overrides.items()}
        fully_qualified_name = node.get_fully_qualified_name()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    ours = ParameterSources.from_arguments(arguments).values_for(fully_qualified_name)
    assert {name: given.value for name, given in ours.items()} == {
        name: list(value) if isinstance(value, (list, tuple)) or hasattr(value, "tolist")
        else value
        for name, value in expected.items()
    }  # fmt: skip
    assert ours["i_neg"].source == str(second)


def test_reading_the_shipped_file_gives_the_defaults() -> None:
    from sgdfuse_ros.ros.parameter_files import GivenValue, read_parameter_file
    from sgdfuse_ros.ros.parameters import check_given_values

    sections = read_parameter_file(SHIPPED).sections
    assert [key for key, _ in sections] == ["/**"]
    assert (
        check_given_values(
            [GivenValue(name, value, str(SHIPPED)) for name, value in sections[0][1].items()]
        )
        == DEFAULTS
    )


def test_in_process_overrides_follow_the_same_rules() -> None:
    """FusionNode(parameter_overrides=...) (tests, composition): exact conversions too."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    from rclpy.parameter import Parameter

    from sgdfuse_ros.ros.node import FusionNode
    from sgdfuse_ros.ros.parameter_files import ParameterFileError

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=_domain())
    try:
        node = FusionNode(
            "fault4_in_process",
            context=context,
            parameter_overrides=[
                Parameter("sync.slop", value=0),
                Parameter("steps", value=2.0),
                Parameter("autostart", value=False),
            ],
        )
        assert node.get_parameter("sync.slop").value == 0.0
        assert node.get_parameter("steps").value == 2
        node.destroy_node()
        with pytest.raises(ParameterFileError, match="parameter device in parameter_overrides"):
            FusionNode(
                "fault4_bad", context=context, parameter_overrides=[Parameter("device", value=5)]
            )
    finally:
        rclpy.try_shutdown(context=context)
