"""How many camera-sized frames reach a subscriber on the same host, per QoS and Fast DDS profile.

A publisher process sends 640×512 mono16 (thermal, 640 KiB) and 640×480 rgb8 (RGB, 900 KiB)
at ``--rate`` Hz for ``--frames`` frames; this process subscribes with the same reliability
and counts what arrives, plus the samples the middleware reports lost (the message-lost
event the node counts as ``lost.<topic>``). Publisher and subscriber are separate processes,
as a camera driver and the node are. With ``--profile`` the best-effort and reliable cases
also run with that Fast DDS XML profile on the publisher, the subscriber or both sides.

    python benchmarks/qos_delivery.py [--frames 100] [--rate 10] [--profile fastdds.xml]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
TOPICS = {"thermal": "/qos_probe/thermal", "rgb": "/qos_probe/rgb"}


def _profile(reliable: bool, depth: int = 5):  # noqa: ANN202 - rclpy QoSProfile
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
    )


def publish(reliable: bool, frames: int, rate: float, tail: int = 0, settle: float = 1.0) -> None:
    """The publisher role (a child process): wait for the subscriber, send, linger.

    ``tail`` more frames follow at 2 Hz: the middleware notices a lost sample only when a later
    one arrives, so a slow tail makes losses at the end of the burst visible too. ``settle``:
    seconds between the first match and the first frame; a best-effort reader that has not yet
    matched this writer drops frames without knowing they existed (no loss event)."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("qos_probe_publisher")
    qos = _profile(reliable)
    publishers = {
        which: node.create_publisher(Image, topic, qos) for which, topic in TOPICS.items()
    }
    from sgdfuse_ros.io.image_codec import encode_array, image_message

    ir = np.random.default_rng(0).integers(0, 65535, (512, 640), np.uint16)
    vis = np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8)
    thermal = image_message(Image, encode_array(ir, "mono16"))
    rgb = image_message(Image, encode_array(vis, "rgb8"))
    deadline = time.monotonic() + 30.0
    while any(p.get_subscription_count() == 0 for p in publishers.values()):
        if time.monotonic() > deadline:
            raise SystemExit("no subscriber matched")
        time.sleep(0.05)
    time.sleep(settle)  # discovery of the reverse direction settles
    start = time.monotonic()
    elapsed = 0.0
    for index in range(frames + tail):
        for msg in (thermal, rgb):
            msg.header.stamp.sec = index
        publishers["thermal"].publish(thermal)
        publishers["rgb"].publish(rgb)
        elapsed += 1.0 / rate if index < frames else 0.5
        time.sleep(max(0.0, start + elapsed - time.monotonic()))
    time.sleep(2.0)  # reliable repairs finish
    node.destroy_node()
    rclpy.shutdown()


def measure(reliable: bool, profile: Path | None, sides: str, frames: int, rate: float) -> dict:
    """Run one case: a publisher and a subscriber process, the profile set per side."""
    domain = random.randint(150, 230)
    base = {key: value for key, value in os.environ.items() if key not in PROFILE_VARIABLES}
    base["ROS_DOMAIN_ID"] = str(domain)
    child_env = dict(base)
    subscriber_env = dict(base)
    if profile is not None and sides in ("publisher", "both"):
        child_env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    if profile is not None and sides in ("subscriber", "both"):
        subscriber_env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    # One process per side: Fast DDS reads the profile file once per process.
    common = ["--frames", str(frames), "--rate", str(rate)] + (["--reliable"] if reliable else [])
    subscriber = subprocess.Popen(
        [sys.executable, __file__, "--role", "sub", "--domain", str(domain), *common],
        stdout=subprocess.PIPE,
        env=subscriber_env,
    )
    publisher = subprocess.Popen(
        [sys.executable, __file__, "--role", "pub", *common], env=child_env
    )
    out, _ = subscriber.communicate(timeout=frames / rate + 90)
    publisher.wait(30)
    result = json.loads(out.decode().strip().splitlines()[-1])
    result.update(
        qos="reliable" if reliable else "best_effort",
        profile="none" if profile is None else sides,
        sent=frames,
    )
    return result


def subscribe(reliable: bool, frames: int, rate: float, domain: int) -> dict:
    """The subscriber role (a child process): count arrivals and message-lost events."""
    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    rclpy.init(domain_id=domain)
    node = rclpy.create_node("qos_probe_subscriber")
    received = dict.fromkeys(TOPICS, 0)
    lost = dict.fromkeys(TOPICS, 0)

    def on_lost(which: str, info) -> None:  # noqa: ANN001 - QoSMessageLostInfo
        lost[which] = int(info.total_count)

    for which, topic in TOPICS.items():
        node.create_subscription(
            Image,
            topic,
            lambda _msg, which=which: received.__setitem__(which, received[which] + 1),
            _profile(reliable),
            event_callbacks=SubscriptionEventCallbacks(
                message_lost=lambda info, which=which: on_lost(which, info)
            ),
        )
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + frames / rate + 45.0
    quiet_since = None
    while time.monotonic() < deadline:
        before = sum(received.values())
        executor.spin_once(timeout_sec=0.1)
        if sum(received.values()) != before:
            quiet_since = time.monotonic()
        if quiet_since is not None and time.monotonic() - quiet_since > 4.0:
            break
        if min(received.values()) >= frames:
            break
    node.destroy_node()
    rclpy.shutdown()
    return {"received": received, "lost_events": lost}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("pub", "sub", "measure"), default="measure")
    parser.add_argument("--domain", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--reliable", action="store_true")
    parser.add_argument("--tail", type=int, default=0, help="frames sent at 2 Hz after the burst")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds from match to first frame"
    )
    parser.add_argument("--profile", type=Path, help="a Fast DDS XML profile to compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.role == "pub":
        publish(args.reliable, args.frames, args.rate, args.tail, args.settle)
        return 0
    if args.role == "sub":
        print(json.dumps(subscribe(args.reliable, args.frames, args.rate, args.domain)))
        return 0
    cases: list[tuple[bool, Path | None, str]] = [(False, None, "none"), (True, None, "none")]
    if args.profile is not None:
        for sides in ("publisher", "subscriber", "both"):
            cases.append((False, args.profile.resolve(), sides))
        cases.append((True, args.profile.resolve(), "both"))
    results = []
    print("| QoS | Fast DDS profile on | thermal 640×512 mono16 | rgb 640×480 rgb8 | lost events |")
    print("|---|---|---|---|---|")
    for reliable, profile, sides in cases:
        result = measure(reliable, profile, sides, args.frames, args.rate)
        results.append(result)
        received, lost = result["received"], result["lost_events"]
        print(
            f"| {result['qos']} | {result['profile']} | {received['thermal']}/{args.frames} | "
            f"{received['rgb']}/{args.frames} | thermal {lost['thermal']}, rgb {lost['rgb']} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
