"""Hierarchical Feature Aggregation Head (HFAH): diffusion features of K passes → fused luminance.

Every decoder level of the U-Net (deepest first) contributes the features of all K noised
passes; each level is projected to a common width and upsampled to full resolution, a spatial
attention chooses per pixel how much each level contributes, and 3×3 convolutions with a Tanh
produce the output. The head refines F1 rather than drawing from scratch: the Tanh acts on a
correction added to F1's luminance in the pre-Tanh domain, and the last conv starts at zero,
so an untrained head returns F1 exactly.

The refinement convolutions also see the two source luminances (IR and visible Y). The head's
loss pulls towards ``max(I_ir, Y_vis)`` inside the priors; from F1 and the diffusion features
alone (both computed from F1) the head could only guess how far F1 sits below that target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_OUTPUTS = ("correction", "sources", "select")
# Initial logit of F1 in the ``select`` form: an untrained head returns 0.91·F1 + 0.045·(IR + Y_vis),
# close to F1 but not saturated, so the gradients towards the sources are not vanishing.
SELECT_F1_LOGIT = 3.0


class HFAH(nn.Module):
    """``output`` chooses how the refinement becomes the fused luminance Y:

    * ``correction``: ``Y = ½(tanh(atanh(2·F1 − 1) + c) + 1)``, a free correction c of F1;
    * ``sources``: ``Y = F1 + a·(I_ir − F1) + b·(Y_vis − F1)`` (clamped to [0, 1]) with two
      per-pixel coefficients: the head moves F1 towards the source pixels instead of drawing new
      values, so where it settles on a source (a = 1 or b = 1) that source's value is kept
      exactly. A re-synthesised pixel carries an error of about a grey level everywhere, and
      source fidelity (MI, VIF, Qabf) is lost to that error alone (training/results).
    * ``select``: ``Y = w_f·F1 + w_ir·I_ir + w_vis·Y_vis`` with per-pixel weights from a softmax
      over three logits: a convex choice between the three candidates, never outside their
      range. A confident weight (logit gap ≥ 30) reproduces its candidate to the last float32 bit,
      so exact source values are the rule wherever the head is sure, not the limit of a
      regression; where it is unsure it blends. Starts near F1 (``SELECT_F1_LOGIT``).

    ``correction`` and ``sources`` start at zero (the last conv is zero-initialised), so an
    untrained head returns F1.
    """

    def __init__(
        self, decoder_channels: list[int], steps: int, width: int = 16, output: str = "correction"
    ) -> None:
        super().__init__()
        if output not in HEAD_OUTPUTS:
            raise ValueError(f"head output {output!r} is not one of: {', '.join(HEAD_OUTPUTS)}")
        self.steps = steps
        self.output = output
        self.project = nn.ModuleList(
            nn.Sequential(nn.Conv2d(steps * c, width, 1), nn.GELU()) for c in decoder_channels
        )
        levels = len(decoder_channels)
        self.level_attention = nn.Conv2d(levels * width, levels, 3, padding=1)
        self.refine = nn.Sequential(
            nn.Conv2d(width + 3, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GELU(),
        )
        self.out = nn.Conv2d(
            width, {"correction": 1, "sources": 2, "select": 3}[output], 3, padding=1
        )
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if output == "select":
            with torch.no_grad():
                self.out.bias[0] = SELECT_F1_LOGIT

    def forward(
        self,
        features: list[torch.Tensor],
        f1_luminance: torch.Tensor,
        ir: torch.Tensor,
        vis_luminance: torch.Tensor,
    ) -> torch.Tensor:
        """``features[l]``: B×(K·C_l)×h_l×w_l; ``f1_luminance``, ``ir``, ``vis_luminance``:
        B×1×H×W in [0, 1] → fused luminance B×1×H×W in [0, 1]."""
        size = f1_luminance.shape[-2:]
        levels = [
            F.interpolate(proj(f), size=size, mode="bilinear", align_corners=False)
            for proj, f in zip(self.project, features, strict=True)
        ]
        logits = self.level_attention(torch.cat(levels, dim=1))  # B×L×H×W
        # Softmax over levels written out: runtimes run these ops in place, where a Softmax on
        # axis 1 is transposed to the last axis and back (ONNX Runtime: 15 % of the head).
        exp = (logits - logits.amax(dim=1, keepdim=True)).exp()
        weights = exp / exp.sum(dim=1, keepdim=True)
        merged = sum(level * weights[:, i : i + 1] for i, level in enumerate(levels))
        correction = self.out(
            self.refine(torch.cat([merged, f1_luminance, ir, vis_luminance], dim=1))
        )
        if self.output == "select":
            # Softmax over the three candidates written out, as for the level attention.
            exp = (correction - correction.amax(dim=1, keepdim=True)).exp()
            weights = exp / exp.sum(dim=1, keepdim=True)
            return (
                weights[:, :1] * f1_luminance
                + weights[:, 1:2] * ir
                + weights[:, 2:3] * vis_luminance
            )
        if self.output == "sources":
            toward_ir, toward_vis = correction[:, :1], correction[:, 1:2]
            moved = (
                f1_luminance
                + toward_ir * (ir - f1_luminance)
                + toward_vis * (vis_luminance - f1_luminance)
            )
            return moved.clamp(0.0, 1.0)
        base = torch.atanh((2 * f1_luminance - 1).clamp(-0.999, 0.999))
        return 0.5 * (torch.tanh(base + correction) + 1)
