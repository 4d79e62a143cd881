"""Dataset folders: pairing by name, the public layouts, broken files reported once and skipped."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from training_helpers import random_pair, write_pair_folder

from training.datasets import (
    FullFramePairs,
    PairSource,
    ProblemReport,
    RandomCropPairs,
    find_pairs,
    load_pair,
)


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Three good pairs in three storage styles plus every kind of broken file."""
    root = tmp_path / "messy"
    ir, vis = random_pair(40, 48, 0)
    write(root / "ir" / "gray.png", ir)
    write(root / "vi" / "gray.png", vis)
    write(
        root / "ir" / "three_channel.jpg", np.repeat(ir[..., None], 3, axis=2)
    )  # IR as 3 equal channels
    write(root / "vi" / "three_channel.jpg", vis)
    write(root / "ir" / "sixteen_bit.png", (ir.astype(np.uint16) * 200))
    write(root / "vi" / "sixteen_bit.bmp", vis)  # pairs by stem across extensions
    write(root / "ir" / "only_ir.png", ir)  # unpaired
    write(root / "vi" / "only_vi.png", vis)  # unpaired
    (root / "ir" / "unreadable.png").write_bytes(b"not an image at all")
    write(root / "vi" / "unreadable.png", vis)
    write(root / "ir" / "mismatch.png", ir)
    write(root / "vi" / "mismatch.png", cv2.resize(vis, (30, 20)))
    (root / "ir" / "notes.txt").write_text("ignored: not an image suffix")
    return root


def test_broken_files_are_reported_once_and_skipped(messy_folder: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="sgdfuse_ros.training")
    source = PairSource([messy_folder], cache_in_memory=False)
    assert sorted(p.stem for p in source.pairs) == ["gray", "sixteen_bit", "three_channel"]
    reasons = {Path(path).name: reason for path, reason in source.report.problems}
    assert set(reasons) == {"only_ir.png", "only_vi.png", "unreadable.png", "mismatch.png"}
    assert "without a visible partner" in reasons["only_ir.png"]
    assert "without an infrared partner" in reasons["only_vi.png"]
    assert "cannot read" in reasons["unreadable.png"]
    assert "size mismatch" in reasons["mismatch.png"]
    # Every sample loads, and iterating many times does not repeat the warnings.
    crops = RandomCropPairs(source, crop=32)
    for i in range(3 * len(crops)):
        sample = crops[(i % len(crops), i)]
        assert sample["ir"].shape == (1, 32, 32) and sample["vis"].shape == (3, 32, 32)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4


def test_file_that_breaks_after_the_scan_is_replaced_and_reported(tmp_path: Path) -> None:
    root = write_pair_folder(tmp_path / "d", count=3, height=40, width=40)
    source = PairSource([root], cache_in_memory=False)
    broken = source.pairs[0]
    broken.ir.write_bytes(b"truncated")
    frames = FullFramePairs(source)
    assert frames[0]["stem"] == source.pairs[1].stem  # the next pair stands in
    frames[0]
    assert [Path(p).name for p, _ in source.report.problems] == [broken.ir.name]


def test_infrared_storage_styles_load_the_same_plane(messy_folder: Path) -> None:
    pairs = {p.stem: p for p in find_pairs(messy_folder, ProblemReport())}
    gray, _ = load_pair(pairs["gray"])
    three, _ = load_pair(pairs["three_channel"])
    sixteen, vis = load_pair(pairs["sixteen_bit"])
    assert gray.dtype == three.dtype == sixteen.dtype == np.uint8 and gray.shape == (40, 48)
    assert np.abs(gray.astype(int) - three.astype(int)).mean() < 8  # JPEG loss only
    assert sixteen.max() == 255 and vis.shape == (40, 48, 3)  # 16-bit goes through gain control


@pytest.mark.parametrize("ir_name,vi_name", [("infrared", "visible"), ("Ir", "Vis"), ("IR", "VIS")])
def test_public_dataset_layouts(tmp_path: Path, ir_name: str, vi_name: str) -> None:
    ir, vis = random_pair(24, 24, 1)
    write(tmp_path / ir_name / "a.png", ir)
    write(tmp_path / vi_name / "a.png", vis)
    assert [p.stem for p in find_pairs(tmp_path, ProblemReport())] == ["a"]


def test_folder_without_subfolders_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="infrared and a visible subfolder"):
        find_pairs(tmp_path, ProblemReport())


def test_mixed_folders_keep_distinct_keys(tmp_path: Path) -> None:
    a = write_pair_folder(tmp_path / "a" / "train", count=2, height=40, width=40)
    b = write_pair_folder(tmp_path / "b" / "train", count=2, height=40, width=40, seed=1)
    source = PairSource([a, b])
    assert len(source) == 4 and len({p.key for p in source.pairs}) == 4


def test_crops_are_seeded_flipped_and_padded(tmp_path: Path) -> None:
    root = write_pair_folder(tmp_path / "d", count=2, height=40, width=56)
    crops = RandomCropPairs(PairSource([root]), crop=32, vertical_flip=True)
    first, again = crops[(0, 123)], crops[(0, 123)]
    assert all(torch.equal(first[k], again[k]) for k in first)
    others = [crops[(0, seed)]["ir"] for seed in range(12)]
    assert any(not torch.equal(others[0], o) for o in others[1:])
    assert all(0.0 <= float(first[k].min()) and float(first[k].max()) <= 1.0 for k in first)
    small = RandomCropPairs(PairSource([root]), crop=64)  # larger than the 40×56 frames
    assert small[(1, 5)]["vis"].shape == (3, 64, 64)


def test_max_side_downscales_large_frames(tmp_path: Path) -> None:
    root = write_pair_folder(tmp_path / "d", count=1, height=64, width=96)
    pair = find_pairs(root, ProblemReport())[0]
    ir, vis = load_pair(pair, max_side=48)
    assert ir.shape == (32, 48) and vis.shape == (32, 48, 3)
