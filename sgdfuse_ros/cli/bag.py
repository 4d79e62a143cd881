"""``sgdfuse bag fuse | replay | synth``: rosbag2 tools that need no ros2 CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sgdfuse_ros.cli.common import (
    add_pipeline_arguments,
    batch_pipeline,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    ros_topic_name,
)
from sgdfuse_ros.io import image_codec
from sgdfuse_ros.io.bag import (
    DEFAULT_FUSED_TOPIC,
    DEFAULT_RGB_TOPIC,
    DEFAULT_THERMAL_TOPIC,
    bag_frame_rate,
    write_synthetic_bag,
)
from sgdfuse_ros.io.registration import Registration
from sgdfuse_ros.io.topic_names import check_topic_name


def add_parser(subparsers: Any) -> None:
    """Register ``sgdfuse bag {fuse,replay,synth}`` on the main CLI's subparsers."""
    bag = subparsers.add_parser(
        "bag",
        help="fuse, replay or create rosbag2 recordings",
        description="rosbag2 tools that need no ros2 CLI (sqlite3, mcap)",
    )
    actions = bag.add_subparsers(dest="bag_command", required=True)

    fuse = actions.add_parser("fuse", help="fuse the synced pairs of a bag into a new bag")
    fuse.add_argument("input", type=Path, help="input bag folder (sqlite3 or mcap)")
    fuse.add_argument("output", type=Path, help="output bag folder (must not exist)")
    fuse.add_argument("--thermal-topic", default=DEFAULT_THERMAL_TOPIC)
    fuse.add_argument("--rgb-topic", default=DEFAULT_RGB_TOPIC)
    fuse.add_argument("--fused-topic", type=ros_topic_name, default=DEFAULT_FUSED_TOPIC)
    add_pipeline_arguments(fuse, defaults={"engine_build": "blocking"})
    fuse.add_argument("--slop", type=float, default=0.05, help="sync slop in seconds")
    fuse.add_argument("--queue-size", type=positive_int, default=10)
    fuse.add_argument("--agc", default="percentile", choices=("percentile", "minmax", "fixed"))
    fuse.add_argument(
        "--agc-percentiles", type=float, nargs=2, default=(1.0, 99.0), metavar=("LOW", "HIGH")
    )
    fuse.add_argument(
        "--agc-range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="raw thermal range for --agc fixed",
    )
    fuse.add_argument(
        "--homography",
        type=float,
        nargs=9,
        default=None,
        metavar="H",
        help="3×3 thermal->RGB matrix, row-major (enables registration)",
    )
    fuse.add_argument("--encoding", default="rgb8", choices=image_codec.SUPPORTED_OUTPUT_ENCODINGS)
    fuse.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    fuse.add_argument("--bag-version", type=int, default=8, choices=(8, 9))
    fuse.add_argument("--png-dir", type=Path, default=None, help="also write PNG frames here")
    fuse.add_argument("--mp4", type=Path, default=None, help="also write an MP4 video")
    fuse.add_argument("--no-progress", action="store_true")
    fuse.set_defaults(func=_run_fuse)

    replay = actions.add_parser("replay", help="publish a bag over DDS with /clock")
    replay.add_argument("bag", type=Path)
    replay.add_argument("--rate", type=float, default=1.0)
    replay.add_argument(
        "--loop", type=non_negative_int, default=1, help="times to play; 0 = forever"
    )
    replay.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    replay.add_argument("--topics", nargs="*", default=None, help="only these topics")
    replay.add_argument("--remap", nargs="*", default=(), metavar="FROM:=TO")
    replay.add_argument("--qos", default="reliable", choices=("reliable", "sensor_data"))
    replay.add_argument(
        "--wait-for-subscribers",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for a subscriber on every image topic",
    )
    replay.set_defaults(func=_run_replay)

    synth = actions.add_parser("synth", help="write a bag from the synthetic thermal+RGB scene")
    synth.add_argument("output", type=Path)
    synth.add_argument("--frames", type=positive_int, default=30)
    synth.add_argument("--height", type=positive_int, default=480)
    synth.add_argument("--width", type=positive_int, default=640)
    synth.add_argument("--fps", type=positive_float, default=10.0)
    synth.add_argument("--seed", type=non_negative_int, default=0)
    synth.add_argument("--thermal-encoding", default="mono8", choices=("mono8", "mono16"))
    synth.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    synth.add_argument("--bag-version", type=int, default=8, choices=(8, 9))
    synth.set_defaults(func=_run_synth)


def _run_fuse(args: argparse.Namespace) -> int:
    from sgdfuse_ros.tools.bag_fuse import check_bag_fuse_paths, fuse_bag

    check_bag_fuse_paths(
        args.input,
        args.output,
        (args.thermal_topic, args.rgb_topic),
        png_dir=args.png_dir,
        mp4_path=args.mp4,
    )
    agc = image_codec.AgcSettings(
        args.agc, tuple(args.agc_percentiles), tuple(args.agc_range) if args.agc_range else None
    )
    registration = (
        Registration.from_parameters("homography", args.homography)
        if args.homography
        else Registration()
    )
    mp4_fps = bag_frame_rate(args.input, args.rgb_topic) if args.mp4 else None
    pipeline = batch_pipeline(args)
    try:
        report = fuse_bag(
            args.input,
            args.output,
            pipeline,
            thermal_topic=args.thermal_topic,
            rgb_topic=args.rgb_topic,
            fused_topic=args.fused_topic,
            slop=args.slop,
            queue_size=args.queue_size,
            agc=agc,
            registration=registration,
            output_encoding=args.encoding,
            storage=args.storage,
            version=args.bag_version,
            png_dir=args.png_dir,
            mp4_path=args.mp4,
            mp4_fps=mp4_fps,
            progress=not args.no_progress,
        )
    finally:
        pipeline.close()
    print(
        f"fused {report.pairs_fused} pairs ({report.thermal_messages} thermal, "
        f"{report.rgb_messages} RGB messages, {report.unmatched} unmatched) -> "
        f"{report.output_bag} [{args.fused_topic}], mean fuse {report.mean_fuse_ms:.1f} ms"
    )
    if report.bad_input:
        print("skipped bad input: " + ", ".join(f"{k}={v}" for k, v in report.bad_input.items()))
    if report.png_dir:
        print(f"PNG frames: {report.png_dir}")
    if report.mp4_path:
        print(f"video: {report.mp4_path}")
    if not report.pairs_fused:
        print(
            f"sgdfuse bag fuse: error: no thermal/RGB pair fused: none of the messages' header "
            f"stamps lie within --slop {args.slop} s of the other topic's, or every pair was bad "
            "input (above); the output bag holds no fused frame",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    from sgdfuse_ros.ros.replay import replay_bag_cli

    remaps = {}
    for item in args.remap:
        source, sep, target = item.partition(":=")
        if not sep:
            raise ValueError(f"--remap needs FROM:=TO, got {item!r}")
        remaps[source] = check_topic_name(target)
    return replay_bag_cli(
        args.bag,
        rate=args.rate,
        loops=args.loop,
        publish_clock=not args.no_clock,
        topics=args.topics,
        remaps=remaps,
        qos=args.qos,
        wait_for_subscribers_s=args.wait_for_subscribers,
    )


def _run_synth(args: argparse.Namespace) -> int:
    path = write_synthetic_bag(
        args.output,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        fps=args.fps,
        seed=args.seed,
        thermal_encoding=args.thermal_encoding,
        storage=args.storage,
        version=args.bag_version,
    )
    print(f"wrote {args.frames} synthetic thermal+RGB frame pairs to {path}")
    return 0
