"""Soak the fusion node: a steady thermal + RGB stream into the real ``fusion_node`` process.

Starts ``fusion_node`` (config/sgdfuse.yaml plus ``--node-args``) on a private DDS domain,
publishes thermal (mono16 or mono8) + RGB (rgb8) pairs at ``--rate`` Hz for ``--seconds``,
receives /fused/image and /diagnostics, samples the node's RSS, and prints:

- the RSS series (with the node's fused / dropped counters and /diagnostics level at each sample);
- every integer counter the node reports (read generically from the /diagnostics key/values,
  so counters added later, e.g. ``lost.<topic>``, appear without changes here) and whether they
  add up to what was sent (the identity is printed with its remainder);
- the /diagnostics level over time (seconds at OK / WARN / ERROR / STALE, transitions);
- fused rate and latency (pair published -> fused frame received) p50 / p90.

Both sides use reliable QoS: the publishers here and the node's subscriptions
(``input_qos: reliable``, set unless ``--node-args`` says otherwise). On one host Fast DDS
loses large best-effort samples (a 640x480 rgb8 frame is larger than its shared-memory
segment), so best-effort would measure the middleware, not the node. Reliable delivery brings
every frame to the node's subscription; its history (``qos.depth``, 5 by default) still
replaces frames the node's executor has not taken yet, without any lost event from the
middleware, so a remainder in the identity at 640x480 30 Hz means that; ``--node-args
qos.depth:=30`` gives a second of headroom.

    python benchmarks/soak_node.py [--seconds 600] [--rate 30] [--width 640] [--height 480]
        [--thermal-encoding mono16] [--json soak.json] [--node-args steps:=1 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_node import weights_missing  # this folder is on sys.path (script or test)

LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}
ERROR_LEVEL = 2
# Values in the node's /diagnostics that are integers but not event counters.
NOT_COUNTERS = frozenset({"steps", "sync_queued"})
THERMAL_TOPIC, RGB_TOPIC = "/thermal/image_raw", "/rgb/image_raw"
# The node's worker holds at most one pair being fused and one waiting (worker.py).
MAX_IN_FLIGHT_PAIRS = 2


@dataclass
class SoakConfig:
    """What to send, for how long, and how the node is started."""

    seconds: float = 600.0
    rate: float = 30.0
    width: int = 640
    height: int = 480
    thermal_encoding: str = "mono16"
    rss_interval: float = 5.0
    node_params: dict[str, Any] = field(default_factory=dict)
    out_dir: Path = Path("outputs/soak_node")
    domain_id: int | None = None
    startup_timeout: float = 300.0
    settle_timeout: float = 60.0
    distinct_frames: int = 10


@dataclass
class DiagnosticsSample:
    """One /diagnostics status of the fusion node, as received."""

    received: float  # time.time()
    level: int
    message: str
    values: dict[str, str]


class DiagnosticsRecorder:
    """Every fusion status on /diagnostics, in arrival order (the observer keeps only the last)."""

    def __init__(self, node: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.samples: list[DiagnosticsSample] = []
        self._lock = threading.Lock()
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _on_diagnostics(self, msg: Any) -> None:
        now = time.time()
        for status in msg.status:
            if "fusion" not in status.name:
                continue
            level = status.level
            sample = DiagnosticsSample(
                received=now,
                level=level[0] if isinstance(level, bytes) else int(level),
                message=status.message,
                values={item.key: item.value for item in status.values},
            )
            with self._lock:
                self.samples.append(sample)

    def snapshot(self) -> list[DiagnosticsSample]:
        with self._lock:
            return list(self.samples)

    def latest(self) -> DiagnosticsSample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None


def integer_counters(values: dict[str, str]) -> dict[str, int]:
    """Every integer-valued diagnostics key except the known non-counters."""
    counters = {}
    for key, value in values.items():
        if key in NOT_COUNTERS:
            continue
        try:
            counters[key] = int(value)
        except ValueError:
            continue
    return counters


def lost_messages(counters: dict[str, int]) -> int:
    """Messages the middleware reported lost: the sum of ``lost.*`` (else ``lost``, else 0)."""
    per_topic = [count for key, count in counters.items() if key.startswith("lost.")]
    return sum(per_topic) if per_topic else counters.get("lost", 0)


IDENTITY = (
    "2*sent = 2*fused + 2*dropped_busy + 2*pipeline_error + unmatched + lost + bad_input "
    "+ sync_queued + 2*in_flight + remainder   (in messages: the node counts unmatched, "
    "lost and bad input per message, a pair is two messages)"
)


def check_identity(sent_pairs: int, values: dict[str, str], settled: bool) -> dict[str, Any]:
    """Whether the node's counters account for every message sent.

    Each sent pair is a thermal and an RGB message. In the node a message is rejected on
    arrival (bad_input), waits in the synchronizer (sync_queued), is discarded unpaired
    (unmatched), or pairs; a pair is fused, replaced while the worker was busy (dropped_busy),
    fails in the pipeline (pipeline_error) or is still in the worker (in flight, at most two
    pairs, none once the counters have settled). Messages that never reach the node are
    ``lost.*`` where the middleware reports them. Whatever is left is the remainder: messages
    no counter explains. A decode failure after pairing is one bad_input for two messages;
    the soak sends only well-formed frames, so bad_input is expected to be 0.
    """
    counters = integer_counters(values)
    terms = {
        "fused": 2 * counters.get("fused", 0),
        "dropped_busy": 2 * counters.get("dropped_busy", 0),
        "pipeline_error": 2 * counters.get("pipeline_error", 0),
        "unmatched": counters.get("unmatched", 0),
        "lost": lost_messages(counters),
        "bad_input": counters.get("bad_input", 0),
        "sync_queued": int(values.get("sync_queued", "0") or 0),
    }
    sent_messages = 2 * sent_pairs
    remainder = sent_messages - sum(terms.values())
    in_flight_allowed = 0 if settled else 2 * MAX_IN_FLIGHT_PAIRS
    result: dict[str, Any] = {
        "identity": IDENTITY,
        "sent_messages": sent_messages,
        "terms_messages": terms,
        "remainder_messages": remainder,
        "settled": settled,
        "in_flight_allowed_messages": in_flight_allowed,
        "holds": 0 <= remainder <= in_flight_allowed,
    }
    received = [count for key, count in counters.items() if key.startswith("received.")]
    if received:
        # Per-topic arrival counts split the remainder: messages the node's callbacks never saw
        # (its subscription history overflowed, or the transport lost them unreported) versus
        # messages it saw but no counter explains.
        in_node = sum(terms.values()) - terms["lost"]
        result["received_messages"] = sum(received)
        result["not_delivered_unreported_messages"] = sent_messages - sum(received) - terms["lost"]
        result["in_node_remainder_messages"] = sum(received) - in_node
    return result


def level_summary(samples: list[DiagnosticsSample], start: float, end: float) -> dict[str, Any]:
    """Seconds spent at each level in [start, end] and the transitions, from arrival times.

    A status holds from its arrival until the next one arrives; before the first status in
    the window the previous one (if any) holds.
    """
    seconds = {name: 0.0 for name in LEVEL_NAMES.values()}
    transitions: list[dict[str, Any]] = []
    current: DiagnosticsSample | None = None
    since = start
    for sample in samples:
        if sample.received <= start:
            current = sample
            continue
        if sample.received > end:
            break
        if current is not None:
            seconds[LEVEL_NAMES.get(current.level, str(current.level))] += sample.received - since
            if sample.level != current.level:
                transitions.append(
                    {
                        "t_s": round(sample.received - start, 2),
                        "from": LEVEL_NAMES.get(current.level, str(current.level)),
                        "to": LEVEL_NAMES.get(sample.level, str(sample.level)),
                        "message": sample.message,
                    }
                )
        else:
            seconds["unknown"] = sample.received - start
            transitions.append(
                {
                    "t_s": round(sample.received - start, 2),
                    "from": "-",
                    "to": LEVEL_NAMES.get(sample.level, str(sample.level)),
                    "message": sample.message,
                }
            )
        current, since = sample, sample.received
    if current is not None:
        seconds[LEVEL_NAMES.get(current.level, str(current.level))] += max(0.0, end - since)
    return {"seconds": {k: round(v, 2) for k, v in seconds.items()}, "transitions": transitions}


def parse_node_args(items: list[str]) -> dict[str, Any]:
    """``name:=value`` (or ``name=value``) -> parameter overrides, values typed as YAML."""
    params: dict[str, Any] = {}
    for item in items:
        separator = ":=" if ":=" in item else "="
        name, found, value = item.partition(separator)
        if not found or not name:
            raise ValueError(f"--node-args {item!r}: expected name:=value")
        params[name.strip()] = yaml.safe_load(value)
    return params


def _messages(config: SoakConfig) -> list[tuple[Any, Any]]:
    """Pre-encoded (thermal, rgb) Image messages of the synthetic scene; restamped per send."""
    from sensor_msgs.msg import Image

    from sgdfuse_ros.io.image_codec import encode_array, image_message
    from sgdfuse_ros.synthetic import render_sequence

    pairs = []
    for ir, vis in render_sequence(config.distinct_frames, config.height, config.width):
        if config.thermal_encoding == "mono16":
            ir = ir.astype(np.uint16) * 16 + 7000  # a radiometric camera's raw counts
        thermal = image_message(Image, encode_array(ir, config.thermal_encoding))
        thermal.header.frame_id = "thermal_optical"
        rgb = image_message(Image, encode_array(vis, "rgb8"))
        rgb.header.frame_id = "rgb_optical"
        pairs.append((thermal, rgb))
    return pairs


def _set_stamp(msg: Any, stamp_ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_soak(config: SoakConfig, log: Any = print) -> dict[str, Any]:
    """Run the soak; returns every measurement (``print_report`` formats them)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from sgdfuse_ros.ros import launch_args
    from sgdfuse_ros.ros.client import FusionObserver
    from sgdfuse_ros.ros.process import (
        isolated_ros_environment,
        rss_mib,
        start_fusion_node,
        stop_process,
    )

    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    domain = config.domain_id if config.domain_id is not None else random.randint(1, 100)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    values = launch_args.with_defaults({"thermal_topic": THERMAL_TOPIC, "rgb_topic": RGB_TOPIC})
    overrides = {
        **launch_args.parameter_overrides(values),
        "input_qos": "reliable",
        "allow_untrained": weights_missing(),
        **config.node_params,
    }
    overrides_file = launch_args.write_overrides_file(overrides, out_dir / "soak_overrides.yaml")
    node_log = out_dir / "soak_fusion_node.log"
    log(
        f"soak: {config.width}x{config.height} {config.thermal_encoding}+rgb8 at {config.rate:g} Hz "
        f"for {config.seconds:g} s; fusion_node on ROS_DOMAIN_ID={domain} (log: {node_log}); "
        f"node parameters {overrides}"
    )
    messages = _messages(config)
    process = start_fusion_node(
        launch_args.node_ros_arguments(values, overrides_file),
        isolated_ros_environment(domain),
        node_log,
    )
    observer = FusionObserver(domain_id=domain, name="soak_observer")
    recorder = DiagnosticsRecorder(observer.node)
    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max(10, int(np.ceil(config.rate))),  # a second of frames before one is overwritten
        reliability=ReliabilityPolicy.RELIABLE,
    )
    thermal_pub = observer.node.create_publisher(Image, THERMAL_TOPIC, qos)
    rgb_pub = observer.node.create_publisher(Image, RGB_TOPIC, qos)
    rss_series: list[dict[str, Any]] = []
    stop_sampling = threading.Event()
    published: dict[int, float] = {}  # rgb stamp -> time.time() at publish
    result: dict[str, Any] = {"config": {k: str(v) for k, v in asdict(config).items()}}
    result.update({"domain_id": domain, "node_log": str(node_log), "node_parameters": overrides})
    try:
        started = time.monotonic()
        while not (
            thermal_pub.get_subscription_count()
            and rgb_pub.get_subscription_count()
            and recorder.latest() is not None
        ):
            if process.poll() is not None:
                raise RuntimeError(
                    f"fusion_node exited with code {process.returncode}:\n{_tail(node_log)}"
                )
            if time.monotonic() - started > config.startup_timeout:
                raise TimeoutError(f"fusion_node not ready in {config.startup_timeout} s")
            time.sleep(0.1)
        time.sleep(1.0)  # reliable endpoints matched both ways before the first frame
        result["startup_s"] = round(time.monotonic() - started, 1)
        log(f"node ready after {result['startup_s']} s; streaming")

        t0 = time.time()

        def sample_rss() -> None:
            while True:
                latest = recorder.latest()
                counters = integer_counters(latest.values) if latest else {}
                rss_series.append(
                    {
                        "t_s": round(time.time() - t0, 1),
                        "rss_mib": rss_mib(process.pid),
                        "fused": counters.get("fused"),
                        "dropped_busy": counters.get("dropped_busy"),
                        "level": LEVEL_NAMES.get(latest.level) if latest else None,
                    }
                )
                if stop_sampling.wait(config.rss_interval):
                    return

        sampler = threading.Thread(target=sample_rss, name="soak-rss", daemon=True)
        sampler.start()

        period = 1.0 / config.rate
        sent = late = 0
        begin = time.perf_counter()
        next_due = begin
        while next_due - begin < config.seconds:
            delay = next_due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif -delay > period:  # fell behind by a whole period: skip, never burst
                late += 1
                next_due = time.perf_counter()
            if process.poll() is not None:
                raise RuntimeError(
                    f"fusion_node exited with code {process.returncode} during the soak:\n"
                    f"{_tail(node_log)}"
                )
            thermal, rgb = messages[sent % len(messages)]
            stamp = time.time_ns()
            _set_stamp(rgb, stamp)
            _set_stamp(thermal, stamp + 2_000_000)  # a second camera, 2 ms later
            published[stamp] = time.time()
            thermal_pub.publish(thermal)
            rgb_pub.publish(rgb)
            sent += 1
            next_due += period
        publish_span = time.perf_counter() - begin
        t_end = time.time()
        log(f"sent {sent} pairs in {publish_span:.1f} s; waiting for the node to settle")

        settled = _wait_settled(recorder, observer, t_end, config.settle_timeout)
        final = recorder.latest()
        stop_sampling.set()
        sampler.join(config.rss_interval + 5.0)
        samples = recorder.snapshot()
        fused = [item for item in observer.fused if item.stamp in published]
        latencies = [(item.received - published[item.stamp]) * 1e3 for item in fused]
        first_fused = min((item.received for item in fused), default=None)
        final_values = final.values if final else {}
        while_fusing = [
            s for s in samples if first_fused is not None and first_fused <= s.received <= t_end
        ]
        result.update(
            {
                "sent_pairs": sent,
                "late_ticks": late,
                "publish_span_s": round(publish_span, 2),
                "achieved_rate_hz": sent / publish_span,
                "fused_received": len(fused),
                "fused_rate_hz": len(fused) / publish_span,
                "latency_ms": {
                    "p50": _percentile(latencies, 50),
                    "p90": _percentile(latencies, 90),
                    "max": max(latencies, default=None),
                },
                "counters": integer_counters(final_values),
                "final_diagnostics": final_values,
                "identity": check_identity(sent, final_values, settled),
                "rss_series": rss_series,
                "levels_while_streaming": level_summary(samples, t0, t_end),
                "levels_after_streaming": level_summary(samples, t_end, time.time()),
                "error_while_fusing": any(s.level >= ERROR_LEVEL for s in while_fusing),
                "diagnostics_timeline": [
                    {"t_s": round(s.received - t0, 2), "level": s.level, "message": s.message}
                    for s in samples
                ],
            }
        )
    finally:
        stop_sampling.set()
        observer.close()
        result["node_exit_code"] = stop_process(process)
    result["load_average"] = list(os.getloadavg())
    return result


