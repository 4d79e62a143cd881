"""Thermal → RGB registration: none / homography, different resolutions, bad matrices."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.io.registration import Registration, scaling_homography


def test_none_passes_same_size_through() -> None:
    thermal = np.random.default_rng(0).random((64, 80), dtype=np.float32)
    assert Registration.from_parameters("none", None).apply(thermal, (64, 80, 3)) is thermal


def test_none_rejects_different_sizes_with_a_reason() -> None:
    with pytest.raises(InputError) as raised:
        Registration().apply(np.zeros((512, 640), np.float32), (720, 1280, 3))
    assert raised.value.reason == "size_mismatch"
    assert "registration.mode" in str(raised.value)


def test_identity_homography_keeps_the_image() -> None:
    thermal = np.random.default_rng(1).random((30, 40), dtype=np.float32)
    identity = Registration.from_parameters("homography", np.eye(3).reshape(-1).tolist())
    np.testing.assert_allclose(identity.apply(thermal, (30, 40)), thermal, atol=1e-6)


def test_640x512_thermal_onto_1280x720_rgb() -> None:
    thermal = np.zeros((512, 640), np.float32)
    thermal[246:266, 310:330] = 1.0  # hot square around the thermal centre (320, 256)
    matrix = scaling_homography((640, 512), (1280, 720))
    warped = Registration.from_parameters("homography", matrix).apply(thermal, (720, 1280, 3))
    assert warped.shape == (720, 1280) and warped.dtype == np.float32
    ys, xs = np.nonzero(warped > 0.5)
    assert abs(xs.mean() - 640) < 2 and abs(ys.mean() - 360) < 2  # lands on the RGB centre
    assert 36 <= xs.max() - xs.min() + 1 <= 44  # 20 px wide × 2 horizontally


def test_translation_moves_content() -> None:
    thermal = np.zeros((50, 50), np.float32)
    thermal[10, 10] = 1.0
    shift = [1.0, 0.0, 5.0, 0.0, 1.0, -3.0, 0.0, 0.0, 1.0]
    warped = Registration.from_parameters("homography", shift).apply(thermal, (50, 50))
    assert np.unravel_index(np.argmax(warped), warped.shape) == (7, 15)


@pytest.mark.parametrize(
    ("mode", "matrix"),
    [
        ("affine", None),
        ("homography", [1.0, 0.0, 0.0]),
        ("homography", [0.0] * 9),
        ("homography", [1.0, 0.0, 0.0, 0.0, float("nan"), 0.0, 0.0, 0.0, 1.0]),
        ("none", [1.0, 0.0, 0.0]),  # a broken matrix is refused even while it is not used
    ],
)
def test_bad_configuration_is_refused(mode: str, matrix: list[float] | None) -> None:
    with pytest.raises(ValueError):
        Registration.from_parameters(mode, matrix)


def test_matrix_ignored_by_mode_none_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shift = [1.0, 0.0, 12.0, 0.0, 1.0, -4.0, 0.0, 0.0, 1.0]
    with caplog.at_level(logging.WARNING, logger="sgdfuse_ros.io.registration"):
        assert Registration.from_parameters("none", np.eye(3).reshape(-1).tolist()).mode == "none"
        assert not caplog.records  # the default identity says nothing
        assert Registration.from_parameters("none", shift).homography is None
    (record,) = caplog.records
    assert "registration.mode is none: the matrix is ignored" in record.getMessage()
