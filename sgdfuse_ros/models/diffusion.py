"""DDPM noise schedules and the forward (noising) process, kept apart from the networks."""

from __future__ import annotations

import math
from typing import Literal

import torch

ScheduleKind = Literal["linear", "cosine"]


class NoiseSchedule:
    """β_t for t = 0 … T−1 and the derived ᾱ_t = Π(1 − β_s).

    ``linear`` is the original DDPM schedule (1e-4 → 0.02); ``cosine`` (Nichol & Dhariwal)
    destroys information more slowly at small t, which keeps low-t features sharper.
    """

    def __init__(self, kind: ScheduleKind = "linear", num_timesteps: int = 1000) -> None:
        if num_timesteps < 1:
            raise ValueError("num_timesteps must be positive")
        self.kind = kind
        self.num_timesteps = num_timesteps
        if kind == "linear":
            scale = 1000.0 / num_timesteps
            betas = torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)
        elif kind == "cosine":
            steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
            f = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise ValueError(f"unknown noise schedule {kind!r}; use linear or cosine")
        self.betas = betas.float()
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0).float()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, with ``t`` a LongTensor of shape (B,)."""
        abar = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def fixed_noise(
    num: int, shape: tuple[int, ...], seed: int, device: torch.device | str, dtype: torch.dtype
) -> torch.Tensor:
    """The same noise tensor for the same (num, shape, seed) on every call and every device.

    Drawn on the CPU from a seeded generator so CUDA, CPU and exported runtimes agree, and
    video frames are noised identically (no flicker from the noise itself).
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((num, *shape), generator=gen).to(device=device, dtype=dtype)
