"""Counters, latency windows and rate meters behind the node's /diagnostics status.

The bookkeeping is plain Python (thread-safe: the executor thread counts arrivals, the
inference thread records latencies), so it is unit-tested without ROS; only
``to_diagnostic_array`` touches diagnostic_msgs, and imports it lazily.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class LatencyWindow:
    """The last ``size`` samples (milliseconds) with percentiles for the status message."""

    def __init__(self, size: int = 300) -> None:
        self._samples: deque[float] = deque(maxlen=size)

    def add(self, value_ms: float) -> None:
        self._samples.append(float(value_ms))

    def __len__(self) -> int:
        return len(self._samples)

    def percentile(self, q: float) -> float | None:
        if not self._samples:
            return None
        return float(np.percentile(np.fromiter(self._samples, float), q))

    def mean(self) -> float | None:
        return float(np.mean(self._samples)) if self._samples else None


class RateMeter:
    """Events per second over a sliding window of monotonic time."""

    def __init__(self, window_s: float = 5.0, now: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._now = now
        self._events: deque[float] = deque()
        self.last_event: float | None = None
        self.total = 0

    def tick(self) -> None:
        stamp = self._now()
        self._events.append(stamp)
        self.last_event = stamp
        self.total += 1
        self._trim(stamp)

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0] > self._window_s:
            self._events.popleft()

    def rate(self) -> float:
        now = self._now()
        self._trim(now)
        if len(self._events) < 2:
            return 0.0
        span = max(now - self._events[0], self._events[-1] - self._events[0])
        return (len(self._events) - 1) / span if span > 0 else 0.0

    def seconds_since_last(self) -> float | None:
        return None if self.last_event is None else self._now() - self.last_event


class ThrottledLog:
    """Log a recurring problem once per ``period_s`` per key, with the count suppressed since.

    Bad frames can arrive at camera rate; one line per frame would drown the log, no line
    would hide the problem.
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        period_s: float = 5.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._period_s = period_s
        self._now = now
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, key: str, message: str) -> bool:
        """Emit ``message`` unless ``key`` was logged less than ``period_s`` ago; True if emitted."""
        now = self._now()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period_s:
                self._suppressed[key] += 1
                return False
            suppressed = self._suppressed.pop(key, 0)
            self._last[key] = now
        suffix = f" ({suppressed} more since the last report)" if suppressed else ""
        self._emit(message + suffix)
        return True


STAGE_KEYS = ("priors", "stage1", "stage2", "total")


class FusionStats:
    """Everything the node reports: counters by kind, latency windows, input and output rates."""

    def __init__(self, window_size: int = 300, rate_window_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.bad_input: Counter[str] = Counter()
        self.stage_ms = {key: LatencyWindow(window_size) for key in STAGE_KEYS}
        self.end_to_end_ms = LatencyWindow(window_size)  # source stamp -> publish (node clock)
        self.in_node_ms = LatencyWindow(window_size)  # pair complete -> publish (steady clock)
        self.thermal_in = RateMeter(rate_window_s)
        self.rgb_in = RateMeter(rate_window_s)
        self.fused_out = RateMeter(rate_window_s)
        self.pairs_in = RateMeter(rate_window_s)
        self._problems_since_report: Counter[str] = Counter()

    def count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[key] += amount
            self._problems_since_report[key] += amount

    def value(self, key: str) -> int:
        """The current value of one counter (0 when never counted)."""
        with self._lock:
            return self.counters[key]

    def count_bad_input(self, topic: str, reason: str) -> None:
        with self._lock:
            self.bad_input[f"{topic}:{reason}"] += 1
            self.counters["bad_input"] += 1
            self._problems_since_report["bad_input"] += 1

    def record_fused(
        self, timings_ms: dict[str, float], end_to_end_ms: float, in_node_ms: float
    ) -> None:
        with self._lock:
            for key in STAGE_KEYS:
                if key in timings_ms:
                    self.stage_ms[key].add(timings_ms[key])
            self.end_to_end_ms.add(end_to_end_ms)
            self.in_node_ms.add(in_node_ms)
            self.counters["fused"] += 1
        self.fused_out.tick()

    def take_recent_problems(self) -> Counter[str]:
        """Problem counters since the previous call (decides the status level)."""
        with self._lock:
            recent = self._problems_since_report
            self._problems_since_report = Counter()
        return recent

    def key_values(self, extra: dict[str, Any] | None = None) -> list[tuple[str, str]]:
        """Flat (key, value) list for a DiagnosticStatus; latencies in ms, rates in Hz."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.2f}"

        values: list[tuple[str, str]] = [
            ("input_rate_thermal_hz", fmt(self.thermal_in.rate())),
            ("input_rate_rgb_hz", fmt(self.rgb_in.rate())),
            ("synced_pairs_rate_hz", fmt(self.pairs_in.rate())),
            ("output_fps", fmt(self.fused_out.rate())),
            # arrivals, so received + lost adds up to what the cameras sent
            ("received.thermal", str(self.thermal_in.total)),
            ("received.rgb", str(self.rgb_in.total)),
        ]
        with self._lock:
            for key in STAGE_KEYS:
                window = self.stage_ms[key]
                values.append((f"latency_{key}_ms_p50", fmt(window.percentile(50))))
                values.append((f"latency_{key}_ms_p95", fmt(window.percentile(95))))
            values.append(("latency_end_to_end_ms_p50", fmt(self.end_to_end_ms.percentile(50))))
            values.append(("latency_end_to_end_ms_p95", fmt(self.end_to_end_ms.percentile(95))))
            values.append(("latency_in_node_ms_p50", fmt(self.in_node_ms.percentile(50))))
            values.append(("latency_in_node_ms_p95", fmt(self.in_node_ms.percentile(95))))
            for key in sorted(self.counters):
                values.append((key, str(self.counters[key])))
            for key in sorted(self.bad_input):
                values.append((f"bad_input.{key}", str(self.bad_input[key])))
        for key, value in (extra or {}).items():
            values.append((key, str(value)))
        return values


def gpu_memory_values(device: str) -> dict[str, str]:
    """CUDA memory of this process (allocated / reserved / peak, MiB); empty on CPU."""
    if not str(device).startswith("cuda"):
        return {}
    try:
        import torch

        if not torch.cuda.is_available():
            return {}
        mib = 1024.0 * 1024.0
        return {
            "gpu_memory_allocated_mib": f"{torch.cuda.memory_allocated(device) / mib:.1f}",
            "gpu_memory_reserved_mib": f"{torch.cuda.memory_reserved(device) / mib:.1f}",
            "gpu_memory_peak_mib": f"{torch.cuda.max_memory_allocated(device) / mib:.1f}",
        }
    except Exception as error:  # noqa: BLE001 - diagnostics must never take the node down
        return {"gpu_memory_error": str(error)}


def to_diagnostic_array(
    stamp: Any, name: str, hardware_id: str, level: str, message: str, values: list[tuple[str, str]]
) -> Any:
    """Build a diagnostic_msgs/DiagnosticArray with one status."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    levels = {
        "ok": DiagnosticStatus.OK,
        "warn": DiagnosticStatus.WARN,
        "error": DiagnosticStatus.ERROR,
        "stale": DiagnosticStatus.STALE,
    }
    status = DiagnosticStatus(
        level=levels[level],
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=value) for key, value in values],
    )
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array


