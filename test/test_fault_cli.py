"""The command line against an operator's mistakes: every bad path, file or bag gives one
``sgdfuse <command>: error: …`` line and a non-zero exit code, never a traceback; a failed
``bag fuse`` leaves nothing behind, so the corrected rerun works.

Bags are written with rosbags (sqlite3 and mcap) and then broken the way disks and users break
them: truncated, garbled, metadata.yaml mangled, the .db3 deleted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgdfuse_ros.cli.main import main
from sgdfuse_ros.io.bag import DEFAULT_FUSED_TOPIC, read_topic_images, write_synthetic_bag

FRAMES, H, W = 3, 48, 64
STORAGE_FILE = {"sqlite3": "sqlite3.db3", "mcap": "mcap.mcap"}


def sgdfuse(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, list[str]]:
    """Run ``sgdfuse *argv`` in this process: (exit code, its ``sgdfuse …: error:`` lines).

    An exception escaping ``main`` is what an operator sees as a traceback: it fails the test.
    """
    capsys.readouterr()
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit_:  # argparse refusing an argument
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return int(code or 0), [line for line in err.splitlines() if ": error: " in line]


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good sqlite3 and mcap bag of the synthetic scene."""
    root = tmp_path_factory.mktemp("bags")
    return {
        storage: write_synthetic_bag(
            root / storage, num_frames=FRAMES, height=H, width=W, storage=storage
        )
        for storage in STORAGE_FILE
    }


