"""On-disk cache of the semantic priors (M_ir, M_vis) of every training / validation pair.

Priors are fixed inputs of Stage II, so they are computed once per pair — with SAM when a
checkpoint is configured, with the classical backend otherwise — and stored under
``<cache_dir>/<backend>-<settings hash>/``. The backend name and its full settings (plus the
dataset ``max_side``, which changes the image the priors are computed on) are written to
``backend.json`` in that folder; changing any of them selects a new folder, so stale priors are
never reused. Each entry also records a hash of the loaded pair's pixels and is recomputed
when an image changes (a copied or touched dataset keeps its cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training.config import PriorsConfig
from training.datasets import PairFiles

LOG = logging.getLogger("sgdfuse_ros.training")


def _signature(ir: np.ndarray, vis: np.ndarray) -> str:
    """Content hash of the loaded pair: a copied or touched dataset keeps its cache, an edited
    or resized image does not."""
    digest = hashlib.blake2b(digest_size=16)
    for image in (ir, vis):
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _to_u8(m: np.ndarray) -> np.ndarray:
    return np.round(np.clip(m, 0.0, 1.0) * 255.0).astype(np.uint8)


class PriorCache:
    """Priors of a backend, computed on first use and kept on disk and (as uint8) in memory."""

    def __init__(
        self, backend: Any, cache_dir: str | Path, max_side: int = 0, progress: bool = True
    ) -> None:
        self.backend = backend
        self.max_side = max_side
        self.progress = progress
        self.description = {
            "backend": backend.name,
            "settings": backend.settings(),
            "max_side": max_side,
        }
        digest = hashlib.sha1(
            json.dumps(self.description, sort_keys=True, default=str).encode()
        ).hexdigest()
        self.folder = Path(cache_dir) / f"{backend.name}-{digest[:10]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "backend.json").write_text(
            json.dumps(self.description, indent=2, default=str) + "\n"
        )
        self._memory: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def name(self) -> str:
        return self.backend.name

    def entry_path(self, pair: PairFiles) -> Path:
        return self.folder / (pair.key.replace("/", "__") + ".npz")

    def prepare(
        self, pairs: list[PairFiles], load: Callable[[PairFiles], tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Compute or read the priors of every pair now (so training steps never wait on them)."""
        from tqdm import tqdm

        for pair in tqdm(
            pairs, desc=f"priors ({self.name})", disable=not self.progress, leave=False
        ):
            try:
                ir, vis = load(pair)
            except (OSError, ValueError):
                continue  # the dataset reports unreadable pairs itself
            self.get(pair, ir, vis)

    def get(
        self, pair: PairFiles, ir: np.ndarray, vis: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(m_ir, m_vis) float32 H×W in [0, 1] for this pair's (loaded, possibly resized) images."""
        cached = self._memory.get(pair.key)
        if cached is None:
            cached = self._read_or_compute(pair, ir, vis)
            self._memory[pair.key] = cached
        return cached[0].astype(np.float32) / 255.0, cached[1].astype(np.float32) / 255.0

    def _read_or_compute(
        self, pair: PairFiles, ir: np.ndarray, vis: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        path = self.entry_path(pair)
        signature = _signature(ir, vis)
        if path.is_file():
            try:
                with np.load(path) as data:
                    if str(data["signature"]) == signature and data["m_ir"].shape == ir.shape:
                        return data["m_ir"], data["m_vis"]
            except (OSError, ValueError, KeyError):
                LOG.warning("prior cache entry %s is unreadable; recomputing", path)
        m_ir, m_vis = self.backend.compute(ir.astype(np.float32) / 255.0, vis)
        m_ir8, m_vis8 = _to_u8(m_ir), _to_u8(m_vis)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")  # ranks may race on an entry
        np.savez_compressed(tmp, m_ir=m_ir8, m_vis=m_vis8, signature=np.array(signature))
        tmp.replace(path)
        return m_ir8, m_vis8


class ZeroPriors:
    """All-zero maps: the "without priors" ablation (the mask-guided loss then only sees β)."""

    name = "none"

    def settings(self) -> dict[str, object]:
        return {"backend": "none"}

    def prepare(self, pairs: list[PairFiles], load: Callable[..., Any]) -> None:
        """Nothing to compute."""

    def get(
        self, pair: PairFiles, ir: np.ndarray, vis: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        zeros = np.zeros(ir.shape, np.float32)
        return zeros, zeros

    def compute(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zeros = np.zeros(ir.shape[:2], np.float32)
        return zeros, zeros


def build_backend(priors_config: PriorsConfig, device: str = "cpu") -> Any:
    """The prior backend of a training config's ``priors`` section (``backend: none`` → zeros)."""
    if priors_config.backend == "none":
        return ZeroPriors()
    from sgdfuse_ros.semantics import build_prior_backend

    return build_prior_backend(
        priors_config.backend,
        sam_model_type=priors_config.sam_model_type,
        sam_checkpoint=priors_config.sam_checkpoint,
        device=device,
        **priors_config.options,
    )


def build_prior_cache(
    priors_config: PriorsConfig, max_side: int, device: str = "cpu", progress: bool = True
):
    """A :class:`PriorCache` for the configured backend, or :class:`ZeroPriors` for ``none``."""
    backend = build_backend(priors_config, device)
    if isinstance(backend, ZeroPriors):
        return backend
    return PriorCache(backend, priors_config.cache_dir, max_side, progress)


def main(argv: list[str] | None = None) -> int:
    """Precompute the priors of a config's training and validation folders (optional: the
    training scripts fill the cache themselves on first use)."""
    import argparse

    from training.common import read_config
    from training.datasets import PairSource

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = read_config(args.config, args.set)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    data = cfg.data
    train = PairSource(
        data.train, data.max_side, False, build_prior_cache(cfg.priors, data.max_side)
    )
    LOG.info("training priors ready for %d pairs", len(train))
    if data.val:
        val = PairSource([data.val], 0, False, build_prior_cache(cfg.priors, 0))
        LOG.info("validation priors ready for %d pairs", len(val))
    return 0


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.priors")
