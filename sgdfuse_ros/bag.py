"""rosbag2 tools without the ros2 CLI: fuse a recorded bag offline, write test/demo bags, replay.

Reading and writing go through ``rosbags`` (pure Python, sqlite3 and mcap), so they work on a
machine without ROS. The offline fusion pairs frames with the same approximate-time rule as
the node but fuses *every* pair (no drop-if-busy: nothing runs in real time here). Replay over
DDS needs rclpy and lives in ``sgdfuse_ros.ros.replay``; ``sgdfuse bag replay`` calls it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.ros import image_codec
from sgdfuse_ros.ros.registration import Registration
from sgdfuse_ros.ros.sync import ApproximateTimePairSync, stamp_ns

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
DEFAULT_THERMAL_TOPIC = "/thermal/image_raw"
DEFAULT_RGB_TOPIC = "/rgb/image_raw"
DEFAULT_FUSED_TOPIC = "/fused/image"


def typestore() -> Any:
    """The message definitions bags are written with (Jazzy; Image/CameraInfo match Humble)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _storage_plugin(storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin

    choices = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in choices:
        raise ValueError(f"unknown bag storage {storage!r}; use sqlite3 or mcap")
    return choices[storage]


def make_header(store: Any, stamp: int, frame_id: str) -> Any:
    types = store.types
    time = types["builtin_interfaces/msg/Time"](
        sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000
    )
    return types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def make_image(store: Any, fields: image_codec.ImageFields, stamp: int, frame_id: str) -> Any:
    """A rosbags sensor_msgs/Image from encoded fields."""
    return store.types[IMAGE_TYPE](
        header=make_header(store, stamp, frame_id),
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=fields.is_bigendian,
        step=fields.step,
        data=np.frombuffer(fields.data, np.uint8),
    )


def make_camera_info(store: Any, width: int, height: int, stamp: int, frame_id: str) -> Any:
    """A pinhole CameraInfo with a plausible focal length (demo bags carry one per frame)."""
    focal = float(max(width, height))
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    types = store.types
    return types[CAMERA_INFO_TYPE](
        header=make_header(store, stamp, frame_id),
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5, np.float64),
        k=np.array([focal, 0, cx, 0, focal, cy, 0, 0, 1], np.float64),
        r=np.eye(3).reshape(-1),
        p=np.array([focal, 0, cx, 0, 0, focal, cy, 0, 0, 0, 1, 0], np.float64),
        binning_x=0,
        binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


@dataclass(frozen=True)
class FramePair:
    """One thermal + RGB frame for writing a bag (stamps in ns)."""

    thermal: np.ndarray
    rgb: np.ndarray  # H×W×3 uint8 RGB
    stamp: int
    thermal_stamp: int | None = None  # defaults to ``stamp``


def write_image_bag(
    path: str | Path,
    frames: Iterable[FramePair],
    thermal_topic: str = DEFAULT_THERMAL_TOPIC,
    rgb_topic: str = DEFAULT_RGB_TOPIC,
    thermal_encoding: str = "mono8",
    rgb_encoding: str = "rgb8",
    camera_info: bool = True,
    storage: str = "sqlite3",
    version: int = 8,
) -> int:
    """Write thermal and RGB image topics (plus camera info) into a new bag; returns frames written.

    Messages are logged at their header stamps, as a recorder on the robot would roughly do.
    """
    from rosbags.rosbag2 import Writer

    store = typestore()
    count = 0
    with Writer(Path(path), version=version, storage_plugin=_storage_plugin(storage)) as writer:
        thermal_conn = writer.add_connection(thermal_topic, IMAGE_TYPE, typestore=store)
        rgb_conn = writer.add_connection(rgb_topic, IMAGE_TYPE, typestore=store)
        info_conns = {}
        if camera_info:
            for topic in (thermal_topic, rgb_topic):
                info_topic = topic.rsplit("/", 1)[0] + "/camera_info"
                info_conns[topic] = writer.add_connection(
                    info_topic, CAMERA_INFO_TYPE, typestore=store
                )
        for frame in frames:
            thermal_stamp = frame.stamp if frame.thermal_stamp is None else frame.thermal_stamp
            entries = (
                (
                    thermal_topic,
                    thermal_conn,
                    frame.thermal,
                    thermal_encoding,
                    thermal_stamp,
                    "thermal_optical_frame",
                ),
                (rgb_topic, rgb_conn, frame.rgb, rgb_encoding, frame.stamp, "rgb_optical_frame"),
            )
            for topic, connection, array, encoding, stamp, frame_id in sorted(
                entries, key=lambda entry: entry[4]
            ):
                if camera_info:
                    info = make_camera_info(store, array.shape[1], array.shape[0], stamp, frame_id)
                    writer.write(
                        info_conns[topic], stamp, store.serialize_cdr(info, CAMERA_INFO_TYPE)
                    )
                fields = _encode_for_bag(array, encoding)
                writer.write(
                    connection,
                    stamp,
                    store.serialize_cdr(make_image(store, fields, stamp, frame_id), IMAGE_TYPE),
                )
            count += 1
    return count


def _encode_for_bag(array: np.ndarray, encoding: str) -> image_codec.ImageFields:
    if encoding == "bgr8" and array.ndim == 3:
        return image_codec.encode_array(np.ascontiguousarray(array[..., ::-1]), "bgr8")
    if encoding == "mono16" and array.dtype == np.uint8:
        # spread 8-bit synthetic thermal over a 14-bit radiometric-like range
        return image_codec.encode_array(array.astype(np.uint16) * 64 + 1000, "mono16")
    return image_codec.encode_array(array, encoding)


def timed_frames(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    fps: float = 10.0,
    start_ns: int = 1_700_000_000_000_000_000,
    thermal_offset_ns: int = 2_000_000,
) -> list[FramePair]:
    """(IR, VIS) pairs as frames ``1/fps`` apart.

    The thermal stamp trails the RGB stamp by ``thermal_offset_ns`` (2 ms), as two free-running
    cameras would, so approximate sync is exercised rather than exact matching.
    """
    period = int(round(1e9 / fps))
    return [
        FramePair(
            thermal=ir,
            rgb=vis,
            stamp=start_ns + index * period,
            thermal_stamp=start_ns + index * period + thermal_offset_ns,
        )
        for index, (ir, vis) in enumerate(pairs)
    ]


def synthetic_frames(
    num_frames: int, height: int, width: int, fps: float = 10.0, seed: int = 0
) -> list[FramePair]:
    """The package's synthetic thermal + RGB scene as timed frames (see ``timed_frames``)."""
    from sgdfuse_ros.synthetic import render_sequence

    return timed_frames(render_sequence(num_frames, height=height, width=width, seed=seed), fps)


def write_synthetic_bag(
    path: str | Path,
    num_frames: int = 30,
    height: int = 480,
    width: int = 640,
    fps: float = 10.0,
    seed: int = 0,
    thermal_encoding: str = "mono8",
    storage: str = "sqlite3",
    version: int = 8,
    thermal_topic: str = DEFAULT_THERMAL_TOPIC,
    rgb_topic: str = DEFAULT_RGB_TOPIC,
) -> Path:
    """A demo / test bag from the synthetic sequence; returns its path."""
    frames = synthetic_frames(num_frames, height, width, fps, seed)
    write_image_bag(
        path,
        frames,
        thermal_topic,
        rgb_topic,
        thermal_encoding=thermal_encoding,
        storage=storage,
        version=version,
    )
    return Path(path)


# --------------------------------------------------------------------------- reading / fusing
@dataclass
class BagPair:
    """A synced pair read from a bag, decoded and ready to fuse."""

    index: int
    thermal: np.ndarray  # float32 [0, 1], in its own geometry
    rgb: np.ndarray  # H×W×3 uint8 RGB
    rgb_msg: Any
    log_time: int  # bag timestamp of the later message of the pair


def _decode_bag_image(
    msg: Any, msgtype: str, which: str, agc: image_codec.AgcSettings
) -> np.ndarray:
    if which == "thermal":
        decoded = (
            image_codec.decode_thermal_compressed(msg, agc)
            if msgtype == COMPRESSED_TYPE
            else image_codec.decode_thermal(msg, agc)
        )
        return decoded.unit
    return (
        image_codec.decode_rgb_compressed(msg)
        if msgtype == COMPRESSED_TYPE
        else image_codec.decode_rgb(msg)
    )


def _find_connection(reader: Any, topic: str) -> Any:
    matches = [c for c in reader.connections if c.topic == topic]
    if not matches:
        available = ", ".join(sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections))
        raise ValueError(f"topic {topic} is not in the bag; it has: {available}")
    connection = matches[0]
    if connection.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
        raise ValueError(f"topic {topic} carries {connection.msgtype}, not an image type")
    return connection


