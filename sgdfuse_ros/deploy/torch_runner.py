"""Eager PyTorch runner: the reference backend, and the stand-in while TensorRT plans build."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..models.sgdfuse import pad_to_multiple


class TorchRunner:
    """Eager PyTorch on CPU or CUDA; fp16 autocast on CUDA, always under inference_mode.

    Weights and activations are kept channels-last: oneDNN's depthwise and 1×1 convolutions
    run about 3× faster on the CPU that way (measured at 640×480), and CUDA's fp16 convolutions
    prefer it too.
    """

    def __init__(
        self, model: Any, device: str, fp16: bool | None = None, threads: int | None = None
    ) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)  # process-wide: every thread's next parallel op
        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.fp16 = (self.device.type == "cuda") if fp16 is None else fp16
        self.supported_steps = tuple(model.supported_steps)

    def prepare(self, height: int, width: int, steps: Sequence[int]) -> None:
        """Nothing to build: eager torch runs any size."""

    def ready(self, height: int, width: int, steps: int) -> bool:
        return True

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def run(
        self, ir: np.ndarray, vis: np.ndarray, m_ir: np.ndarray, m_vis: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        torch, model = self.torch, self.model
        h, w = ir.shape[-2:]
        multiple = model.config.unet.size_multiple
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16),
        ):
            tensors = [
                pad_to_multiple(torch.from_numpy(a).to(self.device), multiple).contiguous(
                    memory_format=torch.channels_last
                )
                for a in (ir, vis, m_ir, m_vis)
            ]
            t0 = time.perf_counter()
            f1 = model.stage1(tensors[0], tensors[1])
            self._sync()
            t1 = time.perf_counter()
            fused = model.stage2(f1, tensors[2], tensors[3], tensors[0], tensors[1], steps)
            self._sync()
            t2 = time.perf_counter()
        to_np = lambda x: x[..., :h, :w].float().cpu().numpy()  # noqa: E731
        return to_np(fused), to_np(f1), {"stage1": (t1 - t0) * 1e3, "stage2": (t2 - t1) * 1e3}

    def close(self) -> None:
        self.model.to("cpu")
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