def broken_copy(good: Path, target: Path, storage: str, how: str) -> Path:
    """A copy of ``good`` broken as ``how`` says."""
    shutil.copytree(good, target)
    data_file = target / STORAGE_FILE[storage]
    data = bytearray(data_file.read_bytes())
    if how == "truncated":
        data_file.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "garbled":
        for offset in range(100, len(data), 97):
            data[offset] = (data[offset] * 7 + 13) % 256
        data_file.write_bytes(bytes(data))
    elif how == "bad_metadata":
        (target / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n  : :\n")
    elif how == "missing_db3":
        data_file.unlink()
    return target


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """ir/ and vi/ with two pairs, ``a`` good and ``b`` with an unreadable IR file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("ir", "vi"):
        (root / name).mkdir()
    for stem in ("a", "b"):
        cv2.imwrite(str(root / "ir" / f"{stem}.png"), rng.integers(0, 256, (H, W), np.uint8))
        cv2.imwrite(str(root / "vi" / f"{stem}.png"), rng.integers(0, 256, (H, W, 3), np.uint8))
    (root / "ir" / "b.png").write_bytes(b"not a png")
    return root / "ir", root / "vi"


# ------------------------------------------------------------------------------ sgdfuse fuse
def test_fuse_out_pointing_at_a_file(capsys, image_folders, tmp_path: Path) -> None:
    ir, vi = image_folders
    out = tmp_path / "fused.png"
    out.write_bytes(b"x")
    code, errors = sgdfuse(capsys, "fuse", "--ir", ir, "--vi", vi, "--out", out)
    assert code != 0
    assert len(errors) == 1 and "--out" in errors[0] and "not a folder" in errors[0]


def test_fuse_missing_ir_folder(capsys, image_folders, tmp_path: Path) -> None:
    _, vi = image_folders
    missing = tmp_path / "no_such_ir"
    code, errors = sgdfuse(capsys, "fuse", "--ir", missing, "--vi", vi, "--out", tmp_path / "o")
    assert code != 0
    assert len(errors) == 1
    assert "--ir" in errors[0] and str(missing) in errors[0] and "does not exist" in errors[0]
    assert "both be files" not in errors[0]


def test_fuse_with_a_failed_pair_exits_non_zero(capsys, image_folders, tmp_path: Path) -> None:
    ir, vi = image_folders
    out = tmp_path / "out"
    code, errors = sgdfuse(capsys, "fuse", "--ir", ir, "--vi", vi, "--out", out)
    assert code != 0
    assert errors == ["sgdfuse fuse: error: 1 of 2 pair(s) failed (see above)"]
    assert (out / "a.png").is_file() and not (out / "b.png").exists()  # the good pair is kept


# -------------------------------------------------------------------------- sgdfuse bag fuse
@pytest.mark.parametrize(
    ("storage", "how"),
    [
        ("sqlite3", "truncated"),
        ("sqlite3", "garbled"),
        ("mcap", "truncated"),
        ("mcap", "garbled"),
        ("sqlite3", "bad_metadata"),
        ("sqlite3", "missing_db3"),
    ],
)
def test_bag_fuse_on_a_broken_bag(capsys, bags, tmp_path: Path, storage: str, how: str) -> None:
    broken = broken_copy(bags[storage], tmp_path / "broken", storage, how)
    output = tmp_path / "fused"
    code, errors = sgdfuse(capsys, "bag", "fuse", broken, output, "--no-progress")
    assert code != 0
    assert len(errors) == 1 and errors[0].startswith(
        f"sgdfuse bag fuse: error: cannot read bag {broken}"
    )
    assert "\n" not in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]  # nothing written


def test_bag_fuse_to_an_existing_output(capsys, bags, tmp_path: Path) -> None:
    existing = tmp_path / "fused"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    code, errors = sgdfuse(capsys, "bag", "fuse", bags["sqlite3"], existing, "--no-progress")
    assert code != 0
    assert len(errors) == 1 and "exists already" in errors[0] and str(existing) in errors[0]
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_bag_fuse_with_an_unknown_topic(capsys, bags, tmp_path: Path) -> None:
    output = tmp_path / "fused"
    code, errors = sgdfuse(
        capsys, "bag", "fuse", bags["sqlite3"], output, "--thermal-topic", "/nope", "--no-progress"
    )
    assert code != 0
    assert len(errors) == 1 and "/nope is not in the bag" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_failed_bag_fuse_leaves_nothing_behind(capsys, bags, tmp_path: Path) -> None:
    """The PNG folder lies inside a file: writing the first frame fails after the output bag was
    begun. The partial bag is removed, so the corrected rerun to the same output works."""
    not_a_folder = tmp_path / "frames"
    not_a_folder.write_text("x")
    output = tmp_path / "fused"
    code, errors = sgdfuse(
        capsys,
        "bag",
        "fuse",
        bags["sqlite3"],
        output,
        "--png-dir",
        not_a_folder / "day1",
        "--no-progress",
    )
    assert code != 0 and len(errors) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # no bag, no temporary
    code, errors = sgdfuse(capsys, "bag", "fuse", bags["sqlite3"], output, "--no-progress")
    assert code == 0 and errors == []
    assert len(read_topic_images(output, DEFAULT_FUSED_TOPIC)) == FRAMES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "fused"]


@pytest.mark.parametrize("option", ["--mp4", "--png-dir"])
def test_bag_fuse_refuses_a_video_folder_or_a_frames_file_before_fusing(
    capsys, bags, tmp_path: Path, option: str
) -> None:
    wrong_kind = tmp_path / "media"
    if option == "--mp4":
        wrong_kind.mkdir()  # a folder where the video's file name belongs
    else:
        wrong_kind.write_text("x")  # a file where the frames' folder belongs
    output = tmp_path / "fused"
    code, errors = sgdfuse(
        capsys, "bag", "fuse", bags["sqlite3"], output, option, wrong_kind, "--no-progress"
    )
    assert code != 0 and len(errors) == 1, errors
    expected = "is a folder: give the video's file name" if option == "--mp4" else "is a file"
    assert errors[0].startswith(f"sgdfuse bag fuse: error: {option} {wrong_kind}")
    assert expected in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # nothing written


def test_broken_bag_from_a_real_process(bags, tmp_path: Path) -> None:
    """The installed entry point's view: exit code and stderr of a separate process."""
    broken = broken_copy(bags["sqlite3"], tmp_path / "broken", "sqlite3", "truncated")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "sgdfuse_ros.cli", "bag", "fuse", str(broken), str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip().splitlines()[-1].startswith("sgdfuse bag fuse: error: cannot read bag")
    )


# ------------------------------------------------------------------- eval / export / bench
def test_eval_with_a_missing_fused_folder(capsys, image_folders, tmp_path: Path) -> None:
    ir, vi = image_folders
    missing = tmp_path / "no_such_fused"
    code, errors = sgdfuse(
        capsys, "eval", "--ir", ir, "--vi", vi, "--fused", missing, "--out", tmp_path / "e"
    )
    assert code != 0
    assert len(errors) == 1 and str(missing) in errors[0]


