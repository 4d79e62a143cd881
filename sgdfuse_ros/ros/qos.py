"""QoS choices for the camera subscriptions.

Camera drivers publish best-effort (``sensor_data``) or reliable; a reliable subscription never
receives anything from a best-effort publisher (an "incompatible QoS" event), while a
best-effort subscription matches both. ``auto`` looks at the publishers on the graph and takes
reliable only when every publisher offers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)

from sgdfuse_ros.ros.parameters import QOS_CHOICES


@dataclass(frozen=True)
class ResolvedQos:
    """A profile plus a short description for logs and diagnostics."""

    profile: QoSProfile
    description: str


def fixed_profile(name: str, depth: int) -> QoSProfile:
    """A named profile with the configured queue depth (``auto`` is resolved elsewhere)."""
    if name == "sensor_data":
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=qos_profile_sensor_data.reliability,
            durability=qos_profile_sensor_data.durability,
        )
    if name == "reliable":
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
    if name == "system_default":
        return qos_profile_system_default
    raise ValueError(f"unknown QoS {name!r}; use " + ", ".join(QOS_CHOICES))


def incompatibility(requested: QoSProfile, offered: list[QoSProfile]) -> str:
    """Why some of the ``offered`` publisher profiles cannot serve ``requested`` ("" if none).

    Reliability and durability are the request-offered policies the image subscriptions set
    (deadline, liveliness and lease stay at their defaults, which every publisher satisfies),
    so this graph check is exact for them and clears as soon as the last offending publisher
    is gone or fixed.
    """
    reasons = []
    if requested.reliability == ReliabilityPolicy.RELIABLE:
        best_effort = sum(p.reliability == ReliabilityPolicy.BEST_EFFORT for p in offered)
        if best_effort:
            reasons.append(f"{best_effort} best-effort publisher(s) for a reliable subscription")
    if requested.durability == DurabilityPolicy.TRANSIENT_LOCAL:
        volatile = sum(p.durability == DurabilityPolicy.VOLATILE for p in offered)
        if volatile:
            reasons.append(f"{volatile} volatile publisher(s) for a transient-local subscription")
    return ", ".join(reasons)


def publisher_profiles(node: Node, topic: str) -> list[QoSProfile]:
    """QoS offered by each publisher currently on ``topic`` (resolved with remaps)."""
    resolved = node.resolve_topic_name(topic)
    return [info.qos_profile for info in node.get_publishers_info_by_topic(resolved)]


def resolve_qos(node: Node, name: str, topic: str, depth: int) -> ResolvedQos:
    """Turn a QoS parameter value into a profile; ``auto`` matches the current publishers."""
    if name != "auto":
        return ResolvedQos(fixed_profile(name, depth), name)
    offered = [profile.reliability for profile in publisher_profiles(node, topic)]
    if offered and all(policy == ReliabilityPolicy.RELIABLE for policy in offered):
        return ResolvedQos(fixed_profile("reliable", depth), "auto->reliable")
    detail = "no publishers yet" if not offered else "a best-effort publisher"
    return ResolvedQos(fixed_profile("sensor_data", depth), f"auto->sensor_data ({detail})")


def policy_name(policy_kind: object) -> str:
    """Readable name of the QoS policy an incompatibility event reports."""
    name = getattr(policy_kind, "name", None)
    if not name:
        try:
            from rclpy.qos import QoSPolicyKind

            name = QoSPolicyKind(int(policy_kind)).name  # type: ignore[arg-type]
        except (ValueError, TypeError, ImportError):
            name = str(policy_kind)
    return str(name).removeprefix("RMW_QOS_POLICY_")


def incompatible_qos_message(
    which: str, resolved: ResolvedQos | None, topic: str, event: Any
) -> str:
    """The operator's log line for an incompatible-QoS event on an image subscription."""
    return (
        f"{which} subscription ({resolved.description if resolved else '?'}) cannot receive "
        f"from a publisher on {topic}: incompatible {policy_name(event.last_policy_kind)} "
        f"(total {event.total_count}); a best-effort camera needs input_qos sensor_data or auto"
    )
