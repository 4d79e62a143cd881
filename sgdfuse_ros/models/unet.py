"""SR3-style denoising U-Net over I0 = concat(F1, M_ir, M_vis) with a timestep embedding.

It returns both the noise prediction (trained with the DDPM loss) and the decoder feature maps
of every level, which the HFAH head turns into the fused image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .norm import GroupNorm


@dataclass
class UNetConfig:
    in_channels: int = 5
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2, 4, 4)  # one entry per level: 5 down / 5 up
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = field(
        default_factory=tuple
    )  # level indices with self-attention
    dropout: float = 0.0
    groups: int = 8

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def size_multiple(self) -> int:
        """Inputs must be a multiple of this (one halving between consecutive levels)."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def decoder_channels(self) -> list[int]:
        """Channels of the decoder features, deepest level first."""
        return [self.base_channels * m for m in reversed(self.channel_mults)]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv residual block with the time embedding added in the middle."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = GroupNorm(math.gcd(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = GroupNorm(math.gcd(groups, cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Spatial self-attention, used only at coarse levels where the token count is small."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = GroupNorm(math.gcd(groups, channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, 1, c, h * w).transpose(-2, -1).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-2, -1).reshape(b, c, h, w))


class Level(nn.Module):
    """Residual blocks (and optional attention) at one resolution."""

    def __init__(
        self, cin: int, cout: int, n: int, emb_dim: int, cfg: UNetConfig, attend: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(cin if i == 0 else cout, cout, emb_dim, cfg.groups, cfg.dropout)
            for i in range(n)
        )
        self.attn = SelfAttention(cout, cfg.groups) if attend else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, emb)
        return self.attn(x)


class DenoisingUNet(nn.Module):
    """ε_θ(x_t, t) → (ε̂, decoder features deepest-first)."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or UNetConfig()
        base, mults = cfg.base_channels, cfg.channel_mults
        emb_dim = 4 * base
        self.emb_dim = emb_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.stem = nn.Conv2d(cfg.in_channels, base, 3, padding=1)
        widths = [base * m for m in mults]
        self.down_levels = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        cin = base
        for i, w in enumerate(widths):
            self.down_levels.append(
                Level(cin, w, cfg.num_res_blocks, emb_dim, cfg, i in cfg.attention_levels)
            )
            if i < len(widths) - 1:
                self.downsamples.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            cin = w
        self.middle = Level(cin, cin, 1, emb_dim, cfg, len(widths) - 1 in cfg.attention_levels)
        self.up_levels = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up_levels.append(
                Level(cin + w, w, cfg.num_res_blocks, emb_dim, cfg, i in cfg.attention_levels)
            )
            if i > 0:
                self.upsamples.append(nn.Conv2d(w, widths[i - 1], 3, padding=1))
            cin = w if i == 0 else widths[i - 1]
        self.out = nn.Sequential(
            GroupNorm(math.gcd(cfg.groups, base), base),
            nn.SiLU(),
            nn.Conv2d(base, cfg.in_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, features = self._decode(x, t)
        return self.out(h), features

    def decoder_features(self, x: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        """The decoder features alone: fusion never uses ε̂, so its output block is skipped
        (a full-resolution GroupNorm, SiLU and convolution per noised copy)."""
        return self._decode(x, t)[1]

    def _decode(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        m = self.config.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"U-Net input {tuple(x.shape[-2:])} must be a multiple of {m}; pad first"
            )
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))
        h = self.stem(x)
        skips = []
        for i, level in enumerate(self.down_levels):
            h = level(h, emb)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        h = self.middle(h, emb)
        features = []
        for i, level in enumerate(self.up_levels):
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
            features.append(h)
            if i < len(self.upsamples):
                h = self.upsamples[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return h, features
