"""Tensor and graph names shared by the exporter and the runtimes (no torch import here, so
the CLI and the cache logic stay light)."""

from __future__ import annotations

STAGE1_INPUTS = ("ir", "vis")
STAGE1_OUTPUTS = ("f1",)
UNET_INPUTS = ("f1", "m_ir", "m_vis", "noise", "timesteps", "signal_scale", "noise_scale")
SAM_ENCODER_INPUTS = ("image",)
SAM_ENCODER_OUTPUTS = ("image_embeddings",)
SAM_DECODER_INPUTS = ("image_embeddings", "sparse_embeddings", "dense_embeddings")
SAM_DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")


def feature_names(num_levels: int) -> tuple[str, ...]:
    """Names of the U-Net decoder feature outputs, deepest level first."""
    return tuple(f"feature_{level}" for level in range(num_levels))


def head_inputs(num_levels: int) -> tuple[str, ...]:
    return (*feature_names(num_levels), "f1", "vis", "ir")


HEAD_OUTPUTS = ("fused",)


def head_graph_name(steps: int) -> str:
    return f"head_k{steps}"
