"""Semantic prior backends: one IR/VIS pair → soft object maps (M_ir, M_vis) that guide Stage II.

``build_prior_backend`` picks one:

* ``"sam"``: Segment Anything (vit_b / vit_l / vit_h checkpoint) prompted at thermal hot spots
  (IR) and on a sparse point grid (VIS); see :mod:`sgdfuse_ros.semantics.sam`.
* ``"classical"``: numpy + OpenCV hot-object and saliency maps, milliseconds on a CPU; it
  stands in for SAM when no checkpoint is configured; see
  :mod:`sgdfuse_ros.semantics.classical`.
* ``"auto"``: SAM when a checkpoint path is given, classical otherwise (with a warning).

Importing this package needs neither torch nor segment_anything.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol, runtime_checkable

import numpy as np

from sgdfuse_ros.errors import WeightsError
from sgdfuse_ros.semantics.classical import ClassicalPriorBackend, ClassicalSettings
from sgdfuse_ros.semantics.sam import (
    CHECKPOINT_HINT,
    SAM_MODEL_TYPES,
    MaskMerge,
    SamPriorBackend,
    SamSettings,
    build_small_sam,
    merge_mask_logits,
)

__all__ = [
    "PRIOR_BACKEND_KINDS",
    "ClassicalPriorBackend",
    "MaskMerge",
    "PriorBackend",
    "SamPriorBackend",
    "build_prior_backend",
    "build_small_sam",
    "merge_mask_logits",
]

LOGGER = logging.getLogger("sgdfuse_ros")
PRIOR_BACKEND_KINDS = ("auto", "sam", "classical")
_SAM_OPTIONS = frozenset(field.name for field in dataclasses.fields(SamSettings))
_CLASSICAL_OPTIONS = frozenset(field.name for field in dataclasses.fields(ClassicalSettings))


@runtime_checkable
class PriorBackend(Protocol):
    """What the pipeline, the node and training need from a semantic prior backend."""

    name: str

    def settings(self) -> dict[str, object]:
        """JSON-serialisable settings, recorded in training caches and weight metadata."""
        ...

    def compute(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ir float32 H×W in [0, 1], vis uint8 H×W×3 RGB → (m_ir, m_vis) float32 H×W in [0, 1]."""
        ...

    def close(self) -> None:
        """Free device memory (no-op for CPU backends)."""
        ...


def build_prior_backend(
    kind: str = "auto",
    *,
    sam_model_type: str = "vit_b",
    sam_checkpoint: str | None = None,
    device: str = "cpu",
    trained_settings: dict[str, object] | None = None,
    **options: object,
) -> PriorBackend:
    """Build the prior backend named by ``kind`` ("auto", "sam" or "classical").

    ``options`` are the backend's settings (``SamSettings`` / ``ClassicalSettings`` fields).
    ``trained_settings`` is a backend's recorded ``settings()`` (e.g. the weights' training
    priors): its fields are the defaults, under ``options``, when the backend it names is the
    one built, since heads learn what their training's maps look like.
    An empty ``sam_checkpoint`` counts as none (ROS parameters cannot be None). With "auto"
    and no checkpoint the classical backend stands in and a warning says so; SAM-only options
    are then ignored (also said in the warning). "sam" without a usable checkpoint raises
    WeightsError; without segment_anything, BackendUnavailableError.
    """
    if kind not in PRIOR_BACKEND_KINDS:
        raise ValueError(f"unknown prior backend {kind!r}; use one of {PRIOR_BACKEND_KINDS}")
    unknown = set(options) - _SAM_OPTIONS - _CLASSICAL_OPTIONS
    if unknown:
        raise ValueError(
            f"unknown prior backend option(s) {sorted(unknown)}; SAM takes {sorted(_SAM_OPTIONS)}, "
            f"classical takes {sorted(_CLASSICAL_OPTIONS)}"
        )
    checkpoint = sam_checkpoint or None
    use_sam = kind == "sam" or (kind == "auto" and checkpoint is not None)
    recorded = trained_settings or {}
    if use_sam:
        _reject_options(options, _SAM_OPTIONS, "sam")
        if checkpoint is None:
            files = ", ".join(f"{model}: sam_{model}_*.pth" for model in SAM_MODEL_TYPES)
            raise WeightsError(
                "the SAM prior backend needs a checkpoint and none is configured; "
                + CHECKPOINT_HINT.format(files=files)
                + " (or use the classical backend)"
            )
        base = _recorded_options(recorded, "sam", _SAM_OPTIONS)
        return SamPriorBackend.from_checkpoint(
            sam_model_type, checkpoint, device, **{**base, **options}
        )

    if kind == "classical":
        _reject_options(options, _CLASSICAL_OPTIONS, "classical")
    else:
        ignored = sorted(set(options) - _CLASSICAL_OPTIONS)
        LOGGER.warning(
            "no SAM checkpoint configured (sam_checkpoint is empty): the classical prior backend "
            "(thermal hot objects + visible saliency, numpy/OpenCV) stands in for SAM, so the "
            "semantic maps are coarser; set sam_checkpoint to a SAM .pth file for SAM priors%s",
            f"; ignoring SAM-only options {ignored}" if ignored else "",
        )
    classical = {key: value for key, value in options.items() if key in _CLASSICAL_OPTIONS}
    base = _recorded_options(recorded, "classical", _CLASSICAL_OPTIONS)
    return ClassicalPriorBackend(**{**base, **classical})  # given options win over recorded


def _recorded_options(
    recorded: dict[str, object], backend: str, allowed: frozenset[str]
) -> dict[str, object]:
    """The fields of a recorded ``settings()`` that configure ``backend`` (none if another
    backend was recorded; fields an older record lacks keep their defaults)."""
    if recorded.get("backend") != backend:
        return {}
    return {key: value for key, value in recorded.items() if key in allowed}


def _reject_options(options: dict[str, object], allowed: frozenset[str], kind: str) -> None:
    wrong = sorted(set(options) - allowed)
    if wrong:
        raise ValueError(
            f"option(s) {wrong} do not apply to the {kind} prior backend; "
            f"it takes {sorted(allowed)}"
        )
