"""The per-frame-size inputs of the exported U-Net graph: fixed noise and schedule coefficients.

They are made with the torch model's own ``fixed_noise`` and noise schedule, so an exported
runtime noises I0 with exactly the tensor the torch backend uses (parity, and the same
flicker-free video behaviour). They depend only on (K, padded H, padded W), so they are made
once per frame size and reused for every frame.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models.diffusion import fixed_noise


class DiffusionInputs:
    """Caches ``noise`` (K×5×H×W), ``timesteps``, ``signal_scale`` and ``noise_scale`` (K,)."""

    def __init__(self, model: Any) -> None:
        self.timesteps = {k: tuple(v) for k, v in model.config.timesteps.items()}
        self.seed = int(model.config.noise_seed)
        self.channels = int(model.config.unet.in_channels)
        self.alphas_cumprod = model.schedule.alphas_cumprod.detach().cpu().float()
        self._cache: dict[tuple[int, int, int], dict[str, torch.Tensor]] = {}

    def for_frame(self, steps: int, height: int, width: int) -> dict[str, torch.Tensor]:
        """CPU float32 tensors keyed by the U-Net graph's input names (padded H×W)."""
        key = (steps, height, width)
        cached = self._cache.get(key)
        if cached is None:
            if steps not in self.timesteps:
                raise ValueError(f"no timesteps for K={steps}; supported: {sorted(self.timesteps)}")
            t = torch.tensor(self.timesteps[steps])
            abar = self.alphas_cumprod[t]  # as NoiseSchedule.q_sample: ᾱ_t in float32, then √
            cached = {
                "noise": fixed_noise(
                    steps, (self.channels, height, width), self.seed, "cpu", torch.float32
                ),
                "timesteps": t.float(),
                "signal_scale": abar.sqrt(),
                "noise_scale": (1 - abar).sqrt(),
            }
            self._cache = {k: v for k, v in self._cache.items() if k[1:] == (height, width)}
            self._cache[key] = cached
        return cached
