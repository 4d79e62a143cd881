"""FusionPipeline: numpy IR + VIS in, fused RGB numpy out. No ROS here.

One object owns the loaded weights, the prior backend and the inference backend, validates
every input with a clear error, and times each stage. The node, the CLI, the demo, the
benchmarks and the evaluation all fuse through it, so they all behave the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .deploy import make_runner
from .deploy.runner import NetworkRunner
from .errors import BackendUnavailableError, InputError, WeightsError
from .imaging import ir_to_unit
from .memory import retain_freed_memory
from .model_io import DEFAULT_WEIGHTS, RETRAIN_HINT, load_weights, untrained_model
from .options import PipelineOptions
from .semantics import build_prior_backend

LOG = logging.getLogger("sgdfuse_ros")


@dataclass
class FusionResult:
    fused: np.ndarray  # H×W×3 uint8 RGB
    stage1: np.ndarray | None = None  # F1, H×W×3 uint8 (return_intermediate)
    prior_ir: np.ndarray | None = None  # H×W float32 in [0, 1] (return_intermediate)
    prior_vis: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


def _check_finite(name: str, arr: np.ndarray) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{name} image contains NaN or inf values")


def validate_ir(ir: Any) -> np.ndarray:
    """IR as H×W: accepts H×W, H×W×1 or H×W×3 with equal channels; uint8, uint16 or float in [0, 1]."""
    if not isinstance(ir, np.ndarray):
        raise InputError(f"infrared image must be a numpy array, got {type(ir).__name__}")
    if ir.size == 0:
        raise InputError(f"infrared image is empty (shape {ir.shape})")
    if ir.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(
            f"infrared image dtype {ir.dtype} unsupported; use uint8, uint16 or float32 in [0, 1]"
        )
    if ir.ndim == 3:
        if ir.shape[2] == 1:
            ir = ir[..., 0]
        elif ir.shape[2] == 3:
            if not (
                np.array_equal(ir[..., 0], ir[..., 1]) and np.array_equal(ir[..., 0], ir[..., 2])
            ):
                raise InputError(
                    "infrared image has 3 different channels (a colour palette?); pass the raw "
                    "single-channel thermal image"
                )
            ir = ir[..., 0]
        else:
            raise InputError(
                f"infrared image has {ir.shape[2]} channels; expected 1 (or 3 equal ones)"
            )
    elif ir.ndim != 2:
        raise InputError(f"infrared image must be H×W, got shape {ir.shape}")
    _check_finite("infrared", ir)
    return ir


def validate_vis(vis: Any) -> np.ndarray:
    """VIS as H×W×3 RGB uint8 (a grayscale H×W uint8 camera is replicated to 3 channels)."""
    if not isinstance(vis, np.ndarray):
        raise InputError(f"visible image must be a numpy array, got {type(vis).__name__}")
    if vis.size == 0:
        raise InputError(f"visible image is empty (shape {vis.shape})")
    if vis.dtype != np.uint8:
        raise InputError(f"visible image dtype {vis.dtype} unsupported; use uint8 RGB")
    if vis.ndim == 2 or (vis.ndim == 3 and vis.shape[2] == 1):
        vis = np.repeat(vis.reshape(*vis.shape[:2], 1), 3, axis=2)
    if vis.ndim != 3 or vis.shape[2] != 3:
        raise InputError(f"visible image must be H×W×3 RGB, got shape {vis.shape}")
    return vis


def validate_priors(priors: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Given prior maps (m_ir, m_vis) as float32 H×W in [0, 1]: each H×W or H×W×1, uint8
    (0–255) or float in [0, 1], of the frame's size (after any resize of the IR)."""
    if not isinstance(priors, (tuple, list)) or len(priors) != 2:
        raise InputError("given priors must be a pair (m_ir, m_vis) of H×W arrays")
    maps = []
    for name, prior in zip(("m_ir", "m_vis"), priors, strict=True):
        if not isinstance(prior, np.ndarray):
            raise InputError(
                f"given prior {name} must be a numpy array, got {type(prior).__name__}"
            )
        if prior.ndim == 3 and prior.shape[2] == 1:
            prior = prior[..., 0]
        if prior.shape != tuple(shape):
            raise InputError(
                f"given prior {name} is {prior.shape} but the frame is {tuple(shape)} (H×W)"
            )
        if prior.dtype == np.uint8:
            prior = prior.astype(np.float32) / 255.0
        elif prior.dtype in (np.float32, np.float64):
            _check_finite(f"given prior {name}", prior)
            if prior.size and (prior.min() < 0.0 or prior.max() > 1.0):
                raise InputError(f"given prior {name} has values outside [0, 1]")
        else:
            raise InputError(
                f"given prior {name} dtype {prior.dtype}; use uint8 or float in [0, 1]"
            )
        maps.append(np.ascontiguousarray(prior, dtype=np.float32))
    return maps[0], maps[1]


