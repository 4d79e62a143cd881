"""Offline fusion of a recorded rosbag2: every synced pair fused into a new bag.

Frames are paired with the node's approximate-time rule, but *every* pair is fused (no
drop-if-busy: nothing runs in real time here). The fused message carries the RGB header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.imaging import write_rgb
from sgdfuse_ros.io import image_codec
from sgdfuse_ros.io.bag import (
    DEFAULT_FUSED_TOPIC,
    DEFAULT_RGB_TOPIC,
    DEFAULT_THERMAL_TOPIC,
    IMAGE_TYPE,
    PairReadStats,
    find_image_connection,
    iter_bag_pairs,
    open_bag_reader,
    require_new_bag_path,
    staged_bag_writer,
    typestore,
)
from sgdfuse_ros.io.registration import Registration
from sgdfuse_ros.io.sync import stamp_ns


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


def check_bag_fuse_paths(
    input_bag: str | Path,
    output_bag: str | Path,
    topics: tuple[str, ...],
    *,
    png_dir: str | Path | None = None,
    mp4_path: str | Path | None = None,
) -> int:
    """Fail fast, before any model loads: the output must not exist, the input must open and
    carry the image ``topics``, the optional PNG folder must not be a file nor the video a
    folder. Returns how many messages those topics hold (for progress)."""
    require_new_bag_path(output_bag)
    if png_dir is not None and Path(png_dir).is_file():
        raise NotADirectoryError(f"--png-dir {png_dir} is a file, not a folder")
    if mp4_path is not None and Path(mp4_path).is_dir():
        raise IsADirectoryError(
            f"--mp4 {mp4_path} is a folder: give the video's file name, e.g. "
            f"{Path(mp4_path) / 'fused.mp4'}"
        )
    with open_bag_reader(input_bag) as reader:
        connections = [find_image_connection(reader, topic, input_bag) for topic in topics]
        return sum(connection.msgcount for connection in connections)


def fuse_bag(
    input_bag: str | Path,
    output_bag: str | Path,
    pipeline: Any,
    *,
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
    The output is written to a temporary sibling and renamed on success: a failure (a corrupt
    message half-way, a full disk) leaves no partial bag behind.
    """
    from tqdm import tqdm

    registration = registration or Registration()
    store = typestore()
    total = check_bag_fuse_paths(input_bag, output_bag, (thermal_topic, rgb_topic))
    stats = PairReadStats()
    png_path = Path(png_dir) if png_dir else None
    video = None
    fuse_ms: list[float] = []
    bar = tqdm(total=total, unit="msg", desc="fusing bag", disable=not progress)
    try:
        with staged_bag_writer(output_bag, version=version, storage=storage) as writer:
            fused_conn = writer.add_connection(fused_topic, IMAGE_TYPE, typestore=store)
            for pair in iter_bag_pairs(
                input_bag,
                thermal_topic=thermal_topic,
                rgb_topic=rgb_topic,
                slop=slop,
                queue_size=queue_size,
                agc=agc,
                stats=stats,
                progress=bar,
            ):
                try:
                    registered = registration.apply(pair.thermal, pair.rgb.shape)
                    result = pipeline.fuse(registered, pair.rgb)
                except InputError as error:
                    key = f"pair:{error.reason}"
                    stats.bad_input[key] = stats.bad_input.get(key, 0) + 1
                    continue
                fuse_ms.append(float(result.timings_ms.get("total", 0.0)))
                header = pair.rgb_msg.header
                fused_msg = image_codec.image_message(
                    store.types[IMAGE_TYPE],
                    image_codec.encode_rgb(result.fused, output_encoding),
                    header,
                )
                writer.write(fused_conn, pair.log_time, store.serialize_cdr(fused_msg, IMAGE_TYPE))
                stamp = stamp_ns(pair.rgb_msg)
                if png_path is not None:
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
