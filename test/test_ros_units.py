"""Node building blocks without DDS: worker, diagnostics bookkeeping, parameters, launch args."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from sgdfuse_ros.options import PipelineOptions
from sgdfuse_ros.ros import launch_args
from sgdfuse_ros.ros.diagnostics import FusionStats, LatencyWindow, RateMeter, ThrottledLog
from sgdfuse_ros.ros.parameters import (
    DEFAULTS,
    PARAMETERS,
    PIPELINE_PARAMETERS,
    NodeSettings,
    parameters_for,
)
from sgdfuse_ros.ros.worker import LatestOnlyWorker, run_on_fresh_thread

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- worker
def test_worker_keeps_only_the_newest_pending_item() -> None:
    release = threading.Event()
    started = threading.Event()
    done: list[int] = []

    def process(item: int) -> None:
        if item == 0:
            started.set()
            release.wait(30)
        done.append(item)

    worker = LatestOnlyWorker(process)
    assert worker.submit(0) is False
    assert started.wait(30)
    assert worker.submit(1) is False  # waits in the slot while 0 runs
    assert worker.submit(2) is True  # replaces 1: dropped
    assert worker.submit(3) is True
    release.set()
    assert worker.wait_idle(30)
    assert done == [0, 3] and worker.dropped == 2 and worker.processed == 2
    assert worker.stop()


def test_worker_survives_a_failing_item() -> None:
    errors: list[BaseException] = []
    done: list[int] = []

    def process(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        done.append(item)

    worker = LatestOnlyWorker(process, on_error=errors.append)
    worker.submit(1)
    assert worker.wait_idle(30)
    worker.submit(2)
    assert worker.wait_idle(30)
    assert done == [2] and len(errors) == 1
    assert worker.stop()


# ------------------------------------------------------------------------------ diagnostics
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttled_log_reports_suppressed_count() -> None:
    clock, lines = FakeClock(), []
    log = ThrottledLog(lines.append, period_s=5.0, now=clock)
    assert log("a", "problem a")
    assert not log("a", "problem a")
    assert log("b", "problem b")  # another key is independent
    clock.now = 6.0
    assert log("a", "problem a")
    assert lines == ["problem a", "problem b", "problem a (1 more since the last report)"]


def test_rate_meter_and_latency_window() -> None:
    clock = FakeClock()
    meter = RateMeter(window_s=5.0, now=clock)
    for step in range(11):
        clock.now = step * 0.1
        meter.tick()
    assert meter.rate() == pytest.approx(10.0, rel=1e-6)
    clock.now = 100.0
    assert meter.rate() == 0.0 and meter.seconds_since_last() == pytest.approx(99.0)
    window = LatencyWindow(size=3)
    for value in (1.0, 2.0, 3.0, 4.0):
        window.add(value)
    assert len(window) == 3 and window.percentile(50) == 3.0


def test_fusion_stats_key_values() -> None:
    stats = FusionStats()
    stats.count_bad_input("thermal", "truncated")
    stats.count("dropped_busy", 2)
    stats.record_fused({"priors": 1.0, "stage1": 2.0, "stage2": 3.0, "total": 6.5}, 12.0, 7.0)
    values = dict(stats.key_values({"unmatched": 4}))
    assert values["bad_input.thermal:truncated"] == "1"
    assert values["dropped_busy"] == "2" and values["fused"] == "1" and values["unmatched"] == "4"
    assert values["latency_total_ms_p50"] == "6.50"
    assert values["latency_end_to_end_ms_p50"] == "12.00"
    recent = stats.take_recent_problems()
    assert recent["bad_input"] == 1 and not stats.take_recent_problems()


# ------------------------------------------------------------------------------- parameters
def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def test_config_file_sets_exactly_the_declared_parameters_with_their_types() -> None:
    config = yaml.safe_load((ROOT / "config" / "sgdfuse.yaml").read_text())
    values = _flatten(config["/**"]["ros__parameters"])
    assert set(values) == set(DEFAULTS)
    for name, value in values.items():
        assert type(value) is type(DEFAULTS[name]), name  # a ROS parameter's type is fixed
        if isinstance(value, list):
            assert all(type(item) is type(DEFAULTS[name][0]) for item in value), name
    NodeSettings.from_values(values)


def test_defaults_validate() -> None:
    settings = NodeSettings.from_values({})
    assert settings.thermal_qos == "auto" and settings.pipeline.steps is None
    assert settings.pipeline.weights is None and settings.registration.mode == "none"
    assert settings.pipeline == PipelineOptions()  # the node's defaults are the library's


def test_node_parameters_and_pipeline_options_map_both_ways() -> None:
    options = PipelineOptions(
        device="cuda:1",
        steps=3,
        backend="onnxruntime",
        prior_backend="classical",
        sam_checkpoint="/sam.pth",
        prior_refresh_every=4,
        resize_mismatched=True,
        fp16=False,
        engine_dir="/plans",
        engine_build="never",
        cpu_threads=2,
    )
    assert NodeSettings.from_values(parameters_for(options)).pipeline == options
    assert set(PIPELINE_PARAMETERS.values()) <= {spec.name for spec in PARAMETERS}


@pytest.mark.parametrize(
    "override",
    [
        {"input_qos": "best_effort"},
        {"qos.thermal": "fast"},
        {"steps": -1},
        {"sync.queue_size": 0},
        {"sync.slop": -0.1},
        {"thermal.agc.mode": "gamma"},
        {"thermal.agc.percentiles": [1.0]},
        {"thermal.agc.percentiles": [99.0, 1.0]},  # named as the parameter, not AgcSettings' field
        {"registration.mode": "homography", "registration.homography": [1.0, 2.0]},
        {"output.encoding": "yuv422"},
        {"prior.refresh_every": 0},
        {"inference.engine_build": "sometimes"},
        {"inference.cpu_threads": -1},
        {"diagnostics.period": 0.0},
        {"diagnostics.period": 1e-9},  # a timer that would spin the CPU
        {"diagnostics.period": float("inf")},  # rclpy's timer overflows: activate failed unnamed
        {"sync.slop": float("nan")},  # passed "< 0", then failed in the synchronizer
        {"sync.slop": 1e12},  # overflows rclpy's Duration
        {"watchdog.timeout": float("inf")},
        {"log_throttle_period": float("nan")},  # turned throttling off: a log line per frame
        {"no_such_parameter": 1},
    ],
)
def test_invalid_parameters_are_refused_by_name(override: dict) -> None:
    with pytest.raises(ValueError) as raised:
        NodeSettings.from_values(override)
    assert any(name.split(".")[0] in str(raised.value) for name in override)
    if "thermal.agc.percentiles" in override:
        assert str(raised.value).startswith("parameter thermal.agc.percentiles")


def test_per_topic_qos_override() -> None:
    settings = NodeSettings.from_values({"input_qos": "reliable", "qos.rgb": "sensor_data"})
    assert (settings.thermal_qos, settings.rgb_qos) == ("reliable", "sensor_data")


# ------------------------------------------------------------------------------ launch args
def test_launch_arguments_become_the_node_command_line(tmp_path: Path) -> None:
    values = launch_args.with_defaults(
        {
            "namespace": "robot",
            "thermal_topic": "/ir/image",
            "device": "cpu",
            "steps": "1",
            "use_sim_time": "true",
            "log_level": "debug",
        }
    )
    overrides = launch_args.parameter_overrides(values)
    assert overrides == {"use_sim_time": True, "device": "cpu", "steps": 1}
    overrides_file = launch_args.write_overrides_file(overrides, tmp_path / "o.yaml")
    arguments = launch_args.node_ros_arguments(values, overrides_file)
    assert arguments[:3] == ["--ros-args", "-r", "__node:=sgdfuse_fusion"]
    assert "__ns:=/robot" in arguments and "thermal/image_raw:=/ir/image" in arguments
    assert "fused/image:=/fused/image" in arguments
    files = [arguments[i + 1] for i, a in enumerate(arguments) if a == "--params-file"]
    assert files == [str(launch_args.default_params_file()), str(overrides_file)]
    assert arguments[-2:] == ["--log-level", "debug"]
    assert yaml.safe_load(overrides_file.read_text()) == {"/**": {"ros__parameters": overrides}}


def test_empty_device_and_steps_keep_the_parameter_file_values() -> None:
    assert launch_args.parameter_overrides(launch_args.with_defaults()) == {"use_sim_time": False}
    with pytest.raises(ValueError):
        launch_args.with_defaults({"camera": "x"})


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("steps", "abc"),
        ("steps", "-1"),
        ("use_sim_time", "maybe"),
        ("params_file", "/nonexistent/robot.yaml"),
        ("log_level", "loud"),
        ("thermal_topic", "bad topic"),  # rcl's error named neither the argument nor the rule
        ("fused_topic", "/fused//image"),
    ],
)
def test_unusable_launch_arguments_are_refused_by_name(argument: str, value: str) -> None:
    """launch_ros would skip a missing parameter file with a warning (the node then runs on
    defaults), and the others end in an int() error or a traceback from the node."""
    with pytest.raises(ValueError, match=f"^{argument}:="):
        launch_args.with_defaults({argument: value})


def test_worker_stop_is_prompt() -> None:
    worker = LatestOnlyWorker(lambda item: None)
    started = time.monotonic()
    assert worker.stop(5.0) and time.monotonic() - started < 5.0


def test_run_on_fresh_thread_returns_result_and_raises_errors() -> None:
    caller = threading.get_ident()
    assert run_on_fresh_thread(lambda: threading.get_ident() != caller, name="t") is True
    with pytest.raises(ValueError, match="bad weights"):
        run_on_fresh_thread(lambda: (_ for _ in ()).throw(ValueError("bad weights")), name="t")


# Torch work on a thread that ends leaves no OpenMP pool behind; on the calling thread it does
# (the node loads and warms up its models this way so that only the inference thread's pool
# competes for the cores).
POOL_CHECK = """
import os, time, torch
from sgdfuse_ros.ros.worker import run_on_fresh_thread
def threads():
    return len(os.listdir("/proc/self/task"))