@dataclass
class PairReadStats:
    thermal_messages: int = 0
    rgb_messages: int = 0
    pairs: int = 0
    unmatched: int = 0
    bad_input: dict[str, int] = field(default_factory=dict)


def iter_bag_pairs(
    bag: str | Path,
    thermal_topic: str = DEFAULT_THERMAL_TOPIC,
    rgb_topic: str = DEFAULT_RGB_TOPIC,
    slop: float = 0.05,
    queue_size: int = 10,
    agc: image_codec.AgcSettings | None = None,
    stats: PairReadStats | None = None,
    progress: Any = None,
) -> Iterator[BagPair]:
    """Yield every approximately synced, decodable thermal + RGB pair of a bag in log order.

    Undecodable frames are skipped and counted in ``stats.bad_input`` (key ``topic:reason``).
    """
    from rosbags.rosbag2 import Reader

    agc = agc or image_codec.AgcSettings()
    stats = stats if stats is not None else PairReadStats()
    store = typestore()
    ready: list[tuple[Any, Any]] = []
    sync = ApproximateTimePairSync(queue_size, slop, lambda t, r: ready.append((t, r)))
    index = 0
    with Reader(Path(bag)) as reader:
        thermal_conn = _find_connection(reader, thermal_topic)
        rgb_conn = _find_connection(reader, rgb_topic)
        for connection, log_time, raw in reader.messages(connections=[thermal_conn, rgb_conn]):
            if progress is not None:
                progress.update(1)
            msg = store.deserialize_cdr(raw, connection.msgtype)
            which = "thermal" if connection.id == thermal_conn.id else "rgb"
            if which == "thermal":
                stats.thermal_messages += 1
                sync.add_thermal(_Tagged(msg, log_time, connection.msgtype))
            else:
                stats.rgb_messages += 1
                sync.add_rgb(_Tagged(msg, log_time, connection.msgtype))
            while ready:
                thermal_item, rgb_item = ready.pop(0)
                decoded = {}
                for which, item in (("thermal", thermal_item), ("rgb", rgb_item)):
                    try:
                        decoded[which] = _decode_bag_image(item.msg, item.msgtype, which, agc)
                    except image_codec.ImageDecodeError as error:
                        key = f"{which}:{error.reason}"
                        stats.bad_input[key] = stats.bad_input.get(key, 0) + 1
                        break
                if len(decoded) < 2:
                    continue
                stats.pairs += 1
                yield BagPair(
                    index,
                    decoded["thermal"],
                    decoded["rgb"],
                    rgb_item.msg,
                    max(thermal_item.log_time, rgb_item.log_time),
                )
                index += 1
    stats.unmatched = sync.unmatched()


