"""Training losses of SGDFuse (paper eqs. 12–19), on luminance planes B×1×H×W in [0, 1].

Stage I (eqs. 13–15) and the Stage II head (eqs. 16–19) share two terms:

* intensity: ``|Y_f − max(I_ir, Y_vis)|₁`` — keep the brighter source per pixel, so hot targets
  from IR and lit structure from VIS both survive;
* gradient: ``| |∇Y_f| − max(|∇I_ir|, |∇Y_vis|) |₁`` with Sobel magnitudes (|G_x| + |G_y|) —
  keep the stronger edge of the two sources per pixel.

Weighted ``λ1 = 1.5`` (intensity) and ``λ2 = 1`` (gradient). An optional third term,

* structure: ``1 − ½(SSIM(Y_f, I_ir) + SSIM(Y_f, Y_vis))`` weighted ``λ3`` — the two max terms
  reward a smooth per-pixel maximum and say nothing about keeping each source's local structure
  (contrast, texture layout), which is what MI, VIF, Qabf and SSIM measure; ``λ3 = 0`` is the
  paper's loss.

The head's loss is mask-guided:
both terms are weighted by ``M = max(M_ir, M_vis)``. Prior maps are sparse (mostly zero on road,
sky and walls), so the paper's masked loss alone leaves most of the frame unsupervised and the
head may do anything there. The documented background term adds the same two terms weighted by
``β·(1 − M)``: per pixel the weight is ``M + β(1 − M)``, i.e. objects count fully and background
with ``β`` (0.5 in the shipped config). ``β = 0`` is the paper's loss, ``β = 1`` ignores priors.

An optional object term gives the priors a target of their own:

* object: ``M_ir·|Y_f − I_ir| + M_vis·|Y_f − Y_vis|`` weighted ``λ_obj`` — an object keeps the
  pixels of the source in which its prior found it (a hot body as the thermal camera sees it,
  salient visible structure as the visible camera sees it; where both maps cover a pixel the
  L1 pull settles on the source of the stronger map). The max targets follow from the pixels
  alone, so there the priors only weight the loss and the network has little reason to read
  them (training/results/priors_ablation_msrs100.md); this term's target is set by the priors.
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


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of two B×1×H×W planes in [0, 1] (Gaussian 11×11, σ = 1.5, as Wang et al.),
    reflect-padded so the map has the planes' size and can be weighted per pixel."""
    window = _gaussian_window().to(device=x.device, dtype=x.dtype)
    pad = window.shape[-1] // 2

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(z, (pad, pad, pad, pad), mode="reflect"), window)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )


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


def structure_loss(
    fused_y: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``1 − ½(SSIM(Y_f, I_ir) + SSIM(Y_f, Y_vis))``: keep the local structure of both sources."""
    dissimilarity = 1.0 - 0.5 * (ssim_map(fused_y, ir) + ssim_map(fused_y, vis_y))
    return _weighted_mean(dissimilarity, weight)


def fusion_loss(
    fused_y: torch.Tensor,
    ir: torch.Tensor,
    vis_y: torch.Tensor,
    lambda_intensity: float = 1.5,
    lambda_gradient: float = 1.0,
    weight: torch.Tensor | None = None,
    lambda_structure: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 13: λ1·L_int + λ2·L_grad (+ λ3·L_struct); returns the loss and its parts for logging."""
    l_int = intensity_loss(fused_y, ir, vis_y, weight)
    l_grad = gradient_loss(fused_y, ir, vis_y, weight)
    total = lambda_intensity * l_int + lambda_gradient * l_grad
    parts = {"intensity": float(l_int.detach()), "gradient": float(l_grad.detach())}
    if lambda_structure:
        l_struct = structure_loss(fused_y, ir, vis_y, weight)
        total = total + lambda_structure * l_struct
        parts["structure"] = float(l_struct.detach())
    return total, parts


def object_loss(
    fused_y: torch.Tensor,
    ir: torch.Tensor,
    vis_y: torch.Tensor,
    m_ir: torch.Tensor,
    m_vis: torch.Tensor,
) -> torch.Tensor:
    """Objects keep the pixels of the source whose prior found them (module docstring)."""
    return (m_ir * (fused_y - ir).abs() + m_vis * (fused_y - vis_y).abs()).mean()


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
    lambda_structure: float = 0.0,
    lambda_object: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eqs. 16–19 plus the background term: the fusion loss weighted by ``M + β(1 − M)``, and
    the object term when ``lambda_object`` > 0."""
    weight = prior_weight(m_ir, m_vis, background_weight)
    total, parts = fusion_loss(
        fused_y, ir, vis_y, lambda_intensity, lambda_gradient, weight, lambda_structure
    )
    if lambda_object:
        l_obj = object_loss(fused_y, ir, vis_y, m_ir, m_vis)
        total = total + lambda_object * l_obj
        parts["object"] = float(l_obj.detach())
    return total, parts


def denoising_loss(eps_pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Eq. 12: the DDPM noise-prediction loss ‖ε − ε_θ(x_t, t)‖²."""
    return F.mse_loss(eps_pred, eps)
