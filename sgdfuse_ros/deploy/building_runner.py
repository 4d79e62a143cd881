"""Fuse with torch while a slow backend prepares: the node never waits minutes on a build.

A TensorRT plan for a new frame size takes minutes to build. ``TorchWhileBuilding`` wraps the
target runner: a frame whose size the target is ready for runs there; otherwise the target's
``prepare`` is started once on a worker thread and the frame is fused by eager torch (the same
weights) meanwhile. A failed build is logged once and that size stays on torch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .runner import NetworkRunner

LOG = logging.getLogger("sgdfuse_ros")


class TorchWhileBuilding:
    """``NetworkRunner`` over ``target``, falling back to ``make_fallback()`` until it is ready."""

    def __init__(self, target: NetworkRunner, make_fallback: Callable[[], NetworkRunner]) -> None:
        self.target = target
        self.supported_steps = target.supported_steps
        self._make_fallback = make_fallback
        self._fallback: NetworkRunner | None = None
        self._builds: dict[tuple[int, int, int], Future] = {}
        self._reported: set[tuple[int, int, int]] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-build")

    def prepare(self, height: int, width: int, steps: Sequence[int]) -> None:
        self.target.prepare(height, width, steps)

    def ready(self, height: int, width: int, steps: int) -> bool:
        return self.target.ready(height, width, steps)

    def building(self) -> list[Future]:
        """The builds started so far (done or not)."""
        with self._lock:
            return list(self._builds.values())

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Block until every build started so far has finished (tests, bench)."""
        for future in self.building():
            future.result(timeout=timeout)

    def _start_or_check_build(self, key: tuple[int, int, int]) -> None:
        height, width, steps = key
        with self._lock:
            future = self._builds.get(key)
            if future is None:
                LOG.warning(
                    "%s not ready for %dx%d K=%d; building in the background, fusing with the "
                    "torch backend meanwhile",
                    type(self.target).__name__,
                    width,
                    height,
                    steps,
                )
                self._builds[key] = self._executor.submit(
                    self.target.prepare, height, width, (steps,)
                )
            elif future.done() and future.exception() is not None and key not in self._reported:
                self._reported.add(key)  # log once; no rebuild storm on every frame
                LOG.error(
                    "build for %dx%d K=%d failed: %s; staying on the torch backend (fix the "
                    "cause, then restart or run `sgdfuse export --engines`)",
                    width,
                    height,
                    steps,
                    future.exception(),
                )

    def run(
        self, ir: np.ndarray, vis: np.ndarray, m_ir: np.ndarray, m_vis: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        height, width = ir.shape[-2:]
        key = (int(height), int(width), int(steps))
        with self._lock:
            build = self._builds.get(key)
        if (build is None or build.done()) and self.target.ready(height, width, steps):
            return self.target.run(ir, vis, m_ir, m_vis, steps)
        self._start_or_check_build(key)
        if self._fallback is None:
            self._fallback = self._make_fallback()
        return self._fallback.run(ir, vis, m_ir, m_vis, steps)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.target.close()
        if self._fallback is not None:
            self._fallback.close()