# Counters that are load shedding, not faults: the worker keeps only the newest pair, so at a
# camera rate above the fusion rate they grow every period by design. Fusing is judged by the
# fused rate instead (HealthMonitor), so a slow CPU at 30 Hz input does not read as a fault.
LOAD_SHEDDING_COUNTERS = frozenset({"dropped_busy"})
_LEVEL_ORDER = {"ok": 0, "warn": 1, "error": 2}


@dataclass(frozen=True)
class HealthThresholds:
    """When the node's inputs and output count as unhealthy (see README, Diagnostics)."""

    # An input, a pairing or the output gone for this long is a state, not a blip
    # (the node's watchdog.timeout).
    timeout_s: float = 5.0
    # An input rate below this fraction of the topic's reference rate is a collapse.
    collapse_ratio: float = 0.5
    # Healthy per-period rates kept per topic; their median is the reference rate.
    reference_samples: int = 60
    # Periods of healthy rate needed before a collapse can be judged (warm-up).
    min_reference_samples: int = 5
    # Samples the middleware reported lost keep the status WARN for this long after the last.
    loss_hold_s: float = 10.0


@dataclass(frozen=True)
class HealthInputs:
    """One diagnostics period's view of the node, sampled by the node (no rclpy here)."""

    now: float  # monotonic seconds
    active_since: float  # when the subscriptions started
    input_rate_hz: dict[str, float]  # per image topic, over the rate meter's window
    seconds_since_input: dict[str, float | None]  # None: nothing received since activation
    seconds_since_fused: float | None  # None: nothing fused since activation
    lost_total: dict[str, int]  # message-lost totals reported by the middleware
    qos_incompatible: dict[str, str]  # topic -> why no publisher can deliver (empty: fine)


@dataclass(frozen=True)
class Health:
    level: str  # ok | warn | error
    findings: tuple[str, ...]  # one short clause per condition that holds now