def parallel_op():
    return float((torch.ones(4_000_000) * 2).sum())
base = threads()
assert run_on_fresh_thread(parallel_op, name="load") == 8_000_000
deadline = time.monotonic() + 5
while threads() > base and time.monotonic() < deadline:
    time.sleep(0.05)
after_fresh = threads()
parallel_op()
print(base, after_fresh, threads())
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_torch_pool_of_a_fresh_thread_goes_with_it() -> None:
    torch = pytest.importorskip("torch")
    if torch.get_num_threads() < 2:
        pytest.skip("one torch thread: no OpenMP pool")
    out = subprocess.run(
        [sys.executable, "-c", POOL_CHECK], capture_output=True, text=True, check=True, timeout=120
    )
    base, after_fresh, after_main = map(int, out.stdout.split())
    assert after_fresh == base
    assert after_main > base


def test_no_sync_is_not_claimed_while_one_topic_delivers_only_rejected_frames() -> None:
    from sgdfuse_ros.ros import watchdog

    def state(rgb_accepted_s_ago: float) -> watchdog.InputState:
        return watchdog.InputState(
            now=100.0,
            activated_at=0.0,
            seconds_since_message={"thermal": 0.1, "rgb": 0.1},  # both topics carry traffic
            seconds_since_accepted={"thermal": 0.1, "rgb": rgb_accepted_s_ago},
            last_pair_at=50.0,  # nothing paired for 50 s
            last_stamps_ns={"thermal": 100_000_000_000, "rgb": 97_000_000_000},
            topic_names={"thermal": "/thermal/image_raw", "rgb": "/rgb/image_raw"},
            sync_slop=0.05,
        )

    # rgb frames arrive but are all rejected (bad encoding): bad_input says so, not no_sync
    assert watchdog.check(state(rgb_accepted_s_ago=30.0), timeout=2.0) == []
    # both accepted and still nothing pairs: the stamps are the likely cause
    (finding,) = watchdog.check(state(rgb_accepted_s_ago=0.1), timeout=2.0)
    assert finding.counter == "no_sync" and "differ by +3.000 s" in finding.message