def test_eval_out_pointing_at_a_file(capsys, image_folders, tmp_path: Path) -> None:
    ir, vi = image_folders
    out = tmp_path / "metrics.txt"
    out.write_text("x")
    code, errors = sgdfuse(capsys, "eval", "--ir", ir, "--vi", vi, "--fused", vi, "--out", out)
    assert code != 0
    assert len(errors) == 1 and "--out" in errors[0] and "not a folder" in errors[0]


def test_export_refuses_unsupported_steps(capsys, tmp_path: Path) -> None:
    onnx = tmp_path / "onnx"
    code, errors = sgdfuse(capsys, "export", "--steps", "9", "--onnx", onnx)
    assert code != 0
    assert len(errors) == 1 and "--steps 9" in errors[0] and "supported: 1, 2, 3" in errors[0]
    assert not onnx.exists()


@pytest.mark.parametrize("flag", ["--frames", "--rounds", "--height", "--width"])
def test_bench_refuses_a_zero_count(capsys, flag: str) -> None:
    code, errors = sgdfuse(capsys, "bench", flag, "0")
    assert code == 2  # refused by the argument parser, before anything is measured
    assert len(errors) == 1 and flag in errors[0] and "must be >= 1" in errors[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("bench", "--rate", "-5"), "must be > 0"),
        (("bench", "--warmup", "-1"), "must be >= 0"),
        (("bench", "--quality-backend", "bogus"), "invalid choice"),
        (("export", "--height", "-5"), "must be >= 1"),
        (("export", "--sam-model-type", "vit_x"), "invalid choice"),
        (("demo", "--frames", "0"), "must be >= 1"),
        (
            ("eval", "--ir", "i", "--vi", "v", "--fused", "f", "--out", "o", "--det-seed", "-1"),
            ">= 0",
        ),
        (("bag", "synth", "out", "--fps", "0"), "must be > 0"),
        (("bag", "replay", "b", "--loop", "-1"), "must be >= 0"),
        (("bag", "replay", "b", "--wait-for-subscribers", "nan"), "must be >= 0"),
        (("bag", "fuse", "a", "b", "--fused-topic", "bad topic!"), "invalid ROS topic name"),
    ],
)
def test_values_that_mean_nothing_are_refused_by_the_parser(
    capsys, argv: tuple[str, ...], expected: str
) -> None:
    code, errors = sgdfuse(capsys, *argv)
    assert code == 2  # before any file is read or any model loads
    assert len(errors) == 1 and expected in errors[0], errors


def test_fuse_refuses_to_write_into_a_source_folder(capsys, tmp_path: Path) -> None:
    for name in ("ir", "vi"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "a.png"), np.full((H, W), 7, np.uint8))
    before = (tmp_path / "vi" / "a.png").read_bytes()
    code, errors = sgdfuse(
        capsys, "fuse", "--ir", tmp_path / "ir", "--vi", tmp_path / "vi", "--out", tmp_path / "vi"
    )
    assert code == 2 and len(errors) == 1 and "overwrite" in errors[0]
    assert (tmp_path / "vi" / "a.png").read_bytes() == before  # the sources are untouched


def test_a_device_torch_cannot_parse_is_one_line(capsys, image_folders, tmp_path: Path) -> None:
    ir, vi = image_folders
    code, errors = sgdfuse(
        capsys, "fuse", "--ir", ir, "--vi", vi, "--out", tmp_path / "o", "--device", "gpu7"
    )
    assert code == 2 and len(errors) == 1 and "not a torch device" in errors[0]


def test_eval_of_a_folder_without_any_pairs_image_is_an_error(
    capsys, image_folders, tmp_path: Path
) -> None:
    ir, vi = image_folders
    unrelated = tmp_path / "fused"
    unrelated.mkdir()
    cv2.imwrite(str(unrelated / "zzz.png"), np.zeros((H, W), np.uint8))  # no source is "zzz"
    code, errors = sgdfuse(
        capsys, "eval", "--ir", ir, "--vi", vi, "--fused", unrelated, "--out", tmp_path / "e"
    )
    assert code == 2 and len(errors) == 1 and "no fused image" in errors[0]


