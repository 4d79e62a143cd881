"""PipelineOptions: the one definition of how a FusionPipeline is set up.

``FusionPipeline``, the node's settings, every ``sgdfuse`` subcommand and the benchmark take
this dataclass, so an option added here is reachable from all of them. Each field's metadata
holds its help text (used for the CLI flags); choice lists come from the constants of the
module that implements them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sgdfuse_ros.deploy import BACKENDS, BUILD_MODES
from sgdfuse_ros.semantics import PRIOR_BACKEND_KINDS
from sgdfuse_ros.semantics.sam import SAM_MODEL_TYPES


def _option(default: Any, help_text: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help_text, "choices": choices})


@dataclass(frozen=True)
class PipelineOptions:
    """Everything that decides which networks run where; checked on construction."""

    weights: str | None = _option(None, "weights file (default: the shipped weights)")
    device: str = _option("cpu", "torch device: cpu, cuda or cuda:N")
    steps: int | None = _option(None, "diffusion steps K (default: the weights' default)")
    backend: str = _option("torch", "inference backend", BACKENDS)
    prior_backend: str = _option(
        "auto", "semantic priors (auto: SAM when a checkpoint is set)", PRIOR_BACKEND_KINDS
    )
    sam_model_type: str = _option("vit_b", "SAM variant of the checkpoint", SAM_MODEL_TYPES)
    sam_checkpoint: str | None = _option(None, "SAM checkpoint (.pth) path")
    prior_refresh_every: int = _option(1, "recompute the priors every N frames (video)")
    allow_untrained: bool = _option(False, "run with random weights (labelled) if no weights exist")
    resize_mismatched: bool = _option(False, "resize IR to the visible size when they differ")
    fp16: bool | None = _option(None, "half precision (default: on CUDA only)")
    engine_dir: str | None = _option(None, "ONNX / TensorRT cache (default: user cache)")
    engine_build: str = _option(
        "background",
        "tensorrt without a plan: build while torch fuses, build first, or refuse",
        BUILD_MODES,
    )
    cpu_threads: int | None = _option(None, "CPU inference threads (default: one per core)")

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            choices = item.metadata["choices"]
            value = getattr(self, item.name)
            if choices and value not in choices:
                raise ValueError(f"{item.name}={value!r} is not one of: {', '.join(choices)}")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", str(self.device)):
            raise ValueError(
                f"device={self.device!r} is not a torch device: use cpu, cuda or cuda:N"
            )
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps={self.steps} must be >= 1 (None: the weights' default)")
        if self.prior_refresh_every < 1:
            raise ValueError(f"prior_refresh_every={self.prior_refresh_every} must be >= 1")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads={self.cpu_threads} must be >= 1 (None: one per core)")
        # Paths are kept as strings so the options compare, print and serialise plainly.
        for name in ("weights", "sam_checkpoint", "engine_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PipelineOptions:
        """The options among ``values`` (e.g. ``vars(args)``); other keys are ignored."""
        names = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def replace(self, **changes: Any) -> PipelineOptions:
        return dataclasses.replace(self, **changes)
