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


def test_compared_weights_run_every_case_in_the_same_rounds(tmp_path, capsys):
    """``--compare-weights``: each file gets every case, labelled by file name, and the table of
    time ratios pairs each case with the same case of the benchmarked weights."""
    import dataclasses

    import torch

    from sgdfuse_ros.cli.main import main
    from sgdfuse_ros.model_io import save_weights
    from sgdfuse_ros.models.sgdfuse import SGDFuse, small_config

    torch.manual_seed(0)
    meta = {"prior_backend": "classical", "default_steps": 1}
    new = save_weights(
        SGDFuse(dataclasses.replace(small_config(), head_output="select")),
        tmp_path / "new.pt",
        meta,
    )
    old = save_weights(SGDFuse(small_config()), tmp_path / "old.pt", meta)
    out = tmp_path / "bench.json"
    argv = ["bench", "--height", "32", "--width", "48", "--steps", "1", "2", "--backend", "torch"]
    argv += ["--frames", "1", "--rounds", "1", "--warmup", "0", "--stream-seconds", "0"]
    argv += ["--prior", "classical", "--weights", str(new), "--compare-weights", str(old)]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {(r["weights"], r["steps"]) for r in report["latency"]} == {
        ("new.pt", 1),
        ("new.pt", 2),
        ("old.pt", 1),
        ("old.pt", 2),
    }
    rows = {(r["weights"], r["steps"]): r for r in report["latency"]}
    for c in report["weights_compared"]:
        assert (c["weights"], c["compared"]) == ("new.pt", "old.pt")
        assert c["time_ratio"] == pytest.approx(
            rows["new.pt", c["steps"]]["total_ms"] / rows["old.pt", c["steps"]]["total_ms"]
        )
    assert len(report["weights_compared"]) == 2
    # The select head writes three logits where the correction head writes one value.
    heads_old = report["compared_models"]["old.pt"]["params"]["heads"]["1"]
    assert report["model"]["params"]["heads"]["1"] > heads_old
    text = capsys.readouterr().out
    assert "| new.pt | torch | 1 |" in text and "| new.pt | old.pt | torch | 2 |" in text
    assert "| weights | backend | K | prior every | output fps" in text  # the stream table


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


def test_mac_count_of_a_tiny_network_is_the_hand_count():
    """2×3×3 conv (4→6 channels, stride 1, padded) on 10×12, a depthwise 3×3 on its 6 channels,
    a matrix product and a linear layer: MACs as written out by hand."""
    import torch
    from torch import nn

    from sgdfuse_ros.models.size import count_macs

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 6, 3, padding=1)
            self.depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
            self.linear = nn.Linear(12, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.depthwise(self.conv(x))  # 2×6×10×12
            gram = y.flatten(2) @ y.flatten(2).transpose(1, 2)  # 2×6×6, inner length 120
            return self.linear(y).sum() + gram.sum()  # linear over the last axis (12)

    model = Tiny()
    x = torch.rand(2, 4, 10, 12)
    pixels = 2 * 10 * 12
    expected = (
        pixels * 6 * 4 * 9  # conv: every output value sums 4 channels × 3×3 taps
        + pixels * 6 * 9  # depthwise: one input channel per output
        + 2 * 6 * 6 * 120  # matmul
        + 2 * 6 * 10 * 5 * 12  # linear on 2·6·10 rows of 12
    )
    assert count_macs(lambda: model(x)) == expected


def test_model_size_parts_add_up_and_scale_with_k():
    from sgdfuse_ros.model_io import untrained_model
    from sgdfuse_ros.models.size import count_macs, model_size

    model, _ = untrained_model()
    size = model_size(model, 48, 64, steps=(1, 3))
    params = size["params"]
    assert params["total"] == params["stage1"] + params["unet"] + sum(params["heads"].values())
    one, three = size["steps"][1], size["steps"][3]
    assert three["unet_macs"] == 3 * one["unet_macs"]  # the U-Net runs once per noised copy
    assert one["frame_macs"] == size["stage1_macs"] + one["unet_macs"] + one["head_macs"]
    # Counted on the meta device, the same as a real forward on real tensors.
    import torch

    ir, vis, mask = (torch.rand(1, c, 48, 64) for c in (1, 3, 1))
    real = count_macs(lambda: model.eval()(ir, vis, mask, mask, steps=3))
    assert real == three["frame_macs"]


def test_bench_command_runs_and_reports_model_size_and_memory(tmp_path, capsys):
    """``sgdfuse bench`` end to end through its parser (``--steps`` is a list of K there, the
    pipeline's own steps is not): the JSON holds parameters, GMAC per K and peak RSS."""
    from sgdfuse_ros.cli.main import main

    out = tmp_path / "bench.json"
    argv = ["bench", "--height", "32", "--width", "48", "--steps", "1", "2", "--backend", "torch"]
    argv += ["--frames", "1", "--rounds", "1", "--warmup", "1", "--stream-seconds", "0"]
    argv += ["--prior", "classical", "--allow-untrained", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    model = report["model"]
    assert (model["height"], model["width"]) == (32, 48)
    assert model["params"]["total"] > 0 and set(model["params"]["heads"]) >= {"1", "2"}
    assert set(model["steps"]) == {"1", "2"} and model["stage1_macs"] > 0
    assert model["steps"]["2"]["frame_macs"] > model["steps"]["1"]["frame_macs"] > 0
    memory = report["memory"]
    assert memory["peak_rss_mb"] >= memory["peak_rss_before_frames_mb"] > 0
    growth = sum(r["peak_rss_growth_mb"] for r in report["latency"])
    assert memory["peak_rss_before_frames_mb"] + growth == pytest.approx(memory["peak_rss_mb"])
    text = capsys.readouterr().out
    assert "| K | Stage I GMAC | U-Net GMAC | head GMAC | per frame GMAC |" in text
    assert "Process peak RSS" in text
