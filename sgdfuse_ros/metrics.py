"""Reference-free fusion quality metrics: EN SD SF AG MI SCD VIF Qabf SSIM (numpy + OpenCV only).

Published infrared-visible fusion tables (MSRS, TNO, RoadScene, M3FD) are almost all computed
with one Python evaluator (the ``Evaluator`` class of MMIF-CDDFuse, copied by many later papers).
Numbers are only comparable with those tables when every convention matches, including its
quirks, so each function below follows that evaluator and its docstring names the convention:

* every image is reduced to luminance ``round(0.299 R + 0.587 G + 0.114 B)`` as float in 0-255
  (the evaluator reads files with OpenCV as float32, converts to gray and rounds);
* EN in bits, MI in nats, and the two-source metrics (MI, SCD, VIF, Qabf, SSIM) as the *sum*
  over the infrared and the visible source where the evaluator sums (all but Qabf, which
  pools both sources into one score).

Metric functions take luminance planes (H×W, float 0-255, e.g. from :func:`to_luminance`);
:func:`compute_all` takes raw images and converts them itself.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from sgdfuse_ros.errors import InputError

METRIC_NAMES: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
HIGHER_IS_BETTER: dict[str, bool] = {name: True for name in METRIC_NAMES}

_GRAY_LEVELS = 256


# --------------------------------------------------------------------------- conversion


def to_luminance(img: np.ndarray) -> np.ndarray:
    """Convert an image to the evaluator's gray plane: float64 H×W holding integers 0-255.

    Accepts H×W, H×W×1, H×W×3 (RGB) or H×W×4 (RGBA, alpha ignored), as uint8 or float. Float
    images whose maximum is at most 1 are taken as unit range and scaled by 255, other floats
    as already 0-255. Colour uses OpenCV's float RGB→gray weights (0.299, 0.587, 0.114) and
    the result is rounded, exactly as the evaluator does after ``cv2.imread``; rounding also
    makes a float network output score the same as the 8-bit file it would be saved as.
    """
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"expected an H×W or H×W×3 image, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError("empty image")
    if arr.dtype == np.uint8:
        scale = 1.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError("image contains NaN or inf")
        scale = 255.0 if float(arr.max()) <= 1.0 else 1.0
    else:
        raise InputError(f"unsupported image dtype {arr.dtype}; use uint8 or float")
    plane = arr.astype(np.float32) * np.float32(scale)
    if plane.ndim == 3:
        # BGR order on purpose: OpenCV's float RGB2GRAY sums the products in another order, which
        # flips the rounding of a few exact .5 values relative to the evaluator's BGR2GRAY.
        bgr = np.ascontiguousarray(plane[..., 2::-1])
        plane = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return np.clip(np.round(plane), 0, 255).astype(np.float64)


def _plane(img: np.ndarray, name: str = "image") -> np.ndarray:
    """A metric input as float64 H×W; the metrics work on planes, not colour images."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D luminance plane (to_luminance), got {arr.shape}")
    return arr


def _gray_levels(img: np.ndarray) -> np.ndarray:
    """Integer gray levels 0-255 (flattened) for histogram-based metrics."""
    return np.clip(np.round(_plane(img)), 0, _GRAY_LEVELS - 1).astype(np.intp).ravel()


def _planes(*imgs: np.ndarray) -> list[np.ndarray]:
    planes = [_plane(img, name) for img, name in zip(imgs, ("ir", "vi", "fused"), strict=False)]
    if len({p.shape for p in planes}) != 1:
        raise InputError(f"image sizes differ: {[p.shape for p in planes]}")
    return planes


# --------------------------------------------------------------------------- single image


def en(f: np.ndarray) -> float:
    """Shannon entropy in bits of the 256-bin gray-level histogram (values rounded to 0-255)."""
    hist = np.bincount(_gray_levels(f), minlength=_GRAY_LEVELS).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def sd(f: np.ndarray) -> float:
    """Standard deviation (population, ``ddof=0``) of the gray values: global contrast."""
    return float(np.std(_plane(f)))


def sf(f: np.ndarray) -> float:
    """Spatial frequency ``sqrt(RF² + CF²)``.

    RF² is the mean squared difference of horizontally adjacent pixels and CF² that of
    vertically adjacent ones, each averaged over its own (W−1)·H or W·(H−1) differences.
    """
    plane = _plane(f)
    row_freq_sq = np.mean(np.diff(plane, axis=1) ** 2)
    col_freq_sq = np.mean(np.diff(plane, axis=0) ** 2)
    return float(np.sqrt(row_freq_sq + col_freq_sq))


