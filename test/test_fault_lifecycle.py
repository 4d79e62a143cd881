"""Issue 14, fault 1: a lifecycle request the current state has no transition for.

`configure` / `cleanup` to the autostarted (active) node and `activate` / `deactivate` to an
unconfigured one, sent the way a lifecycle manager sends them (the node's ``~/change_state``
service over DDS), used to make rclpy raise "Transition is not registered": no reply, and the
fusion_node process exited 1. Each must be answered ``success: false`` with one log line naming
the transition and the state, the node staying alive in its state (and fusing when active), and
a valid transition must still work afterwards. These tests run the real ``fusion_node`` process.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from launch_helpers import stamped_pair  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from sgdfuse_ros.ros.client import FusionObserver  # noqa: E402
from sgdfuse_ros.ros.process import (  # noqa: E402
    isolated_ros_environment,
    start_fusion_node,
    stop_process,
)

ROOT = Path(__file__).resolve().parents[1]
REPLY_TIMEOUT = 30.0  # a refused request is answered at once; no reply at all is the fault
START_TIMEOUT = 180.0  # the model load on a loaded CI machine


def _domain() -> int:
    """ROS_DOMAIN_ID when the caller set one (parallel sessions), else a random one."""
    return int(os.environ.get("ROS_DOMAIN_ID") or random.randint(1, 100))


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class LifecycleRig:
    """fusion_node as its own process (the shipped parameter file plus ``overrides``), and a
    client node with the lifecycle service clients, camera publishers and the fused output."""

    def __init__(self, tmp_path: Path, name: str, overrides: dict) -> None:
        params = yaml.safe_load((ROOT / "config" / "sgdfuse.yaml").read_text())
        params["/**"]["ros__parameters"].update({"allow_untrained": True, **overrides})
        params_path = tmp_path / f"{name}.yaml"
        params_path.write_text(yaml.safe_dump(params))
        self.name = name
        self.log = tmp_path / f"{name}.log"
        domain = _domain()
        self.process = start_fusion_node(
            ["--ros-args", "-r", f"__node:={name}", "--params-file", str(params_path)],
            isolated_ros_environment(domain),
            self.log,
        )
        self.observer = FusionObserver(domain_id=domain, name=f"{name}_client")
        node = self.observer.node
        self.change_client = node.create_client(ChangeState, f"/{name}/change_state")
        self.state_client = node.create_client(GetState, f"/{name}/get_state")
        self.thermal_pub = node.create_publisher(Image, "/thermal/image_raw", 10)
        self.rgb_pub = node.create_publisher(Image, "/rgb/image_raw", 10)
        self._stamp_ns = 1_000_000_000
        self.closed = False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def _call(self, client: object, request: object, timeout: float) -> object | None:
        """The service's response, or None when none came within ``timeout``."""
        assert client.wait_for_service(timeout_sec=START_TIMEOUT), self.output()
        future = client.call_async(request)
        if not wait_until(future.done, timeout):
            return None
        return future.result()

    def change_state(
        self, transition_id: int = 0, label: str = "", timeout: float = REPLY_TIMEOUT
    ) -> bool | None:
        """``success`` of a change_state request, or None when no reply came."""
        request = ChangeState.Request(transition=Transition(id=transition_id, label=label))
        response = self._call(self.change_client, request, timeout)
        return None if response is None else bool(response.success)

    def state(self) -> int | None:
        response = self._call(self.state_client, GetState.Request(), REPLY_TIMEOUT)
        return None if response is None else int(response.current_state.id)

    def wait_for_state(self, state_id: int) -> None:
        assert wait_until(lambda: self.state() == state_id, START_TIMEOUT), self.output()

    def fuse_one_pair(self) -> None:
        """Send a pair once the node subscribes; it must come back fused."""
        assert wait_until(
            lambda: (
                self.thermal_pub.get_subscription_count() > 0
                and self.rgb_pub.get_subscription_count() > 0
            ),
            START_TIMEOUT,
        ), self.output()
        before = self.observer.fused_count()
        self._stamp_ns += 100_000_000
        thermal, rgb = stamped_pair(self._stamp_ns, seed=self._stamp_ns % 1000)
        self.thermal_pub.publish(thermal)
        self.rgb_pub.publish(rgb)
        assert self.observer.wait_for(lambda: self.observer.fused_count() > before, 120.0), (
            self.output()
        )

    def close(self) -> int:
        """Stop the node (SIGINT); its exit code."""
        self.closed = True
        self.observer.close()
        return stop_process(self.process)


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Callable[[str, dict], LifecycleRig]]:
    rigs: list[LifecycleRig] = []

    def make(name: str, overrides: dict) -> LifecycleRig:
        rig = LifecycleRig(tmp_path, name, overrides)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        if not rig.closed:
            rig.close()


def refusal_lines(output: str, transition: str, state: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if re.search(rf"refused lifecycle transition '{transition}'.*the node is {state}", line)
    ]


@pytest.mark.parametrize(
    ("label", "transition", "autostart"),
    [
        pytest.param("configure", Transition.TRANSITION_CONFIGURE, True, id="configure-to-active"),
        pytest.param("cleanup", Transition.TRANSITION_CLEANUP, True, id="cleanup-to-active"),
        pytest.param(
            "activate", Transition.TRANSITION_ACTIVATE, False, id="activate-to-unconfigured"
        ),
        pytest.param(
            "deactivate", Transition.TRANSITION_DEACTIVATE, False, id="deactivate-to-unconfigured"
        ),
    ],
)
def test_invalid_transition_is_answered_false_and_the_node_stays_in_its_state(
    rig_factory: Callable[[str, dict], LifecycleRig], label: str, transition: int, autostart: bool
) -> None:
    rig = rig_factory(f"fault1_{label}", {"autostart": autostart})
    state, state_label = (
        (State.PRIMARY_STATE_ACTIVE, "active")
        if autostart
        else (State.PRIMARY_STATE_UNCONFIGURED, "unconfigured")
    )
    rig.wait_for_state(state)
    if autostart:
        rig.fuse_one_pair()

    reply = rig.change_state(transition)
    assert reply is False, f"{label}: reply {reply}, process alive {rig.alive()}\n{rig.output()}"
    assert rig.alive(), rig.output()
    assert rig.state() == state
    assert len(refusal_lines(rig.output(), label, state_label)) == 1, rig.output()
    # the same request by label (as `ros2 service call` may send it): refused and logged too
    assert rig.change_state(label=label) is False
    assert wait_until(lambda: len(refusal_lines(rig.output(), label, state_label)) == 2, 10.0)
    assert rig.state() == state

    # a valid transition still works afterwards, and the node fuses
    if autostart:
        rig.fuse_one_pair()  # kept fusing through the refusals
        assert rig.change_state(Transition.TRANSITION_DEACTIVATE) is True, rig.output()
        assert rig.state() == State.PRIMARY_STATE_INACTIVE
    else:
        assert rig.change_state(Transition.TRANSITION_CONFIGURE, timeout=START_TIMEOUT) is True
        assert rig.state() == State.PRIMARY_STATE_INACTIVE
    assert rig.change_state(Transition.TRANSITION_ACTIVATE, timeout=START_TIMEOUT) is True
    assert rig.state() == State.PRIMARY_STATE_ACTIVE
    rig.fuse_one_pair()
    output = rig.output()
    assert "Traceback" not in output and "RCLError" not in output, output
    assert rig.close() == 0, rig.output()
