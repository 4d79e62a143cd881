"""rosbag2 files without the ros2 CLI: write image bags (tests, demo), read synced pairs.

Reading and writing go through ``rosbags`` (pure Python, sqlite3 and mcap), so they work on a
machine without ROS. Pairs are read with the node's approximate-time rule. Offline fusing of a
bag is ``sgdfuse_ros.tools.bag_fuse``; replay over DDS needs rclpy and is
``sgdfuse_ros.ros.replay``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgdfuse_ros.errors import BagError, InputError, first_line
from sgdfuse_ros.io import image_codec
from sgdfuse_ros.io.sync import ApproximateTimePairSync, stamp_ns

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


def storage_plugin(storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin

    choices = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
    if storage not in choices:
        raise ValueError(f"unknown bag storage {storage!r}; use sqlite3 or mcap")
    return choices[storage]


@contextmanager
def open_bag_reader(path: str | Path) -> Iterator[Any]:
    """A rosbags Reader whose failures, opening or reading, are one-line :class:`BagError`.

    A truncated or garbled recording surfaces as rosbags' ReaderError, sqlite3's "database
    disk image is malformed", or decoding errors from the mcap records and CDR payloads
    (UnicodeDecodeError, struct.error, IndexError …) deep in rosbags: all mean the same to an
    operator. Bad images inside a sound bag stay :class:`InputError` (skipped and counted).
    """
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    path = Path(path)
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 folder: it has no metadata.yaml")
    try:
        with Reader(path) as reader:
            yield reader
    except (InputError, BagError):
        raise
    except (
        ReaderError,
        sqlite3.Error,
        struct.error,
        EOFError,
        IndexError,
        KeyError,
        ValueError,
    ) as error:
        raise BagError(f"cannot read bag {path}: {first_line(error)}") from error


def require_new_bag_path(path: str | Path) -> Path:
    """``path`` for a bag about to be written; BagError if something is there already."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise BagError(f"output bag {path} exists already; remove it or choose another path")
    return path


@contextmanager
def staged_bag_writer(
    path: str | Path, *, version: int = 8, storage: str = "sqlite3"
) -> Iterator[Any]:
    """A rosbags Writer for ``path`` that writes into a temporary sibling folder and renames it
    to ``path`` only when the block succeeds: a failure (or Ctrl-C) leaves nothing behind, so
    a rerun to the same path works. The bag inside carries ``path``'s name, as rosbags names
    its storage file after the folder."""
    from rosbags.rosbag2 import Writer

    path = require_new_bag_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        with Writer(
            staging / path.name, version=version, storage_plugin=storage_plugin(storage)
        ) as writer:
            yield writer
        os.rename(staging / path.name, require_new_bag_path(path))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_header(store: Any, stamp: int, frame_id: str) -> Any:
    types = store.types
    time = types["builtin_interfaces/msg/Time"](
        sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000
    )
    return types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def make_image(store: Any, fields: image_codec.ImageFields, stamp: int, frame_id: str) -> Any:
    """A rosbags sensor_msgs/Image from encoded fields."""
    return image_codec.image_message(
        store.types[IMAGE_TYPE], fields, make_header(store, stamp, frame_id)
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
    *,
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
    store = typestore()
    count = 0
    with staged_bag_writer(path, version=version, storage=storage) as writer:
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
    if not fps > 0:
        raise ValueError(f"frame rate must be above 0, got fps={fps}")
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
    *,
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
        thermal_topic=thermal_topic,
        rgb_topic=rgb_topic,
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


def find_image_connection(reader: Any, topic: str, bag: str | Path) -> Any:
    """The connection of an image ``topic``; BagError naming the bag's topics if absent."""
    matches = [c for c in reader.connections if c.topic == topic]
    if not matches:
        available = ", ".join(sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections))
        raise BagError(f"topic {topic} is not in the bag {bag}; it has: {available}")
    connection = matches[0]
    if connection.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
        raise BagError(f"topic {topic} in {bag} carries {connection.msgtype}, not an image type")
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
    *,
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
    agc = agc or image_codec.AgcSettings()
    stats = stats if stats is not None else PairReadStats()
    store = typestore()
    ready: list[tuple[Any, Any]] = []
    sync = ApproximateTimePairSync(queue_size, slop, lambda t, r: ready.append((t, r)))
    index = 0
    with open_bag_reader(bag) as reader:
        thermal_conn = find_image_connection(reader, thermal_topic, bag)
        rgb_conn = find_image_connection(reader, rgb_topic, bag)
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
    stats.unmatched = sync.unmatched() + sync.queued()  # the bag ended: queued never pair


@dataclass
class _Tagged:
    """A deserialized bag message with what the synchronizer and decoder need."""

    msg: Any
    log_time: int
    msgtype: str

    @property
    def header(self) -> Any:
        return self.msg.header


def bag_frame_rate(bag: str | Path, topic: str) -> float | None:
    """Median message rate of a topic in a bag (for MP4 frame rate), None if under 2 messages."""
    with open_bag_reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        times = [log_time for _, log_time, _ in reader.messages(connections=connections)]
    if len(times) < 2:
        return None
    period = float(np.median(np.diff(times)))
    return 1e9 / period if period > 0 else None


def read_topic_images(bag: str | Path, topic: str) -> list[tuple[int, np.ndarray]]:
    """All images of one topic as (header stamp ns, RGB/grey uint8 array) — for checks and tests."""
    store = typestore()
    images = []
    with open_bag_reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        for connection, _, raw in reader.messages(connections=connections):
            msg = store.deserialize_cdr(raw, connection.msgtype)
            images.append((stamp_ns(msg), image_codec.image_to_array(msg)))
    return images