class HealthMonitor:
    """Turns each period's HealthInputs into a level that stays WARN/ERROR while a fault lasts.

    Rules (each holds only while its condition does, so the status clears when fixed):
    * ERROR: both inputs arrive (a message within ``timeout_s``) but nothing was fused for
      ``timeout_s`` (since activation, or since the last fused frame).
    * WARN: an input topic got no message for ``timeout_s`` (both silent: "no input").
    * WARN: a topic's rate fell below ``collapse_ratio`` × its reference rate, the median of
      its recent healthy per-period rates (frozen while collapsed, so a collapse does not
      become the new normal; deactivate/activate resets it after a deliberate rate change).
    * WARN: the middleware reported lost samples on a topic within ``loss_hold_s``.
    * WARN: a publisher on a topic has a QoS the subscription cannot receive from.
    * WARN: nothing fused since activation, and no other finding yet (starting up): the status
      is never OK while the node has produced nothing.
    ``dropped_busy`` is never a finding: while frames are fused it is expected load shedding.
    """

    def __init__(self, topics: tuple[str, ...], thresholds: HealthThresholds) -> None:
        self.topics = topics
        self.thresholds = thresholds
        self._reference: dict[str, deque[float]] = {
            topic: deque(maxlen=thresholds.reference_samples) for topic in topics
        }
        self._lost_seen: dict[str, int] = dict.fromkeys(topics, 0)
        self._losses: dict[str, deque[tuple[float, int]]] = {topic: deque() for topic in topics}

    def reference_rate(self, topic: str) -> float | None:
        samples = self._reference[topic]
        if len(samples) < self.thresholds.min_reference_samples:
            return None
        return float(np.median(np.fromiter(samples, float)))

    def assess(self, inputs: HealthInputs) -> Health:
        limits = self.thresholds
        findings: list[tuple[str, str]] = []
        live = {}
        for topic in self.topics:
            since = inputs.seconds_since_input.get(topic)
            silent_for = inputs.now - inputs.active_since if since is None else since
            live[topic] = silent_for < limits.timeout_s
            if not live[topic]:
                findings.append(("warn", f"no {topic} input for {silent_for:.0f} s"))
        if not any(live.values()) and len(self.topics) > 1:
            quiet_for = min(self._silences(inputs))
            findings = [("warn", f"no input on any image topic for {quiet_for:.0f} s")]
        for topic in self.topics:
            rate = float(inputs.input_rate_hz.get(topic, 0.0))
            reference = self.reference_rate(topic)
            collapsed = (
                live[topic] and reference is not None and rate < limits.collapse_ratio * reference
            )
            if collapsed:
                findings.append(
                    ("warn", f"{topic} input rate collapsed to {rate:.1f} Hz from {reference:.1f}")
                )
            elif live[topic] and rate > 0:
                self._reference[topic].append(rate)
            lost = self._recent_losses(topic, inputs)
            if lost:
                findings.append(
                    (
                        "warn",
                        f"{lost} {topic} samples lost before the node "
                        f"(middleware) in the last {limits.loss_hold_s:.0f} s",
                    )
                )
            reason = inputs.qos_incompatible.get(topic, "")
            if reason:
                findings.append(("warn", f"{topic} QoS incompatible: {reason}"))
        since_fused = inputs.seconds_since_fused
        idle_for = inputs.now - inputs.active_since if since_fused is None else since_fused
        if all(live.values()) and idle_for >= limits.timeout_s:
            findings.insert(0, ("error", f"nothing fused for {idle_for:.0f} s while inputs arrive"))
        elif since_fused is None and not findings:
            # Starting up (or re-activated): nothing is wrong yet, but nothing is fused either.
            findings.append(("warn", f"nothing fused yet ({idle_for:.0f} s since activation)"))
        level = max((lvl for lvl, _ in findings), key=_LEVEL_ORDER.__getitem__, default="ok")
        return Health(level, tuple(text for _, text in findings))

    def _recent_losses(self, topic: str, inputs: HealthInputs) -> int:
        """Samples reported lost on ``topic`` within the last ``loss_hold_s`` seconds."""
        total = int(inputs.lost_total.get(topic, 0))
        losses = self._losses[topic]
        if total > self._lost_seen[topic]:
            losses.append((inputs.now, total - self._lost_seen[topic]))
            self._lost_seen[topic] = total
        while losses and inputs.now - losses[0][0] >= self.thresholds.loss_hold_s:
            losses.popleft()
        return sum(count for _, count in losses)

    def _silences(self, inputs: HealthInputs) -> list[float]:
        return [
            inputs.now - inputs.active_since if since is None else since
            for since in (inputs.seconds_since_input.get(topic) for topic in self.topics)
        ]


def _fusing_message(fused: RateMeter) -> str:
    """The OK message: the fused rate, or the age of the last frame when fewer than two fall in
    the rate window, instead of a misleading "0.0 fps"."""
    rate = fused.rate()
    if rate > 0:
        return f"fusing at {rate:.1f} fps"
    since = fused.seconds_since_last()
    if since is None:
        return "nothing fused yet"
    return f"fusing, last frame {since:.1f} s ago"


def fusion_status(stats: FusionStats, health: Health | None = None) -> tuple[str, str]:
    """Level and message of one diagnostics period.

    The health findings (states that last) decide first; problems counted in this period
    (bad input, pipeline errors, ...) add WARN for the period. Load shedding is not a problem.
    """
    recent = stats.take_recent_problems()
    problems = {
        key: count for key, count in recent.items() if count and key not in LOAD_SHEDDING_COUNTERS
    }
    level = health.level if health is not None else "ok"
    parts = list(health.findings) if health is not None else []
    if problems:
        level = max(level, "warn", key=_LEVEL_ORDER.__getitem__)
        listed = ", ".join(f"{key}={count}" for key, count in sorted(problems.items()))
        parts.append("problems: " + listed)
    if level == "ok":
        return "ok", _fusing_message(stats.fused_out)
    return level, "; ".join(parts)