def test_bag_fuse_that_pairs_nothing_says_why_and_counts_every_message(
    capsys, bags, tmp_path: Path
) -> None:
    # The synthetic thermal stamps trail the RGB ones by 2 ms: with zero slop nothing pairs.
    capsys.readouterr()
    code = main(["bag", "fuse", str(bags["sqlite3"]), str(tmp_path / "fused"), "--slop", "0"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert f"({FRAMES} thermal, {FRAMES} RGB messages, {2 * FRAMES} unmatched)" in out
    assert "error: no thermal/RGB pair fused" in err and "within --slop 0.0 s" in err


def test_bag_commands_name_a_folder_that_is_not_a_bag(capsys, tmp_path: Path) -> None:
    code, errors = sgdfuse(capsys, "bag", "replay", tmp_path)
    assert code == 2 and len(errors) == 1 and "not a rosbag2 folder" in errors[0]


def test_bench_fails_when_no_backend_can_run_the_weights(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    code, errors = sgdfuse(
        capsys, "bench", "--weights", bad, "--backend", "torch", "--frames", "1", "--rounds", "1"
    )
    assert code == 2 and len(errors) == 1
    assert "no backend could be built" in errors[0] and "corrupt or not a torch file" in errors[0]


def test_warnings_are_one_line_without_python_source(capsys, tmp_path: Path) -> None:
    for name in ("ir", "vi", "fused"):
        (tmp_path / name).mkdir()
    image = np.random.default_rng(3).integers(0, 256, (H, W), np.uint8)
    for folder, stems in (("ir", ("a", "lonely")), ("vi", ("a",)), ("fused", ("a",))):
        for stem in stems:
            cv2.imwrite(str(tmp_path / folder / f"{stem}.png"), image)
    capsys.readouterr()
    argv = ["eval", "--ir", tmp_path / "ir", "--vi", tmp_path / "vi", "--fused", tmp_path / "fused"]
    assert main([str(a) for a in [*argv, "--out", tmp_path / "e"]]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 source image(s) without a partner skipped: ['lonely']" in err
    assert "UserWarning" not in err and "evaluate_dirs(" not in err


def test_the_demo_mosaic_takes_an_infrared_frame_of_another_size() -> None:
    from sgdfuse_ros.imaging import mosaic

    ir = np.zeros((120, 160), np.uint8)  # a thermal camera's size
    vis = np.zeros((480, 640, 3), np.uint8)
    strip = mosaic([("IR", ir), ("VIS", vis), ("fused", vis)], max_tile_width=320)
    assert strip.shape == (120, 3 * 160, 3)  # every tile at the first tile's height


@pytest.mark.parametrize("name", ["/fused/image", "fused", "~/debug/f1", "/cam_0/image"])
def test_valid_topic_names_pass(name: str) -> None:
    from sgdfuse_ros.io.topic_names import check_topic_name

    assert check_topic_name(name) == name


@pytest.mark.parametrize("name", ["", "/", "bad topic!", "/a//b", "/a/", "/2d", "/a__b", "~"])
def test_invalid_topic_names_say_what_a_name_is(name: str) -> None:
    from sgdfuse_ros.io.topic_names import check_topic_name

    with pytest.raises(ValueError, match="invalid ROS topic name"):
        check_topic_name(name)


def test_training_tools_report_bad_paths_on_one_line(capsys, tmp_path: Path) -> None:
    from sgdfuse_ros.cli.main import run_tool

    def main_with_a_missing_folder() -> int:
        raise FileNotFoundError(f"image folder {tmp_path / 'ir'} does not exist")

    with pytest.raises(SystemExit) as exit_:
        run_tool(main_with_a_missing_folder, "training.some_tool")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == f"training.some_tool: error: image folder {tmp_path / 'ir'} does not exist\n"


def test_detection_labels_and_report_paths_are_checked_before_the_work(
    capsys, image_folders, tmp_path: Path
) -> None:
    ir, vi = image_folders
    argv = ["eval", "--ir", ir, "--vi", vi, "--fused", vi, "--out", tmp_path / "e"]
    code, errors = sgdfuse(
        capsys, *argv, "--detector", tmp_path / "m.tflite", "--det-labels", tmp_path / "none"
    )
    assert code == 2 and "--det-labels folder" in errors[0] and "does not exist" in errors[0]
    code, errors = sgdfuse(capsys, "bench", "--json", tmp_path, "--frames", "1")
    assert code == 2 and "--json" in errors[0] and "is a folder" in errors[0]
