"""IR/VIS pair folders for training: discovery, robust loading, random crops, full-size validation.

A dataset folder holds an infrared and a visible subfolder whose files pair by name (the stem,
so ``ir/0001.png`` pairs with ``vi/0001.jpg``). The subfolder names of the common public
layouts are recognised: MSRS / RoadScene / this project (``ir``, ``vi``), LLVIP (``infrared``,
``visible``), M3FD (``Ir``, ``Vis``), TNO exports (``IR``, ``VIS``). IR may be stored as gray
or as three equal channels, 8 or 16 bit, in PNG, JPEG, BMP or TIFF.

Real data collections contain strays: a file without a partner, a truncated JPEG, a pair whose
two images differ in size. Each such problem is reported once (a log warning, kept in
``ProblemReport.problems``) and the pair is skipped; training never stops for it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgdfuse_ros.imaging import ir_to_unit, read_pair

LOG = logging.getLogger("sgdfuse_ros.training")

IR_DIR_NAMES = ("ir", "IR", "Ir", "infrared", "Infrared", "thermal")
VI_DIR_NAMES = ("vi", "VI", "Vi", "vis", "Vis", "VIS", "visible", "Visible")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class PairFiles:
    """One IR/VIS file pair; ``key`` is unique across mixed folders (folder tag + stem)."""

    key: str
    stem: str
    ir: Path
    vi: Path


@dataclass
class ProblemReport:
    """Collects unusable files; each (path, reason) is logged once however often it is met."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, path: Path | str, reason: str) -> None:
        item = (str(path), reason)
        if item in self._seen:
            return
        self._seen.add(item)
        self.problems.append(item)
        LOG.warning("skipping %s: %s", path, reason)


def _subfolder(folder: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    return None


def _folder_tag(folder: Path) -> str:
    """Short stable tag: the folder name plus a hash of its full path (two 'train' folders differ)."""
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:6]
    return f"{folder.name}-{digest}"


