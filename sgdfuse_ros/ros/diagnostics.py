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


def fusion_status(stats: FusionStats) -> tuple[str, str]:
    """Level and message of one diagnostics period: WARN naming each problem counted in it."""
    recent = stats.take_recent_problems()
    problems = {key: count for key, count in recent.items() if count}
    if problems:
        listed = ", ".join(f"{key}={count}" for key, count in sorted(problems.items()))
        return "warn", "problems: " + listed
    return "ok", f"fusing at {stats.fused_out.rate():.1f} fps"