def _wait_settled(
    recorder: DiagnosticsRecorder, observer: Any, t_end: float, timeout: float
) -> bool:
    """True once two /diagnostics statuses sent after the stream ended show the same counters
    and every fused frame the node counted has arrived (nothing left in flight)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        after = [s for s in recorder.snapshot() if s.received > t_end + 1.0]
        if len(after) >= 2:
            last, previous = after[-1], after[-2]
            same = integer_counters(last.values) == integer_counters(previous.values)
            fused = integer_counters(last.values).get("fused", 0)
            if same and observer.fused_count() >= fused:
                return True
        time.sleep(0.2)
    return False


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_report(result: dict[str, Any], log: Any = print) -> None:
    """The soak's tables, as markdown."""
    config = result["config"]
    log(
        f"\nfusion_node soak: {config['width']}x{config['height']} {config['thermal_encoding']}"
        f" + rgb8, {config['rate']} Hz for {config['seconds']} s; sent {result['sent_pairs']} "
        f"pairs ({result['achieved_rate_hz']:.2f} Hz achieved, {result['late_ticks']} late "
        f"ticks skipped); node parameters {result['node_parameters']}\n"
    )
    log("| t (s) | node RSS (MiB) | fused | dropped (busy) | /diagnostics level |")
    log("|---:|---:|---:|---:|---|")
    for row in result["rss_series"]:
        log(
            f"| {row['t_s']:.0f} | {_fmt(row['rss_mib'], 1)} | {row['fused'] or 0} | "
            f"{row['dropped_busy'] or 0} | {row['level']} |"
        )
    identity = result["identity"]
    log("\n| counter (from /diagnostics) | value |")
    log("|---|---:|")
    log(f"| sent pairs (soak) | {result['sent_pairs']} |")
    log(f"| fused frames received (soak) | {result['fused_received']} |")
    for key, value in sorted(result["counters"].items()):
        log(f"| {key} | {value} |")
    log(f"| sync_queued | {result['final_diagnostics'].get('sync_queued', 'n/a')} |")
    terms = " + ".join(f"{name} {value}" for name, value in identity["terms_messages"].items())
    log(f"\nidentity: {identity['identity']}")
    log(
        f"  {identity['sent_messages']} messages = {terms} + remainder "
        f"{identity['remainder_messages']} (counters settled: {identity['settled']}; "
        f"in flight allowed: {identity['in_flight_allowed_messages']}) -> "
        f"{'HOLDS' if identity['holds'] else 'DOES NOT HOLD'}"
    )
    if "received_messages" in identity:
        log(
            f"  received by the node {identity['received_messages']}: not delivered and not "
            f"reported lost {identity['not_delivered_unreported_messages']}, received but not "
            f"counted {identity['in_node_remainder_messages']}"
        )
    latency = result["latency_ms"]
    log(
        f"\nfused rate {result['fused_rate_hz']:.2f} Hz; latency (published -> fused received) "
        f"p50 {_fmt(latency['p50'])} ms, p90 {_fmt(latency['p90'])} ms, max "
        f"{_fmt(latency['max'])} ms; node in-node p50 "
        f"{result['final_diagnostics'].get('latency_in_node_ms_p50', 'n/a')} ms"
    )
    for title, key in (
        ("while streaming", "levels_while_streaming"),
        ("after", "levels_after_streaming"),
    ):
        summary = result[key]
        spent = ", ".join(f"{name} {s:.0f} s" for name, s in summary["seconds"].items() if s)
        log(f"\n/diagnostics level {title}: {spent or 'no status'}")
        for change in summary["transitions"]:
            log(
                f"  t={change['t_s']:.1f} s {change['from']} -> {change['to']}: {change['message']}"
            )
    log(
        f"\nERROR while fusing: {'yes' if result['error_while_fusing'] else 'no'}; node exit code "
        f"{result['node_exit_code']}; load average {', '.join(f'{v:.1f}' for v in result['load_average'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "QoS: the publishers are reliable (KEEP_LAST, a second of frames) and the node is "
            "started with input_qos:=reliable, the setting that delivers large frames on one "
            "host; pass --node-args input_qos:=sensor_data to measure best-effort delivery. "
            "The node's subscription history (qos.depth, 5) replaces frames its executor has "
            "not taken yet, unreported: a remainder in the identity at 640x480 30 Hz; "
            "--node-args qos.depth:=30 gives a second of headroom."
        ),
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="seconds of input")
    parser.add_argument("--rate", type=float, default=30.0, help="input pairs per second")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--thermal-encoding", choices=("mono16", "mono8"), default="mono16")
    parser.add_argument(
        "--rss-interval", type=float, default=5.0, help="seconds between RSS samples"
    )
    parser.add_argument(
        "--node-args",
        nargs="*",
        default=[],
        metavar="NAME:=VALUE",
        help="node parameters, e.g. steps:=1 inference.backend:=onnxruntime inference.cpu_threads:=1",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every measurement here")
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/soak_node"), help="node log folder"
    )
    parser.add_argument(
        "--domain-id",
        type=int,
        default=int(os.environ["ROS_DOMAIN_ID"]) if os.environ.get("ROS_DOMAIN_ID") else None,
        help="ROS_DOMAIN_ID (default: $ROS_DOMAIN_ID, else random)",
    )
    args = parser.parse_args(argv)
    config = SoakConfig(
        seconds=args.seconds,
        rate=args.rate,
        width=args.width,
        height=args.height,
        thermal_encoding=args.thermal_encoding,
        rss_interval=args.rss_interval,
        node_params=parse_node_args(args.node_args),
        out_dir=args.out,
        domain_id=args.domain_id,
    )
    result = run_soak(config)
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        print(f"\nJSON: {args.json}")
    return 0 if result["identity"]["holds"] and result["fused_received"] else 1


if __name__ == "__main__":
    sys.exit(main())
