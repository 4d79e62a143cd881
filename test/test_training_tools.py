"""The analysis tools of training/: metric sensitivity table and comparison mosaics."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from training_helpers import write_pair_folder

from training import compare_mosaic, metric_sensitivity


def test_metric_sensitivity_shows_noise_costing_mutual_information(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = write_pair_folder(tmp_path / "val", count=2, height=48, width=64)
    assert metric_sensitivity.main(["--val", str(val), "--every", "1"]) == 0
    rows = {
        line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:-1]]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| max")
    }
    mi = 4  # EN SD SF AG MI …
    assert set(rows) == {"max", "max + noise σ=1", "max + noise σ=3", "max, blurred 3×3"}
    assert rows["max"][mi] > rows["max + noise σ=1"][mi] > rows["max + noise σ=3"][mi]


def test_compare_mosaic_has_one_row_per_pair_and_one_tile_per_column(tmp_path: Path) -> None:
    val = write_pair_folder(tmp_path / "val", count=2, height=48, width=64)
    ours = tmp_path / "ours"
    ours.mkdir()
    for path in (val / "vi").iterdir():  # a "method" whose outputs are the visible images
        cv2.imwrite(str(ours / f"{path.stem}.png"), cv2.imread(str(path)))
    out = tmp_path / "mosaic.jpg"
    args = ["--val", str(val), "--pairs", "0000", "0001", "--method", f"ours={ours}"]
    assert compare_mosaic.main([*args, "--tile-width", "80", "--out", str(out)]) == 0
    assert cv2.imread(str(out)).shape == (2 * 60, 3 * 80, 3)
    with pytest.raises(SystemExit, match="no image named 0009"):
        compare_mosaic.main([*args[:2], "--pairs", "0009", "--out", str(out)])
    with pytest.raises(SystemExit, match="expected LABEL=FOLDER"):
        compare_mosaic.main([*args[:4], "--method", "ours", "--out", str(out)])