def find_pairs(folder: str | Path, report: ProblemReport) -> list[PairFiles]:
    """All IR/VIS pairs of ``folder`` sorted by stem; files without a partner are reported."""
    folder = Path(folder)
    ir_dir, vi_dir = _subfolder(folder, IR_DIR_NAMES), _subfolder(folder, VI_DIR_NAMES)
    if ir_dir is None or vi_dir is None:
        raise FileNotFoundError(
            f"{folder} needs an infrared and a visible subfolder (one of {IR_DIR_NAMES} and one of "
            f"{VI_DIR_NAMES}) whose files pair by name"
        )

    def index(directory: Path) -> dict[str, Path]:
        files: dict[str, Path] = {}
        for path in sorted(directory.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            if path.stem in files:
                report.add(path, f"duplicate name (also {files[path.stem].name}); using the first")
                continue
            files[path.stem] = path
        return files

    ir_files, vi_files = index(ir_dir), index(vi_dir)
    for stem in sorted(ir_files.keys() - vi_files.keys()):
        report.add(ir_files[stem], "infrared image without a visible partner")
    for stem in sorted(vi_files.keys() - ir_files.keys()):
        report.add(vi_files[stem], "visible image without an infrared partner")
    tag = _folder_tag(folder)
    return [
        PairFiles(f"{tag}/{stem}", stem, ir_files[stem], vi_files[stem])
        for stem in sorted(ir_files.keys() & vi_files.keys())
    ]


def load_pair(pair: PairFiles, max_side: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(IR uint8 H×W, VIS uint8 H×W×3 RGB); raises ValueError / FileNotFoundError when unusable.

    IR of any bit depth is normalised with the package's ``ir_to_unit`` and stored as 8 bit
    (training crops need no more, and it quarters the memory of an in-memory dataset).
    ``max_side`` > 0 downscales large frames (LLVIP is 1280×1024) so a crop covers a similar
    part of a scene as on the 640×480 evaluation images.
    """
    import cv2

    ir, vis = read_pair(pair.ir, pair.vi)
    if ir.shape != vis.shape[:2]:
        raise ValueError(f"size mismatch: infrared {ir.shape[::-1]} vs visible {vis.shape[1::-1]}")
    ir8 = np.round(ir_to_unit(ir) * 255.0).astype(np.uint8)
    longest = max(ir8.shape)
    if max_side and longest > max_side:
        scale = max_side / longest
        size = (round(ir8.shape[1] * scale), round(ir8.shape[0] * scale))
        ir8 = cv2.resize(ir8, size, interpolation=cv2.INTER_AREA)
        vis = cv2.resize(vis, size, interpolation=cv2.INTER_AREA)
    return ir8, np.ascontiguousarray(vis)


def usable_pairs(
    folders: Iterable[str | Path],
    report: ProblemReport,
    max_side: int = 0,
    keep_arrays: bool = False,
) -> tuple[list[PairFiles], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Pairs of all folders that decode and match in size (each read once); arrays kept on request."""
    kept: list[PairFiles] = []
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for folder in folders:
        for pair in find_pairs(folder, report):
            try:
                ir, vis = load_pair(pair, max_side)
            except (OSError, ValueError) as exc:
                report.add(pair.ir, str(exc))
                continue
            kept.append(pair)
            if keep_arrays:
                arrays[pair.key] = (ir, vis)
    return kept, arrays


def to_tensors(ir: np.ndarray, vis: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 arrays → float tensors in [0, 1]: IR 1×H×W, VIS 3×H×W."""
    ir_t = torch.from_numpy(np.ascontiguousarray(ir)).float().div_(255.0)[None]
    vis_t = torch.from_numpy(np.ascontiguousarray(vis.transpose(2, 0, 1))).float().div_(255.0)
    return ir_t, vis_t


class PairSource:
    """Shared loading for the two dataset classes: file lists, optional memory cache and priors."""

    def __init__(
        self,
        folders: Iterable[str | Path],
        max_side: int = 0,
        cache_in_memory: bool = True,
        priors: Any | None = None,
        report: ProblemReport | None = None,
        max_pairs: int | None = None,
    ) -> None:
        folders = [Path(f) for f in folders]
        self.report = report or ProblemReport()
        self.max_side = max_side
        self.pairs, self.arrays = usable_pairs(
            folders, self.report, max_side, keep_arrays=cache_in_memory
        )
        if max_pairs is not None:
            self.pairs = self.pairs[:max_pairs]
        if not self.pairs:
            raise ValueError(f"no usable IR/VIS pairs in {[str(f) for f in folders]}")
        self.priors = priors
        if priors is not None:
            priors.prepare(self.pairs, self.load)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, pair: PairFiles) -> tuple[np.ndarray, np.ndarray]:
        if pair.key in self.arrays:
            return self.arrays[pair.key]
        return load_pair(pair, self.max_side)

    def sample(self, index: int) -> dict[str, Any]:
        """Full-size arrays of pair ``index``; a file that broke since the scan is reported and
        replaced by the next pair, so a long run never dies on one file."""
        for attempt in range(len(self.pairs)):
            pair = self.pairs[(index + attempt) % len(self.pairs)]
            try:
                ir, vis = self.load(pair)
            except (OSError, ValueError) as exc:
                self.report.add(pair.ir, str(exc))
                continue
            if self.priors is not None:
                m_ir, m_vis = self.priors.get(pair, ir, vis)
            else:
                m_ir = m_vis = np.zeros(ir.shape, np.float32)
            return {"pair": pair, "ir": ir, "vis": vis, "m_ir": m_ir, "m_vis": m_vis}
        raise RuntimeError("every pair of the dataset has become unreadable")


class RandomCropPairs(torch.utils.data.Dataset):
    """Training samples: random ``crop``×``crop`` windows with random flips.

    Indexed by ``(index, sample_seed)`` from :class:`training.common.ResumableSampler` (a plain
    int also works): the crop position and flips come from the sample seed, so resumed runs see
    the same data. Frames smaller than the crop are reflect-padded.
    """

    def __init__(self, source: PairSource, crop: int = 160, vertical_flip: bool = False) -> None:
        self.source = source
        self.crop = crop
        self.vertical_flip = vertical_flip

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, sample_seed = item if isinstance(item, tuple) else (item, item)
        s = self.source.sample(index)
        rng = np.random.default_rng(sample_seed)
        planes = [s["ir"][..., None], s["vis"], s["m_ir"][..., None], s["m_vis"][..., None]]
        h, w = s["ir"].shape
        ph, pw = max(0, self.crop - h), max(0, self.crop - w)
        if ph or pw:
            planes = [np.pad(p, ((0, ph), (0, pw), (0, 0)), mode="reflect") for p in planes]
            h, w = h + ph, w + pw
        y = int(rng.integers(0, h - self.crop + 1))
        x = int(rng.integers(0, w - self.crop + 1))
        planes = [p[y : y + self.crop, x : x + self.crop] for p in planes]
        if rng.random() < 0.5:
            planes = [p[:, ::-1] for p in planes]
        if self.vertical_flip and rng.random() < 0.5:
            planes = [p[::-1] for p in planes]
        ir, vis = to_tensors(planes[0][..., 0], planes[1])
        return {
            "ir": ir,
            "vis": vis,
            "m_ir": torch.from_numpy(np.ascontiguousarray(planes[2].transpose(2, 0, 1))).float(),
            "m_vis": torch.from_numpy(np.ascontiguousarray(planes[3].transpose(2, 0, 1))).float(),
        }


class FullFramePairs(torch.utils.data.Dataset):
    """Validation samples: whole frames (batch size 1, sizes differ), with their pair stem."""

    def __init__(self, source: PairSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.source.sample(index)
        ir, vis = to_tensors(s["ir"], s["vis"])
        return {
            "stem": s["pair"].stem,
            "ir": ir,
            "vis": vis,
            "m_ir": torch.from_numpy(s["m_ir"])[None].float(),
            "m_vis": torch.from_numpy(s["m_vis"])[None].float(),
        }
