"""Bring the thermal frame into the RGB camera's geometry before fusion.

The fused image lives in the RGB frame (it carries the RGB header and camera info), so the
thermal image is the one that moves. ``none`` requires both images to have the same size;
``homography`` warps thermal pixels with a 3×3 matrix that maps thermal pixel coordinates to
RGB pixel coordinates, which also handles different resolutions (e.g. 640×512 → 1280×720).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sgdfuse_ros.errors import InputError

REGISTRATION_MODES = ("none", "homography")

logger = logging.getLogger(__name__)


class RegistrationMismatchError(InputError):
    """Thermal and RGB sizes differ and no registration is configured."""

    reason = "size_mismatch"


@dataclass(frozen=True)
class Registration:
    """A configured thermal → RGB mapping."""

    mode: str = "none"
    homography: np.ndarray | None = None  # 3×3 float64, thermal px -> RGB px

    @classmethod
    def from_parameters(cls, mode: str, matrix: Sequence[float] | None) -> Registration:
        """Validate the node / CLI parameters: a mode and, for homography, 9 row-major numbers.

        A matrix given with mode ``none`` is still checked, and a non-identity one is named in a
        warning: it is ignored, which is what an operator who forgot the mode did not intend.
        """
        if mode not in REGISTRATION_MODES:
            raise ValueError(
                f"unknown registration.mode {mode!r}; use " + " or ".join(REGISTRATION_MODES)
            )
        if mode == "none":
            if matrix is not None and not np.allclose(_checked_matrix(matrix), np.eye(3)):
                logger.warning(
                    "registration.homography is not the identity but registration.mode is none: "
                    "the matrix is ignored (set registration.mode to homography to warp thermal)"
                )
            return cls("none", None)
        homography = _checked_matrix(matrix or [])
        if abs(np.linalg.det(homography)) < 1e-12:
            raise ValueError("registration.homography is singular (determinant ~ 0)")
        return cls("homography", homography / homography[2, 2] if homography[2, 2] else homography)

    def apply(self, thermal: np.ndarray, rgb_shape: tuple[int, ...]) -> np.ndarray:
        """Thermal image (H×W, any dtype OpenCV warps) resampled onto the RGB pixel grid."""
        rgb_height, rgb_width = int(rgb_shape[0]), int(rgb_shape[1])
        if self.mode == "none":
            if thermal.shape[:2] != (rgb_height, rgb_width):
                raise RegistrationMismatchError(
                    f"thermal {thermal.shape[1]}x{thermal.shape[0]} and RGB {rgb_width}x{rgb_height} "
                    "differ in size and registration.mode is none; set registration.mode: "
                    "homography with a 3×3 matrix"
                )
            return thermal
        import cv2

        return cv2.warpPerspective(
            thermal,
            self.homography,
            (rgb_width, rgb_height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )


def _checked_matrix(matrix: Sequence[float]) -> np.ndarray:
    """The 3×3 matrix of 9 finite row-major numbers, or ValueError naming the parameter."""
    values = [float(v) for v in matrix]
    if len(values) != 9:
        raise ValueError(
            f"registration.homography needs 9 numbers (3×3, row-major), got {len(values)}"
        )
    homography = np.asarray(values, np.float64).reshape(3, 3)
    if not np.isfinite(homography).all():
        raise ValueError("registration.homography contains NaN/inf")
    return homography


def scaling_homography(thermal_size: tuple[int, int], rgb_size: tuple[int, int]) -> list[float]:
    """Row-major 3×3 matrix that stretches a (width, height) thermal frame onto the RGB frame.

    A starting point for co-located cameras with the same field of view; a calibrated matrix
    replaces it on a real rig.
    """
    sx = rgb_size[0] / thermal_size[0]
    sy = rgb_size[1] / thermal_size[1]
    # pixel centres map onto pixel centres: x' + 0.5 = s·(x + 0.5)
    return [sx, 0.0, 0.5 * (sx - 1.0), 0.0, sy, 0.5 * (sy - 1.0), 0.0, 0.0, 1.0]
