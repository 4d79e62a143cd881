"""Fusion metrics: hand-computable cases for every metric and a check against the evaluator."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgdfuse_ros import metrics
from sgdfuse_ros.errors import InputError
from sgdfuse_ros.metrics import (
    METRIC_NAMES,
    ag,
    compute_all,
    en,
    mi,
    qabf,
    scd,
    sd,
    sf,
    ssim,
    to_luminance,
    vif,
)


def _random_plane(seed: int, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Smooth-ish random gray plane (integers 0-255), like a natural image more than noise."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, size=shape).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 200 + 20
    return np.round(0.7 * smooth + 0.3 * noise * 0.9).astype(np.float64)


def _entropy_nats(plane: np.ndarray) -> float:
    _, counts = np.unique(plane, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


# --------------------------------------------------------------------------- conversion


def test_luminance_uses_bt601_weights_and_rounds() -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1, :] = (200, 200, 200)
    lum = to_luminance(rgb)
    assert lum.dtype == np.float64 and lum.shape == (2, 3)
    # 0.299·255 = 76.2, 0.587·255 = 149.7, 0.114·255 = 29.1; gray stays gray.
    np.testing.assert_array_equal(lum, [[76, 150, 29], [200, 200, 200]])


def test_luminance_accepts_unit_float_gray_and_rgba() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    reference = to_luminance(rgb)
    np.testing.assert_array_equal(to_luminance(rgb.astype(np.float32) / 255.0), reference)
    np.testing.assert_array_equal(to_luminance(rgb.astype(np.float64)), reference)
    rgba = np.concatenate([rgb, np.zeros((8, 9, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(to_luminance(rgba), reference)
    gray = rgb[..., 0]
    np.testing.assert_array_equal(to_luminance(gray), gray.astype(np.float64))
    np.testing.assert_array_equal(to_luminance(gray[..., None]), gray.astype(np.float64))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4,), np.uint8),
        np.zeros((4, 4), np.int16),
        np.full((4, 4), np.nan),
    ],
)
def test_luminance_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        to_luminance(bad)


# --------------------------------------------------------------------------- single image


def test_constant_image_has_no_information() -> None:
    flat = np.full((20, 30), 87.0)
    assert en(flat) == 0.0
    assert sd(flat) == 0.0
    assert sf(flat) == 0.0
    assert ag(flat) == 0.0


def test_two_level_image_entropy_and_deviation() -> None:
    img = np.zeros((10, 10))
    img[:, 5:] = 255.0
    assert en(img) == pytest.approx(1.0)
    assert sd(img) == pytest.approx(127.5)
    four_levels = np.repeat(np.array([[0.0, 10.0, 20.0, 30.0]]), 5, axis=0)
    assert en(four_levels) == pytest.approx(2.0)


def test_ramp_spatial_frequency_and_average_gradient() -> None:
    ramp = np.tile(np.arange(12, dtype=np.float64) * 3.0, (7, 1))  # +3 per column
    # RF² = 9 (every horizontal neighbour differs by 3), CF² = 0.
    assert sf(ramp) == pytest.approx(3.0)
    # Central and one-sided differences are both 3: sqrt((9 + 0) / 2) everywhere.
    assert ag(ramp) == pytest.approx(3.0 / math.sqrt(2.0))
    assert sf(ramp.T) == pytest.approx(3.0)
    assert ag(ramp.T) == pytest.approx(3.0 / math.sqrt(2.0))


def test_spatial_frequency_averages_each_direction_separately() -> None:
    stripes = np.zeros((6, 8))
    stripes[::2, :] = 10.0  # rows alternate 10, 0: every vertical step is 10
    assert sf(stripes) == pytest.approx(10.0)
    both = stripes + np.tile([0.0, 4.0], (6, 4))  # add columns alternating 0, 4
    assert sf(both) == pytest.approx(math.sqrt(100.0 + 16.0))


# --------------------------------------------------------------------------- two sources


def test_mutual_information_of_identical_images_is_entropy_in_nats() -> None:
    plane = _random_plane(1)
    entropy = _entropy_nats(plane)
    assert mi(plane, plane, plane) == pytest.approx(2 * entropy)
    flat = np.full_like(plane, 40.0)
    assert mi(flat, plane, plane) == pytest.approx(entropy)  # a constant source shares nothing
    assert en(plane) == pytest.approx(entropy / math.log(2))


def test_mutual_information_is_invariant_to_relabelling_gray_levels() -> None:
    plane = _random_plane(2)
    inverted = 255.0 - plane
    assert mi(inverted, inverted, plane) == pytest.approx(mi(plane, plane, plane))


def test_scd_of_sum_construction_is_two() -> None:
    ir, vi = _random_plane(3), _random_plane(4)
    # F − VI = IR and F − IR = VI exactly: both correlations are 1.
    assert scd(ir, vi, ir + vi) == pytest.approx(2.0)
    assert scd(ir, vi, ir + vi) == pytest.approx(scd(vi, ir, ir + vi))  # symmetric in sources
    # A constant F gives F − VI = −VI and F − IR = −IR: SCD = −2·corr(IR, VI).
    flat = np.full_like(ir, 10.0)
    assert scd(ir, ir, flat) == pytest.approx(-2.0)
    assert scd(ir, vi, flat) == pytest.approx(-2 * np.corrcoef(ir.ravel(), vi.ravel())[0, 1])


def test_scd_with_fused_equal_to_a_source_is_finite() -> None:
    ir, vi = _random_plane(5), _random_plane(6)
    value = scd(ir, vi, vi)  # F − VI = 0 contributes 0 instead of the evaluator's NaN
    expected = np.corrcoef((vi - ir).ravel(), vi.ravel())[0, 1]
    assert value == pytest.approx(expected)


def test_vif_identity_flat_reference_and_degradation() -> None:
    plane = _random_plane(7, (64, 80))
    assert vif(plane, plane, plane) == pytest.approx(2.0, abs=1e-6)
    flat = np.full_like(plane, 100.0)
    assert vif(flat, flat, plane) == 2.0  # 0/0 per source counts as 1, as in the evaluator
    blurred = cv2.GaussianBlur(plane, (0, 0), 2.0)
    assert 0.0 < vif(plane, plane, blurred) < 2.0 * 0.8


def test_qabf_fused_equal_to_both_sources() -> None:
    plane = _random_plane(8)
    # Equal strengths take the evaluator's "relative strength = magnitude" branch (≥ 1 here), so
    # Q_g ≈ Γg; equal orientations give Q_α = Γα / (1 + e^{κα (1 − σα)}).
    expected = 0.9994 * 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))
    assert qabf(plane, plane, plane) == pytest.approx(expected, rel=1e-3)


def test_qabf_equal_strength_quirk_is_kept() -> None:
    # The evaluator's relative strength is min/max, except where both magnitudes are equal: then
    # it is the magnitude itself (3 → Q_g = Γg instead of Q_g(1); 0 → Q_g(0)).
    q_alpha = 0.9879 / (1 + math.exp(-22 * (1 - 0.8)))
    strengths = np.array([3.0, 0.0, 2.0])
    fused_strengths = np.array([3.0, 0.0, 4.0])
    angles = np.zeros(3)
    preserved = metrics._edge_preservation(strengths, angles, fused_strengths, angles)
    expected_q_g = [
        0.9994 / (1 + math.exp(-15 * (3.0 - 0.5))),
        0.9994 / (1 + math.exp(-15 * (0.0 - 0.5))),
        0.9994 / (1 + math.exp(-15 * (0.5 - 0.5))),
    ]
    np.testing.assert_allclose(preserved, np.array(expected_q_g) * q_alpha, rtol=1e-9)


def test_qabf_flat_fusion_preserves_no_edges() -> None:
    ir, vi = _random_plane(9), _random_plane(10)
    # All-zero F: no edges even at the border (Sobel uses zero padding, so a constant 128 would
    # have a frame of strong edges).
    assert qabf(ir, vi, np.zeros_like(ir)) < 1e-3
    assert qabf(ir, vi, np.full_like(ir, 128.0)) > 0.05
    good = qabf(ir, vi, np.maximum(ir, vi))
    assert 0.2 < good < 1.0


def test_qabf_is_symmetric_in_sources() -> None:
    ir, vi = _random_plane(11), _random_plane(12)
    fused = 0.5 * (ir + vi)
    assert qabf(ir, vi, fused) == pytest.approx(qabf(vi, ir, fused))


def test_ssim_of_identical_images_sums_to_two() -> None:
    plane = _random_plane(13)
    assert ssim(plane, plane, plane) == pytest.approx(2.0)


def test_ssim_constants_use_float_data_range_two() -> None:
    # Constant windows reduce SSIM to (2 μx μy + C1) / (μx² + μy² + C1) with C1 = (0.01·2)²;
    # with data range 255 the first value would be 0.87 instead of ≈ 0.0004.
    zeros, ones = np.zeros((16, 16)), np.ones((16, 16))
    c1 = (0.01 * 2) ** 2
    assert ssim(ones, ones, zeros) == pytest.approx(2 * c1 / (1 + c1))
    fifty, hundred = np.full((16, 16), 50.0), np.full((16, 16), 100.0)
    assert ssim(fifty, hundred, hundred) == pytest.approx(0.8 + 1.0, rel=1e-6)


def test_ssim_uses_sample_covariance_over_7x7_windows() -> None:
    # A 7×7 image has exactly one window once the 3-pixel border is cropped. Against a constant
    # of the same mean the luminance term is 1 and SSIM = C2 / (49/48·σ² + C2); with the
    # population variance σ² = C2 = (0.03·2)² that is 48/97 (it would be 1/2 without 49/48).
    rng = np.random.default_rng(14)
    pattern = rng.normal(size=(7, 7))
    pattern = (pattern - pattern.mean()) / pattern.std()
    textured = 100.0 + 0.06 * pattern
    flat = np.full((7, 7), textured.mean())
    assert ssim(flat, flat, textured) == pytest.approx(2 * 48 / 97, rel=1e-6)


def test_ssim_single_window_anti_correlated() -> None:
    rng = np.random.default_rng(15)
    x = rng.uniform(50, 150, (7, 7))
    y = 200.0 - x  # same variance, correlation −1: structure term ≈ −1
    mean_term = (2 * x.mean() * y.mean()) / (x.mean() ** 2 + y.mean() ** 2)
    assert ssim(y, y, x) / 2 == pytest.approx(-mean_term, rel=1e-4)


# --------------------------------------------------------------------------- all at once


def test_compute_all_keys_and_size_check() -> None:
    rng = np.random.default_rng(15)
    ir = rng.integers(0, 256, (32, 40), dtype=np.uint8)
    vi = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    values = compute_all(ir, vi, vi)
    assert tuple(values) == METRIC_NAMES
    assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    assert set(metrics.HIGHER_IS_BETTER) == set(METRIC_NAMES)
    with pytest.raises(InputError, match="sizes differ"):
        compute_all(ir, vi, vi[:-1])


# Reference values: computed once with a transcription of MMIF-CDDFuse utils/Evaluator.py
# (commit 40de058; sklearn mutual_info_score, skimage structural_similarity with the float
# data range 2 of scikit-image 0.19) on msrs100 sources and the SeAFusion fused images, all
# read with its image_read_cv2(..., 'GRAY'). Our values agree to < 3e-4 (SSIM: the evaluator
# runs skimage in float32); 1e-3 is tight enough to catch a convention slip (e.g. the Sobel
# sign in Qabf moves 00131D by 1.4e-3) and loose enough for float32 noise.
REFERENCE = {
    "00012N": {
        "EN": 6.302573, "SD": 37.826538, "SF": 6.270088, "AG": 2.031072, "MI": 2.680281,
        "SCD": 1.663932, "VIF": 0.975117, "Qabf": 0.616528, "SSIM": 1.013724,
    },
    "00055D": {
        "EN": 7.169811, "SD": 70.292549, "SF": 20.937206, "AG": 6.633654, "MI": 3.339762,
        "SCD": 1.731196, "VIF": 0.869028, "Qabf": 0.757975, "SSIM": 0.960139,
    },
    "00131D": {
        "EN": 7.071755, "SD": 42.795574, "SF": 14.746102, "AG": 4.448346, "MI": 3.113313,
        "SCD": 1.813677, "VIF": 0.874693, "Qabf": 0.672477, "SSIM": 0.984432,
    },
}  # fmt: skip


@pytest.mark.parametrize("stem", sorted(REFERENCE))
def test_matches_reference_evaluator_on_msrs(data_dir: Path, stem: str) -> None:
    msrs = data_dir / "val" / "msrs100"
    fused_path = data_dir / "val" / "msrs100_peers" / "SeAFusion" / f"{stem}.png"
    if not fused_path.is_file():
        pytest.skip(f"SeAFusion outputs not found at {fused_path.parent}")
    ir = cv2.imread(str(msrs / "ir" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    vi = cv2.cvtColor(cv2.imread(str(msrs / "vi" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
    fused = cv2.cvtColor(cv2.imread(str(fused_path)), cv2.COLOR_BGR2RGB)
    values = compute_all(ir, vi, fused)
    for name in METRIC_NAMES:
        assert values[name] == pytest.approx(REFERENCE[stem][name], rel=1e-3), name
