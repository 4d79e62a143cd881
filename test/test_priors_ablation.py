"""The priors ablation's helpers: object masks from segmentation labels, paired metric intervals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgdfuse_ros.imaging import ir_to_unit, read_pair
from sgdfuse_ros.metrics import METRIC_NAMES
from sgdfuse_ros.semantics import ClassicalPriorBackend
from sgdfuse_ros.tools.fuse_files import priors_from_folder
from training.priors_ablation import (
    STAMP_NAME,
    fuse_variant,
    fusion_stamp,
    masks_as_infrared_prior,
    paired_metric_differences,
    write_object_masks,
)


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


def test_gt_infrared_variant_takes_the_mask_for_ir_and_computes_the_visible_map(
    tmp_path: Path,
) -> None:
    val = tmp_path / "val"
    for sub in ("ir", "vi", "labels"):
        (val / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    ir = np.full((60, 80), 70, np.uint8)
    ir[20:40, 30:45] = 220  # a warm person
    vis = rng.integers(90, 110, (60, 80, 3), dtype=np.uint8)
    vis[5:20, 50:70] = (230, 40, 40)  # a red sign the infrared does not see
    label = np.zeros((60, 80), np.uint8)
    label[20:40, 30:45] = 2
    cv2.imwrite(str(val / "ir" / "00001N.png"), ir)
    cv2.imwrite(str(val / "vi" / "00001N.png"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(val / "labels" / "00001N.png"), label)
    masks = priors_from_folder(write_object_masks(val / "labels", tmp_path / "masks", (1, 2, 3)))
    backend = ClassicalPriorBackend()
    m_ir, m_vis = masks_as_infrared_prior(masks, backend, val)("00001N")
    np.testing.assert_array_equal(m_ir, (label == 2).astype(np.uint8) * 255)
    read_ir, read_vis = read_pair(val / "ir" / "00001N.png", val / "vi" / "00001N.png")
    _, expected_vis = backend.compute(ir_to_unit(read_ir), read_vis)
    np.testing.assert_array_equal(m_vis, expected_vis)
    assert m_vis.max() > 0.5  # the sign: the visible map is computed, not the mask


def test_a_variant_folder_is_reused_only_when_fused_with_the_same_weights(tmp_path: Path) -> None:
    import torch

    from sgdfuse_ros.model_io import save_weights
    from sgdfuse_ros.models.sgdfuse import SGDFuse, small_config
    from sgdfuse_ros.pipeline import FusionPipeline

    val = tmp_path / "val"
    for sub in ("ir", "vi"):
        (val / sub).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("00001D", "00002N"):
        cv2.imwrite(str(val / "ir" / f"{name}.png"), rng.integers(0, 256, (32, 48), np.uint8))
        cv2.imwrite(str(val / "vi" / f"{name}.png"), rng.integers(0, 256, (32, 48, 3), np.uint8))
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        files.append(save_weights(SGDFuse(small_config()), tmp_path / f"w{seed}.pt", {}))
    pipeline = FusionPipeline(weights=files[0], prior_backend="classical", steps=1)
    folder = tmp_path / "fused" / "zero"
    stamp = fusion_stamp(files[0], 1, pipeline.priors.settings(), "zero")
    fuse_variant(pipeline, val, folder, None, stamp)
    assert json.loads((folder / STAMP_NAME).read_text()) == stamp
    (folder / "00001D.png").write_bytes(b"marker")  # reused: left as it is
    fuse_variant(pipeline, val, folder, None, stamp)
    assert (folder / "00001D.png").read_bytes() == b"marker"
    other = fusion_stamp(files[1], 1, pipeline.priors.settings(), "zero")
    assert other != stamp
    fuse_variant(pipeline, val, folder, None, other)  # other weights: fused again
    assert cv2.imread(str(folder / "00001D.png")) is not None
    assert json.loads((folder / STAMP_NAME).read_text()) == other
