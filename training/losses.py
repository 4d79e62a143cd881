"""Training losses of SGDFuse (paper eqs. 12–19), on luminance planes B×1×H×W in [0, 1].

Stage I (eqs. 13–15) and the Stage II head (eqs. 16–19) share two terms:

* intensity: ``|Y_f − max(I_ir, Y_vis)|₁`` — keep the brighter source per pixel, so hot targets
  from IR and lit structure from VIS both survive;
* gradient: ``| |∇Y_f| − max(|∇I_ir|, |∇Y_vis|) |₁`` with Sobel magnitudes (|G_x| + |G_y|) —
  keep the stronger edge of the two sources per pixel.

Weighted ``λ1 = 1.5`` (intensity) and ``λ2 = 1`` (gradient). The head's loss is mask-guided:
both terms are weighted by ``M = max(M_ir, M_vis)``. Prior maps are sparse (mostly zero on road,
sky and walls), so the paper's masked loss alone leaves most of the frame unsupervised and the
head may do anything there. The documented background term adds the same two terms weighted by
``β·(1 − M)``: per pixel the weight is ``M + β(1 − M)``, i.e. objects count fully and background
with ``β`` (0.5 in the shipped config). ``β = 0`` is the paper's loss, ``β = 1`` ignores priors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(y: torch.Tensor) -> torch.Tensor:
    """|G_x| + |G_y| of a B×1×H×W plane (replicate padding: frame borders are not edges)."""
    kernel = torch.stack([_SOBEL_X, _SOBEL_X.t()])[:, None].to(device=y.device, dtype=y.dtype)
    grads = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), kernel)
    return grads.abs().sum(dim=1, keepdim=True)


def _weighted_mean(diff: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over all pixels of weight·|diff| (the paper's ‖M ⊙ ·‖₁ per pixel)."""
    return diff.abs().mean() if weight is None else (weight * diff.abs()).mean()


def intensity_loss(
    fused_y: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 14 / 17: L1 distance to the per-pixel maximum intensity of the two sources."""
    return _weighted_mean(fused_y - torch.maximum(ir, vis_y), weight)


def gradient_loss(
    fused_y: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 15 / 18: L1 distance of Sobel magnitudes to the stronger source edge per pixel."""
    target = torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis_y))
    return _weighted_mean(sobel_magnitude(fused_y) - target, weight)


def fusion_loss(
    fused_y: torch.Tensor,
    ir: torch.Tensor,
    vis_y: torch.Tensor,
    lambda_intensity: float = 1.5,
    lambda_gradient: float = 1.0,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 13: λ1·L_int + λ2·L_grad; returns the loss and its parts for logging."""
    l_int = intensity_loss(fused_y, ir, vis_y, weight)
    l_grad = gradient_loss(fused_y, ir, vis_y, weight)
    total = lambda_intensity * l_int + lambda_gradient * l_grad
    return total, {"intensity": float(l_int.detach()), "gradient": float(l_grad.detach())}


def prior_weight(m_ir: torch.Tensor, m_vis: torch.Tensor, background_weight: float) -> torch.Tensor:
    """Per-pixel weight ``M + β(1 − M)`` with ``M = max(M_ir, M_vis)`` (see module docstring)."""
    if not 0.0 <= background_weight <= 1.0:
        raise ValueError("background_weight must be in [0, 1]")
    mask = torch.maximum(m_ir, m_vis).clamp(0.0, 1.0)
    return mask + background_weight * (1.0 - mask)


def masked_fusion_loss(
    fused_y: torch.Tensor,
    ir: torch.Tensor,
    vis_y: torch.Tensor,
    m_ir: torch.Tensor,
    m_vis: torch.Tensor,
    lambda_intensity: float = 1.5,
    lambda_gradient: float = 1.0,
    background_weight: float = 0.5,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eqs. 16–19 plus the background term: the fusion loss weighted by ``M + β(1 − M)``."""
    weight = prior_weight(m_ir, m_vis, background_weight)
    return fusion_loss(fused_y, ir, vis_y, lambda_intensity, lambda_gradient, weight)


def denoising_loss(eps_pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Eq. 12: the DDPM noise-prediction loss ‖ε − ε_θ(x_t, t)‖²."""
    return F.mse_loss(eps_pred, eps)