@dataclass
class _Tagged:
    """A deserialized bag message with what the synchronizer and decoder need."""

    msg: Any
    log_time: int
    msgtype: str

    @property
    def header(self) -> Any:
        return self.msg.header


@dataclass
class BagFuseReport:
    output_bag: Path
    pairs_fused: int
    thermal_messages: int
    rgb_messages: int
    unmatched: int
    bad_input: dict[str, int]
    mean_fuse_ms: float
    png_dir: Path | None = None
    mp4_path: Path | None = None


def fuse_bag(
    input_bag: str | Path,
    output_bag: str | Path,
    pipeline: Any,
    thermal_topic: str = DEFAULT_THERMAL_TOPIC,
    rgb_topic: str = DEFAULT_RGB_TOPIC,
    fused_topic: str = DEFAULT_FUSED_TOPIC,
    slop: float = 0.05,
    queue_size: int = 10,
    agc: image_codec.AgcSettings | None = None,
    registration: Registration | None = None,
    output_encoding: str = "rgb8",
    storage: str = "sqlite3",
    version: int = 8,
    png_dir: str | Path | None = None,
    mp4_path: str | Path | None = None,
    mp4_fps: float | None = None,
    progress: bool = True,
) -> BagFuseReport:
    """Fuse every synced pair of ``input_bag`` into ``output_bag`` (topic ``fused_topic``).

    The fused message carries the RGB header (stamp and frame) and is logged at the later of
    the two source log times. ``pipeline`` is a FusionPipeline (anything with ``fuse``).
    """
    from rosbags.rosbag2 import Reader, Writer
    from tqdm import tqdm

    registration = registration or Registration()
    store = typestore()
    with Reader(Path(input_bag)) as reader:
        total = sum(c.msgcount for c in reader.connections if c.topic in (thermal_topic, rgb_topic))
    stats = PairReadStats()
    png_path = Path(png_dir) if png_dir else None
    video = None
    fuse_ms: list[float] = []
    bar = tqdm(total=total, unit="msg", desc="fusing bag", disable=not progress)
    try:
        with Writer(
            Path(output_bag), version=version, storage_plugin=_storage_plugin(storage)
        ) as writer:
            fused_conn = writer.add_connection(fused_topic, IMAGE_TYPE, typestore=store)
            for pair in iter_bag_pairs(
                input_bag, thermal_topic, rgb_topic, slop, queue_size, agc, stats, bar
            ):
                try:
                    registered = registration.apply(pair.thermal, pair.rgb.shape)
                    result = pipeline.fuse(registered, pair.rgb)
                except InputError as error:
                    key = f"pair:{getattr(error, 'reason', 'invalid')}"
                    stats.bad_input[key] = stats.bad_input.get(key, 0) + 1
                    continue
                fuse_ms.append(float(result.timings_ms.get("total", 0.0)))
                header = pair.rgb_msg.header
                fields = image_codec.encode_rgb(result.fused, output_encoding)
                fused_msg = store.types[IMAGE_TYPE](
                    header=header,
                    height=fields.height,
                    width=fields.width,
                    encoding=fields.encoding,
                    is_bigendian=fields.is_bigendian,
                    step=fields.step,
                    data=np.frombuffer(fields.data, np.uint8),
                )
                writer.write(fused_conn, pair.log_time, store.serialize_cdr(fused_msg, IMAGE_TYPE))
                stamp = stamp_ns(pair.rgb_msg)
                if png_path is not None:
                    from sgdfuse_ros.imaging import write_rgb

                    write_rgb(png_path / f"fused_{pair.index:06d}_{stamp}.png", result.fused)
                if mp4_path is not None:
                    video = _append_video(video, Path(mp4_path), result.fused, mp4_fps)
    finally:
        bar.close()
        if video is not None:
            video.release()
    return BagFuseReport(
        output_bag=Path(output_bag),
        pairs_fused=len(fuse_ms),
        thermal_messages=stats.thermal_messages,
        rgb_messages=stats.rgb_messages,
        unmatched=stats.unmatched,
        bad_input=stats.bad_input,
        mean_fuse_ms=float(np.mean(fuse_ms)) if fuse_ms else 0.0,
        png_dir=png_path,
        mp4_path=Path(mp4_path) if mp4_path else None,
    )


