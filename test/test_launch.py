"""The launch file, the way users start the node.

Where the ROS 2 launch system is installed (a ROS installation, or the upstream wheels in
../shared/ros-wheels), the package is built with colcon into a temporary workspace and
`ros2 launch sgdfuse_ros fusion.launch.py` runs for real with non-default arguments and is
stopped with a terminal's Ctrl-C (SIGINT to its process group). Elsewhere fusion_node is run
with exactly the command line the launch file produces (parameter files, remappings,
namespace, log level).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from launch_helpers import (
    SHUTDOWN_LINE,
    LaunchedFusion,
    launch_system_missing,
    node_is_discovered,
    random_domain,
    sourced_environment,
    stamped_pair,
    wait_for_subscribers,
)

from sgdfuse_ros.ros import launch_args

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "fusion.launch.py"
H, W = 64, 80


def test_launch_file_is_thin_and_uses_the_shared_arguments() -> None:
    text = LAUNCH_FILE.read_text()
    assert "def generate_launch_description" in text
    for helper in (
        "LAUNCH_ARGUMENTS",
        "params_file(",
        "parameter_overrides(",
        "remappings(",
        "fail_launch_if_node_failed",
        "NODE_ENVIRONMENT",
    ):
        assert f"launch_args.{helper}" in text, helper


def test_a_failed_node_fails_the_launch_but_a_shutdown_does_not() -> None:
    """The launch file's OnProcessExit handler, with launch's event and context reduced to the
    two fields it reads."""
    from types import SimpleNamespace

    running = SimpleNamespace(is_shutdown=False)
    stopping = SimpleNamespace(is_shutdown=True)
    launch_args.fail_launch_if_node_failed(SimpleNamespace(returncode=0), running)
    launch_args.fail_launch_if_node_failed(SimpleNamespace(returncode=-2), stopping)
    with pytest.raises(launch_args.NodeFailedError, match="fusion_node exited with code 1"):
        launch_args.fail_launch_if_node_failed(SimpleNamespace(returncode=1), running)


def test_generate_launch_description_where_launch_ros_imports() -> None:
    try:
        import launch_ros  # noqa: F401

        from launch import LaunchDescription  # noqa: F401
    except ImportError:
        pytest.skip(
            "launch / launch_ros not installed (no PyPI wheels); the next test runs "
            "fusion_node with the launch file's command line instead"
        )
    spec = importlib.util.spec_from_file_location("fusion_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {argument.name for argument in description.get_launch_arguments()}
    assert declared == {argument.name for argument in launch_args.LAUNCH_ARGUMENTS}


def test_fusion_node_runs_with_the_launch_command_line(tmp_path: Path) -> None:
    pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
    if launch_system_missing() is None:
        pytest.skip("the launch system is installed: test_ros2_launch_* runs the real thing")
    from sensor_msgs.msg import Image

    from sgdfuse_ros.io.image_codec import encode_array
    from sgdfuse_ros.ros.client import FusionObserver
    from sgdfuse_ros.ros.process import isolated_ros_environment, start_fusion_node, stop_process

    # a user's parameter file: the shipped one with test-only untrained weights allowed
    params = yaml.safe_load((ROOT / "config" / "sgdfuse.yaml").read_text())
    params["/**"]["ros__parameters"]["allow_untrained"] = True
    params_path = tmp_path / "robot.yaml"
    params_path.write_text(yaml.safe_dump(params))
    values = launch_args.with_defaults(
        {
            "params_file": str(params_path),
            "namespace": "robot1",
            "thermal_topic": "/cams/ir/image",
            "rgb_topic": "/cams/rgb/image",
            "use_sim_time": "false",
            "device": "cpu",
            "steps": "1",
            "log_level": "debug",
        }
    )
    overrides_file = launch_args.write_overrides_file(
        launch_args.parameter_overrides(values), tmp_path / "launch_overrides.yaml"
    )
    arguments = launch_args.node_ros_arguments(values, overrides_file)
    domain = random.randint(1, 100)
    log = tmp_path / "fusion_node.log"
    environment = {**isolated_ros_environment(domain), **launch_args.NODE_ENVIRONMENT}
    process = start_fusion_node(arguments, environment, log)
    observer = FusionObserver(domain_id=domain)
    try:
        node = observer.node
        thermal_pub = node.create_publisher(Image, "/cams/ir/image", 10)
        rgb_pub = node.create_publisher(Image, "/cams/rgb/image", 10)
        deadline = time.monotonic() + 120.0
        while not (thermal_pub.get_subscription_count() and rgb_pub.get_subscription_count()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert node_is_discovered(node, "sgdfuse_fusion", "/robot1"), node.get_node_names()
        rng = np.random.default_rng(0)
        for source, encoding, pub in (
            (rng.integers(0, 256, (H, W), dtype=np.uint8), "mono8", thermal_pub),
            (rng.integers(0, 256, (H, W, 3), dtype=np.uint8), "rgb8", rgb_pub),
        ):
            fields = encode_array(source, encoding)
            msg = Image(
                height=fields.height, width=fields.width, encoding=encoding, step=fields.step
            )
            msg.data = fields.data
            msg.header.stamp.sec = 42
            pub.publish(msg)
        # the output is /fused/image although the node lives in /robot1
        assert observer.wait_for(lambda: observer.fused_count() >= 1, 60.0), log.read_text()
        assert observer.fused[0].stamp == 42 * 1_000_000_000
        assert observer.wait_for(lambda: observer.diagnostic("steps") == "1", 30.0)
        assert observer.diagnostic("device") == "cpu"
        assert "[DEBUG]" in log.read_text()  # --log-level debug reached the node
    finally:
        observer.close()
        assert stop_process(process) == 0, log.read_text()


def test_ros2_launch_fuses_with_non_default_arguments_and_stops_on_ctrl_c(
    launch_install: Path, tmp_path: Path
) -> None:
    """The operator's path end to end: built workspace, `ros2 launch` with a namespace, remapped
    topics, steps and log level, camera pairs in, /fused/image out with the RGB stamps, then a
    terminal Ctrl-C. launch must exit 0 without reporting the node as died."""
    from sensor_msgs.msg import Image

    from sgdfuse_ros.ros.client import FusionObserver
    from sgdfuse_ros.ros.sync import message_filters_available

    domain = random_domain()
    launched = LaunchedFusion(
        launch_install,
        {
            "namespace": "robot1",
            "thermal_topic": "/cams/ir/image",
            "rgb_topic": "/cams/rgb/image",
            "steps": "1",
            "log_level": "debug",
        },
        tmp_path / "launch.log",
        domain,
    )
    observer = FusionObserver(domain_id=domain)
    try:
        thermal_pub = observer.node.create_publisher(Image, "/cams/ir/image", 10)
        rgb_pub = observer.node.create_publisher(Image, "/cams/rgb/image", 10)
        wait_for_subscribers((thermal_pub, rgb_pub), launched, 120.0)
        assert node_is_discovered(observer.node, "sgdfuse_fusion", "/robot1"), (
            observer.node.get_node_names_and_namespaces()
        )
        now_ns = observer.node.get_clock().now().nanoseconds
        sent_rgb_stamps = []
        for index in range(5):
            stamp_ns = now_ns + index * 100_000_000
            thermal, rgb = stamped_pair(stamp_ns, seed=index)
            thermal_pub.publish(thermal)
            rgb_pub.publish(rgb)
            sent_rgb_stamps.append(stamp_ns)
            time.sleep(0.3)
        # output on /fused/image although the node lives in /robot1; headers are the RGB ones
        assert observer.wait_for(lambda: observer.fused_count() >= 1, 60.0), launched.output()
        assert {arrival.stamp for arrival in observer.fused} <= set(sent_rgb_stamps)
        assert {arrival.frame_id for arrival in observer.fused} == {"rgb_optical"}
        assert observer.wait_for(lambda: observer.diagnostic("steps") == "1", 30.0)
        expected_sync = "message_filters" if message_filters_available() else "sgdfuse_ros"
        assert observer.diagnostic("sync_backend") == expected_sync  # sync.backend: auto
        assert "[DEBUG]" in launched.output()  # log_level reached the node
    finally:
        observer.close()
        if launched.process.poll() is None:
            launched.signal_group(signal.SIGINT)
        exit_code = launched.wait()
    output = launched.output()
    assert exit_code == 0, output
    assert "process has died" not in output, output
    assert "Traceback" not in output, output
    assert len(SHUTDOWN_LINE.findall(output)) == 1, output


def test_launch_testing_runs_the_installed_launch_file(launch_install: Path) -> None:
    """The ROS way of testing a launch file: `launch_test` on launch_testing_fusion.py (pairs in,
    fused out; after launch's own shutdown every process exited 0, one shutdown line)."""
    env = sourced_environment(random_domain())
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "test"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'set +u; . "{launch_install}/setup.bash"; set -u; '
            f'exec launch_test "{ROOT / "test" / "launch_testing_fusion.py"}"',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Ran 1 test" in output and "Ran 2 tests" in output, output  # active + post-shutdown


def test_launch_testing_pytest_plugins_are_off_for_plain_runs(
    request: pytest.FixtureRequest,
) -> None:
    """A ROS installation registers launch_testing's pytest plugins; pytest 9 refuses them and
    pytest 8 imports every test module through them. setup.cfg must block each one installed."""
    plugins = [
        entry_point.name
        for entry_point in importlib.metadata.entry_points(group="pytest11")
        if entry_point.dist is not None and entry_point.dist.name.startswith("launch_testing")
    ]
    if not plugins:
        pytest.skip("no launch_testing pytest plugin installed here")
    for name in plugins:
        assert request.config.pluginmanager.is_blocked(name), f"add -p no:{name} to setup.cfg"
