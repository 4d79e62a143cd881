"""``sgdfuse bench`` logic: the 30 Hz stream simulation and a tiny end-to-end report."""

from __future__ import annotations

import json

import pytest

from sgdfuse_ros.cli.main import build_parser
from sgdfuse_ros.options import PipelineOptions
from sgdfuse_ros.tools.bench import BenchConfig, format_tables, run_bench, simulate_stream


def test_fast_pipeline_processes_every_frame_with_its_own_latency():
    stats = simulate_stream(lambda i: 0.010, num_inputs=30, rate=30.0)
    assert stats["missed_frames"] == 0
    assert stats["latency_mean_ms"] == pytest.approx(10.0)
    assert stats["output_fps"] == pytest.approx(30.0, rel=0.01)


def test_slow_pipeline_takes_the_newest_frame_and_misses_the_rest():
    fused = []

    def fuse(index: int) -> float:
        fused.append(index)
        return 0.1  # 10 fps against 30 Hz input

    stats = simulate_stream(fuse, num_inputs=31, rate=30.0)
    assert fused == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]  # newest arrived frame each time
    assert stats["missed_frames"] == 31 - len(fused)
    assert stats["latency_max_ms"] == pytest.approx(100.0, abs=1e-6)
    assert stats["output_fps"] == pytest.approx(len(fused) / 1.1)


def test_tiny_bench_reports_every_case_and_unavailable_backends(tmp_path):
    config = BenchConfig(
        height=32,
        width=48,
        steps=[1, 2],
        backends=["torch", "tensorrt"],
        frames=1,
        rounds=2,
        warmup=1,
        prior_every=[3],
        stream_seconds=0.1,
        pipeline=PipelineOptions(
            prior_backend="classical",
            allow_untrained=True,
            engine_dir=str(tmp_path),
            engine_build="blocking",
        ),
    )
    report = run_bench(config)
    assert {(r["backend"], r["steps"], r["prior_every"]) for r in report["latency"]} == {
        ("torch", 1, 3),
        ("torch", 2, 3),
    }
    row = report["latency"][0]
    assert row["frames"] == 2 and row["speedup_vs_torch"] == 1.0 and row["fps"] > 0
    assert 0 < row["stage1_ms"] < row["total_ms"] and 0 < row["stage2_ms"] < row["total_ms"]
    assert "tensorrt" in report["unavailable"]  # no CUDA here: a row, not a crash
    assert len(report["stream"]) == 2 and report["stream"][0]["input_frames"] == 3
    text = format_tables(report)
    assert "| torch | 2 | classical (3) |" in text and "unavailable" in text
    json.dumps(report, default=str)


def test_cli_has_export_and_bench_commands():
    parser = build_parser()
    args = parser.parse_args(
        ["bench", "--steps", "1", "3", "--backend", "torch", "onnxruntime", "--json", "x.json"]
    )
    assert args.steps == [1, 3] and args.backends == ["torch", "onnxruntime"]
    args = parser.parse_args(
        ["export", "--onnx", "out", "--engines", "--height", "720", "--width", "1280"]
    )
    assert args.onnx == "out" and args.engines and (args.height, args.width) == (720, 1280)


def test_background_load_busies_cores_only_while_measuring():
    """``--background-load N``: N processes each take a core's worth of CPU, and none outlives
    the block (a benchmark must not leave a machine loaded)."""
    import os
    import time

    from sgdfuse_ros.tools.bench import background_load

    def children_cpu_seconds() -> float:
        usage = os.times()
        return usage.children_user + usage.children_system

    before = children_cpu_seconds()
    start = time.perf_counter()
    with background_load(2) as busy:
        time.sleep(1.0)
        assert len(busy) == 2 and all(proc.poll() is None for proc in busy)
    wall = time.perf_counter() - start
    assert all(proc.poll() is not None for proc in busy)  # stopped and reaped
    used = children_cpu_seconds() - before  # counted once the children have been waited for
    assert used > 0.5 * wall  # they ran (two busy loops on however many cores are free)
    args = build_parser().parse_args(["bench", "--background-load", "1"])
    assert args.background_load == 1


def test_batch_commands_build_missing_engines_before_the_first_frame():
    """``sgdfuse fuse`` / ``bag fuse`` with tensorrt: every frame by TensorRT, none by the torch
    stand-in that a node uses while its plans build."""
    from sgdfuse_ros.cli.common import options_from_args

    for command in (["fuse", "--ir", "a", "--vi", "b", "--out", "c"], ["bag", "fuse", "in", "out"]):
        args = build_parser().parse_args(
            command
            + ["--backend", "tensorrt", "--device", "cuda", "--engine-dir", "plans", "--no-fp16"]
        )
        options = options_from_args(args)
        assert options.backend == "tensorrt" and options.engine_build == "blocking"
        assert options.engine_dir == "plans" and options.fp16 is False
