"""The priors ablation's helpers: object masks from segmentation labels, paired metric intervals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sgdfuse_ros.metrics import METRIC_NAMES
from training.priors_ablation import paired_metric_differences, write_object_masks


def test_object_masks_keep_only_the_object_classes(tmp_path: Path) -> None:
    label = np.zeros((6, 8), np.uint8)
    label[0, :] = 1  # car
    label[1, :] = 2  # person
    label[2, :] = 4  # curve: scene, not an object
    label[3, :] = 3  # bike
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "labels" / "00001D.png"), label)
    out = write_object_masks(tmp_path / "labels", tmp_path / "masks", (1, 2, 3))
    mask = cv2.imread(str(out / "00001D.png"), cv2.IMREAD_GRAYSCALE)
    assert mask[[0, 1, 3]].min() == 255 and mask[[2, 4, 5]].max() == 0
    with pytest.raises(FileNotFoundError):
        write_object_masks(tmp_path / "masks" / "none", tmp_path / "x", (1,))


def test_paired_metric_differences_separate_real_from_noise() -> None:
    rng = np.random.default_rng(0)
    images = [f"{i:05d}N" for i in range(40)]
    base = {s: {m: float(rng.normal(5, 1)) for m in METRIC_NAMES} for s in images}
    shifted = {s: {m: v + 0.5 for m, v in values.items()} for s, values in base.items()}
    noisy = {
        s: {m: v + float(rng.normal(0, 0.5)) for m, v in values.items()}
        for s, values in base.items()
    }
    diffs = paired_metric_differences(
        {"ref": base, "shifted": shifted, "noisy": noisy}, "ref", samples=500, seed=1
    )
    assert set(diffs) == {"shifted", "noisy"}
    for name in METRIC_NAMES:
        up = diffs["shifted"][name]
        assert up["difference"] == pytest.approx(0.5) and up["ci"] == pytest.approx([0.5, 0.5])
        assert up["real"]
        noise = diffs["noisy"][name]
        assert noise["ci"][0] <= noise["difference"] <= noise["ci"][1]
    assert sum(diffs["noisy"][m]["real"] for m in METRIC_NAMES) <= 2  # 9 tests at 5 %