def ag(f: np.ndarray) -> float:
    """Average gradient ``mean(sqrt((Gx² + Gy²) / 2))``.

    Gx, Gy are central differences ``(I[x+1] − I[x−1]) / 2`` inside the image and one-sided
    differences on the first and last row/column (what ``np.gradient`` computes).
    """
    grad_y, grad_x = np.gradient(_plane(f))
    return float(np.mean(np.sqrt((grad_x**2 + grad_y**2) / 2.0)))


# --------------------------------------------------------------------------- two sources


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """MI in nats from the 256×256 joint histogram of the rounded gray levels."""
    joint = np.bincount(
        _gray_levels(a) * _GRAY_LEVELS + _gray_levels(b), minlength=_GRAY_LEVELS**2
    ).astype(np.float64)
    joint = joint.reshape(_GRAY_LEVELS, _GRAY_LEVELS) / joint.sum()
    marginal_a = joint.sum(axis=1, keepdims=True)
    marginal_b = joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    ratio = joint[nonzero] / (marginal_a @ marginal_b)[nonzero]
    return float(np.sum(joint[nonzero] * np.log(ratio)))


def mi(ir: np.ndarray, vi: np.ndarray, f: np.ndarray) -> float:
    """Mutual information in nats, ``MI(F, IR) + MI(F, VI)``.

    Discrete MI of the rounded gray levels (256-bin joint histogram), the value that
    ``sklearn.metrics.mutual_info_score`` gives on the evaluator's integer-valued planes.
    """
    ir, vi, f = _planes(ir, vi, f)
    return _mutual_information(f, ir) + _mutual_information(f, vi)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either signal is constant (the evaluator gives NaN there)."""
    a_centred = a - a.mean()
    b_centred = b - b.mean()
    denominator = math.sqrt(float(np.sum(a_centred**2)) * float(np.sum(b_centred**2)))
    if denominator == 0.0:
        return 0.0
    return float(np.sum(a_centred * b_centred)) / denominator


def scd(ir: np.ndarray, vi: np.ndarray, f: np.ndarray) -> float:
    """Sum of the correlations of differences, ``corr(F − VI, IR) + corr(F − IR, VI)``.

    ``F − VI`` is what the fusion took from the infrared image (and vice versa), so each term
    asks how much of the *other* source made it into F. Range [−2, 2]. A term whose difference
    image or source is constant is 0 here, where the evaluator returns NaN (which would poison
    dataset means, e.g. for the "fused = visible" baseline).
    """
    ir, vi, f = _planes(ir, vi, f)
    return _correlation(f - vi, ir) + _correlation(f - ir, vi)


def _gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB's ``fspecial('gaussian', size, sigma)`` (the 2-D window is its outer
    product; for the sizes used here no tap falls under MATLAB's eps cut-off)."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def _filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable direct filtering keeping only the 'valid' part (window fully inside)."""
    radius = len(taps) // 2
    full = cv2.sepFilter2D(img, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_REFLECT)
    return full[radius:-radius, radius:-radius]


def _vif_pixel(ref: np.ndarray, dist: np.ndarray) -> float:
    """VIFp (Sheikh & Bovik, pixel domain, 4 scales) of ``dist`` against ``ref``.

    Windows are Gaussians of size 17, 9, 5, 3 with sigma = size / 5; before scales 2-4 both
    images are low-passed with that scale's window ('valid') and decimated by 2. Noise variance
    sigma_n² = 2, eps = 1e-10, and the evaluator's clamping of negative variances and gains. A
    completely flat reference (0 / 0) scores 1, as in the evaluator.
    """
    noise_var = 2.0
    eps = 1e-10
    numerator = 0.0
    denominator = 0.0
    for scale in range(1, 5):
        size = 2 ** (5 - scale) + 1
        taps = _gaussian_taps(size, size / 5.0)
        if scale > 1:
            ref = _filter_valid(ref, taps)[::2, ::2]
            dist = _filter_valid(dist, taps)[::2, ::2]
        mu_ref = _filter_valid(ref, taps)
        mu_dist = _filter_valid(dist, taps)
        var_ref = np.maximum(_filter_valid(ref * ref, taps) - mu_ref**2, 0.0)
        var_dist = np.maximum(_filter_valid(dist * dist, taps) - mu_dist**2, 0.0)
        covariance = _filter_valid(ref * dist, taps) - mu_ref * mu_dist

        gain = covariance / (var_ref + eps)
        distortion_var = var_dist - gain * covariance
        flat_ref = var_ref < eps
        gain[flat_ref] = 0.0
        distortion_var[flat_ref] = var_dist[flat_ref]
        var_ref[flat_ref] = 0.0
        flat_dist = var_dist < eps
        gain[flat_dist] = 0.0
        distortion_var[flat_dist] = 0.0
        negative_gain = gain < 0
        distortion_var[negative_gain] = var_dist[negative_gain]
        gain[negative_gain] = 0.0
        distortion_var = np.maximum(distortion_var, eps)

        numerator += np.sum(np.log10(1.0 + gain**2 * var_ref / (distortion_var + noise_var)))
        denominator += np.sum(np.log10(1.0 + var_ref / noise_var))
    if denominator == 0.0:
        return 1.0
    return float(numerator / denominator)


