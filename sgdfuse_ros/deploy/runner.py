"""The interface every inference backend implements (torch, ONNX Runtime, TensorRT).

``FusionPipeline`` talks to its runner only through these methods. ``prepare`` does now what a
runner would otherwise do at the first frame of a size (TensorRT: build or load plans);
``ready`` says whether a frame of that size would run on this runner without such work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class NetworkRunner(Protocol):
    """Runs Stage I + Stage II on float32 NCHW arrays in [0, 1] (padding is the runner's job)."""

    supported_steps: tuple[int, ...]

    def prepare(self, height: int, width: int, steps: Sequence[int]) -> None:
        """Load or build what frames of this size and these K need, before the first one."""
        ...

    def ready(self, height: int, width: int, steps: int) -> bool:
        """True when such a frame runs now without building anything."""
        ...

    def run(
        self, ir: np.ndarray, vis: np.ndarray, m_ir: np.ndarray, m_vis: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """→ (fused 1×3×H×W, F1 1×3×H×W, {"stage1": ms, "stage2": ms})."""
        ...

    def close(self) -> None:
        """Release networks and device memory."""
        ...
