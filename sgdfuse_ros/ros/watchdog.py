"""The input watchdog: a silent camera, or two busy cameras whose frames never pair.

Pure logic over the node's rate meters and timestamps (no rclpy), so it is tested on its own;
the node runs ``check`` once a second and counts and logs what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

TOPICS = ("thermal", "rgb")


@dataclass(frozen=True)
class Finding:
    counter: str  # diagnostics counter, e.g. "silent_topic.rgb"
    log_key: str  # throttling key of the log line
    message: str


@dataclass(frozen=True)
class InputState:
    """What the watchdog looks at, sampled by the node."""

    now: float  # monotonic seconds
    activated_at: float
    seconds_since_message: dict[str, float | None]  # per topic, rejected frames too; None: none
    seconds_since_accepted: dict[str, float | None]  # per topic, frames that passed the checks
    last_pair_at: float | None
    last_stamps_ns: dict[str, int]  # latest header stamp per topic
    topic_names: dict[str, str]  # resolved names for the log lines
    sync_slop: float


def check(state: InputState, timeout: float) -> list[Finding]:
    """Findings for this second: each silent topic while the other is live, and no pairs while
    both deliver frames that pass the input checks."""
    since = state.seconds_since_message
    active = {t: since[t] is not None and since[t] < timeout for t in TOPICS}  # type: ignore[operator]
    findings = []
    for which, other in (("thermal", "rgb"), ("rgb", "thermal")):
        seen = since[which]
        silent_for = seen if seen is not None else state.now - state.activated_at
        if active[other] and silent_for >= timeout:
            findings.append(
                Finding(
                    f"silent_topic.{which}",
                    f"silent.{which}",
                    f"{which} topic {state.topic_names[which]} has been silent for "
                    f"{silent_for:.0f} s while {other} carries traffic: check the camera driver, "
                    "the topic remapping and QoS",
                )
            )
    since_ok = state.seconds_since_accepted
    accepted = {t: since_ok[t] is not None and since_ok[t] < timeout for t in TOPICS}  # type: ignore[operator]
    # Frames rejected as bad input are traffic but cannot pair: that is bad_input's finding,
    # and a stamp hint built from older accepted frames would send the operator the wrong way.
    if active["thermal"] and active["rgb"] and accepted["thermal"] and accepted["rgb"]:
        last_pair = state.last_pair_at if state.last_pair_at is not None else state.activated_at
        if state.now - last_pair >= timeout:
            gap = ""
            if all(t in state.last_stamps_ns for t in TOPICS):
                offset = (state.last_stamps_ns["thermal"] - state.last_stamps_ns["rgb"]) / 1e9
                gap = f" (latest stamps differ by {offset:+.3f} s)"
            findings.append(
                Finding(
                    "no_sync",
                    "no_sync",
                    f"both image topics carry traffic but nothing synced for "
                    f"{state.now - last_pair:.0f} s with sync.slop={state.sync_slop} s{gap}: "
                    "check the header stamps (camera clocks) or raise sync.slop",
                )
            )
    return findings
