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


def test_tone_check_writes_tone_mapped_copies_and_measures_their_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from training import tone_check

    val = tmp_path / "val"
    for sub in ("ir", "vi"):
        (val / sub).mkdir(parents=True)
    fused = tmp_path / "fused"
    fused.mkdir()
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0, 1, 96), (64, 1))
    for stem, brightness in (("00001D", 150.0), ("00002N", 25.0)):  # MSRS-style names
        cv2.imwrite(str(val / "ir" / f"{stem}.png"), (ramp * 200).astype(np.uint8))
        flat_visible = np.full((64, 96, 3), 90, np.uint8)
        cv2.imwrite(str(val / "vi" / f"{stem}.png"), flat_visible)
        grey = np.clip(brightness * (0.5 + ramp) + rng.normal(0, 1.0, ramp.shape), 0, 255)
        cv2.imwrite(str(fused / f"{stem}.png"), np.repeat(grey.astype(np.uint8)[..., None], 3, 2))
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for path in fused.iterdir():
        image = cv2.imread(str(path)).astype(np.float64) + rng.normal(0, 6.0, (64, 96, 1))
        cv2.imwrite(str(noisy / path.name), np.clip(image, 0, 255).astype(np.uint8))

    out = tmp_path / "tone"
    args = ["--val", str(val), "--fused", str(fused), "--out", str(out), "--lift-to", "70"]
    assert tone_check.main([*args, "--compare", f"noisy={noisy}"]) == 0
    rows = {
        line.split("|")[1].strip(): [float(v) for v in line.split("|")[2:-1]]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and not line.startswith("| images")
    }
    assert list(rows) == ["input", "night_lift", "clahe", "equalize", "noisy"]
    day, night, noise = 0, 1, 3
    assert abs(rows["night_lift"][night] - 70.0) < 1.5  # the dark frame lifted to the target
    assert rows["night_lift"][day] == rows["input"][day]  # a bright frame left as it was
    assert rows["noisy"][noise] > 3 * rows["input"][noise]
    for name in ("night_lift", "clahe", "equalize"):
        copy = cv2.imread(str(out / name / "00002N.png"))
        assert copy.shape == (64, 96, 3)
        assert (copy[..., 0] == copy[..., 2]).all()  # chroma kept: grey stays grey
    equalized = cv2.imread(str(out / "equalize" / "00002N.png"))[..., 0]
    assert equalized.std() > cv2.imread(str(fused / "00002N.png"))[..., 0].std()
    with pytest.raises(SystemExit, match="expected LABEL=FOLDER"):
        tone_check.main([*args, "--compare", str(noisy)])


def test_reference_fusions_take_a_warm_object_from_the_infrared_and_the_rest_from_the_visible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from training import reference_fusions

    val = tmp_path / "val"
    for sub in ("ir", "vi"):
        (val / sub).mkdir(parents=True)
    rng = np.random.default_rng(1)
    ir = np.clip(rng.normal(60, 3, (96, 128)), 0, 255).astype(np.uint8)  # a cool scene
    ir[30:70, 50:70] = 230  # one warm person
    vi = np.repeat(np.tile(np.linspace(40, 200, 128), (96, 1))[..., None], 3, 2).astype(np.uint8)
    cv2.imwrite(str(val / "ir" / "0000.png"), ir)
    cv2.imwrite(str(val / "vi" / "0000.png"), vi)

    out = tmp_path / "reference"
    assert reference_fusions.main(["--val", str(val), "--out", str(out)]) == 0
    assert "ir_objects: 1 images" in capsys.readouterr().out
    luma = {
        rule: cv2.imread(str(out / rule / "0000.png"))[..., 1].astype(int)
        for rule in ("max", "additive", "ir_objects")
    }
    assert abs(luma["ir_objects"][50, 60] - 230) <= 2  # the object: the infrared pixel
    assert np.abs(luma["ir_objects"][:, :30] - vi[:, :30, 0]).max() <= 2  # far away: visible
    np.testing.assert_array_equal(luma["max"], np.maximum(ir, vi[..., 0]))
    assert (out / "additive" / "0000.png").is_file() and not (out / "mean").exists()
    with pytest.raises(SystemExit):
        reference_fusions.main(["--val", str(val), "--out", str(out), "--rules", "median"])
