"""Fusing with given prior maps (ablations, external segmentation) instead of the prior backend."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.model_io import save_weights
from sgdfuse_ros.models.sgdfuse import SGDFuse, small_config
from sgdfuse_ros.pipeline import FusionPipeline
from sgdfuse_ros.synthetic import render_sequence
from sgdfuse_ros.tools.fuse_files import fuse_paths, priors_from_folder

H, W = 64, 96


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    model = SGDFuse(small_config())
    for head in model.heads.values():  # large head weights: the priors visibly change F
        torch.nn.init.normal_(head.out.weight, std=0.3)
    path = tmp_path_factory.mktemp("w") / "test.pt"
    save_weights(model, path, {"prior_backend": "classical", "trained": False, "default_steps": 1})
    return path


@pytest.fixture(scope="module")
def pipeline(weights: Path) -> FusionPipeline:
    return FusionPipeline(weights=weights, prior_backend="classical")


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    return render_sequence(1, H, W, seed=1)[0]


def test_given_priors_replace_the_backend(pipeline: FusionPipeline, pair) -> None:
    computed = pipeline.fuse(*pair, return_intermediate=True)
    same = pipeline.fuse(*pair, priors=(computed.prior_ir, computed.prior_vis))
    np.testing.assert_array_equal(same.fused, computed.fused)
    zeros = np.zeros((H, W), np.float32)
    ones = np.ones((H, W), np.float32)
    without = pipeline.fuse(*pair, priors=(zeros, zeros), return_intermediate=True)
    full = pipeline.fuse(*pair, priors=(ones, ones))
    assert not np.array_equal(without.fused, computed.fused)
    assert not np.array_equal(without.fused, full.fused)
    assert without.prior_ir.max() == 0.0  # the intermediates show what was used
    as_bytes = pipeline.fuse(*pair, priors=(np.full((H, W), 255, np.uint8), ones[..., None]))
    np.testing.assert_array_equal(as_bytes.fused, full.fused)
    # the backend's priors are untouched: the next plain frame fuses as before
    np.testing.assert_array_equal(pipeline.fuse(*pair).fused, computed.fused)


@pytest.mark.parametrize(
    "priors, message",
    [
        (np.zeros((H, W), np.float32), "a pair"),
        ((np.zeros((H, W)), np.zeros((H - 1, W))), r"m_vis is \(63, 96\)"),
        ((np.zeros((H, W)), np.full((H, W), 1.5)), "outside"),
        ((np.full((H, W), np.nan), np.zeros((H, W))), "NaN"),
        ((np.zeros((H, W), np.int32), np.zeros((H, W))), "dtype int32"),
        (([[0.0]], np.zeros((H, W))), "numpy array"),
    ],
)
def test_bad_given_priors_are_input_errors(pipeline: FusionPipeline, pair, priors, message) -> None:
    with pytest.raises(InputError, match=message):
        pipeline.fuse(*pair, priors=priors)


def test_fuse_paths_reads_masks_and_map_pairs_and_skips_pairs_without(
    pipeline: FusionPipeline, tmp_path: Path
) -> None:
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    for index, (ir, vis) in enumerate(render_sequence(3, H, W, seed=4)):
        cv2.imwrite(str(tmp_path / "ir" / f"p{index}.png"), ir)
        cv2.imwrite(str(tmp_path / "vi" / f"p{index}.png"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    priors = tmp_path / "priors"
    priors.mkdir()
    mask = np.zeros((H, W), np.uint8)
    mask[10:30, 20:50] = 255
    cv2.imwrite(str(priors / "p0.png"), mask)  # one mask for both maps
    cv2.imwrite(str(priors / "p1_prior_ir.png"), mask)  # separate maps
    cv2.imwrite(str(priors / "p1_prior_vis.png"), np.zeros_like(mask))
    report = fuse_paths(
        pipeline,
        tmp_path / "ir",
        tmp_path / "vi",
        tmp_path / "out",
        progress=False,
        given_priors=priors_from_folder(priors),
    )
    assert report.fused == ["p0", "p1"] and list(report.failed) == ["p2"]
    assert "no prior maps for p2" in report.failed["p2"]
    for name, expected in (("p0", (mask, mask)), ("p1", (mask, np.zeros_like(mask)))):
        ir = cv2.imread(str(tmp_path / "ir" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        vis = cv2.cvtColor(cv2.imread(str(tmp_path / "vi" / f"{name}.png")), cv2.COLOR_BGR2RGB)
        direct = pipeline.fuse(ir, vis, priors=expected).fused
        written = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / f"{name}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(written, direct)
    with pytest.raises(FileNotFoundError, match="priors folder .* does not exist"):
        priors_from_folder(tmp_path / "absent")


def test_sgdfuse_fuse_priors_dir(
    weights: Path, pipeline: FusionPipeline, pair, tmp_path: Path, capsys
) -> None:
    from sgdfuse_ros.cli.main import main

    ir, vis = pair
    cv2.imwrite(str(tmp_path / "a_ir.png"), ir)
    cv2.imwrite(str(tmp_path / "a_vi.png"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    priors = tmp_path / "priors"
    priors.mkdir()
    cv2.imwrite(str(priors / "a_ir.png"), np.full((H, W), 255, np.uint8))  # named after the IR file
    command = ["fuse", "--ir", str(tmp_path / "a_ir.png"), "--vi", str(tmp_path / "a_vi.png")]
    command += ["--weights", str(weights), "--prior", "classical", "--out", str(tmp_path / "out")]
    assert main([*command, "--priors-dir", str(priors)]) == 0
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "a_ir.png")), cv2.COLOR_BGR2RGB)
    ones = np.ones((H, W), np.float32)
    np.testing.assert_array_equal(written, pipeline.fuse(ir, vis, priors=(ones, ones)).fused)
    assert main([*command, "--priors-dir", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
