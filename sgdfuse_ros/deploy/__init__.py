"""Deployment backends: ONNX export, ONNX Runtime and TensorRT runners, the engine cache.

This package is the only place that imports onnxruntime or tensorrt; both are optional and a
missing one raises ``BackendUnavailableError`` with the pip command that installs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError

DEPLOY_BACKENDS = ("onnxruntime", "tensorrt")
BACKENDS = ("torch", *DEPLOY_BACKENDS)
# What the tensorrt backend does without a cached plan: build it on a worker thread while
# torch serves, build before running, or refuse (EngineMissingError names the export command).
BUILD_MODES = ("background", "blocking", "never")


def require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            "the onnxruntime backend needs ONNX Runtime: `pip install onnx onnxruntime` "
            "(`pip install onnx onnxruntime-gpu` for the CUDA execution provider)"
        ) from exc
    return onnxruntime


def require_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            "the tensorrt backend needs TensorRT and a CUDA build of PyTorch: `pip install tensorrt` "
            "on a machine with an NVIDIA GPU"
        ) from exc
    return tensorrt


def make_runner(
    backend: str,
    model: Any,
    device: str,
    *,
    fp16: bool | None = None,
    engine_dir: str | Path | None = None,
    build: str = "background",
    threads: int | None = None,
) -> Any:
    """The ``NetworkRunner`` (``runner.py``) for ``backend`` running ``model``'s networks.

    ONNX files are exported on demand into ``engine_dir`` (default: the user cache), keyed by
    the weights' fingerprint; TensorRT plans are cached there too. ``build`` is what tensorrt
    does without a plan: "background" fuses with torch while it builds (``TorchWhileBuilding``),
    "blocking" builds first, "never" refuses. ``threads`` bounds CPU inference threads.
    """
    if build not in BUILD_MODES:
        raise ValueError(f"build must be one of {BUILD_MODES}, got {build!r}")
    if backend == "torch":
        from .torch_runner import TorchRunner

        return TorchRunner(model, device, fp16, threads=threads)
    if backend == "onnxruntime":
        from .onnx_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(model, device, fp16=fp16, engine_dir=engine_dir, threads=threads)
    if backend == "tensorrt":
        from .tensorrt_runner import TensorRTRunner

        mode = "never" if build == "never" else "blocking"
        runner = TensorRTRunner(model, device, fp16=fp16, engine_dir=engine_dir, build=mode)
        if build != "background":
            return runner
        from .building_runner import TorchWhileBuilding
        from .torch_runner import TorchRunner

        return TorchWhileBuilding(runner, lambda: TorchRunner(model, device, runner.fp16))
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
