"""Inputs shared by the prior backends: the IR/VIS pair check and SAM's point prompts.

numpy + OpenCV only, so the classical backend and the ONNX/TensorRT prior path use the same
prompts as the torch SAM path without importing torch.
"""

from __future__ import annotations

import numpy as np

from sgdfuse_ros.errors import InputError


def check_pair(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prior backend's input pair; return (ir float32 H×W in [0,1], vis uint8 H×W×3).

    Raised here once, with a message that says what to pass, instead of deep inside OpenCV or
    torch with a shape error. IR values outside [0, 1] (rounding of upstream gain control) are
    clipped.
    """
    ir = np.asarray(ir)
    vis = np.asarray(vis)
    if ir.ndim != 2 or ir.size == 0:
        raise InputError(
            f"infrared prior input must be a non-empty H×W array, got shape {ir.shape}"
        )
    if not np.issubdtype(ir.dtype, np.floating):
        raise InputError(
            f"infrared prior input must be float in [0, 1], got {ir.dtype}; "
            "convert with sgdfuse_ros.imaging.ir_to_unit"
        )
    if vis.ndim != 3 or vis.shape[2] != 3 or vis.dtype != np.uint8:
        raise InputError(
            f"visible prior input must be uint8 H×W×3 RGB, got {vis.dtype} shape {vis.shape}"
        )
    if vis.shape[:2] != ir.shape:
        raise InputError(
            f"infrared {ir.shape} and visible {vis.shape[:2]} sizes differ; register the pair first"
        )
    if not np.isfinite(ir).all():
        raise InputError("infrared prior input contains NaN or inf")
    return np.clip(ir, 0.0, 1.0).astype(np.float32, copy=False), np.ascontiguousarray(vis)


def thermal_hotspot_points(
    ir: np.ndarray,
    max_points: int = 16,
    percentile: float = 95.0,
    smooth_fraction: float = 0.01,
    nms_fraction: float = 0.05,
    work_size: int = 512,
) -> np.ndarray:
    """Point prompts on the hottest objects of a thermal frame, as (N, 2) float32 (x, y) pixels.

    People, vehicles and engines are local temperature maxima, so SAM prompted there segments
    the objects the fusion should keep. Steps: Gaussian smoothing (sigma = ``smooth_fraction``
    of the longest side, so sensor noise makes no peaks), local maxima (equal to their dilation)
    strictly above the ``percentile`` of the smoothed frame, greedy non-maximum suppression
    (peaks closer than ``nms_fraction`` of the longest side to a hotter one are dropped), at
    most ``max_points``. A frame without such peaks (flat, or one large hot plateau) falls back
    to the brightest pixels under the same suppression, so SAM always gets at least one prompt.
    Large frames are searched at ``work_size`` on the longest side (peaks are wider than the
    lost detail) and the points mapped back.
    """
    import cv2

    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    height, width = ir.shape
    scale = min(1.0, work_size / max(height, width))
    work = ir.astype(np.float32, copy=False)
    if scale < 1.0:
        work_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
        work = cv2.resize(work, (work_hw[1], work_hw[0]), interpolation=cv2.INTER_AREA)
    longest = max(work.shape)
    sigma = max(1.0, smooth_fraction * longest)
    smooth = cv2.GaussianBlur(work, (0, 0), sigmaX=sigma, sigmaY=sigma)
    radius = max(1, int(round(nms_fraction * longest)))

    threshold = float(np.percentile(smooth, percentile))
    peak_window = 2 * max(1, int(round(sigma))) + 1
    local_max = smooth >= cv2.dilate(smooth, np.ones((peak_window, peak_window), np.uint8))
    ys, xs = np.nonzero(local_max & (smooth > threshold))
    if ys.size == 0:
        # Fallback: the brightest pixels, on a grid finer than the suppression radius so the
        # points can still spread over a hot plateau, and few enough to stay fast.
        step = max(1, radius // 2)
        sampled = smooth[::step, ::step]
        ys, xs = np.nonzero(sampled >= min(threshold, float(sampled.max())))
        ys, xs = ys * step, xs * step
    values = smooth[ys, xs]
    # Hottest first; ties broken by scan order so the result is deterministic.
    order = np.lexsort((xs, ys, -values))
    points = _suppress_close_points(xs[order], ys[order], radius, max_points)
    if scale < 1.0:
        # Pixel centres: work pixel i covers original [i/scale, (i+1)/scale).
        points = (points + 0.5) * np.array(
            [width / work.shape[1], height / work.shape[0]], np.float32
        ) - 0.5
    return points.astype(np.float32, copy=False)


def _suppress_close_points(
    xs: np.ndarray, ys: np.ndarray, radius: int, max_points: int
) -> np.ndarray:
    """Greedy NMS over points given best first: take the best, drop all within radius, repeat.

    Vectorised per kept point (at most max_points passes), so tens of thousands of fallback
    candidates cost milliseconds.
    """
    xs = xs.astype(np.float32)
    ys = ys.astype(np.float32)
    kept: list[tuple[float, float]] = []
    radius_sq = float(radius * radius)
    while xs.size and len(kept) < max_points:
        x, y = float(xs[0]), float(ys[0])
        kept.append((x, y))
        far = (xs - x) ** 2 + (ys - y) ** 2 >= radius_sq
        xs, ys = xs[far], ys[far]
    return np.asarray(kept, np.float32).reshape(-1, 2)


def grid_points(height: int, width: int, points_per_side: int = 8) -> np.ndarray:
    """A regular points_per_side² grid at cell centres, as (N, 2) float32 (x, y) pixels.

    Visible-light objects have no single cue like heat, so the VIS prior prompts everywhere
    sparsely and lets the mask filters decide what is an object.
    """
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
    centres = (np.arange(points_per_side, dtype=np.float32) + 0.5) / points_per_side
    grid_x, grid_y = np.meshgrid(centres * width, centres * height)
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32)
