"""End-of-stage evaluation: fuse a validation folder with the model, then score it like `sgdfuse eval`.

Fused images go to ``<out>/<method>/<stem>.png`` and the metric tables are written by
:func:`sgdfuse_ros.tools.evaluate.evaluate_dirs` — the code behind ``sgdfuse eval`` — so the tables
of training runs and of the command line are the same computation.

Detection is optional and off unless the config sets ``eval.detection.model``, e.g.::

    eval:
      detection:
        model: ../shared/detection/mobilenet_ssd_v2_coco_quant_postprocess.tflite
        labels: ../shared/detection/msrs100_labels   # YOLO <name>.txt per validation pair
        samples: 1000                                # bootstrap resamples (optional)
        seed: 0                                      # (optional)

which adds the AP@0.5 columns of ``sgdfuse eval --detector … --det-labels …`` to the tables
(needs ``pip install ai-edge-litert``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgdfuse_ros.imaging import write_rgb
from sgdfuse_ros.models.sgdfuse import pad_to_multiple
from training.common import to_uint8_image
from training.config import DetectionConfig, EvalConfig, PriorsConfig
from training.datasets import FullFramePairs, PairSource


@torch.no_grad()
def fuse_folder(
    model: Any,
    val_folder: str | Path,
    out_dir: Path,
    steps: int | None,
    priors: Any,
    device: torch.device,
    max_pairs: int | None = None,
    progress: bool = True,
) -> Path:
    """Fuse every pair of ``val_folder`` (full size); ``steps=None`` writes F1 (Stage I only)."""
    from tqdm import tqdm

    source = PairSource(
        [val_folder], max_side=0, cache_in_memory=False, priors=priors, max_pairs=max_pairs
    )
    frames = FullFramePairs(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    for i in tqdm(
        range(len(frames)), desc=f"fuse {out_dir.name}", disable=not progress, leave=False
    ):
        sample = frames[i]
        ir, vis, m_ir, m_vis = (sample[k][None].to(device) for k in ("ir", "vis", "m_ir", "m_vis"))
        if steps is None:
            h, w = ir.shape[-2:]
            m = model.config.unet.size_multiple  # pad as the full model does: identical F1
            out = model.stage1(pad_to_multiple(ir, m), pad_to_multiple(vis, m))[..., :h, :w]
        else:
            out, _ = model(ir, vis, m_ir, m_vis, steps)
        write_rgb(out_dir / f"{sample['stem']}.png", to_uint8_image(out[0]))
    return out_dir


def write_baselines(
    val_folder: str | Path,
    out_root: Path,
    max_pairs: int | None = None,
    rules: tuple[str, ...] = ("mean", "max"),
) -> list[Path]:
    """Plain luminance fusion of the validation pairs, one folder per ``baseline_fuse`` rule
    (mean and max: the baseline rows of every training evaluation)."""
    from sgdfuse_ros.imaging import read_pair
    from sgdfuse_ros.tools.evaluate import baseline_fuse
    from training.datasets import ProblemReport, find_pairs

    folders = []
    for rule in rules:
        folder = out_root / rule
        folder.mkdir(parents=True, exist_ok=True)
        for pair in find_pairs(val_folder, ProblemReport())[:max_pairs]:
            target = folder / f"{pair.stem}.png"
            if not target.exists():
                ir, vis = read_pair(pair.ir, pair.vi)
                write_rgb(target, baseline_fuse(ir, vis, rule))
        folders.append(folder)
    return folders


def detection_settings(config: DetectionConfig) -> Any:
    """``eval.detection`` of a training config → DetectionSettings, or None (no model: off)."""
    if config.model is None:
        return None
    if config.labels is None:
        raise ValueError("eval.detection.model is set but eval.detection.labels is not")
    from sgdfuse_ros.tools.detection import DetectionSettings, TFLiteDetector

    return DetectionSettings(
        TFLiteDetector(config.model, labels=config.classes),
        Path(config.labels),
        samples=config.samples,
        seed=config.seed,
    )


def score(
    val_folder: str | Path,
    fused_dirs: list[Path],
    out_dir: Path,
    workers: int = 1,
    max_pairs: int | None = None,
    detection: DetectionConfig | None = None,
) -> dict[str, dict[str, float]]:
    """Metric tables (metrics.md / CSV / summary.json) for the given fused folders.

    ``max_pairs`` scores only the first pairs (quick checks while iterating): the sources are
    linked into ``<out_dir>/sources`` so every method is averaged over the same pairs.
    ``detection`` is the config's ``eval.detection`` section (module docstring); None: off.
    """
    from sgdfuse_ros.tools.evaluate import evaluate_dirs
    from training.datasets import ProblemReport, find_pairs

    pairs = find_pairs(val_folder, ProblemReport())[:max_pairs]
    ir_dir, vi_dir = pairs[0].ir.parent, pairs[0].vi.parent
    if max_pairs is not None:
        ir_dir, vi_dir = out_dir / "sources" / "ir", out_dir / "sources" / "vi"
        for folder in (ir_dir, vi_dir):
            if folder.exists():
                for link in folder.iterdir():
                    link.unlink()
            folder.mkdir(parents=True, exist_ok=True)
        for pair in pairs:
            (ir_dir / pair.ir.name).symlink_to(pair.ir.resolve())
            (vi_dir / pair.vi.name).symlink_to(pair.vi.resolve())
    settings = detection_settings(detection) if detection is not None else None
    try:
        return evaluate_dirs(
            ir_dir, vi_dir, fused_dirs, out_dir, progress=False, workers=workers, detection=settings
        )
    finally:
        if settings is not None:
            settings.detector.close()


def score_with_baselines(
    val_folder: str | Path,
    fused_dirs: list[Path],
    out_dir: Path,
    eval_config: EvalConfig,
    max_pairs: int | None = None,
) -> dict[str, dict[str, float]]:
    """Score ``fused_dirs`` next to plain mean / max fusion and the config's peer folders (the
    end-of-stage table of both training stages); a peer folder that does not exist is left out."""
    baselines = write_baselines(val_folder, out_dir / "fused", max_pairs)
    peers = [Path(p) for p in eval_config.peers if Path(p).is_dir()]
    return score(
        val_folder,
        [*fused_dirs, *baselines, *peers],
        out_dir,
        eval_config.workers,
        max_pairs,
        detection=eval_config.detection,
    )


def wins_against(summary: dict[str, dict[str, float]], ours: str, peer: str) -> list[str]:
    """Metrics where ``ours`` scores above ``peer`` (all metrics are higher-is-better)."""
    return [
        m for m, v in summary[ours].items() if peer in summary and v > summary[peer].get(m, np.inf)
    ]


def val_priors(priors_config: PriorsConfig, device: str) -> Any:
    """Priors for full-size validation frames (cached separately from the resized training ones)."""
    from training.priors import build_prior_cache

    return build_prior_cache(priors_config, max_side=0, device=device, progress=False)
