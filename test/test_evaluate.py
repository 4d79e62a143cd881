"""Folder evaluation (CSV / Markdown / JSON, pairing, missing files), baselines and the table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.metrics import METRIC_NAMES, compute_all
from sgdfuse_ros.tools.evaluate import (
    CSV_NAME,
    MARKDOWN_NAME,
    SUMMARY_NAME,
    baseline_fuse,
    evaluate_dirs,
    format_markdown_table,
    read_rgb,
)

HEIGHT, WIDTH = 40, 56
STEMS = ("a01", "b02", "c03")


def _scene(seed: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (HEIGHT, WIDTH, channels)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5).reshape(HEIGHT, WIDTH, channels)
    img = np.clip((smooth - smooth.mean()) * 3 + 128, 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), bgr)


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """JPEG sources, a complete PNG 'max' folder and a 'mean' folder missing one image."""
    for index, stem in enumerate(STEMS):
        ir, vi = _scene(2 * index, 1), _scene(2 * index + 1, 3)
        _write(tmp_path / "ir" / f"{stem}.jpg", ir)
        _write(tmp_path / "vi" / f"{stem}.jpg", vi)
        # Fuse what was actually stored (JPEG is lossy), as a method reading the files would.
        ir_read = read_rgb(tmp_path / "ir" / f"{stem}.jpg")
        vi_read = read_rgb(tmp_path / "vi" / f"{stem}.jpg")
        _write(tmp_path / "max" / f"{stem}.png", baseline_fuse(ir_read, vi_read, "max"))
        if stem != "b02":
            _write(tmp_path / "mean" / f"{stem}.png", baseline_fuse(ir_read, vi_read, "mean"))
    return {name: tmp_path / name for name in ("ir", "vi", "max", "mean", "out")}


def test_evaluate_dirs_writes_tables_and_reports_missing(folders: dict[str, Path]) -> None:
    with pytest.warns(UserWarning, match=r"mean: 1 of 3 fused images missing.*b02"):
        summary = evaluate_dirs(
            folders["ir"], folders["vi"], [folders["max"], folders["mean"]], folders["out"],
            progress=False,
        )  # fmt: skip
    assert list(summary) == ["max", "mean"]

    # Means equal the per-image metrics of the files as read from disk.
    for method, stems in (("max", STEMS), ("mean", ("a01", "c03"))):
        per_image = [
            compute_all(
                read_rgb(folders["ir"] / f"{stem}.jpg"),
                read_rgb(folders["vi"] / f"{stem}.jpg"),
                read_rgb(folders[method] / f"{stem}.png"),
            )
            for stem in stems
        ]
        for name in METRIC_NAMES:
            expected = np.mean([values[name] for values in per_image])
            assert summary[method][name] == pytest.approx(expected), (method, name)

    with (folders["out"] / CSV_NAME).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["image"]) for r in rows] == [
        ("max", "a01"), ("max", "b02"), ("max", "c03"), ("mean", "a01"), ("mean", "c03"),
    ]  # fmt: skip
    assert set(rows[0]) == {"method", "image", *METRIC_NAMES}
    assert float(rows[0]["EN"]) == pytest.approx(
        compute_all(
            read_rgb(folders["ir"] / "a01.jpg"),
            read_rgb(folders["vi"] / "a01.jpg"),
            read_rgb(folders["max"] / "a01.png"),
        )["EN"],
        abs=1e-6,
    )

    stored = json.loads((folders["out"] / SUMMARY_NAME).read_text())
    assert list(stored) == list(summary)
    for method in summary:
        assert stored[method] == pytest.approx(summary[method])

    markdown = (folders["out"] / MARKDOWN_NAME).read_text()
    assert format_markdown_table(summary) in markdown
    assert "| mean | 2 | 1 |" in markdown and "| max | 3 | 0 |" in markdown
    assert "3 pairs" in markdown


def test_evaluate_dirs_parallel_matches_serial(folders: dict[str, Path], tmp_path: Path) -> None:
    serial = evaluate_dirs(
        folders["ir"], folders["vi"], [folders["max"]], tmp_path / "serial", progress=False
    )
    parallel = evaluate_dirs(
        folders["ir"], folders["vi"], [folders["max"]], tmp_path / "parallel", progress=False,
        workers=2,
    )  # fmt: skip
    assert parallel == serial


def test_evaluate_dirs_rejects_wrong_size_naming_the_file(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    for stem in STEMS:
        size = (WIDTH, HEIGHT) if stem != "c03" else (WIDTH - 4, HEIGHT)
        _write(bad / f"{stem}.png", cv2.resize(_scene(9, 3), size))
    with pytest.raises(InputError, match=r"c03\.png"):
        evaluate_dirs(folders["ir"], folders["vi"], [bad], folders["out"], progress=False)


def test_evaluate_dirs_warns_of_unpaired_sources_and_refuses_a_folder_of_other_images(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    _write(folders["ir"] / "z99.png", _scene(20, 1))  # IR without its visible partner
    with pytest.warns(UserWarning, match="z99"):
        evaluate_dirs(folders["ir"], folders["vi"], [folders["max"]], folders["out"], False)
    (tmp_path / "empty").mkdir()  # e.g. the wrong folder: none of its files is a pair's
    with (
        pytest.raises(InputError, match="empty: no fused image in .* is named after"),
        pytest.warns(UserWarning, match="z99"),  # still unpaired
    ):
        evaluate_dirs(
            folders["ir"], folders["vi"], [folders["max"], tmp_path / "empty"], tmp_path / "o",
            progress=False,
        )  # fmt: skip
    assert not (tmp_path / "o").exists()  # refused before minutes of metrics


def test_evaluate_dirs_disambiguates_folders_with_the_same_name(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    first, second = tmp_path / "run1" / "fused", tmp_path / "run2" / "fused"
    for target in (first, second):
        target.mkdir(parents=True)
        for stem in STEMS:
            (target / f"{stem}.png").write_bytes((folders["max"] / f"{stem}.png").read_bytes())
    summary = evaluate_dirs(folders["ir"], folders["vi"], [first, second], tmp_path / "o", False)
    assert list(summary) == ["run1/fused", "run2/fused"]
    assert summary["run1/fused"] == summary["run2/fused"]


def test_markdown_table_bolds_best_and_handles_missing() -> None:
    summary = {
        "A": dict.fromkeys(METRIC_NAMES, 1.0),
        "B": dict.fromkeys(METRIC_NAMES, 2.0) | {"SSIM": math.nan},
        "C": dict.fromkeys(METRIC_NAMES, 2.0) | {"EN": 0.5},
    }
    lines = format_markdown_table(summary).strip().splitlines()
    assert lines[0] == "| method | " + " | ".join(METRIC_NAMES) + " |"
    assert len(lines) == 5
    row_a, row_b, row_c = (line.split(" | ") for line in lines[2:])
    column = {name: i + 1 for i, name in enumerate(METRIC_NAMES)}
    assert row_a[column["EN"]] == "1.0000" and row_b[column["EN"]] == "**2.0000**"
    assert row_c[column["EN"]] == "0.5000"
    assert row_b[column["SD"]] == "**2.0000**" and row_c[column["SD"]] == "**2.0000**"  # tie
    assert row_b[column["SSIM"]].startswith("–") and "**2.0000**" in row_c[column["SSIM"]]


def test_baseline_fuse_gray_sources_are_plain_mean_and_max() -> None:
    ir, vi = _scene(30, 1), _scene(31, 1)
    fused_max = baseline_fuse(ir, vi, "max")
    fused_mean = baseline_fuse(ir, vi, "mean")
    assert fused_max.shape == (HEIGHT, WIDTH, 3) and fused_max.dtype == np.uint8
    np.testing.assert_array_equal(fused_max[..., 1], np.maximum(ir, vi))
    expected_mean = np.rint((ir.astype(np.float32) + vi) / 2)
    np.testing.assert_array_equal(fused_mean[..., 0], expected_mean.astype(np.uint8))
    # Float input in unit range gives the same result as uint8.
    np.testing.assert_array_equal(baseline_fuse(ir / 255.0, vi / 255.0, "max"), fused_max)


def test_baseline_fuse_keeps_visible_chroma() -> None:
    rng = np.random.default_rng(32)
    vi = rng.integers(70, 180, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    fused = baseline_fuse(ir, vi, "mean")
    vi_ycrcb = cv2.cvtColor(vi, cv2.COLOR_RGB2YCrCb).astype(int)
    fused_ycrcb = cv2.cvtColor(fused, cv2.COLOR_RGB2YCrCb).astype(int)
    chroma_error = np.abs(fused_ycrcb[..., 1:] - vi_ycrcb[..., 1:])
    assert np.mean(chroma_error) < 1.0  # only clipping/rounding of the RGB round trip
    luma_target = np.rint((vi_ycrcb[..., 0] + ir.astype(int)) / 2)
    assert np.mean(np.abs(fused_ycrcb[..., 0] - luma_target)) < 1.5


def test_baseline_fuse_rejects_bad_rule_and_size() -> None:
    ir, vi = _scene(33, 1), _scene(34, 3)
    with pytest.raises(ValueError, match="rule"):
        baseline_fuse(ir, vi, "median")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="sizes differ"):
        baseline_fuse(ir[:-2], vi, "max")


def test_baseline_fuse_additive_adds_the_infrared_departure_from_its_median() -> None:
    ir = np.full((HEIGHT, WIDTH), 40, np.uint8)
    ir[10:20, 10:20] = 200  # a warm object, 160 above the frame's median
    ir[30:40, 30:40] = 0  # a cold patch, 40 below it
    vi = np.tile(np.linspace(60, 240, WIDTH), (HEIGHT, 1)).astype(np.uint8)  # visible texture
    fused = baseline_fuse(ir, vi, "additive")[..., 0].astype(int)
    expected = np.clip(vi.astype(int) + ir.astype(int) - 40, 0, 255)
    np.testing.assert_array_equal(fused, expected)
    # Unlike max, the visible texture stays inside the warm object (until it clips at 255).
    warm_row = fused[15, 10:20]
    assert (np.diff(warm_row) >= 0).all() and warm_row[0] < warm_row[-1] <= 255
    assert (fused[35, 30:40] < vi[35, 30:40]).all()  # cold regions darken