class FusionPipeline:
    """Thermal + RGB frames → fused RGB frame (Stage I, semantic priors, Stage II).

    Set up by one ``PipelineOptions`` (see ``sgdfuse_ros.options`` for every field), given
    whole or as keyword arguments: ``FusionPipeline(device="cuda", steps=1)``.
    """

    def __init__(self, options: PipelineOptions | None = None, **overrides: Any) -> None:
        options = (options or PipelineOptions()).replace(**overrides)
        retain_freed_memory()  # CPU frames otherwise fault in their activations anew each time
        self.options = options
        self.device = options.device
        self.resize_mismatched = options.resize_mismatched
        self.prior_refresh_every = options.prior_refresh_every
        self.model, self.metadata = self._load_model(
            options.weights, options.device, options.allow_untrained
        )
        self.supported_steps: tuple[int, ...] = tuple(self.model.supported_steps)
        self.default_steps = self._check_steps(
            options.steps or int(self.metadata.get("default_steps", self.supported_steps[0]))
        )
        self.priors = build_prior_backend(
            options.prior_backend,
            sam_model_type=options.sam_model_type,
            sam_checkpoint=options.sam_checkpoint,
            device=options.device,
            # the heads learned what their training's maps look like: compute them the same way
            trained_settings=self.metadata.get("prior_settings"),
        )
        trained_with = self.metadata.get("prior_backend")
        if trained_with and trained_with != self.priors.name:
            LOG.warning(
                "weights were trained with %s priors but the %s prior backend is in use",
                trained_with,
                self.priors.name,
            )
        self.backend = options.backend
        # tensorrt with SAM priors and engine_build "background": SAM's plans building meanwhile
        self.sam_build: Future | None = None
        self.runner: NetworkRunner = self._make_runner(options)
        self._cached_priors: tuple[np.ndarray, np.ndarray] | None = None
        self._frames_since_priors = 0

    @staticmethod
    def _load_model(
        weights: str | Path | None, device: str, allow_untrained: bool
    ) -> tuple[Any, dict[str, Any]]:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(
                "PyTorch is not installed; install it with `pip install torch` (CUDA build on a GPU machine)"
            ) from exc
        if weights is None and not DEFAULT_WEIGHTS.is_file():
            if allow_untrained:
                return untrained_model(device=device)
            raise WeightsError(f"the default weights {DEFAULT_WEIGHTS} are missing; {RETRAIN_HINT}")
        return load_weights(weights or DEFAULT_WEIGHTS, device="cpu")

    def _make_runner(self, options: PipelineOptions) -> NetworkRunner:
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise BackendUnavailableError(
                    f"device {self.device!r} requested but CUDA is not available to PyTorch "
                    "(no GPU, or a CPU-only torch build); use device 'cpu'"
                )
        runner = make_runner(
            options.backend,
            self.model,
            self.device,
            fp16=options.fp16,
            engine_dir=options.engine_dir,
            build=options.engine_build,
            threads=options.cpu_threads,
        )
        if self.priors.name == "sam" and options.backend != "torch":
            # SAM runs on the same runtime as the fusion networks; on TensorRT its missing plans
            # follow engine_build like the fusion plans (`sgdfuse export --engines
            # --sam-checkpoint …` builds them offline).
            from .deploy.sam_runtime import install_sam_runtime

            self.sam_build = install_sam_runtime(
                self.priors,
                options.backend,
                self.device,
                fp16=self.device.startswith("cuda") if options.fp16 is None else options.fp16,
                engine_dir=options.engine_dir,
                build=options.engine_build,
            )
        return runner

    def prepare(self, height: int, width: int, steps: tuple[int, ...] | None = None) -> None:
        """Load or build whatever the backend needs for this frame size now (bench, batch
        tools), so no frame of that size waits for it or is fused by a stand-in."""
        self.runner.prepare(height, width, steps or self.supported_steps)

    def set_prior_refresh_every(self, frames: int) -> None:
        """Reuse the priors for ``frames`` frames of a video (1: every frame); clears the cache."""
        if frames < 1:
            raise ValueError(f"prior_refresh_every={frames} must be >= 1")
        self.prior_refresh_every = frames
        self.reset_priors()

    def _check_steps(self, steps: int) -> int:
        if steps not in self.supported_steps:
            raise ValueError(
                f"diffusion steps K={steps} not supported by these weights; supported: {self.supported_steps}"
            )
        return steps

    def _prepare(self, ir: Any, vis: Any) -> tuple[np.ndarray, np.ndarray]:
        ir = validate_ir(ir)
        vis = validate_vis(vis)
        if ir.shape != vis.shape[:2]:
            if not self.resize_mismatched:
                raise InputError(
                    f"infrared {ir.shape[1]}×{ir.shape[0]} and visible {vis.shape[1]}×{vis.shape[0]} "
                    "differ in size; register them first or enable resize_mismatched"
                )
            import cv2

            ir = cv2.resize(ir, (vis.shape[1], vis.shape[0]), interpolation=cv2.INTER_LINEAR)
        return ir_to_unit(ir), vis

    def _priors_for(self, ir_unit: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Priors of this frame, or the cached ones while within the refresh interval (video)."""
        cached = self._cached_priors
        fresh = (
            cached is None
            or cached[0].shape != ir_unit.shape
            or self._frames_since_priors >= self.prior_refresh_every
        )
        if fresh:
            cached = self.priors.compute(ir_unit, vis)
            self._cached_priors = cached
            self._frames_since_priors = 0
        self._frames_since_priors += 1
        return cached

    def reset_priors(self) -> None:
        """Forget cached priors (a new scene, a looped bag)."""
        self._cached_priors = None

    def fuse(
        self,
        ir: Any,
        vis: Any,
        steps: int | None = None,
        return_intermediate: bool = False,
        priors: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> FusionResult:
        """Fuse one pair. ``priors`` = (m_ir, m_vis) replaces the prior backend for this frame
        (ablations, an external segmentation): H×W uint8 or float in [0, 1] each; the cached
        backend priors are left as they are."""
        start = time.perf_counter()
        k = self._check_steps(steps or self.default_steps)
        ir_unit, vis = self._prepare(ir, vis)
        t0 = time.perf_counter()
        if priors is None:
            m_ir, m_vis = self._priors_for(ir_unit, vis)
        else:
            m_ir, m_vis = validate_priors(priors, ir_unit.shape)
        t1 = time.perf_counter()
        nchw: Callable[[np.ndarray], np.ndarray] = lambda a: np.ascontiguousarray(  # noqa: E731
            a.transpose(2, 0, 1)[None] if a.ndim == 3 else a[None, None], dtype=np.float32
        )
        fused, f1, stage_ms = self.runner.run(
            nchw(ir_unit), nchw(vis.astype(np.float32) / 255.0), nchw(m_ir), nchw(m_vis), k
        )
        to_u8 = lambda x: np.clip(x[0].transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
        result = FusionResult(fused=to_u8(fused))
        if return_intermediate:
            result.stage1, result.prior_ir, result.prior_vis = to_u8(f1), m_ir, m_vis
        result.timings_ms = {
            "priors": (t1 - t0) * 1e3,
            **stage_ms,
            "total": (time.perf_counter() - start) * 1e3,
        }
        return result

    def close(self) -> None:
        """Release the networks and GPU memory (the node calls this on deactivate)."""
        self.runner.close()
        self.priors.close()
        self._cached_priors = None
