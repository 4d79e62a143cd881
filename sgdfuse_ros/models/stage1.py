"""Stage I: the preliminary fusion network (paper section 3.3).

IR goes through three multi-scale feature enhancement modules (MSFEM), VIS luminance through
three transformer blocks; a bidirectional cross-attention merges them and a small decoder
reconstructs the fused luminance. The visible chroma is re-attached, giving F1 (3 channels).

Attention is channel-wise ("transposed": a C×C map per head) so its cost is linear in the
number of pixels; full spatial attention at 640×480 would not fit a real-time budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .color import rgb_to_ycbcr, with_luminance
from .norm import GroupNorm


@dataclass
class Stage1Config:
    channels: int = 16
    heads: int = 2
    num_msfem: int = 3
    num_transformer: int = 3
    ffn_expansion: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


class ChannelLayerNorm(nn.Module):
    """Normalisation over the whole C×H×W map of each sample (GroupNorm with one group)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = GroupNorm(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def _zero_pad_kernel(w: torch.Tensor, size: int) -> torch.Tensor:
    """Centre a k×k kernel in a size×size one. Concatenated zeros rather than ``F.pad``: the ONNX
    exporter then knows the kernel's shape, which its Conv needs."""
    pad = (size - w.shape[-1]) // 2
    if pad == 0:
        return w
    rows = w.new_zeros(*w.shape[:2], pad, w.shape[-1])
    w = torch.cat([rows, w, rows], dim=2)
    cols = w.new_zeros(*w.shape[:3], pad)
    return torch.cat([cols, w, cols], dim=3)


class MSFEM(nn.Module):
    """Multi-scale feature enhancement: 1/3/5/7 receptive-field branches, DWConv-Conv1×1-DWConv
    enhancement of their concatenation, and the residual gate ``F_out = F_in + σ(Conv1×1(F_cat))``.

    The 3/5/7 branches are depthwise after a 1×1 reduction so a wide receptive field stays cheap.
    Outside training the four branches run as the one convolution pair they add up to (see
    ``merged_branches``): the same numbers in two passes over one tensor instead of eight over
    four thin ones.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        branch = max(channels // 4, 4)
        self.branches = nn.ModuleList()
        for k in (1, 3, 5, 7):
            layers: list[nn.Module] = [nn.Conv2d(channels, branch, 1)]
            if k > 1:
                layers.append(nn.Conv2d(branch, branch, k, padding=k // 2, groups=branch))
            layers.append(nn.GELU())
            self.branches.append(nn.Sequential(*layers))
        cat = 4 * branch
        self.enhance = nn.Sequential(
            nn.Conv2d(cat, cat, 3, padding=1, groups=cat),
            nn.Conv2d(cat, cat, 1),
            nn.GELU(),
            nn.Conv2d(cat, cat, 3, padding=1, groups=cat),
        )
        self.gate = nn.Conv2d(cat, channels, 1)

    def merged_branches(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The branches as one 1×1 convolution to all branch channels followed by one depthwise
        7×7 convolution: (1×1 weight, bias, depthwise weight, bias).

        Each branch's depthwise kernel sits zero-padded in the middle of its 7×7 slots and the
        1×1 branch gets the identity kernel, so only zeros are added to the branches' sums.
        Gradients flow through the construction, but training keeps the separate branches (the
        shipped weights reproduce bit for bit that way).
        """
        reduce_w = torch.cat([b[0].weight for b in self.branches])
        reduce_b = torch.cat([b[0].bias for b in self.branches])
        size = max(b[1].kernel_size[0] for b in self.branches if len(b) == 3)
        kernels, biases = [], []
        for b in self.branches:
            if len(b) == 3:  # 1×1 → depthwise k×k → GELU
                w, bias = b[1].weight, b[1].bias
            else:  # 1×1 → GELU: the identity
                w = torch.ones_like(reduce_w[: b[0].out_channels, :1, :1])
                bias = torch.zeros_like(b[0].bias)
            kernels.append(_zero_pad_kernel(w, size))
            biases.append(bias)
        return reduce_w, reduce_b, torch.cat(kernels), torch.cat(biases)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            cat = torch.cat([b(x) for b in self.branches], dim=1)
        else:
            reduce_w, reduce_b, spatial_w, spatial_b = self.merged_branches()
            reduced = F.conv2d(x, reduce_w, reduce_b)
            k = spatial_w.shape[-1]
            cat = F.gelu(
                F.conv2d(reduced, spatial_w, spatial_b, padding=k // 2, groups=len(spatial_w))
            )
        return x + torch.sigmoid(self.gate(self.enhance(cat)))


class ChannelAttention(nn.Module):
    """Multi-head transposed attention: queries from ``x``, keys/values from ``context``."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_q = nn.Sequential(
            nn.Conv2d(channels, channels, 1),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        )
        self.to_kv = nn.Sequential(
            nn.Conv2d(channels, 2 * channels, 1),
            nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels),
        )
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.to_q(x).reshape(b, self.heads, c // self.heads, h * w)
        k, v = self.to_kv(context).reshape(b, 2, self.heads, c // self.heads, h * w).unbind(1)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.proj((attn @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """Gated depthwise-conv feed-forward: local context that plain MLPs lack."""

    def __init__(self, channels: int, expansion: float) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        self.expand = nn.Conv2d(channels, 2 * hidden, 1)
        self.local = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.local(self.expand(x)).chunk(2, dim=1)
        return self.project(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block with channel self-attention and a gated feed-forward."""

    def __init__(self, channels: int, heads: int, ffn_expansion: float) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.attn = ChannelAttention(channels, heads)
        self.norm2 = ChannelLayerNorm(channels)
        self.ffn = GatedFeedForward(channels, ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y)
        return x + self.ffn(self.norm2(x))


class CrossAttentionFusion(nn.Module):
    """Each modality attends to the other; the two enriched streams are merged by a 1×1 conv."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm_ir = ChannelLayerNorm(channels)
        self.norm_vis = ChannelLayerNorm(channels)
        self.ir_from_vis = ChannelAttention(channels, heads)
        self.vis_from_ir = ChannelAttention(channels, heads)
        self.merge = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        a, b = self.norm_ir(ir), self.norm_vis(vis)
        ir = ir + self.ir_from_vis(a, b)
        vis = vis + self.vis_from_ir(b, a)
        return self.merge(torch.cat([ir, vis], dim=1))


class Stage1Net(nn.Module):
    """IR (B×1×H×W) + VIS RGB (B×3×H×W), both in [0, 1] → F1 RGB (B×3×H×W) in [0, 1]."""

    def __init__(self, config: Stage1Config | None = None) -> None:
        super().__init__()
        self.config = config = config or Stage1Config()
        c = config.channels
        self.ir_stem = nn.Conv2d(1, c, 3, padding=1)
        self.vis_stem = nn.Conv2d(1, c, 3, padding=1)
        self.ir_encoder = nn.Sequential(*[MSFEM(c) for _ in range(config.num_msfem)])
        self.vis_encoder = nn.Sequential(
            *[
                TransformerBlock(c, config.heads, config.ffn_expansion)
                for _ in range(config.num_transformer)
            ]
        )
        self.fusion = CrossAttentionFusion(c, config.heads)
        self.decoder = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(c, c // 2, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(c // 2, 1, 3, padding=1),
        )

    def fuse_luminance(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """Fused luminance B×1×H×W in [0, 1].

        The decoder predicts a correction in logit space on top of the mean of the two sources:
        an untrained network already outputs a sensible image and training converges sooner.
        """
        ir_feat = self.ir_encoder(self.ir_stem(ir))
        vis_feat = self.vis_encoder(self.vis_stem(vis_y))
        base = torch.logit(0.5 * (ir + vis_y), eps=1e-3)
        return torch.sigmoid(base + self.decoder(self.fusion(ir_feat, vis_feat)))

    def forward(self, ir: torch.Tensor, vis_rgb: torch.Tensor) -> torch.Tensor:
        vis_y = rgb_to_ycbcr(vis_rgb)[:, :1]
        return with_luminance(self.fuse_luminance(ir, vis_y), vis_rgb)
