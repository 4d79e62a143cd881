"""The ``fusion_node`` executable: synced thermal + RGB in, fused image out.

A lifecycle node: models load on configure, subscriptions start on activate, GPU memory is
freed on deactivate (the models reload on the next activate). With ``autostart`` (default) the
node walks itself to active, so ``ros2 run`` / ``ros2 launch`` / the bare ``fusion_node``
command need no lifecycle manager.

Threads: the executor thread only validates headers, counts and pairs messages; a single
inference thread decodes, registers, fuses and publishes the newest pair (see worker.py).
Every bad frame is logged (throttled), counted in /diagnostics and skipped.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.io import image_codec
from sgdfuse_ros.io.sync import stamp_ns
from sgdfuse_ros.memory import retain_freed_memory
from sgdfuse_ros.ros import watchdog
from sgdfuse_ros.ros.diagnostics import (
    FusionStats,
    Health,
    HealthInputs,
    HealthMonitor,
    HealthThresholds,
    RateMeter,
    ThrottledLog,
    fusion_status,
    gpu_memory_values,
    to_diagnostic_array,
)
from sgdfuse_ros.ros.parameter_files import ParameterFileError, ParameterSources
from sgdfuse_ros.ros.parameters import PARAMETERS, NodeSettings, check_given_values
from sgdfuse_ros.ros.qos import (
    ResolvedQos,
    incompatibility,
    incompatible_qos_message,
    publisher_profiles,
    resolve_qos,
)
from sgdfuse_ros.ros.shutdown import SHUTDOWN, ShutdownRequest, ShutdownRequested
from sgdfuse_ros.ros.sync import make_pair_sync
from sgdfuse_ros.ros.worker import LatestOnlyWorker, run_on_fresh_thread

NODE_NAME = "sgdfuse_fusion"
THERMAL_TOPIC = "thermal/image_raw"
RGB_TOPIC = "rgb/image_raw"
THERMAL_INFO_TOPIC = "thermal/camera_info"
RGB_INFO_TOPIC = "rgb/camera_info"
FUSED_TOPIC = "fused/image"
FUSED_INFO_TOPIC = "fused/camera_info"
PRIORS_TOPIC = "fused/priors"
STAGE1_TOPIC = "fused/stage1"

_OUTPUT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE
)
_INFO_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT
)
_OWN_NAMES = frozenset(spec.name for spec in PARAMETERS)  # not rclpy's (use_sim_time, ...)


@dataclass
class PendingPair:
    thermal: Any
    rgb: Any
    paired_at: float  # monotonic seconds when the pair completed


class FusionNode(LifecycleNode):
    """Lifecycle node wrapping FusionPipeline with sync, codec, registration and diagnostics."""

    def __init__(
        self,
        node_name: str = NODE_NAME,
        *,
        shutdown_request: ShutdownRequest | None = None,
        parameter_sources: ParameterSources | None = None,
        **kwargs: Any,
    ) -> None:
        """``parameter_sources``: the command line's parameter files and ``-p`` values (main()
        reads them); the node checks and types every value itself (see _declare_parameters)."""
        super().__init__(node_name, **kwargs)
        self._answer_invalid_transitions()
        # a signal while the models load abandons the load (see shutdown.py)
        self._shutdown_request = shutdown_request or ShutdownRequest()
        # the inference thread publishes under this lock until close() sets _closing
        self._publish_lock = threading.Lock()
        self._closing = False
        self._load_abandoned = False  # a load thread still runs torch, its result unwanted
        self._declare_parameters(
            parameter_sources or ParameterSources(), kwargs.get("parameter_overrides") or ()
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.settings: NodeSettings | None = None
        self.pipeline: Any = None
        self.stats = FusionStats()
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._warn = ThrottledLog(self.get_logger().warning)
        self._outputs: dict[str, Any] = {}
        self._diagnostics_pub = None
        self._inputs: dict[str, Any] = {}
        self._resolved_qos: dict[str, ResolvedQos] = {}
        self._health: HealthMonitor | None = None
        self._qos_event_at: dict[str, float] = {}  # monotonic time of the last incompatible event
        self._own_timers: list[Any] = []
        self._sync = None
        self._worker: LatestOnlyWorker[PendingPair] | None = None
        self._jump_handle = None
        self._rgb_info: CameraInfo | None = None
        self._thermal_info: CameraInfo | None = None
        self._activated_at: float | None = None
        self._last_pair_at: float | None = None
        self._last_stamps: dict[str, int] = {}
        self._accepted_at: dict[str, float] = {}  # monotonic arrival of the last accepted frame
        self._unmatched_before = 0

    def _declare_parameters(self, sources: ParameterSources, overrides: Any) -> None:
        """Declare the table's parameters with the values given in files, ``-p`` or
        ``parameter_overrides``, checked and typed by parameters.check_given_values.

        rcl's own merge is not used for them: it keeps a stale value when a layered file changes
        a parameter's type, and a wrong type would surface as an rclpy exception without the
        file's name. Raises ParameterFileError (one line) for unknown names or wrong types.
        """
        given = sources.values_for(
            self.get_fully_qualified_name(),
            [(parameter.name, parameter.value) for parameter in overrides],
        )
        values = check_given_values(
            given.values(), also_known=[name for name in given if self.has_parameter(name)]
        )
        for spec in PARAMETERS:
            descriptor = ParameterDescriptor(description=spec.description)
            if spec.name in values:
                self.declare_parameter(
                    spec.name, values[spec.name], descriptor, ignore_override=True
                )
            else:
                self.declare_parameter(spec.name, spec.default, descriptor)

    # ----------------------------------------------------------------- lifecycle transitions
    def _answer_invalid_transitions(self) -> None:
        """Answer a change_state request the current state has no transition for with
        ``success: false`` and one log line, as rclcpp does.

        rclpy's service handler triggers the transition unchecked; rcl then fails ("Transition is
        not registered"), the RCLError leaves the executor and the process dies without a reply.
        A lifecycle manager sending configure to the autostarted node must not stop it.
        """
        service = self._service_change_state
        handle_request = service.callback

        def change_state(request: ChangeState.Request, response: ChangeState.Response) -> Any:
            refusal = self._transition_refusal(request.transition)
            if refusal is not None:
                self.get_logger().warning(refusal)
                response.success = False
                return response
            return handle_request(request, response)

        service.callback = change_state

    def _transition_refusal(self, transition: Transition) -> str | None:
        """Why ``transition`` cannot start from the current state, or None when it can."""
        available = self._state_machine.available_transitions  # (id, label, start, ..., goal)
        if transition.label:
            if any(item[1] == transition.label for item in available):
                return None
            requested = f"'{transition.label}'"
        else:
            if any(item[0] == transition.id for item in available):
                return None
            labels = {item[0]: item[1] for item in self._state_machine.transition_graph}
            requested = f"'{labels.get(transition.id, 'unknown')}' (id {transition.id})"
        state = self._state_machine.current_state[1]
        allowed = ", ".join(sorted({item[1] for item in available})) or "none"
        return (
            f"refused lifecycle transition {requested}: the node is {state} (allowed from "
            f"{state}: {allowed}); it stays {state}"
        )

    @property
    def autostart(self) -> bool:
        return bool(self.get_parameter("autostart").value)

    def _parameter_values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}

    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        """``ros2 param set`` at run time: a value configure would refuse is refused now, with
        configure's reason; a valid one is kept and, since parameters are read at configure,
        the log says when it takes effect."""
        ours = {change.name: change.value for change in changes if change.name in _OWN_NAMES}
        if not ours:
            return SetParametersResult(successful=True)
        try:
            NodeSettings.from_values({**self._parameter_values(), **ours})
        except ValueError as error:
            # Refuse only what the change itself breaks: after a failed configure with two bad
            # values, fixing one of them must not be refused for the other.
            if any(name in str(error) for name in ours):
                return SetParametersResult(successful=False, reason=str(error))
        if self.settings is not None:
            self.get_logger().info(
                f"parameter(s) {', '.join(sorted(ours))} set; read at configure, so they take "
                "effect after deactivate, cleanup, configure and activate"
            )
        return SetParametersResult(successful=True)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.settings = NodeSettings.from_values(self._parameter_values())
        except ValueError as error:
            self.get_logger().error(f"invalid parameters: {error}")
            return TransitionCallbackReturn.FAILURE
        self._warn = ThrottledLog(self.get_logger().warning, self.settings.log_throttle_period)
        try:
            self._load_pipeline()
        except Exception as error:  # noqa: BLE001 - any load failure is reported, not raised
            self.get_logger().error(f"cannot load the fusion pipeline: {error}")
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        self._outputs = {
            "fused": self.create_lifecycle_publisher(Image, FUSED_TOPIC, _OUTPUT_QOS),
            "fused_info": self.create_lifecycle_publisher(
                CameraInfo, FUSED_INFO_TOPIC, _OUTPUT_QOS
            ),
        }
        if self.settings.publish_priors:
            self._outputs["priors"] = self.create_lifecycle_publisher(
                Image, PRIORS_TOPIC, _OUTPUT_QOS
            )
        if self.settings.publish_stage1:
            self._outputs["stage1"] = self.create_lifecycle_publisher(
                Image, STAGE1_TOPIC, _OUTPUT_QOS
            )
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        return TransitionCallbackReturn.SUCCESS

    def _load_pipeline(self) -> None:
        from sgdfuse_ros.pipeline import FusionPipeline

        settings = self.settings
        assert settings is not None
        started = time.monotonic()
        options = settings.pipeline
        self.get_logger().info(
            f"loading the models: device={options.device} backend={options.backend}"
        )
        if options.allow_untrained:
            self.get_logger().warning(
                "allow_untrained is true: if no weights are found the networks run with random "
                "initial weights and the output is NOT a trained fusion (tests / CI only)"
            )

        def load() -> FusionPipeline:
            pipeline = FusionPipeline(settings.pipeline)
            _warm_up(pipeline)
            return pipeline

        # Not on the executor thread: see run_on_fresh_thread.
        try:
            self.pipeline = run_on_fresh_thread(
                load, name="sgdfuse-load", should_stop=lambda: self._shutdown_request.requested
            )
        except ShutdownRequested:
            self._load_abandoned = True
            raise
        self.get_logger().info(
            f"pipeline loaded and warmed up in {time.monotonic() - started:.1f} s: "
            f"device={options.device} "
            f"backend={options.backend} steps={options.steps or 'default'} "
            f"prior={options.prior_backend} weights={options.weights or 'shipped default'}"
        )

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        settings = self.settings
        assert settings is not None
        if self.pipeline is None:
            try:
                self.get_logger().info("reloading the models (freed on deactivate)")
                self._load_pipeline()
            except Exception as error:  # noqa: BLE001
                self.get_logger().error(f"cannot reload the fusion pipeline: {error}")
                return TransitionCallbackReturn.FAILURE
        self._sync = make_pair_sync(
            settings.sync_queue_size, settings.sync_slop, self._on_pair, settings.sync_backend
        )
        self._sync.on_stamp_jump = self._on_stamp_jump
        self._worker = LatestOnlyWorker(self._process_pair, on_error=self._on_worker_error)
        self._create_image_subscription("thermal")
        self._create_image_subscription("rgb")
        self._inputs["thermal_info"] = self.create_subscription(
            CameraInfo, THERMAL_INFO_TOPIC, self._on_thermal_info, _INFO_QOS
        )
        self._inputs["rgb_info"] = self.create_subscription(
            CameraInfo, RGB_INFO_TOPIC, self._on_rgb_info, _INFO_QOS
        )
        self._own_timers = [
            self.create_timer(
                settings.diagnostics_period, self._publish_diagnostics, clock=self._steady
            ),
            self.create_timer(1.0, self._watchdog, clock=self._steady),
        ]
        if "auto" in (settings.thermal_qos, settings.rgb_qos):
            self._own_timers.append(
                self.create_timer(2.0, self._recheck_auto_qos, clock=self._steady)
            )
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(
                min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=False
            ),
            post_callback=self._on_time_jump,
        )
        self._activated_at = time.monotonic()
        self._last_pair_at = None
        self._health = HealthMonitor(
            ("thermal", "rgb"), HealthThresholds(timeout_s=settings.watchdog_timeout)
        )
        self._qos_event_at = {}
        for which in ("thermal", "rgb"):
            self.stats.count(f"lost.{which}", 0)  # listed from the start: loss is measured
        self.get_logger().info(
            f"active: {self.resolve_topic_name(self._image_topic('thermal'))} + "
            f"{self.resolve_topic_name(self._image_topic('rgb'))} -> "
            f"{self.resolve_topic_name(FUSED_TOPIC)} (sync={self._sync.backend}, "
            f"slop={settings.sync_slop}s, qos thermal={self._resolved_qos['thermal'].description}"
            f" rgb={self._resolved_qos['rgb'].description}, registration="
            f"{settings.registration.mode})"
        )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_processing()
        self.release_pipeline()
        self.get_logger().info("inactive: subscriptions stopped, models unloaded")
        # The diagnostics timer is gone: without this, the last status heard (often OK) stands.
        self._publish_diagnostics(("warn", "inactive: not fusing (activate to resume)"))
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_processing()
        self.release_pipeline()
        self._destroy_publishers()
        self.settings = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_processing()
        self.release_pipeline()
        self._destroy_publishers()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"lifecycle error in state {state.label}; releasing resources")
        self.stop_processing()
        self.release_pipeline()
        return TransitionCallbackReturn.SUCCESS

    def stop_processing(self, worker_timeout: float = 60.0) -> bool:
        """Stop subscriptions, timers and the inference thread (the frame in hand finishes
        within ``worker_timeout``); True when the inference thread has ended."""
        worker_ended = True
        for subscription in self._inputs.values():
            self.destroy_subscription(subscription)
        self._inputs = {}
        for timer in self._own_timers:
            self.destroy_timer(timer)
        self._own_timers = []
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        if self._worker is not None:
            worker_ended = self._worker.stop(timeout=worker_timeout)
            if not worker_ended and not self._closing:
                self.get_logger().warning(
                    f"inference thread still running after {worker_timeout:.0f} s"
                )
            self._worker = None
        if self._sync is not None:
            self._unmatched_before += self._sync.unmatched()
            self._sync = None
        return worker_ended

    def close(self, grace: float = 3.0) -> tuple[str, bool]:
        """Process shutdown: publish nothing more, stop taking frames, give the frame in flight
        ``grace`` seconds, free the models. Returns what happened and whether every thread of
        ours has ended (False: torch still runs on one; the caller must not finalize Python)."""
        with self._publish_lock:
            self._closing = True  # from here on the inference thread publishes nothing
        in_flight = self._worker is not None and self._worker.busy
        worker_ended = self.stop_processing(worker_timeout=grace)
        if worker_ended:
            self.release_pipeline()
        self._destroy_publishers()
        if self._load_abandoned:
            return "model loading abandoned, nothing published", False
        if not worker_ended:
            frame = f"frame in flight abandoned after {grace:.0f} s"
        elif in_flight:
            frame = "frame in flight finished, not published"
        else:
            frame = "no frame in flight"
        models = "models freed" if worker_ended else "models freed with the process"
        return f"{frame}, {models}", worker_ended

    def release_pipeline(self) -> None:
        """Free the models and their (GPU) memory."""
        if self.pipeline is not None:
            try:
                self.pipeline.close()
            finally:
                self.pipeline = None

    def _destroy_publishers(self) -> None:
        for publisher in self._outputs.values():
            self.destroy_publisher(publisher)
        self._outputs = {}
        if self._diagnostics_pub is not None:
            self.destroy_publisher(self._diagnostics_pub)
            self._diagnostics_pub = None

    # ------------------------------------------------------------------- subscriptions / QoS
    def _image_topic(self, which: str) -> str:
        assert self.settings is not None
        base = THERMAL_TOPIC if which == "thermal" else RGB_TOPIC
        transport = (
            self.settings.thermal_transport if which == "thermal" else self.settings.rgb_transport
        )
        if transport == "compressed":
            # image_transport convention: <base topic>/compressed, after remapping the base
            return self.resolve_topic_name(base) + "/compressed"
        return base

    def _create_image_subscription(self, which: str) -> None:
        settings = self.settings
        assert settings is not None
        topic = self._image_topic(which)
        qos_name = settings.thermal_qos if which == "thermal" else settings.rgb_qos
        resolved = resolve_qos(self, qos_name, topic, settings.qos_depth)
        transport = settings.thermal_transport if which == "thermal" else settings.rgb_transport
        msg_type = CompressedImage if transport == "compressed" else Image
        events = SubscriptionEventCallbacks(
            incompatible_qos=lambda event, which=which: self._on_incompatible_qos(which, event),
            message_lost=lambda event, which=which: self._on_message_lost(which, event),
        )
        callback = self._on_thermal if which == "thermal" else self._on_rgb
        old = self._inputs.pop(which, None)
        if old is not None:
            self.destroy_subscription(old)
        self._inputs[which] = self.create_subscription(
            msg_type, topic, callback, resolved.profile, event_callbacks=events
        )
        self._resolved_qos[which] = resolved

    def _recheck_auto_qos(self) -> None:
        """In ``auto`` mode, follow the publishers: switch to reliable once all offer it."""
        settings = self.settings
        if settings is None:
            return
        for which in ("thermal", "rgb"):
            qos_name = settings.thermal_qos if which == "thermal" else settings.rgb_qos
            if qos_name != "auto":
                continue
            fresh = resolve_qos(self, "auto", self._image_topic(which), settings.qos_depth)
            current = self._resolved_qos.get(which)
            if current is None or fresh.profile.reliability != current.profile.reliability:
                self.get_logger().info(f"{which}: QoS {fresh.description} to match publishers")
                self._create_image_subscription(which)

    def _on_incompatible_qos(self, which: str, event: Any) -> None:
        self.stats.count(f"incompatible_qos.{which}")
        self._qos_event_at[which] = time.monotonic()
        resolved = self._resolved_qos.get(which)
        topic = self.resolve_topic_name(self._image_topic(which))
        self._warn(
            f"incompatible_qos.{which}", incompatible_qos_message(which, resolved, topic, event)
        )

    def _on_message_lost(self, which: str, event: Any) -> None:
        """Samples the middleware saw but dropped before delivery (e.g. best-effort fragments
        of a large frame): invisible to every other counter, so counted here."""
        lost = int(event.total_count_change)
        if lost <= 0:
            return
        self.stats.count(f"lost.{which}", lost)
        topic = self.resolve_topic_name(self._image_topic(which))
        self._warn(
            f"lost.{which}",
            f"{lost} {which} sample(s) on {topic} lost before the node (total "
            f"{event.total_count} on this subscription); on one host large frames need "
            "reliable QoS (README: receiving large frames)",
        )

    def _qos_incompatibility(self, which: str) -> str:
        """Why a publisher on ``which`` cannot deliver to us now (graph check), "" if none."""
        resolved = self._resolved_qos.get(which)
        if resolved is None:
            return ""
        offered = publisher_profiles(self, self._image_topic(which))
        reason = incompatibility(resolved.profile, offered)
        event_at = self._qos_event_at.get(which)
        if not reason and event_at is not None and time.monotonic() - event_at < 2.0:
            reason = "reported by the middleware"  # the graph may lag the event
        return reason

    # --------------------------------------------------------------------- message callbacks
    def _on_thermal(self, msg: Any) -> None:
        self.stats.thermal_in.tick()
        self._accept("thermal", msg)

    def _on_rgb(self, msg: Any) -> None:
        self.stats.rgb_in.tick()
        self._accept("rgb", msg)

    def _accept(self, which: str, msg: Any) -> None:
        """Reject malformed frames on arrival so they never occupy a sync slot."""
        settings = self.settings
        if settings is None:
            return
        try:
            if msg.header.stamp.sec < 0:  # rclpy's Time (message_filters) refuses it: not a time
                raise image_codec.ImageDecodeError(
                    "bad_stamp", f"header stamp {msg.header.stamp.sec} s is negative"
                )
            if isinstance(msg, Image):
                image_codec.check_image_header(msg)
                size = (msg.width, msg.height)
            elif len(msg.data) == 0:
                raise image_codec.ImageDecodeError("empty", "empty CompressedImage")
            else:
                size = image_codec.compressed_dimensions(msg.data)  # None: checked once decoded
            if size is not None:
                image_codec.check_pixel_limit(*size, settings.max_input_pixels, which)
        except image_codec.ImageDecodeError as error:
            self._bad_input(which, error.reason, str(error))
            return
        self._last_stamps[which] = stamp_ns(msg)
        self._accepted_at[which] = time.monotonic()
        sync = self._sync
        if sync is None:
            return
        if which == "thermal":
            sync.add_thermal(msg)
        else:
            sync.add_rgb(msg)

    def _on_thermal_info(self, msg: CameraInfo) -> None:
        self._thermal_info = msg

    def _on_rgb_info(self, msg: CameraInfo) -> None:
        self._rgb_info = msg

    def _on_pair(self, thermal: Any, rgb: Any) -> None:
        self.stats.pairs_in.tick()
        self._last_pair_at = time.monotonic()
        worker = self._worker
        if worker is not None and worker.submit(PendingPair(thermal, rgb, time.monotonic())):
            self.stats.count("dropped_busy")

    def _on_time_jump(self, jump: TimeJump) -> None:
        """The ROS (sim) clock went back. The synchronizer follows the stamps themselves
        (``_on_stamp_jump``), so a reset here would only drop the new time line's first frames."""
        if jump.delta.nanoseconds < 0 and self._sync is not None:
            if self.pipeline is not None:
                self.pipeline.reset_priors()  # cached priors belong to the other time line
            self._last_pair_at = time.monotonic()  # the no-sync watchdog restarts with the line
            self.stats.count("clock_jumps_back")
            self.get_logger().info(
                f"clock jumped back by {-jump.delta.nanoseconds / 1e9:.3f} s (looped bag?)"
            )

    def _on_stamp_jump(self, topic: str, back_s: float) -> None:
        """A topic's header stamps went back (camera driver restart, bag looped without /clock):
        the synchronizer dropped that topic's old time line; count it and say so once."""
        if self.pipeline is not None:
            self.pipeline.reset_priors()
        self._last_pair_at = time.monotonic()
        self.stats.count(f"stamp_jumps_back.{topic}")
        self.get_logger().info(
            f"{topic} stamps jumped back by {back_s:.3f} s (camera restart or looped bag?): "
            "its queued frames were dropped, pairing restarts on the new time line"
        )

    def _bad_input(self, topic: str, reason: str, detail: str) -> None:
        self.stats.count_bad_input(topic, reason)
        self._warn(f"bad_input.{topic}.{reason}", f"skipping {topic} input ({reason}): {detail}")

    # ------------------------------------------------------------------------ inference path
    def _decode(self, which: str, msg: Any) -> Any:
        settings = self.settings
        assert settings is not None
        compressed = isinstance(msg, CompressedImage)
        if which == "thermal":
            decoded = (
                image_codec.decode_thermal_compressed(msg, settings.agc)
                if compressed
                else image_codec.decode_thermal(msg, settings.agc)
            )
            for warning in decoded.warnings:
                self._warn("thermal_palette", warning)
            image = decoded.unit
        else:
            image = (
                image_codec.decode_rgb_compressed(msg)
                if compressed
                else image_codec.decode_rgb(msg)
            )
        if compressed:  # a format whose header _accept could not read: bound it before fusing
            height, width = image.shape[:2]
            image_codec.check_pixel_limit(width, height, settings.max_input_pixels, which)
        return image

    def _process_pair(self, pair: PendingPair) -> None:
        settings, pipeline = self.settings, self.pipeline
        if settings is None or pipeline is None:
            return
        try:
            rgb = self._decode("rgb", pair.rgb)
        except InputError as error:
            self._bad_input("rgb", error.reason, str(error))
            return
        try:
            thermal = self._decode("thermal", pair.thermal)
        except InputError as error:
            self._bad_input("thermal", error.reason, str(error))
            return
        try:
            registered = settings.registration.apply(thermal, rgb.shape)
            debug = settings.publish_priors or settings.publish_stage1
            result = pipeline.fuse(registered, rgb, return_intermediate=debug)
        except InputError as error:
            self._bad_input("pair", error.reason, str(error))
            return
        self._publish(pair, result)

    def _publish(self, pair: PendingPair, result: Any) -> None:
        with self._publish_lock:
            if not self._closing:
                self._publish_locked(pair, result)

    def _publish_locked(self, pair: PendingPair, result: Any) -> None:
        settings = self.settings
        assert settings is not None
        header = pair.rgb.header
        fused = self._image_message(result.fused, settings.output_encoding, header)
        self._outputs["fused"].publish(fused)
        if self._rgb_info is not None:
            info = copy.copy(self._rgb_info)  # the executor thread may replace the original
            info.header = header
            self._outputs["fused_info"].publish(info)
        if "priors" in self._outputs and result.prior_ir is not None:
            priors = np.zeros((*result.prior_ir.shape, 3), np.uint8)
            priors[..., 0] = np.clip(result.prior_ir * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if result.prior_vis is not None:
                priors[..., 1] = np.clip(result.prior_vis * 255.0 + 0.5, 0, 255).astype(np.uint8)
            self._outputs["priors"].publish(self._image_message(priors, "rgb8", header))
        if "stage1" in self._outputs and result.stage1 is not None:
            self._outputs["stage1"].publish(self._image_message(result.stage1, "rgb8", header))
        end_to_end_ms = (self.get_clock().now().nanoseconds - stamp_ns(pair.rgb)) / 1e6
        in_node_ms = (time.monotonic() - pair.paired_at) * 1e3
        self.stats.record_fused(result.timings_ms, end_to_end_ms, in_node_ms)
        self.get_logger().debug(
            f"fused {fused.width}x{fused.height} stamp {header.stamp.sec}.{header.stamp.nanosec:09d}"
            f" in {result.timings_ms.get('total', 0.0):.1f} ms (pair->publish {in_node_ms:.1f} ms)"
        )

    @staticmethod
    def _image_message(rgb: np.ndarray, encoding: str, header: Any) -> Image:
        return image_codec.image_message(Image, image_codec.encode_rgb(rgb, encoding), header)

    def _on_worker_error(self, error: BaseException) -> None:
        self.stats.count("pipeline_error")
        self._warn(
            "pipeline_error", f"fusion failed on a frame pair: {type(error).__name__}: {error}"
        )

    # ------------------------------------------------------------------ watchdog / diagnostics
    def _watchdog(self) -> None:
        """Count and log a silent topic, or traffic on both topics that never pairs."""
        settings = self.settings
        if settings is None or self._activated_at is None:
            return
        now = time.monotonic()
        state = watchdog.InputState(
            now=now,
            activated_at=self._activated_at,
            seconds_since_message={
                "thermal": self.stats.thermal_in.seconds_since_last(),
                "rgb": self.stats.rgb_in.seconds_since_last(),
            },
            seconds_since_accepted={
                which: (now - self._accepted_at[which]) if which in self._accepted_at else None
                for which in watchdog.TOPICS
            },
            last_pair_at=self._last_pair_at,
            last_stamps_ns=dict(self._last_stamps),
            topic_names={
                which: self.resolve_topic_name(self._image_topic(which))
                for which in watchdog.TOPICS
            },
            sync_slop=settings.sync_slop,
        )
        for finding in watchdog.check(state, settings.watchdog_timeout):
            self.stats.count(finding.counter)
            self._warn(finding.log_key, finding.message)

    def diagnostic_values(self) -> list[tuple[str, str]]:
        settings = self.settings
        extra: dict[str, Any] = {}
        sync = self._sync
        if sync is not None:
            extra["unmatched"] = self._unmatched_before + sync.unmatched()
            extra["sync_backend"] = sync.backend
            extra["sync_queued"] = sync.queued()
        if settings is not None:
            extra["device"] = settings.pipeline.device
            extra["steps"] = getattr(
                self.pipeline, "default_steps", settings.pipeline.steps or "default"
            )
            for which in ("thermal", "rgb"):
                resolved = self._resolved_qos.get(which)
                extra[f"qos_{which}"] = resolved.description if resolved else "-"
            extra.update(gpu_memory_values(settings.pipeline.device))
        extra["rgb_camera_info"] = "received" if self._rgb_info is not None else "none"
        extra["thermal_camera_info"] = "received" if self._thermal_info is not None else "none"
        return self.stats.key_values(extra)

    def _assess_health(self) -> Health | None:
        """This period's health: input rates, silence, fused output, losses, QoS (see
        HealthMonitor); None before activation."""
        health, activated_at = self._health, self._activated_at
        if health is None or activated_at is None:
            return None
        now = time.monotonic()

        def since(meter: RateMeter) -> float | None:  # only what happened while active counts
            last = meter.last_event
            return None if last is None or last < activated_at else now - last

        meters = {"thermal": self.stats.thermal_in, "rgb": self.stats.rgb_in}
        return health.assess(
            HealthInputs(
                now=now,
                active_since=activated_at,
                input_rate_hz={which: meter.rate() for which, meter in meters.items()},
                seconds_since_input={which: since(meter) for which, meter in meters.items()},
                seconds_since_fused=since(self.stats.fused_out),
                lost_total={which: self.stats.value(f"lost.{which}") for which in meters},
                qos_incompatible={which: self._qos_incompatibility(which) for which in meters},
            )
        )

    def _publish_diagnostics(self, status: tuple[str, str] | None = None) -> None:
        """This period's status, or ``status`` (level, message) when given."""
        if self._diagnostics_pub is None:
            return
        level, message = status or fusion_status(self.stats, self._assess_health())
        self._diagnostics_pub.publish(
            to_diagnostic_array(
                self.get_clock().now().to_msg(),
                f"{self.get_name()}: fusion",
                "sgdfuse_ros",
                level,
                message,
                self.diagnostic_values(),
            )
        )


class _RclpyLogHandler(logging.Handler):
    """Python logging records as lines of an rclpy logger."""

    def __init__(self, logger: Any) -> None:
        super().__init__(logging.INFO)
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self._logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(message)
        else:
            self._logger.info(message)


def forward_library_logs(logger: Any) -> None:
    """The library's Python logging (model loading, the prior backend, engine builds) through
    the node's rclpy logger: with severity, time and node name like the node's own lines, not
    as bare lines from Python's last-resort handler, which also drops INFO."""
    library = logging.getLogger("sgdfuse_ros")
    library.handlers = [h for h in library.handlers if not isinstance(h, _RclpyLogHandler)]
    library.addHandler(_RclpyLogHandler(logger))
    library.setLevel(logging.INFO)
    library.propagate = False


def _warm_up(pipeline: Any) -> None:
    """Fuse one tiny frame so lazy initialisation does not land on the first real frame.

    Not on TensorRT: its plans are per frame size, so a tiny frame would queue a build for a
    size no camera sends ahead of the real one (or, with ``engine_build: never``, fail
    configure for want of a 64×64 plan); the cameras' plans load with the first real frame.
    """
    if pipeline.backend == "tensorrt":
        return
    ramp = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    rgb = np.repeat((ramp * 255).astype(np.uint8)[..., None], 3, axis=2)
    pipeline.fuse(ramp, rgb)
    pipeline.reset_priors()  # the warm-up frame's priors must not be reused


def main(args: list[str] | None = None) -> int:
    """Entry point of ``fusion_node``: ``fusion_node --ros-args --params-file ... -r ...``.

    SIGINT and SIGTERM, once or repeatedly, at any point, end in one log line and exit code 0:
    the handlers (shutdown.py) only record the request, the loop below notices it, and
    close() tears down in order. rclpy's own handlers are off: they would invalidate the
    context while the inference thread still publishes.
    """
    shutdown = SHUTDOWN.install()  # again, in case main() is called directly
    # Before rclpy starts the DDS threads: threads that exist by then keep arenas of their own.
    retain_freed_memory()
    try:
        # the parameter files first: a missing or broken one is one line here, where rcl's
        # parser would stop rclpy.init with a traceback
        sources = ParameterSources.from_arguments(sys.argv if args is None else args)
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as error:  # noqa: BLE001 - ParameterFileError, or rcl refusing the arguments
        rclpy.logging.get_logger(NODE_NAME).error(f"fusion_node cannot start: {error}")
        shutdown.ignore_further_signals()
        return 1
    node: FusionNode | None = None
    phase = "starting"
    exit_code = 0  # 1: configure or activate failed (a supervisor sees the node did not start)
    threads_ended = True
    try:
        shutdown.raise_if_requested()
        node = FusionNode(shutdown_request=shutdown, parameter_sources=sources)
        forward_library_logs(node.get_logger())
        if node.autostart:
            phase = "configuring (loading the models)"
            shutdown.raise_if_requested()
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                shutdown.raise_if_requested()
                node.get_logger().error("configure failed (see above); exiting")
                exit_code = 1
            else:
                phase = "activating"
                shutdown.raise_if_requested()
                if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                    node.get_logger().error("activate failed (see above); exiting")
                    exit_code = 1
        else:
            node.get_logger().info("autostart is false: waiting for lifecycle transitions")
        if exit_code == 0:
            phase = "active" if node.autostart else "waiting for lifecycle transitions"
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            while not shutdown.requested:
                executor.spin_once(timeout_sec=0.1)
    except ShutdownRequested:
        pass
    except ExternalShutdownException:
        shutdown.request("rclpy shutdown")
    except ParameterFileError as error:  # names the parameter, the types and the file
        rclpy.logging.get_logger(NODE_NAME).error(f"fusion_node cannot start: {error}")
        exit_code = 1
    except Exception as error:  # noqa: BLE001 - e.g. use_sim_time (rclpy's) of a wrong type: one line
        rclpy.logging.get_logger(NODE_NAME).error(
            f"fusion_node cannot run while {phase}: {type(error).__name__}: {error}"
        )
        exit_code = 1
    finally:
        outcome = "nothing loaded"
        if node is not None:
            outcome, threads_ended = node.close()
        if shutdown.requested:
            repeated = f" ({shutdown.signal_count} signals)" if shutdown.signal_count > 1 else ""
            logger = node.get_logger() if node is not None else rclpy.logging.get_logger(NODE_NAME)
            logger.info(f"shut down on {shutdown.signal_name}{repeated} while {phase}: {outcome}")
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        shutdown.ignore_further_signals()
    if not threads_ended:
        # torch still runs on a thread we abandoned: finalizing the interpreter under it can
        # abort the process; everything worth keeping is already logged and released.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
