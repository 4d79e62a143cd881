"""Priors cache: computed once, keyed by backend settings, recomputed when a source changes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from training_helpers import write_pair_folder

from sgdfuse_ros.semantics import ClassicalPriorBackend
from training.datasets import PairSource
from training.priors import PriorCache, ZeroPriors


class CountingBackend:
    """The classical backend, counting how often it really computes."""

    def __init__(self, **settings: object) -> None:
        self.inner = ClassicalPriorBackend(**settings)
        self.name = self.inner.name
        self.calls = 0

    def settings(self) -> dict[str, object]:
        return self.inner.settings()

    def compute(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        return self.inner.compute(ir, vis)


def test_priors_are_cached_and_invalidated(tmp_path: Path) -> None:
    root = write_pair_folder(tmp_path / "d", count=2, height=48, width=48)
    backend = CountingBackend()
    source = PairSource([root], priors=PriorCache(backend, tmp_path / "cache", progress=False))
    assert backend.calls == 2
    m_ir, m_vis = source.sample(0)["m_ir"], source.sample(0)["m_vis"]
    assert (
        m_ir.shape == (48, 48) and m_ir.dtype == np.float32 and 0 <= m_vis.min() <= m_vis.max() <= 1
    )

    again = CountingBackend()  # a new process: everything comes from disk, identical maps
    reread = PairSource([root], priors=PriorCache(again, tmp_path / "cache", progress=False))
    assert again.calls == 0
    assert np.array_equal(reread.sample(0)["m_ir"], m_ir)

    changed = CountingBackend(ir_z_threshold=2.0)  # other settings → another cache folder
    PairSource([root], priors=PriorCache(changed, tmp_path / "cache", progress=False))
    assert changed.calls == 2
    folders = sorted((tmp_path / "cache").iterdir())
    assert len(folders) == 2
    recorded = {
        json.loads((f / "backend.json").read_text())["settings"]["ir_z_threshold"] for f in folders
    }
    assert recorded == {2.0, 3.0}

    touched = source.pairs[1].ir  # a copied or touched dataset keeps its cache …
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    third = CountingBackend()
    PairSource([root], priors=PriorCache(third, tmp_path / "cache", progress=False))
    assert third.calls == 0

    edited = np.array(Image.open(touched))  # … an edited source image recomputes only its entry
    Image.fromarray(255 - edited).save(touched)
    fourth = CountingBackend()
    PairSource([root], priors=PriorCache(fourth, tmp_path / "cache", progress=False))
    assert fourth.calls == 1


def test_zero_priors_for_the_no_prior_ablation(tmp_path: Path) -> None:
    root = write_pair_folder(tmp_path / "d", count=1, height=40, width=40)
    sample = PairSource([root], priors=ZeroPriors()).sample(0)
    assert not sample["m_ir"].any() and not sample["m_vis"].any()
