"""Score folders of fused images against their IR/VIS sources and write comparison tables.

Files are paired by stem, so a fused ``00012N.png`` matches sources ``00012N.jpg``. Outputs in
``out_dir``:

* ``per_image.csv``: one row per (method, image) with a ``method`` column (one file rather than
  one per folder, so a spreadsheet or pandas can pivot all methods at once);
* ``metrics.md``: Markdown table of the means, one row per fused folder, best per column in bold,
  followed by the count of evaluated and missing images;
* ``summary.json``: ``{method: {metric: mean}}`` (``null`` where a metric has no value).

With detection (:class:`~sgdfuse_ros.tools.detection.DetectionSettings`, ``sgdfuse eval
--detector … --det-labels …``) the detector also runs over every fused folder and the two
sources (VIS in colour, IR as grey): each method gains ``mAP50``, ``AP50_<class>`` and
``mAP50_day`` / ``mAP50_night`` columns, ``metrics.md`` a detection section (bootstrap
intervals, paired differences to the first fused folder) and ``summary.json`` the whole report
under the key ``"detection"``; every detection goes to ``detections.csv``.

A method is named after its folder (``parent/name`` when two folders share a name).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from tqdm import tqdm

from sgdfuse_ros.errors import InputError
from sgdfuse_ros.imaging import require_folder
from sgdfuse_ros.metrics import METRIC_NAMES, compute_luminance_metrics, to_luminance

if TYPE_CHECKING:
    from sgdfuse_ros.tools.detection import DetectionReport, DetectionSettings

# Search order when one stem exists with several extensions: lossless formats first.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
CSV_NAME = "per_image.csv"
MARKDOWN_NAME = "metrics.md"
SUMMARY_NAME = "summary.json"
DETECTION_KEY = "detection"  # summary.json: the detection report beside the methods


# --------------------------------------------------------------------------- baselines


def _to_uint8(img: np.ndarray, what: str) -> np.ndarray:
    """uint8 as is; floats with max ≤ 1 scaled by 255, other floats taken as 0-255."""
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{what} image contains NaN or inf")
        scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    raise InputError(f"unsupported {what} dtype {arr.dtype}; use uint8 or float")


BaselineRule = Literal["mean", "max", "additive"]
BASELINE_RULES: tuple[BaselineRule, ...] = ("mean", "max", "additive")


def baseline_fuse(ir: np.ndarray, vi: np.ndarray, rule: BaselineRule = "mean") -> np.ndarray:
    """Plain pixel-wise fusion for baseline rows: RGB uint8 H×W×3.

    The visible image goes to YCrCb; its Y is replaced by ``(Y + IR) / 2`` (``mean``),
    ``max(Y, IR)`` (``max``) or ``Y + IR − median(IR)`` clipped to 0–255 (``additive``: what is
    warmer than the frame's typical level brightens, what is colder darkens, and neither source
    is dropped anywhere) and its chroma is kept, the same colour handling as the learned
    fusion, so the baselines differ from it only in how luminance is combined. IR may be H×W
    or H×W×3 (3 channels are reduced to gray), VIS H×W×3 RGB or H×W; uint8 or float.
    """
    if rule not in BASELINE_RULES:
        raise ValueError(f"unknown baseline rule {rule!r}; use one of {', '.join(BASELINE_RULES)}")
    ir8 = _to_uint8(ir, "infrared")
    vi8 = _to_uint8(vi, "visible")
    if ir8.ndim == 3:
        ir8 = cv2.cvtColor(np.ascontiguousarray(ir8[..., :3]), cv2.COLOR_RGB2GRAY)
    if vi8.ndim == 2:
        vi8 = np.repeat(vi8[..., None], 3, axis=2)
    vi8 = np.ascontiguousarray(vi8[..., :3])
    if ir8.shape != vi8.shape[:2]:
        raise InputError(f"infrared {ir8.shape} and visible {vi8.shape[:2]} sizes differ")
    ycrcb = cv2.cvtColor(vi8, cv2.COLOR_RGB2YCrCb)
    luma_vi = ycrcb[..., 0].astype(np.float32)
    if rule == "mean":
        fused_luma = (luma_vi + ir8) / 2.0
    elif rule == "max":
        fused_luma = np.maximum(luma_vi, ir8)
    else:
        fused_luma = luma_vi + ir8 - np.median(ir8)
    ycrcb[..., 0] = np.clip(np.rint(fused_luma), 0, 255).astype(np.uint8)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


# --------------------------------------------------------------------------- tables


def _format_value(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"


def format_markdown_table(summary: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per method, columns METRIC_NAMES, best displayed value in bold.

    Every metric is higher-is-better; ties at the displayed precision are all bold, and missing
    values (NaN/None) show as "–" and never win.
    """
    header = "| method | " + " | ".join(METRIC_NAMES) + " |"
    rule = "|---|" + "---:|" * len(METRIC_NAMES)
    shown = {
        method: {name: _format_value(means.get(name, math.nan)) for name in METRIC_NAMES}
        for method, means in summary.items()
    }
    best: dict[str, str | None] = {}
    for name in METRIC_NAMES:
        candidates = [float(text) for text in (shown[m][name] for m in summary) if text != "–"]
        best[name] = f"{max(candidates):.4f}" if candidates else None
    lines = [header, rule]
    for method in summary:
        cells = [
            f"**{text}**" if text == best[name] else text for name, text in shown[method].items()
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- evaluation


def _index_images(folder: Path) -> dict[str, Path]:
    """Map stem → image file in ``folder`` (non-recursive), preferring lossless formats."""
    require_folder(folder)
    rank = {suffix: i for i, suffix in enumerate(IMAGE_SUFFIXES)}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if suffix not in rank or not path.is_file():
            continue
        current = found.get(path.stem)
        if current is None or rank[suffix] < rank[current.suffix.lower()]:
            found[path.stem] = path
    return found


def read_rgb(path: Path) -> np.ndarray:
    """Read any image file as RGB uint8 (gray and 16-bit files as the evaluator reads them)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _method_names(fused_dirs: Sequence[Path]) -> list[str]:
    """Folder names, widened to ``parent/name`` (then numbered) where they would collide."""
    plain = [d.name for d in fused_dirs]
    widened = [
        f"{d.parent.name}/{d.name}" if plain.count(d.name) > 1 else d.name for d in fused_dirs
    ]
    return [
        f"{name}#{i + 1}" if widened.count(name) > 1 else name for i, name in enumerate(widened)
    ]


def _score_pair(
    task: tuple[str, Path, Path, list[tuple[str, Path | None]]],
) -> tuple[str, list[tuple[str, dict[str, float]]]]:
    """All methods' metrics for one source pair; sources are converted once, not per method."""
    stem, ir_path, vi_path, fused = task
    ir_lum = to_luminance(read_rgb(ir_path))
    vi_lum = to_luminance(read_rgb(vi_path))
    if ir_lum.shape != vi_lum.shape:
        raise InputError(
            f"{stem}: infrared {ir_path} is {ir_lum.shape[::-1]} (w×h) but visible {vi_path} "
            f"is {vi_lum.shape[::-1]}"
        )
    results: list[tuple[str, dict[str, float]]] = []
    for method, fused_path in fused:
        if fused_path is None:
            continue
        fused_lum = to_luminance(read_rgb(fused_path))
        if fused_lum.shape != ir_lum.shape:
            raise InputError(
                f"fused image {fused_path} is {fused_lum.shape[::-1]} (w×h) but its sources "
                f"are {ir_lum.shape[::-1]}"
            )
        results.append((method, compute_luminance_metrics(ir_lum, vi_lum, fused_lum)))
    return stem, results


def _run_tasks(
    tasks: list[tuple[str, Path, Path, list[tuple[str, Path | None]]]],
    workers: int,
    progress: bool,
) -> Iterable[tuple[str, list[tuple[str, dict[str, float]]]]]:
    bar = tqdm(total=len(tasks), desc="metrics", unit="pair", disable=not progress)
    try:
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(_score_pair, tasks, chunksize=2):
                    bar.update()
                    yield result
        else:
            for task in tasks:
                result = _score_pair(task)
                bar.update()
                yield result
    finally:
        bar.close()


def evaluate_dirs(
    ir_dir: Path,
    vi_dir: Path,
    fused_dirs: list[Path],
    out_dir: Path,
    progress: bool = True,
    workers: int = 1,
    detection: DetectionSettings | None = None,
) -> dict[str, dict[str, float]]:
    """Score every fused folder against the IR/VIS pairs and write CSV, Markdown and JSON.

    Returns ``{method: {metric: mean}}``. A source without its partner and a fused image that
    is absent are skipped with a warning (counted in ``metrics.md``), a fused folder with none
    of the pairs' images raises :class:`InputError`; an image whose size differs from its sources raises :class:`InputError`
    naming the file, and a folder that does not exist raises :class:`FileNotFoundError`.
    ``workers > 1`` spreads pairs over processes (about 0.2 s per pair and
    method on one core at 640×480). ``detection`` adds the AP columns (module docstring).
    """
    ir_dir, vi_dir, out_dir = Path(ir_dir), Path(vi_dir), Path(out_dir)
    fused_dirs = [Path(d) for d in fused_dirs]
    if not fused_dirs:
        raise ValueError("no fused folders given")
    ir_files, vi_files = _index_images(ir_dir), _index_images(vi_dir)
    stems = sorted(ir_files.keys() & vi_files.keys())
    unpaired = sorted(ir_files.keys() ^ vi_files.keys())
    if unpaired:
        warnings.warn(
            f"{len(unpaired)} source image(s) without a partner skipped: {unpaired[:5]}",
            stacklevel=2,
        )
    if not stems:
        raise InputError(f"no IR/VIS pairs with matching names in {ir_dir} and {vi_dir}")

    methods = _method_names(fused_dirs)
    fused_files = {m: _index_images(d) for m, d in zip(methods, fused_dirs, strict=True)}
    missing = {m: [s for s in stems if s not in fused_files[m]] for m in methods}
    for (method, absent), folder in zip(missing.items(), fused_dirs, strict=True):
        if len(absent) == len(stems):
            raise InputError(
                f"{method}: no fused image in {folder} is named after an IR/VIS pair (first "
                f"pair: {stems[0]}); fused files must carry their sources' names"
            )
        if absent:
            warnings.warn(
                f"{method}: {len(absent)} of {len(stems)} fused images missing, skipped "
                f"(first: {absent[:5]})",
                stacklevel=2,
            )

    tasks = [
        (stem, ir_files[stem], vi_files[stem], [(m, fused_files[m].get(stem)) for m in methods])
        for stem in stems
    ]
    per_method: dict[str, list[tuple[str, dict[str, float]]]] = {m: [] for m in methods}
    for stem, results in _run_tasks(tasks, workers, progress):
        for method, values in results:
            per_method[method].append((stem, values))

    summary = {
        method: {
            name: float(np.mean([values[name] for _, values in rows])) if rows else math.nan
            for name in METRIC_NAMES
        }
        for method, rows in per_method.items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    report = None
    if detection is not None:
        report = _detect(detection, methods, fused_dirs, (ir_dir, vi_dir), stems, out_dir, progress)
        for method, columns in report.columns().items():
            if method in summary:
                summary[method].update(columns)
    _write_csv(out_dir / CSV_NAME, per_method)
    _write_markdown(out_dir / MARKDOWN_NAME, summary, per_method, missing, (ir_dir, vi_dir))
    json_ready: dict[str, object] = {
        method: {name: (None if math.isnan(v) else v) for name, v in means.items()}
        for method, means in summary.items()
    }
    if report is not None:
        json_ready[DETECTION_KEY] = report.to_dict()
        with (out_dir / MARKDOWN_NAME).open("a") as handle:
            handle.write("\n## Detection\n\n" + report.markdown())
    (out_dir / SUMMARY_NAME).write_text(json.dumps(json_ready, indent=2) + "\n")
    return summary


def _detect(
    settings: DetectionSettings,
    methods: list[str],
    fused_dirs: list[Path],
    source_dirs: tuple[Path, Path],
    stems: list[str],
    out_dir: Path,
    progress: bool,
) -> DetectionReport:
    """The detector over the fused folders, then the visible and infrared sources."""
    from sgdfuse_ros.tools.detection import DetectionInput, evaluate_detection

    if DETECTION_KEY in methods:
        raise ValueError(
            f"a fused folder named {DETECTION_KEY!r} would collide with the detection report "
            "in summary.json; rename it"
        )
    ir_dir, vi_dir = source_dirs
    inputs = [DetectionInput(m, d) for m, d in zip(methods, fused_dirs, strict=True)]
    for name, folder in (("VIS", vi_dir), ("IR", ir_dir)):
        label = name if name not in methods else f"{name} source"
        inputs.append(DetectionInput(label, folder, "source"))
    return evaluate_detection(
        inputs,
        settings.labels,
        settings.detector,
        out_dir=out_dir,
        samples=settings.samples,
        seed=settings.seed,
        progress=progress,
        stems=stems,
    )


def _write_csv(path: Path, per_method: dict[str, list[tuple[str, dict[str, float]]]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "image", *METRIC_NAMES])
        for method, rows in per_method.items():
            for stem, values in rows:
                writer.writerow([method, stem, *(f"{values[name]:.6f}" for name in METRIC_NAMES)])


def _write_markdown(
    path: Path,
    summary: dict[str, dict[str, float]],
    per_method: dict[str, list[tuple[str, dict[str, float]]]],
    missing: dict[str, list[str]],
    source_dirs: tuple[Path, Path],
) -> None:
    ir_dir, vi_dir = source_dirs
    pairs = len(per_method[next(iter(per_method))]) + len(missing[next(iter(missing))])
    lines = [
        "# Fusion metrics",
        "",
        f"Sources: `{ir_dir}` (IR) and `{vi_dir}` (VIS), {pairs} pairs. Means over the images "
        "each method has; every metric is higher-is-better, best per column in bold. Gray = "
        "rounded luminance, EN in bits, MI in nats, MI/SCD/VIF/SSIM summed over both sources "
        "(MMIF-CDDFuse evaluator conventions).",
        "",
        format_markdown_table(summary),
        "| method | images | missing |",
        "|---|---:|---:|",
    ]
    lines += [f"| {m} | {len(per_method[m])} | {len(missing[m])} |" for m in summary]
    path.write_text("\n".join(lines) + "\n")
