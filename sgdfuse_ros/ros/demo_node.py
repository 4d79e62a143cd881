"""The node demo: the real ``fusion_node`` process fed by a replayed bag, over DDS.

Steps: render the package's synthetic thermal + RGB sequence into a rosbag2, start
``fusion_node`` with config/sgdfuse.yaml and ``use_sim_time``, replay the bag with /clock,
receive /fused/image, save the fused frames, print latency and fps. Everything runs on a
private DDS domain limited to this machine, so a robot's real camera topics are never touched.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sgdfuse_ros.io.bag import (
    DEFAULT_RGB_TOPIC,
    timed_frames,
    write_image_bag,
    write_synthetic_bag,
)
from sgdfuse_ros.options import PipelineOptions
from sgdfuse_ros.ros import launch_args
from sgdfuse_ros.ros.parameters import parameters_for
from sgdfuse_ros.ros.process import (
    isolated_ros_environment,
    start_fusion_node,
    stop_process,
)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_node_demo(
    out_dir: Path,
    num_frames: int = 30,
    height: int = 480,
    width: int = 640,
    *,
    fps: float = 10.0,
    frames: list[tuple[np.ndarray, np.ndarray]] | None = None,
    options: PipelineOptions | None = None,
    params_file: str | Path | None = None,
    lockstep: bool = True,
    startup_timeout: float = 180.0,
    frame_timeout: float = 120.0,
    domain_id: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the node demo; returns the measurements (also printed through ``log``).

    ``lockstep`` keeps one frame pair in flight (the replay waits for each fused frame), so
    every recorded pair is fused even where a frame takes longer than the camera period; with
    ``lockstep=False`` the bag plays at ``fps`` and the node drops stale pairs as on a robot.
    Latency is measured here: RGB frame published → fused frame received. ``frames`` (IR
    uint8 H×W, VIS RGB H×W×3 pairs) replaces the synthetic sequence when given. ``options``
    become the node's parameters (the same options as ``sgdfuse fuse``).
    """
    options = options or PipelineOptions()
    from sgdfuse_ros.ros.client import FusionObserver
    from sgdfuse_ros.ros.replay import BagReplayer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bag_path = out_dir / "synthetic_bag"
    if bag_path.exists():
        shutil.rmtree(bag_path)
    frames_dir = out_dir / "node_fused"
    if frames_dir.exists():
        shutil.rmtree(frames_dir)
    frames_dir.mkdir()

    if frames is None:
        log(f"writing a {num_frames}-frame {width}x{height} synthetic thermal+RGB bag: {bag_path}")
        write_synthetic_bag(bag_path, num_frames=num_frames, height=height, width=width, fps=fps)
    else:
        log(f"writing the {len(frames)} given frame pairs into a bag: {bag_path}")
        write_image_bag(bag_path, timed_frames(frames, fps))

    domain = domain_id if domain_id is not None else random.randint(1, 100)
    env = isolated_ros_environment(domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    values = launch_args.with_defaults(
        {
            "params_file": str(params_file or ""),
            "use_sim_time": "true",
        }
    )
    overrides = launch_args.parameter_overrides(values)
    overrides.update(
        {
            **parameters_for(options),
            # The replay publishes reliably. A best-effort subscription (sensor_data) loses
            # every fragment of a frame larger than Fast DDS's shared-memory segment (~0.5 MB:
            # a 640×480 rgb8 image), so the demo subscribes reliably to get every frame.
            "input_qos": "reliable",
            # the mosaic's M_ir, M_vis and F1 tiles come from the node's debug topics
            "debug.publish_priors": True,
            "debug.publish_stage1": True,
        }
    )
    overrides_file = launch_args.write_overrides_file(overrides, out_dir / "node_overrides.yaml")
    node_log = out_dir / "fusion_node.log"
    ros_arguments = launch_args.node_ros_arguments(values, overrides_file)
    log(f"starting fusion_node on ROS_DOMAIN_ID={domain} (log: {node_log})")
    process = start_fusion_node(ros_arguments, env, node_log)

    observer = FusionObserver(domain_id=domain, name="sgdfuse_demo_observer", keep_images=True)
    replay_node = observer.node
    debug_images = _DebugImages(replay_node)
    results: dict[str, Any] = {
        "bag": str(bag_path),
        "frames_dir": str(frames_dir),
        "node_log": str(node_log),
        "domain_id": domain,
    }
    try:
        replayer = BagReplayer(replay_node, bag_path, rate=1.0, publish_clock=True)
        started = time.monotonic()
        while not replayer.wait_for_subscribers(timeout=1.0):
            if process.poll() is not None:
                raise RuntimeError(
                    f"fusion_node exited with code {process.returncode}; "
                    f"see {node_log}:\n{_tail(node_log)}"
                )
            if time.monotonic() - started > startup_timeout:
                raise TimeoutError(
                    f"fusion_node did not subscribe within {startup_timeout} s; see {node_log}"
                )
        log(f"node ready after {time.monotonic() - started:.1f} s; replaying the bag")

        published_rgb = 0

        def one_pair_in_flight(topic: str, stamp: int | None) -> None:
            nonlocal published_rgb
            if topic != DEFAULT_RGB_TOPIC or stamp is None:
                return
            if lockstep and published_rgb:
                observer.wait_for(lambda: observer.fused_count() >= published_rgb, frame_timeout)
            published_rgb += 1

        replay_started = time.time()
        report = replayer.play(loops=1, stop=threading.Event(), before_publish=one_pair_in_flight)
        observer.wait_for(
            lambda: observer.fused_count() >= published_rgb, frame_timeout if lockstep else 10.0
        )
        # a /diagnostics message that already counts every fused frame (one per period)
        observer.wait_for(lambda: observer.counter("fused") >= len(observer.fused), 5.0)
        fused = list(observer.fused)
        publish_times = dict(report.published.get(DEFAULT_RGB_TOPIC, []))
        latencies = [
            (item.received - publish_times[item.stamp]) * 1e3
            for item in fused
            if item.stamp in publish_times
        ]
        from sgdfuse_ros.imaging import write_rgb

        for index, item in enumerate(fused):
            if item.image is not None:
                write_rgb(frames_dir / f"fused_{index:04d}.png", item.image)
            for name, image in debug_images.for_stamp(item.stamp).items():
                write_rgb(frames_dir / f"{name}_{index:04d}.png", image)
        span = (fused[-1].received - replay_started) if fused else 0.0
        results.update(
            {
                "frames_published": published_rgb,
                "frames_fused": len(fused),
                "latency_ms_p50": _percentile(latencies, 50),
                "latency_ms_p95": _percentile(latencies, 95),
                "latency_ms_mean": float(np.mean(latencies)) if latencies else None,
                "fps": len(fused) / span if span > 0 else 0.0,
                "lockstep": lockstep,
                "node_diagnostics": dict(observer.diagnostics),
            }
        )
    finally:
        observer.close()
        results["node_exit_code"] = stop_process(process)

    diagnostics = results.get("node_diagnostics", {})
    stage = ", ".join(
        f"{key} {diagnostics.get(f'latency_{key}_ms_p50', 'n/a')}"
        for key in ("priors", "stage1", "stage2", "total")
    )
    log(
        f"fused {results['frames_fused']}/{results['frames_published']} frames through "
        f"fusion_node -> {frames_dir}"
    )
    log(
        f"end-to-end latency (RGB published -> fused received): p50 "
        f"{_fmt(results['latency_ms_p50'])} ms, p95 {_fmt(results['latency_ms_p95'])} ms; "
        f"throughput {results['fps']:.2f} fps ({'one pair in flight' if lockstep else 'free run'})"
    )
    log(
        f"node per-stage p50 (ms): {stage}; dropped {diagnostics.get('dropped_busy', '0')}, "
        f"unmatched {diagnostics.get('unmatched', '0')}"
    )
    return results


class _DebugImages:
    """The node's fused/priors and fused/stage1 images by header stamp (the RGB frame's)."""

    TOPICS = {"priors": "/fused/priors", "stage1": "/fused/stage1"}

    def __init__(self, node: Any) -> None:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self._images: dict[str, dict[int, np.ndarray]] = {name: {} for name in self.TOPICS}
        self._lock = threading.Lock()
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE
        )
        for name, topic in self.TOPICS.items():
            node.create_subscription(
                Image, topic, lambda msg, name=name: self._store(name, msg), qos
            )

    def _store(self, name: str, msg: Any) -> None:
        from sgdfuse_ros.io.image_codec import image_to_array
        from sgdfuse_ros.io.sync import stamp_ns

        image = image_to_array(msg)
        with self._lock:
            self._images[name][stamp_ns(msg)] = image

    def for_stamp(self, stamp: int) -> dict[str, np.ndarray]:
        with self._lock:
            return {name: images[stamp] for name, images in self._images.items() if stamp in images}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
