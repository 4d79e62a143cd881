"""ONNX Runtime backend: the exported Stage I → U-Net → HFAH graphs on the CPU or CUDA provider.

The three graphs are chained with ``run_with_ort_values``: on the CUDA provider the
intermediate tensors (F1, the decoder features) stay on the GPU and only the fused image comes
back; on the CPU the same call passes buffers without extra copies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError
from . import graphs, require_onnxruntime
from .diffusion_inputs import DiffusionInputs
from .export import FusionOnnx, ensure_fusion_onnx

LOG = logging.getLogger("sgdfuse_ros")

_shared_arena: bool | None = None


def shared_cpu_arena(ort: Any) -> bool:
    """Register one CPU memory arena in ONNX Runtime's process-wide environment, once; True when
    sessions can use it (session config ``session.use_env_allocators``).

    Each session otherwise keeps an arena of its own at its own peak size, and the pipeline's
    sessions (Stage I, U-Net, one head per K) never run at the same time: at 640×480 with
    K = 1 and 3 the five private arenas held 1.6 GB where one shared arena holds 0.55 GB, with
    the same speed and the same output bits (docs/benchmarks.md, "Memory").
    """
    global _shared_arena
    if _shared_arena is None:
        info = ort.OrtMemoryInfo(
            "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
        )
        try:
            ort.create_and_register_allocator(info, ort.OrtArenaCfg({}))
            _shared_arena = True
        except Exception as exc:  # a build without it: private arenas, as before
            LOG.warning(
                "ONNX Runtime shared CPU arena unavailable (%s): more memory per session", exc
            )
            _shared_arena = False
    return bool(_shared_arena)


def pad_replicate(arr: np.ndarray, multiple: int) -> np.ndarray:
    """Numpy twin of ``models.sgdfuse.pad_to_multiple`` (replicate-pad bottom/right)."""
    h, w = arr.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return np.ascontiguousarray(arr, dtype=np.float32)
    return np.pad(arr, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge").astype(
        np.float32, copy=False
    )


def providers_for(device: str, available: list[str]) -> tuple[list[Any], str, int]:
    """ONNX Runtime providers for a torch-style device string → (providers, ort device, id)."""
    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu", 0
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError(
                f"device {device!r} with the onnxruntime backend needs the CUDA execution provider "
                f"(available: {', '.join(available)}); `pip install onnxruntime-gpu` in place of onnxruntime"
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return (
            [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"],
            "cuda",
            index,
        )
    raise ValueError(f"unsupported device {device!r} for onnxruntime; use cpu or cuda[:N]")


class OnnxRuntimeRunner:
    """``NetworkRunner`` over ONNX Runtime sessions of the exported fusion graphs."""

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        fp16: bool | None = None,
        engine_dir: str | Path | None = None,
        threads: int | None = None,
        exported: FusionOnnx | None = None,
        spin_wait: bool = False,
    ) -> None:
        ort = require_onnxruntime()
        self.ort = ort
        if fp16:
            LOG.warning(
                "the onnxruntime backend runs the fp32 graphs; use backend tensorrt for fp16"
            )
        providers, self.ort_device, self.device_id = providers_for(
            device, ort.get_available_providers()
        )
        self.exported = exported or ensure_fusion_onnx(model, engine_dir)
        self.multiple = self.exported.size_multiple
        self.supported_steps = self.exported.supported_steps
        self.diffusion_inputs = DiffusionInputs(model)
        self._diffusion_cache: dict[tuple[int, int, int], dict[str, Any]] = {}

        shared_arena = shared_cpu_arena(ort)

        def session(graph: str) -> Any:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if self.ort_device == "cpu" and not spin_wait:
                # Idle worker threads sleep instead of spinning: on a CPU shared with drivers,
                # ROS and other nodes, spinning burns the cores the next operator needs
                # (Stage I measured 1.3-1.6x faster at 640x480 on a loaded 2-core machine).
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if threads:
                options.intra_op_num_threads = threads
            if shared_arena:
                options.add_session_config_entry("session.use_env_allocators", "1")
            return ort.InferenceSession(
                str(self.exported.path(graph)), options, providers=providers
            )

        self.stage1 = session("stage1")
        self.unet = session("unet")
        self.heads = {k: session(graphs.head_graph_name(k)) for k in self.supported_steps}
        self.feature_names = graphs.feature_names(self.exported.num_levels)

    def prepare(self, height: int, width: int, steps: Sequence[int]) -> None:
        """Nothing to build: the sessions take any frame size."""

    def ready(self, height: int, width: int, steps: int) -> bool:
        return True

    def _value(self, arr: np.ndarray) -> Any:
        return self.ort.OrtValue.ortvalue_from_numpy(
            np.ascontiguousarray(arr, dtype=np.float32), self.ort_device, self.device_id
        )

    def _diffusion_values(self, steps: int, height: int, width: int) -> dict[str, Any]:
        """Noise and coefficients as OrtValues, made (and on CUDA uploaded) once per size."""
        key = (steps, height, width)
        if key not in self._diffusion_cache:
            host = self.diffusion_inputs.for_frame(steps, height, width)
            self._diffusion_cache = {
                k: v for k, v in self._diffusion_cache.items() if k[1:] == (height, width)
            }
            self._diffusion_cache[key] = {n: self._value(t.numpy()) for n, t in host.items()}
        return self._diffusion_cache[key]

    def run(
        self, ir: np.ndarray, vis: np.ndarray, m_ir: np.ndarray, m_vis: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        if steps not in self.heads:
            raise ValueError(f"no HFAH head for K={steps}; supported: {self.supported_steps}")
        h, w = ir.shape[-2:]
        ir_p, vis_p, m_ir_p, m_vis_p = (
            pad_replicate(a, self.multiple) for a in (ir, vis, m_ir, m_vis)
        )
        hp, wp = ir_p.shape[-2:]
        vis_v = self._value(vis_p)
        t0 = time.perf_counter()
        ir_v = self._value(ir_p)
        (f1,) = self.stage1.run_with_ort_values(
            list(graphs.STAGE1_OUTPUTS), {"ir": ir_v, "vis": vis_v}
        )
        t1 = time.perf_counter()
        feed = {"f1": f1, "m_ir": self._value(m_ir_p), "m_vis": self._value(m_vis_p)}
        feed.update(self._diffusion_values(steps, hp, wp))
        features = self.unet.run_with_ort_values(list(self.feature_names), feed)
        head_feed = dict(zip(self.feature_names, features, strict=True))
        head_feed.update(f1=f1, vis=vis_v, ir=ir_v)
        (fused,) = self.heads[steps].run_with_ort_values(list(graphs.HEAD_OUTPUTS), head_feed)
        fused_np = fused.numpy()[..., :h, :w]
        t2 = time.perf_counter()
        f1_np = f1.numpy()[..., :h, :w]
        return (
            np.ascontiguousarray(fused_np, dtype=np.float32),
            np.ascontiguousarray(f1_np, dtype=np.float32),
            {"stage1": (t1 - t0) * 1e3, "stage2": (t2 - t1) * 1e3},
        )

    def close(self) -> None:
        self.stage1 = self.unet = None
        self.heads = {}