def vif(ir: np.ndarray, vi: np.ndarray, f: np.ndarray) -> float:
    """Visual information fidelity, ``VIFp(IR → F) + VIFp(VI → F)`` (VIFF of the evaluator).

    Each term is the pixel-domain multiscale VIF (see :func:`_vif_pixel`) with the source as
    reference and the fused image as the distorted image.
    """
    ir, vi, f = _planes(ir, vi, f)
    return _vif_pixel(ir, f) + _vif_pixel(vi, f)


# The evaluator *convolves* with Sobel kernels [[-1,0,1],[-2,0,2],[-1,0,1]] (x) and
# [[1,2,1],[0,0,0],[-1,-2,-1]] (y); these are the same operations written for correlation
# (cv2.filter2D). Only Gx changes sign, and that matters: orientations are compared with the
# π/2 assigned where Gx = 0, so the other sign convention moves Qabf by about 0.1 %.
_SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
_SOBEL_Y = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64)


def _edge_strength_orientation(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel magnitude and orientation ``arctan(Gy / Gx)`` (π/2 where Gx = 0), zero padding."""
    grad_x = cv2.filter2D(img, cv2.CV_64F, _SOBEL_X, borderType=cv2.BORDER_CONSTANT)
    grad_y = cv2.filter2D(img, cv2.CV_64F, _SOBEL_Y, borderType=cv2.BORDER_CONSTANT)
    strength = np.sqrt(grad_x**2 + grad_y**2)
    orientation = np.full(img.shape, math.pi / 2)
    has_x = grad_x != 0
    orientation[has_x] = np.arctan(grad_y[has_x] / grad_x[has_x])
    return strength, orientation


def _edge_preservation(
    strength_src: np.ndarray,
    orientation_src: np.ndarray,
    strength_f: np.ndarray,
    orientation_f: np.ndarray,
) -> np.ndarray:
    """Per-pixel edge preservation Q^{SF} = Q_g · Q_α with the Xydeas-Petrović sigmoids.

    Relative strength is min/max of the two magnitudes; where they are exactly equal the
    evaluator uses the magnitude itself (0 for two flat pixels, so Q_g ≈ 0.0006 there, and ≥ 1
    otherwise, so Q_g ≈ 0.9994); that quirk is kept so the numbers match published tables.
    """
    unequal = strength_src != strength_f
    relative_strength = np.divide(
        np.minimum(strength_src, strength_f),
        np.maximum(strength_src, strength_f),
        out=strength_f.copy(),
        where=unequal,
    )
    relative_orientation = 1.0 - np.abs(orientation_src - orientation_f) / (math.pi / 2)
    strength_term = 0.9994 / (1.0 + np.exp(-15.0 * (relative_strength - 0.5)))
    orientation_term = 0.9879 / (1.0 + np.exp(-22.0 * (relative_orientation - 0.8)))
    return strength_term * orientation_term


def qabf(ir: np.ndarray, vi: np.ndarray, f: np.ndarray) -> float:
    """Gradient-based fusion performance Q^{AB/F} (Xydeas & Petrović), in [0, 1].

    Sobel edges with zero padding; the per-pixel preservation of each source's edges in F is
    weighted by that source's edge strength (L = 1) and pooled over both sources:
    ``Σ(Q^{IR,F}·g_IR + Q^{VI,F}·g_VI) / Σ(g_IR + g_VI)``. Constants Γg = 0.9994, κg = −15,
    σg = 0.5, Γα = 0.9879, κα = −22, σα = 0.8.
    """
    ir, vi, f = _planes(ir, vi, f)
    strength_ir, orientation_ir = _edge_strength_orientation(ir)
    strength_vi, orientation_vi = _edge_strength_orientation(vi)
    strength_f, orientation_f = _edge_strength_orientation(f)
    preserved_ir = _edge_preservation(strength_ir, orientation_ir, strength_f, orientation_f)
    preserved_vi = _edge_preservation(strength_vi, orientation_vi, strength_f, orientation_f)
    total_weight = float(np.sum(strength_ir + strength_vi))
    if total_weight == 0.0:
        return float("nan")
    return float(np.sum(preserved_ir * strength_ir + preserved_vi * strength_vi) / total_weight)


# The evaluator calls skimage's structural_similarity with its defaults on float images, so the
# data range is the float dtype range (-1, 1) -> 2, not 255: C1, C2 are tiny for 0-255 data.
_SSIM_WINDOW = 7
_SSIM_DATA_RANGE = 2.0
_SSIM_C1 = (0.01 * _SSIM_DATA_RANGE) ** 2
_SSIM_C2 = (0.03 * _SSIM_DATA_RANGE) ** 2


def _ssim_pair(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM with skimage's defaults (see :func:`ssim`)."""
    if min(x.shape) < _SSIM_WINDOW:
        raise InputError(f"SSIM needs images of at least {_SSIM_WINDOW}×{_SSIM_WINDOW}")

    def box_mean(img: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(
            img, cv2.CV_64F, (_SSIM_WINDOW, _SSIM_WINDOW), borderType=cv2.BORDER_REFLECT
        )

    window_pixels = _SSIM_WINDOW * _SSIM_WINDOW
    sample_correction = window_pixels / (window_pixels - 1)
    mean_x, mean_y = box_mean(x), box_mean(y)
    var_x = sample_correction * (box_mean(x * x) - mean_x**2)
    var_y = sample_correction * (box_mean(y * y) - mean_y**2)
    cov_xy = sample_correction * (box_mean(x * y) - mean_x * mean_y)
    ssim_map = ((2 * mean_x * mean_y + _SSIM_C1) * (2 * cov_xy + _SSIM_C2)) / (
        (mean_x**2 + mean_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    border = (_SSIM_WINDOW - 1) // 2
    return float(ssim_map[border:-border, border:-border].mean())


def ssim(ir: np.ndarray, vi: np.ndarray, f: np.ndarray) -> float:
    """Structural similarity summed over the sources, ``SSIM(F, IR) + SSIM(F, VI)`` (max 2).

    Matches ``skimage.metrics.structural_similarity(F, S)`` with its defaults as the evaluator
    calls it on float images (scikit-image 0.19): 7×7 uniform window, sample covariance
    (×49/48), K1 = 0.01, K2 = 0.03, data range 2 (the float dtype range, *not* 255), and the
    mean over the map without its 3-pixel border.
    """
    ir, vi, f = _planes(ir, vi, f)
    return _ssim_pair(f, ir) + _ssim_pair(f, vi)


# --------------------------------------------------------------------------- all at once


def compute_luminance_metrics(
    ir_lum: np.ndarray, vi_lum: np.ndarray, fused_lum: np.ndarray
) -> dict[str, float]:
    """All metrics of :data:`METRIC_NAMES` for luminance planes that are already converted."""
    ir_lum, vi_lum, fused_lum = _planes(ir_lum, vi_lum, fused_lum)
    return {
        "EN": en(fused_lum),
        "SD": sd(fused_lum),
        "SF": sf(fused_lum),
        "AG": ag(fused_lum),
        "MI": mi(ir_lum, vi_lum, fused_lum),
        "SCD": scd(ir_lum, vi_lum, fused_lum),
        "VIF": vif(ir_lum, vi_lum, fused_lum),
        "Qabf": qabf(ir_lum, vi_lum, fused_lum),
        "SSIM": ssim(ir_lum, vi_lum, fused_lum),
    }


def compute_all(ir: np.ndarray, vi: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """All metrics for raw images (any form :func:`to_luminance` accepts), keyed by METRIC_NAMES."""
    planes = [to_luminance(img) for img in (ir, vi, fused)]
    if len({p.shape for p in planes}) != 1:
        raise InputError(
            f"image sizes differ: ir {planes[0].shape}, vi {planes[1].shape}, "
            f"fused {planes[2].shape}"
        )
    return compute_luminance_metrics(*planes)
