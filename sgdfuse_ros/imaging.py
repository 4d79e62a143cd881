"""Image conversions shared by the pipeline, the node, training and the CLI (numpy + OpenCV only)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

AgcMode = Literal["percentile", "minmax", "fixed"]


def thermal_gain(
    raw: np.ndarray,
    mode: AgcMode = "percentile",
    percentiles: tuple[float, float] = (1.0, 99.0),
    fixed_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map a raw thermal image (any numeric dtype) to float32 in [0, 1].

    Radiometric cameras deliver 14/16-bit counts whose useful span is a small slice of the
    dtype range, so a plain division by 65535 gives a black image: this is the automatic gain
    control. ``percentile`` is robust to a few hot pixels, ``minmax`` keeps every value and
    ``fixed`` (a range in raw units) keeps brightness stable across frames.

    Float images are ranged in float64 and through half values, so any finite float32 (even
    ±3e38, whose difference overflows float32) maps into [0, 1] without overflow.
    """
    floating = np.issubdtype(raw.dtype, np.floating)
    img = raw.astype(np.float64 if floating else np.float32, copy=False)
    if mode == "percentile":
        low, high = np.percentile(img, percentiles)
    elif mode == "minmax":
        low, high = float(img.min()), float(img.max())
    elif mode == "fixed":
        if fixed_range is None:
            raise ValueError("thermal_gain mode 'fixed' needs fixed_range=(low, high) in raw units")
        low, high = fixed_range
    else:
        raise ValueError(f"unknown AGC mode {mode!r}; use percentile, minmax or fixed")
    half_low, half_high = 0.5 * float(low), 0.5 * float(high)
    half_span = half_high - half_low
    if not half_span > 0:
        return np.zeros(img.shape, np.float32)
    return np.clip((img * 0.5 - half_low) / half_span, 0.0, 1.0).astype(np.float32)


def ir_to_unit(ir: np.ndarray) -> np.ndarray:
    """Thermal frame as float32 H×W in [0, 1]: uint8 scales by 255, other integers go through AGC.

    Floats are taken as already normalised to [0, 1] (values are clipped).
    """
    if ir.ndim == 3:
        ir = ir[..., 0]
    if ir.dtype == np.uint8:
        return ir.astype(np.float32) / 255.0
    if np.issubdtype(ir.dtype, np.integer):
        return thermal_gain(ir)
    return np.clip(ir.astype(np.float32), 0.0, 1.0)


def read_pair(ir_path: str | Path, vi_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an IR/VIS file pair: IR as H×W (uint8, or uint16 when the file is 16-bit), VIS as H×W×3 RGB uint8."""
    import cv2

    ir = cv2.imread(str(ir_path), cv2.IMREAD_UNCHANGED)
    vi = cv2.imread(str(vi_path), cv2.IMREAD_COLOR)
    if ir is None:
        raise FileNotFoundError(f"cannot read infrared image {ir_path}")
    if vi is None:
        raise FileNotFoundError(f"cannot read visible image {vi_path}")
    if ir.ndim == 3:
        ir = cv2.cvtColor(ir[..., :3], cv2.COLOR_BGR2GRAY)
    return ir, cv2.cvtColor(vi, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB (or single-channel) uint8 image; the folder is created when missing."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write image {path}")


def require_folder(folder: str | Path, what: str = "image folder") -> Path:
    """``folder`` as a Path; FileNotFoundError when it is absent, NotADirectoryError when it is
    a file, each naming ``what`` it should have been."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} {folder} is a file, not a folder")
    return folder


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def pair_files(
    ir_dir: str | Path, vi_dir: str | Path
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pair ``ir_dir/<name>`` with ``vi_dir/<name>`` by file stem.

    Returns ([(stem, ir_path, vi_path), …] sorted by stem, [stems found on one side only]).
    The stem, not the full name, pairs them because datasets mix .png and .jpg across modalities.
    """

    def index(folder: Path) -> dict[str, Path]:
        require_folder(folder)
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}

    irs, vis = index(Path(ir_dir)), index(Path(vi_dir))
    pairs = [(stem, irs[stem], vis[stem]) for stem in sorted(irs.keys() & vis.keys())]
    unpaired = sorted(irs.keys() ^ vis.keys())
    return pairs, unpaired


def to_rgb_u8(img: np.ndarray) -> np.ndarray:
    """Any H×W / H×W×3 image (uint8, or float in [0, 1]) as RGB uint8 for display."""
    if img.dtype != np.uint8:
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def mosaic(tiles: list[tuple[str, np.ndarray]], max_tile_width: int = 480) -> np.ndarray:
    """Labelled side-by-side strip of images: the first scaled to at most ``max_tile_width``,
    the others to its height (an infrared frame of another size than the visible one fits)."""
    import cv2

    out = []
    for label, img in tiles:
        rgb = to_rgb_u8(img)
        scale = min(1.0, max_tile_width / rgb.shape[1])
        if out:
            scale = out[0].shape[0] / rgb.shape[0]
        if scale != 1.0:
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(rgb)
        cv2.putText(rgb, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(
            rgb, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1, cv2.LINE_AA
        )
        out.append(rgb)
    return np.hstack(out)
