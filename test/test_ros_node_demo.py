"""The node demo end to end: synthetic bag → replay → fusion_node process → saved fused frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from sgdfuse_ros.options import PipelineOptions

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")


def test_run_node_demo_small(tmp_path: Path) -> None:
    from sgdfuse_ros.ros.demo_node import run_node_demo

    lines: list[str] = []
    results = run_node_demo(
        tmp_path,
        num_frames=3,
        height=64,
        width=80,
        options=PipelineOptions(allow_untrained=True),
        log=lines.append,
    )
    assert results["frames_published"] == 3 and results["frames_fused"] == 3
    assert results["node_exit_code"] == 0
    assert results["latency_ms_p50"] is not None and results["latency_ms_p50"] > 0
    assert results["fps"] > 0
    frames = sorted((tmp_path / "node_fused").glob("fused_*.png"))
    assert len(frames) == 3
    assert cv2.imread(str(frames[0])).shape == (64, 80, 3)
    assert int(results["node_diagnostics"]["fused"]) == 3
    assert any("latency" in line and "p95" in line for line in lines)
    assert "allow_untrained is true" in Path(results["node_log"]).read_text()
    # the debug topics give the mosaic its M_ir, M_vis and F1 tiles, as README promises
    for name in ("priors", "stage1"):
        assert len(sorted((tmp_path / "node_fused").glob(f"{name}_*.png"))) == 3, name
    from sgdfuse_ros.synthetic import render_sequence
    from sgdfuse_ros.tools.demo import write_node_mosaic

    frames = [(f"frame_{i}", ir, vis) for i, (ir, vis) in enumerate(render_sequence(3, 64, 80))]
    write_node_mosaic(tmp_path, frames)
    strip = cv2.imread(str(tmp_path / "mosaic.png"))
    assert strip.shape == (64, 6 * 80, 3)  # IR | VIS | M_ir | M_vis | F1 | fused
    priors = cv2.imread(str(tmp_path / "node_fused" / "priors_0001.png"))
    assert priors[..., 2].any()  # red channel (BGR on disk) = M_ir, not left empty


def test_run_node_demo_full_size_frames_arrive(tmp_path: Path) -> None:
    """README's demo size: a 640×480 rgb8 frame (0.9 MB) is larger than Fast DDS's shared-memory
    segment, and a best-effort subscription silently lost every one of them."""
    from sgdfuse_ros.ros.demo_node import run_node_demo

    results = run_node_demo(
        tmp_path, num_frames=2, height=480, width=640, frame_timeout=60.0, log=lambda _: None
    )
    assert results["frames_published"] == 2 and results["frames_fused"] == 2
    frames = sorted((tmp_path / "node_fused").glob("fused_*.png"))
    assert cv2.imread(str(frames[0])).shape == (480, 640, 3)