def _append_video(video: Any, path: Path, rgb: np.ndarray, fps: float | None) -> Any:
    """Append a frame, opening the MP4 writer on the first one (its size fixes the video's)."""
    import cv2

    if video is None:
        fps = fps or 10.0
        path.parent.mkdir(parents=True, exist_ok=True)
        video = cv2.VideoWriter(
            str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (rgb.shape[1], rgb.shape[0])
        )
        if not video.isOpened():
            raise OSError(f"OpenCV cannot write MP4 to {path}")
    video.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return video


def bag_frame_rate(bag: str | Path, topic: str) -> float | None:
    """Median message rate of a topic in a bag (for MP4 frame rate), None if under 2 messages."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(bag)) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        times = [log_time for _, log_time, _ in reader.messages(connections=connections)]
    if len(times) < 2:
        return None
    period = float(np.median(np.diff(times)))
    return 1e9 / period if period > 0 else None


def read_topic_images(bag: str | Path, topic: str) -> list[tuple[int, np.ndarray]]:
    """All images of one topic as (header stamp ns, RGB/grey uint8 array) — for checks and tests."""
    from rosbags.rosbag2 import Reader

    store = typestore()
    images = []
    with Reader(Path(bag)) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        for connection, _, raw in reader.messages(connections=connections):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            images.append((stamp_ns(msg), image_codec.image_to_array(msg)))
    return images


# ------------------------------------------------------------------------------------- CLI
def add_bag_command(subparsers: Any) -> None:
    """Register ``sgdfuse bag {fuse,replay,synth}`` on the main CLI's subparsers."""
    from sgdfuse_ros.cli import add_pipeline_arguments

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
    fuse.add_argument("--fused-topic", default=DEFAULT_FUSED_TOPIC)
    add_pipeline_arguments(fuse)
    fuse.add_argument("--slop", type=float, default=0.05, help="sync slop in seconds")
    fuse.add_argument("--queue-size", type=int, default=10)
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
    replay.add_argument("--loop", type=int, default=1, help="times to play; 0 = forever")
    replay.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    replay.add_argument("--topics", nargs="*", default=None, help="only these topics")
    replay.add_argument("--remap", nargs="*", default=(), metavar="FROM:=TO")
    replay.add_argument("--qos", default="reliable", choices=("reliable", "sensor_data"))
    replay.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for a subscriber on every image topic",
    )
    replay.set_defaults(func=_run_replay)

    synth = actions.add_parser("synth", help="write a bag from the synthetic thermal+RGB scene")
    synth.add_argument("output", type=Path)
    synth.add_argument("--frames", type=int, default=30)
    synth.add_argument("--height", type=int, default=480)
    synth.add_argument("--width", type=int, default=640)
    synth.add_argument("--fps", type=float, default=10.0)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--thermal-encoding", default="mono8", choices=("mono8", "mono16"))
    synth.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    synth.add_argument("--bag-version", type=int, default=8, choices=(8, 9))
    synth.set_defaults(func=_run_synth)


