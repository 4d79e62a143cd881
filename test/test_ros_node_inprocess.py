"""The fusion node in one process with the real pipeline: lifecycle over its services, compressed
input, registration of a smaller thermal camera, debug topics and camera info."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from sgdfuse_ros.io.image_codec import encode_array, image_to_array  # noqa: E402
from sgdfuse_ros.io.registration import scaling_homography  # noqa: E402
from sgdfuse_ros.ros.node import FusionNode  # noqa: E402

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
DOMAIN = random.randint(101, 200)
H, W = 64, 80
WAIT = 60.0


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Harness:
    """A fusion node plus a helper node (publishers, subscribers, lifecycle client), spinning."""

    def __init__(self, name: str, overrides: dict) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN)
        params = [Parameter(key, value=value) for key, value in overrides.items()]
        self.fusion = FusionNode(name, context=self.context, parameter_overrides=params)
        self.helper = rclpy.create_node(f"{name}_helper", context=self.context)
        self.received: dict[str, list] = {}
        self._lock = threading.Lock()
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.fusion)
        self.executor.add_node(self.helper)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()
        self.change_client = self.helper.create_client(ChangeState, f"/{name}/change_state")
        self.state_client = self.helper.create_client(GetState, f"/{name}/get_state")

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def listen(self, topic: str, msg_type: type = Image) -> None:
        self.received[topic] = []

        def store(msg: object) -> None:
            with self._lock:
                self.received[topic].append(msg)

        self.helper.create_subscription(msg_type, topic, store, 10)

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self.received[topic])

    def fuse_one_pair(self, thermal_pub: object, rgb_pub: object, stamp_s: int = 30) -> Image:
        """Publish one random mono8 + rgb8 pair once the node listens; the fused image back."""
        assert wait_until(
            lambda: (
                thermal_pub.get_subscription_count() > 0 and rgb_pub.get_subscription_count() > 0
            )
        )
        self.listen("fused/image")
        ir, rgb = scene(5)
        thermal_pub.publish(image_msg(ir, "mono8", stamp_s))
        rgb_pub.publish(image_msg(rgb, "rgb8", stamp_s))
        assert wait_until(lambda: self.count("fused/image") >= 1)
        return self.received["fused/image"][-1]

    def transition(self, transition_id: int) -> bool:
        assert self.change_client.wait_for_service(timeout_sec=WAIT)
        future = self.change_client.call_async(
            ChangeState.Request(transition=Transition(id=transition_id))
        )
        assert wait_until(future.done, 120.0)
        return bool(future.result().success)

    def state(self) -> int:
        assert self.state_client.wait_for_service(timeout_sec=WAIT)
        future = self.state_client.call_async(GetState.Request())
        assert wait_until(future.done)
        return int(future.result().current_state.id)

    def close(self) -> None:
        self.fusion.destroy_node()
        self.helper.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spinner.join(5.0)


def image_msg(array: np.ndarray, encoding: str, stamp_s: int, frame_id: str = "cam") -> Image:
    fields = encode_array(array, encoding)
    msg = Image(
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
    )
    msg.data = fields.data
    msg.header.stamp.sec = stamp_s
    msg.header.frame_id = frame_id
    return msg


def scene(seed: int, shape: tuple[int, int] = (H, W)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, shape, dtype=np.uint8),
        rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
    )


@pytest.fixture
def lifecycle_harness() -> Iterator[Harness]:
    harness = Harness(
        "fusion_lifecycle", {"autostart": False, "allow_untrained": True, "diagnostics.period": 0.5}
    )
    yield harness
    harness.close()


def test_lifecycle_over_services(lifecycle_harness: Harness) -> None:
    h = lifecycle_harness
    thermal_pub = h.helper.create_publisher(Image, "thermal/image_raw", 10)
    rgb_pub = h.helper.create_publisher(Image, "rgb/image_raw", 10)
    h.listen("fused/image")
    h.listen("/diagnostics", DiagnosticArray)
    assert h.state() == State.PRIMARY_STATE_UNCONFIGURED and h.fusion.pipeline is None

    assert h.transition(Transition.TRANSITION_CONFIGURE)
    assert h.state() == State.PRIMARY_STATE_INACTIVE and h.fusion.pipeline is not None
    time.sleep(0.5)
    assert thermal_pub.get_subscription_count() == 0  # no subscriptions before activate

    def fuse_one(stamp: int) -> None:
        before = h.count("fused/image")
        ir, rgb = scene(stamp)
        thermal_pub.publish(image_msg(ir, "mono8", stamp))
        rgb_pub.publish(image_msg(rgb, "rgb8", stamp))
        assert wait_until(lambda: h.count("fused/image") > before)
        assert h.received["fused/image"][-1].header.stamp.sec == stamp

    for cycle in range(2):  # the second activate reloads the models freed on deactivate
        assert h.transition(Transition.TRANSITION_ACTIVATE)
        assert h.state() == State.PRIMARY_STATE_ACTIVE and h.fusion.pipeline is not None
        assert wait_until(
            lambda: (
                thermal_pub.get_subscription_count() > 0 and rgb_pub.get_subscription_count() > 0
            )
        )
        fuse_one(10 + cycle)
        assert h.transition(Transition.TRANSITION_DEACTIVATE)
        assert h.state() == State.PRIMARY_STATE_INACTIVE
        assert h.fusion.pipeline is None  # models (and GPU memory) released
        assert wait_until(lambda: thermal_pub.get_subscription_count() == 0)
        # The last status heard says it: not the OK of the last fused frame.
        assert wait_until(
            lambda: (
                h.count("/diagnostics") > 0
                and h.received["/diagnostics"][-1].status[0].message.startswith("inactive")
            )
        )
        assert h.received["/diagnostics"][-1].status[0].level == DiagnosticStatus.WARN

    assert h.transition(Transition.TRANSITION_CLEANUP)
    assert h.state() == State.PRIMARY_STATE_UNCONFIGURED


def test_invalid_parameter_fails_configure_and_can_be_fixed_at_run_time() -> None:
    harness = Harness(
        "fusion_bad_params", {"autostart": False, "allow_untrained": True, "input_qos": "fastest"}
    )
    try:
        assert not harness.transition(Transition.TRANSITION_CONFIGURE)
        assert harness.state() == State.PRIMARY_STATE_UNCONFIGURED
        node = harness.fusion
        # Another value may still change while input_qos is bad; the bad one can be fixed.
        (result,) = node.set_parameters([Parameter("sync.slop", value=0.2)])
        assert result.successful
        (result,) = node.set_parameters([Parameter("input_qos", value="reliable")])
        assert result.successful
        assert harness.transition(Transition.TRANSITION_CONFIGURE)
    finally:
        harness.close()


def test_run_time_parameter_sets_are_checked_like_configure() -> None:
    harness = Harness("fusion_param_set", {"autostart": False, "allow_untrained": True})
    try:
        node = harness.fusion
        for name, value in (("sync.slop", -1.0), ("watchdog.timeout", 0.0), ("device", "gpu")):
            (result,) = node.set_parameters([Parameter(name, value=value)])
            assert not result.successful and name in result.reason, (name, result.reason)
            assert node.get_parameter(name).value != value  # the old value stays
        (result,) = node.set_parameters([Parameter("sync.slop", value=0.1)])
        assert result.successful and node.get_parameter("sync.slop").value == 0.1
        (result,) = node.set_parameters([Parameter("use_sim_time", value=False)])  # rclpy's own
        assert result.successful
    finally:
        harness.close()


def test_compressed_registered_debug_and_camera_info() -> None:
    small = (32, 40)  # thermal camera at half the RGB resolution
    harness = Harness(
        "fusion_features",
        {
            "autostart": False,
            "allow_untrained": True,
            "thermal.transport": "compressed",
            "rgb.transport": "compressed",
            "registration.mode": "homography",
            "registration.homography": scaling_homography((small[1], small[0]), (W, H)),
            "debug.publish_priors": True,
            "debug.publish_stage1": True,
            "output.encoding": "bgr8",
            "thermal.agc.mode": "minmax",
        },
    )
    h = harness
    try:
        assert h.fusion.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert h.fusion.trigger_activate() == TransitionCallbackReturn.SUCCESS
        for topic in ("fused/image", "fused/priors", "fused/stage1"):
            h.listen(topic)
        h.listen("fused/camera_info", CameraInfo)
        thermal_pub = h.helper.create_publisher(
            CompressedImage, "thermal/image_raw/compressed", qos_profile_sensor_data
        )
        rgb_pub = h.helper.create_publisher(CompressedImage, "rgb/image_raw/compressed", 10)
        info_pub = h.helper.create_publisher(CameraInfo, "rgb/camera_info", 10)
        assert wait_until(
            lambda: (
                thermal_pub.get_subscription_count() > 0
                and rgb_pub.get_subscription_count() > 0
                and info_pub.get_subscription_count() > 0
            )
        )
        info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
        info.header.frame_id = "rgb_optical"
        rng = np.random.default_rng(3)
        thermal_raw = rng.integers(2000, 6000, small, dtype=np.uint16)
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        png = cv2.imencode(".png", thermal_raw)[1].tobytes()
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        for stamp in (20, 21):
            info_pub.publish(info)
            wait_until(lambda: h.fusion._rgb_info is not None, 10.0)
            for pub, data, fmt in (
                (thermal_pub, png, "mono16; png compressed"),
                (rgb_pub, jpeg, "rgb8; jpeg compressed bgr8"),
            ):
                msg = CompressedImage(format=fmt)
                msg.data = data
                msg.header.stamp.sec = stamp
                msg.header.frame_id = "rgb_optical"
                pub.publish(msg)
            expected = stamp - 19
            assert wait_until(lambda expected=expected: h.count("fused/image") >= expected)
        assert wait_until(
            lambda: (
                h.count("fused/priors") >= 1
                and h.count("fused/stage1") >= 1
                and h.count("fused/camera_info") >= 1
            )
        )
        fused = h.received["fused/image"][-1]
        assert (fused.width, fused.height, fused.encoding) == (W, H, "bgr8")
        assert fused.header.frame_id == "rgb_optical"
        priors = image_to_array(h.received["fused/priors"][-1])
        assert priors.shape == (H, W, 3) and priors[..., 2].max() == 0
        assert image_to_array(h.received["fused/stage1"][-1]).shape == (H, W, 3)
        info_out = h.received["fused/camera_info"][-1]
        assert info_out.header.stamp.sec in (20, 21) and info_out.width == W
        assert h.fusion.stats.counters["bad_input"] == 0
    finally:
        harness.close()


def test_auto_qos_matches_the_publishers() -> None:
    harness = Harness(
        "fusion_auto_qos", {"autostart": False, "allow_untrained": True, "input_qos": "auto"}
    )
    h = harness
    try:
        reliable = h.helper.create_publisher(Image, "thermal/image_raw", 10)
        best_effort = h.helper.create_publisher(Image, "rgb/image_raw", qos_profile_sensor_data)
        assert wait_until(
            lambda: (
                h.fusion.count_publishers("/thermal/image_raw") == 1
                and h.fusion.count_publishers("/rgb/image_raw") == 1
            )
        )
        assert h.fusion.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert h.fusion.trigger_activate() == TransitionCallbackReturn.SUCCESS
        descriptions = dict(h.fusion.diagnostic_values())
        assert descriptions["qos_thermal"] == "auto->reliable"
        assert descriptions["qos_rgb"].startswith("auto->sensor_data")
        h.fuse_one_pair(reliable, best_effort)
    finally:
        harness.close()


def test_onnxruntime_backend_fuses_through_the_node(tmp_path: Path) -> None:
    """``inference.backend: onnxruntime`` with its own engine cache and thread bound."""
    pytest.importorskip("onnxruntime")
    harness = Harness(
        "fusion_onnxruntime",
        {
            "autostart": False,
            "inference.backend": "onnxruntime",
            "inference.engine_dir": str(tmp_path / "cache"),
            "inference.cpu_threads": 1,
            "input_qos": "reliable",
        },
    )
    h = harness
    try:
        assert h.fusion.trigger_configure() == TransitionCallbackReturn.SUCCESS
        runner = h.fusion.pipeline.runner
        assert type(runner).__name__ == "OnnxRuntimeRunner"
        assert runner.stage1.get_session_options().intra_op_num_threads == 1
        assert (tmp_path / "cache").is_dir()  # graphs exported where the parameter says
        assert h.fusion.trigger_activate() == TransitionCallbackReturn.SUCCESS
        thermal_pub = h.helper.create_publisher(Image, "thermal/image_raw", 10)
        rgb_pub = h.helper.create_publisher(Image, "rgb/image_raw", 10)
        fused = image_to_array(h.fuse_one_pair(thermal_pub, rgb_pub))
        assert fused.shape == (H, W, 3) and h.fusion.stats.counters["pipeline_error"] == 0
    finally:
        harness.close()


def test_warm_up_leaves_tensorrt_plans_to_the_first_real_frame() -> None:
    """A tiny warm-up frame would queue a TensorRT build for a size no camera sends (or fail
    configure with engine_build: never); other backends do warm up."""
    from sgdfuse_ros.ros.node import _warm_up

    class Recorder:
        def __init__(self, backend: str) -> None:
            self.backend, self.calls = backend, []

        def fuse(self, ir: np.ndarray, vis: np.ndarray) -> None:
            self.calls.append(("fuse", ir.shape, vis.shape))

        def reset_priors(self) -> None:
            self.calls.append(("reset_priors",))

    for backend in ("torch", "onnxruntime"):
        pipeline = Recorder(backend)
        _warm_up(pipeline)
        assert pipeline.calls == [("fuse", (64, 64), (64, 64, 3)), ("reset_priors",)]
    trt = Recorder("tensorrt")
    _warm_up(trt)
    assert trt.calls == []
