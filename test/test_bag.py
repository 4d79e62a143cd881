"""Offline bag tools: writing (sqlite3 / mcap, version 8), pairing, fusing into a new bag, CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from sgdfuse_ros.io import bag as bagtools
from sgdfuse_ros.io.image_codec import AgcSettings
from sgdfuse_ros.io.registration import Registration, scaling_homography
from sgdfuse_ros.tools.bag_fuse import fuse_bag

H, W = 64, 80


def frames(
    count: int,
    thermal_shape: tuple[int, int] = (H, W),
    seed: int = 0,
    thermal_dtype: type = np.uint8,
) -> list[bagtools.FramePair]:
    rng = np.random.default_rng(seed)
    top = 255 if thermal_dtype == np.uint8 else 16000
    pairs = [
        (
            rng.integers(0, top, thermal_shape).astype(thermal_dtype),
            rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        )
        for _ in range(count)
    ]
    return bagtools.timed_frames(pairs, fps=10.0)


@pytest.fixture(scope="module")
def pipeline():
    from sgdfuse_ros.pipeline import FusionPipeline

    fusion = FusionPipeline(device="cpu", allow_untrained=True)
    yield fusion
    fusion.close()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_written_bag_reads_back_as_synced_pairs(tmp_path: Path, storage: str) -> None:
    path = tmp_path / "in"
    written = frames(5)
    assert bagtools.write_image_bag(path, written, storage=storage) == 5
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["version"] == 8 and metadata["storage_identifier"] == storage
    topics = {t["topic_metadata"]["name"] for t in metadata["topics_with_message_count"]}
    assert {
        "/thermal/image_raw",
        "/rgb/image_raw",
        "/thermal/camera_info",
        "/rgb/camera_info",
    } <= topics

    stats = bagtools.PairReadStats()
    pairs = list(bagtools.iter_bag_pairs(path, stats=stats))
    assert [p.index for p in pairs] == list(range(5))
    assert stats.pairs == 5 and stats.unmatched == 0
    for pair, frame in zip(pairs, written, strict=True):
        np.testing.assert_array_equal(pair.rgb, frame.rgb)
        np.testing.assert_allclose(pair.thermal, frame.thermal / 255.0, atol=1e-6)
        assert bagtools.stamp_ns(pair.rgb_msg) == frame.stamp


def test_mono16_thermal_goes_through_agc(tmp_path: Path) -> None:
    path = tmp_path / "wide"
    bagtools.write_image_bag(path, frames(2, thermal_dtype=np.uint16), thermal_encoding="mono16")
    pairs = list(bagtools.iter_bag_pairs(path, agc=AgcSettings("minmax")))
    assert len(pairs) == 2
    assert pairs[0].thermal.min() == 0.0 and pairs[0].thermal.max() == 1.0


def test_fuse_bag_writes_fused_topic_png_and_mp4(tmp_path: Path, pipeline) -> None:
    source = tmp_path / "in"
    written = frames(4)
    bagtools.write_image_bag(source, written)
    report = fuse_bag(
        source,
        tmp_path / "out",
        pipeline,
        png_dir=tmp_path / "png",
        mp4_path=tmp_path / "fused.mp4",
        progress=False,
    )
    assert report.pairs_fused == 4 and report.unmatched == 0 and not report.bad_input
    fused = bagtools.read_topic_images(tmp_path / "out", "/fused/image")
    assert [stamp for stamp, _ in fused] == [frame.stamp for frame in written]
    assert all(image.shape == (H, W, 3) and image.dtype == np.uint8 for _, image in fused)
    assert len(list((tmp_path / "png").glob("fused_*.png"))) == 4
    video = cv2.VideoCapture(str(tmp_path / "fused.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    metadata = yaml.safe_load((tmp_path / "out" / "metadata.yaml").read_text())
    assert metadata["rosbag2_bagfile_information"]["version"] == 8


def test_fuse_bag_registers_a_smaller_thermal_camera(tmp_path: Path, pipeline) -> None:
    source = tmp_path / "in"
    bagtools.write_image_bag(source, frames(2, thermal_shape=(32, 40)))
    registration = Registration.from_parameters("homography", scaling_homography((40, 32), (W, H)))
    report = fuse_bag(
        source,
        tmp_path / "out",
        pipeline,
        registration=registration,
        storage="mcap",
        progress=False,
    )
    assert report.pairs_fused == 2
    without = fuse_bag(source, tmp_path / "out2", pipeline, progress=False)
    assert without.pairs_fused == 0 and without.bad_input == {"pair:size_mismatch": 2}


def test_bad_frames_in_a_bag_are_skipped_and_counted(tmp_path: Path, pipeline) -> None:
    from rosbags.rosbag2 import Writer

    store = bagtools.typestore()
    path = tmp_path / "bad"
    good = frames(2)
    with Writer(path, version=8) as writer:
        thermal = writer.add_connection("/thermal/image_raw", bagtools.IMAGE_TYPE, typestore=store)
        rgb = writer.add_connection("/rgb/image_raw", bagtools.IMAGE_TYPE, typestore=store)
        for index, frame in enumerate(good):
            thermal_fields = bagtools.image_codec.encode_array(frame.thermal, "mono8")
            if index == 0:  # first thermal frame claims an encoding nobody can decode
                thermal_fields = bagtools.image_codec.ImageFields(
                    H, W, "yuv422", 0, W, thermal_fields.data
                )
            for connection, fields, stamp in (
                (rgb, bagtools.image_codec.encode_array(frame.rgb, "rgb8"), frame.stamp),
                (thermal, thermal_fields, frame.thermal_stamp),
            ):
                message = bagtools.make_image(store, fields, stamp, "cam")
                writer.write(connection, stamp, store.serialize_cdr(message, bagtools.IMAGE_TYPE))
    report = fuse_bag(path, tmp_path / "out", pipeline, progress=False)
    assert report.pairs_fused == 1
    assert report.bad_input == {"thermal:unknown_encoding": 1}


def test_missing_topic_is_a_clear_error(tmp_path: Path) -> None:
    bagtools.write_image_bag(tmp_path / "in", frames(1))
    with pytest.raises(ValueError, match="/ir/image"):
        list(bagtools.iter_bag_pairs(tmp_path / "in", thermal_topic="/ir/image"))


def test_cli_synth_then_fuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sgdfuse_ros.cli.main import main

    assert (
        main(
            [
                "bag",
                "synth",
                str(tmp_path / "synth"),
                "--frames",
                "3",
                "--height",
                str(H),
                "--width",
                str(W),
                "--thermal-encoding",
                "mono16",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "bag",
                "fuse",
                str(tmp_path / "synth"),
                str(tmp_path / "fused"),
                "--allow-untrained",
                "--no-progress",
                "--agc",
                "minmax",
                "--png-dir",
                str(tmp_path / "png"),
            ]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert "fused 3 pairs" in output
    fused = bagtools.read_topic_images(tmp_path / "fused", "/fused/image")
    assert len(fused) == 3 and len(list((tmp_path / "png").glob("*.png"))) == 3