def _run_fuse(args: argparse.Namespace) -> int:
    from sgdfuse_ros.cli import pipeline_from_args

    agc = image_codec.AgcSettings(
        args.agc, tuple(args.agc_percentiles), tuple(args.agc_range) if args.agc_range else None
    )
    registration = (
        Registration.from_parameters("homography", args.homography)
        if args.homography
        else Registration()
    )
    pipeline = pipeline_from_args(args)
    try:
        mp4_fps = bag_frame_rate(args.input, args.rgb_topic) if args.mp4 else None
        report = fuse_bag(
            args.input,
            args.output,
            pipeline,
            args.thermal_topic,
            args.rgb_topic,
            args.fused_topic,
            args.slop,
            args.queue_size,
            agc,
            registration,
            args.encoding,
            args.storage,
            args.bag_version,
            args.png_dir,
            args.mp4,
            mp4_fps,
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
    return 0 if report.pairs_fused else 1


def _run_replay(args: argparse.Namespace) -> int:
    from sgdfuse_ros.ros.replay import replay_bag_cli

    remaps = {}
    for item in args.remap:
        source, sep, target = item.partition(":=")
        if not sep:
            raise SystemExit(f"--remap needs FROM:=TO, got {item!r}")
        remaps[source] = target
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
        args.frames,
        args.height,
        args.width,
        args.fps,
        args.seed,
        args.thermal_encoding,
        args.storage,
        args.bag_version,
    )
    print(f"wrote {args.frames} synthetic thermal+RGB frame pairs to {path}")
    return 0
