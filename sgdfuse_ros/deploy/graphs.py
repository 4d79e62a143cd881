"""The torch modules that become ONNX graphs, and the tensor names the runtimes bind by.

The fusion network is cut into three graphs so each exported file does one job and no weights
are duplicated across K:

* ``stage1``: padded IR + VIS → F1.
* ``unet``: the K noised copies of I0 in one batched U-Net call. The fixed, seeded noise and
  the per-timestep √ᾱ / √(1−ᾱ) coefficients are *inputs* (the runner makes them once per frame
  size with the very same ``fixed_noise`` the torch model uses), so one file serves every K
  and every frame size and stays bit-for-bit on the torch definition. K is the batch axis.
* ``head_k{K}``: the HFAH head of one K plus the chroma re-attachment → fused RGB.

All graphs take batch 1 (one frame pair) and any H×W that is a multiple of
``config.unet.size_multiple``; the runners pad and crop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.color import with_luminance
from .names import (  # noqa: F401  (re-exported: the runners bind by these names)
    HEAD_OUTPUTS,
    SAM_DECODER_INPUTS,
    SAM_DECODER_OUTPUTS,
    SAM_ENCODER_INPUTS,
    SAM_ENCODER_OUTPUTS,
    STAGE1_INPUTS,
    STAGE1_OUTPUTS,
    UNET_INPUTS,
    feature_names,
    head_graph_name,
    head_inputs,
)


class Stage1Graph(nn.Module):
    """Stage I as exported: (ir 1×1×H×W, vis 1×3×H×W) → F1 1×3×H×W."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.stage1 = model.stage1

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return self.stage1(ir, vis)


class DiffusionFeaturesGraph(nn.Module):
    """I0 = concat(F1, M_ir, M_vis), noised to K timesteps, through the U-Net in one batch.

    Matches ``SGDFuse.diffusion_features`` for batch 1: x_t = √ᾱ_t·I0 + √(1−ᾱ_t)·ε with the
    K rows of ``noise``; each decoder feature K×C×h×w is returned as 1×(K·C)×h×w, which is the
    torch model's regrouping when the batch is 1. Coefficients arrive as inputs so no integer
    gather is needed (TensorRT-friendly) and the runner computes them exactly as torch does.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.unet = model.unet

    def forward(
        self,
        f1: torch.Tensor,
        m_ir: torch.Tensor,
        m_vis: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        signal_scale: torch.Tensor,
        noise_scale: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        i0 = self.model.make_i0(f1, m_ir, m_vis)
        x = signal_scale.view(-1, 1, 1, 1) * i0 + noise_scale.view(-1, 1, 1, 1) * noise
        features = self.unet.decoder_features(x, timesteps)
        return tuple(f.reshape(1, -1, f.shape[-2], f.shape[-1]) for f in features)


class HeadGraph(nn.Module):
    """HFAH of one K plus the visible chroma: (features…, F1, VIS, IR) → fused RGB 1×3×H×W."""

    def __init__(self, model: Any, steps: int) -> None:
        super().__init__()
        self.model = model
        self.steps = steps

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *features, f1, vis, ir = inputs
        y = self.model.head_luminance(self.steps, list(features), f1, ir, vis)
        return with_luminance(y, vis)


class SamEncoderGraph(nn.Module):
    """SAM's image encoder on a preprocessed (normalised, padded) 1×3×S×S image."""

    def __init__(self, sam: Any) -> None:
        super().__init__()
        self.encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class SamDecoderGraph(nn.Module):
    """SAM's mask decoder with the prompt embeddings as inputs (the prompt encoder stays in
    the caller: it is a few table look-ups). Returns all mask tokens (N×4×h×w) and their
    IoU predictions (N×4); picking single- or multi-mask output is the caller's choice."""

    def __init__(self, sam: Any) -> None:
        super().__init__()
        self.decoder = sam.mask_decoder
        self.register_buffer("image_pe", sam.prompt_encoder.get_dense_pe().detach().clone())

    def forward(
        self,
        image_embeddings: torch.Tensor,
        sparse_embeddings: torch.Tensor,
        dense_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # predict_masks repeats the (batch-1) image embedding once per prompt itself.
        return self.decoder.predict_masks(
            image_embeddings, self.image_pe, sparse_embeddings, dense_embeddings
        )
