"""Fuse image files and folders with a FusionPipeline (the `sgdfuse fuse` job)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.imaging import ir_to_unit, mosaic, pair_files, read_pair, require_folder, write_rgb

LOG = logging.getLogger("sgdfuse_ros")

GivenPriors = Callable[[str], tuple[np.ndarray, np.ndarray]]
"""Pair name → (m_ir, m_vis) to fuse with instead of the pipeline's prior backend."""


def priors_from_folder(folder: Path) -> GivenPriors:
    """Prior maps stored as 8-bit images: ``<name>_prior_ir.png`` + ``<name>_prior_vis.png``
    (what ``--save-intermediate`` writes under ``intermediate/``), or one ``<name>.png`` used
    for both (a segmentation mask, 255 = object). A pair without maps raises
    FileNotFoundError, which :func:`fuse_paths` reports and skips."""
    import cv2

    folder = require_folder(folder, "priors folder")

    def read(path: Path) -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise InputError(f"cannot read prior map {path}")
        return image

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        ir_map, vis_map = folder / f"{name}_prior_ir.png", folder / f"{name}_prior_vis.png"
        if ir_map.is_file() and vis_map.is_file():
            return read(ir_map), read(vis_map)
        both = folder / f"{name}.png"
        if both.is_file():
            mask = read(both)
            return mask, mask
        raise FileNotFoundError(f"no prior maps for {name} in {folder}")

    return load


def check_output_folder(path: Path, flag: str = "--out") -> None:
    """An output folder may be missing (it is created) but must not be a file."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{flag} {path} is a file, not a folder")


def check_fuse_paths(ir: Path, vi: Path, out: Path) -> None:
    """Fail fast, before any model loads: both inputs exist and are of one kind, ``out`` can
    be a folder and is not where the sources are."""
    for flag, path in (("--ir", ir), ("--vi", vi)):
        if not path.exists():
            raise FileNotFoundError(f"{flag} {path} does not exist")
    if ir.is_dir() != vi.is_dir():
        raise ValueError(f"--ir {ir} and --vi {vi} must both be files or both be folders")
    check_output_folder(out)
    for flag, path in (("--ir", ir), ("--vi", vi)):
        source_folder = path if path.is_dir() else path.parent
        if out.resolve() == source_folder.resolve():
            raise ValueError(
                f"--out {out} is the {flag} folder: fused images would overwrite or mix with "
                "the sources; choose another output folder"
            )


@dataclass
class FuseReport:
    fused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unpaired: list[str] = field(default_factory=list)
    timings_ms: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"fused {len(self.fused)} pair(s), {len(self.failed)} failed, {len(self.unpaired)} unpaired"
        ]
        for name, reason in self.failed.items():
            lines.append(f"  failed {name}: {reason}")
        if self.unpaired:
            lines.append(
                f"  unpaired: {', '.join(self.unpaired[:10])}{' …' if len(self.unpaired) > 10 else ''}"
            )
        for stage, values in self.timings_ms.items():
            lines.append(f"  {stage:>7}: median {np.median(values):8.1f} ms")
        return "\n".join(lines)


def fuse_paths(
    pipeline,
    ir: Path,
    vi: Path,
    out: Path,
    save_intermediate: bool = False,
    progress: bool = True,
    given_priors: GivenPriors | None = None,
) -> FuseReport:
    """Fuse one pair (two files) or every pair of two folders; unreadable or bad pairs are
    reported and skipped so one broken file does not stop a long run. ``given_priors``
    replaces the pipeline's prior backend (see :func:`priors_from_folder`)."""
    from tqdm import tqdm

    report = FuseReport()
    check_fuse_paths(ir, vi, out)
    if ir.is_dir():
        pairs, report.unpaired = pair_files(ir, vi)
        if not pairs:
            raise FileNotFoundError(f"no image pairs with matching names in {ir} and {vi}")
    else:
        pairs = [(ir.stem, ir, vi)]
    out.mkdir(parents=True, exist_ok=True)
    for name, ir_path, vi_path in tqdm(
        pairs, desc="fusing", unit="pair", disable=not progress or len(pairs) < 2
    ):
        try:
            ir_img, vi_img = read_pair(ir_path, vi_path)
            priors = given_priors(name) if given_priors else None
            result = pipeline.fuse(
                ir_img, vi_img, return_intermediate=save_intermediate, priors=priors
            )
        except (InputError, FileNotFoundError) as exc:
            LOG.warning("skipping %s: %s", name, exc)
            report.failed[name] = str(exc)
            continue
        write_rgb(out / f"{name}.png", result.fused)
        if save_intermediate:
            inter = out / "intermediate"
            write_rgb(
                inter / f"{name}_prior_ir.png", (result.prior_ir * 255 + 0.5).astype(np.uint8)
            )
            write_rgb(
                inter / f"{name}_prior_vis.png", (result.prior_vis * 255 + 0.5).astype(np.uint8)
            )
            write_rgb(inter / f"{name}_stage1.png", result.stage1)
            tiles = [
                ("IR", ir_to_unit(ir_img)),
                ("VIS", vi_img),
                ("M_ir", result.prior_ir),
                ("M_vis", result.prior_vis),
                ("F1", result.stage1),
                ("fused", result.fused),
            ]
            write_rgb(out / "mosaic" / f"{name}.png", mosaic(tiles))
        report.fused.append(name)
        for stage, ms in result.timings_ms.items():
            report.timings_ms.setdefault(stage, []).append(ms)
    return report
