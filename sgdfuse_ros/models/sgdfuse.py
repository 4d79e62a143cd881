"""SGDFuse: Stage I (preliminary fusion) + Stage II (diffusion features + HFAH), and its configs.

Stage II does not sample a reverse chain: I0 = concat(F1, M_ir, M_vis) is noised to K fixed
timesteps with a fixed, seeded noise tensor, the U-Net runs once on the K noised copies (one
batched call) and the HFAH head for that K turns the decoder features into the fused image.
K is the "diffusion steps" knob: one trained head per supported K.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .color import rgb_to_ycbcr, with_luminance
from .diffusion import NoiseSchedule, fixed_noise
from .hfah import HFAH
from .stage1 import Stage1Config, Stage1Net
from .unet import DenoisingUNet, UNetConfig

DEFAULT_TIMESTEPS: dict[int, tuple[int, ...]] = {1: (50,), 2: (5, 100), 3: (5, 50, 100)}


@dataclass
class SGDFuseConfig:
    stage1: Stage1Config = field(default_factory=Stage1Config)
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: str = "linear"
    num_timesteps: int = 1000
    timesteps: dict[int, tuple[int, ...]] = field(default_factory=lambda: dict(DEFAULT_TIMESTEPS))
    head_width: int = 16
    head_output: str = "correction"  # HFAH output form (models/hfah.py: HEAD_OUTPUTS)
    noise_seed: int = 0

    def to_dict(self) -> dict:
        return {
            "stage1": self.stage1.to_dict(),
            "unet": self.unet.to_dict(),
            "schedule": self.schedule,
            "num_timesteps": self.num_timesteps,
            "timesteps": {str(k): list(v) for k, v in self.timesteps.items()},
            "head_width": self.head_width,
            **({"head_output": self.head_output} if self.head_output != "correction" else {}),
            "noise_seed": self.noise_seed,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SGDFuseConfig:
        unet = dict(data.get("unet", {}))
        for key in ("channel_mults", "attention_levels"):
            if key in unet:
                unet[key] = tuple(unet[key])
        timesteps = data.get("timesteps")
        return cls(
            stage1=Stage1Config(**data.get("stage1", {})),
            unet=UNetConfig(**unet),
            schedule=data.get("schedule", "linear"),
            num_timesteps=int(data.get("num_timesteps", 1000)),
            timesteps=(
                {int(k): tuple(int(t) for t in v) for k, v in timesteps.items()}
                if timesteps
                else dict(DEFAULT_TIMESTEPS)
            ),
            head_width=int(data.get("head_width", 16)),
            head_output=str(data.get("head_output", "correction")),
            noise_seed=int(data.get("noise_seed", 0)),
        )


def small_config() -> SGDFuseConfig:
    """Trains on a 2-core CPU in well under two hours; the shipped default's architecture (its
    heads are ``select``, set by training/configs/small_select.yaml)."""
    return SGDFuseConfig(
        stage1=Stage1Config(channels=8, heads=2),
        unet=UNetConfig(base_channels=8, channel_mults=(1, 2, 2, 4, 4), num_res_blocks=1),
        head_width=8,
    )


def paper_config() -> SGDFuseConfig:
    """Paper-size model for GPU training (SR3-like widths, attention at the two coarsest levels)."""
    return SGDFuseConfig(
        stage1=Stage1Config(channels=48, heads=4),
        unet=UNetConfig(
            base_channels=64,
            channel_mults=(1, 2, 4, 8, 8),
            num_res_blocks=2,
            attention_levels=(3, 4),
            groups=32,
            dropout=0.1,
        ),
        head_width=64,
    )


PRESETS = {"small": small_config, "paper": paper_config}


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad bottom/right so H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class SGDFuse(nn.Module):
    def __init__(self, config: SGDFuseConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or small_config()
        self.stage1 = Stage1Net(config.stage1)
        self.unet = DenoisingUNet(config.unet)
        self.schedule = NoiseSchedule(config.schedule, config.num_timesteps)
        self.heads = nn.ModuleDict(
            {
                str(k): HFAH(config.unet.decoder_channels, k, config.head_width, config.head_output)
                for k in sorted(config.timesteps)
            }
        )
        # fixed_noise of the last frame size and seed (per K, device, dtype): drawn on the
        # CPU and, on a GPU, uploaded, so a video pays for it once instead of on every frame.
        self._noise_cache: dict[tuple, torch.Tensor] = {}
        for k, ts in config.timesteps.items():
            if len(ts) != k or not all(0 <= t < config.num_timesteps for t in ts):
                raise ValueError(
                    f"timesteps for K={k} must be {k} values in [0, {config.num_timesteps})"
                )

    @property
    def supported_steps(self) -> tuple[int, ...]:
        return tuple(sorted(self.config.timesteps))

    @staticmethod
    def make_i0(f1: torch.Tensor, m_ir: torch.Tensor, m_vis: torch.Tensor) -> torch.Tensor:
        """I0 = concat(F1, M_ir, M_vis) scaled from [0, 1] to [−1, 1] (the diffusion data range)."""
        return torch.cat([f1, m_ir, m_vis], dim=1) * 2 - 1

    def noised_copies(self, i0: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """I0 noised to the K timesteps of this head: (K·B)×5×H×W and the timesteps (K·B,)."""
        ts = self.config.timesteps[steps]
        b = i0.shape[0]
        noise = self._fixed_noise(steps, tuple(i0.shape[1:]), i0.device, i0.dtype)
        t = torch.tensor(ts, device=i0.device).repeat_interleave(b)
        x0 = i0.repeat(steps, 1, 1, 1)
        return self.schedule.q_sample(x0, t, noise.repeat_interleave(b, dim=0)), t

    def _fixed_noise(
        self, steps: int, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        seed = self.config.noise_seed
        key = (steps, shape, str(device), dtype, seed)
        noise = self._noise_cache.get(key)
        if noise is None:
            noise = fixed_noise(steps, shape, seed, device, dtype)
            self._noise_cache = {k: v for k, v in self._noise_cache.items() if k[1:] == key[1:]}
            self._noise_cache[key] = noise
        return noise

    def diffusion_features(self, i0: torch.Tensor, steps: int) -> list[torch.Tensor]:
        """One batched U-Net call over the K noised copies; features regrouped to B×(K·C)×h×w."""
        x, t = self.noised_copies(i0, steps)
        features = self.unet.decoder_features(x, t)
        b = i0.shape[0]
        return [f.reshape(steps, b, *f.shape[1:]).transpose(0, 1).flatten(1, 2) for f in features]

    def head_luminance(
        self,
        steps: int,
        features: list[torch.Tensor],
        f1: torch.Tensor,
        ir: torch.Tensor,
        vis_rgb: torch.Tensor,
    ) -> torch.Tensor:
        """The K-step head on the diffusion features, F1 and the two sources → fused Y."""
        if str(steps) not in self.heads:
            raise ValueError(f"no HFAH head for K={steps}; supported: {self.supported_steps}")
        return self.heads[str(steps)](
            features, rgb_to_ycbcr(f1)[:, :1], ir, rgb_to_ycbcr(vis_rgb)[:, :1]
        )

    def stage2(
        self,
        f1: torch.Tensor,
        m_ir: torch.Tensor,
        m_vis: torch.Tensor,
        ir: torch.Tensor,
        vis_rgb: torch.Tensor,
        steps: int,
    ) -> torch.Tensor:
        """Refined fused RGB from F1, the priors and the sources (inputs already padded)."""
        if str(steps) not in self.heads:
            raise ValueError(f"no HFAH head for K={steps}; supported: {self.supported_steps}")
        features = self.diffusion_features(self.make_i0(f1, m_ir, m_vis), steps)
        return with_luminance(self.head_luminance(steps, features, f1, ir, vis_rgb), vis_rgb)

    def forward(
        self,
        ir: torch.Tensor,
        vis_rgb: torch.Tensor,
        m_ir: torch.Tensor,
        m_vis: torch.Tensor,
        steps: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All inputs B×C×H×W in [0, 1] at any size → (fused RGB, F1 RGB), both cropped back to H×W."""
        h, w = ir.shape[-2:]
        m = self.config.unet.size_multiple
        ir, vis_rgb, m_ir, m_vis = (pad_to_multiple(x, m) for x in (ir, vis_rgb, m_ir, m_vis))
        f1 = self.stage1(ir, vis_rgb)
        fused = self.stage2(f1, m_ir, m_vis, ir, vis_rgb, steps)
        return fused[..., :h, :w], f1[..., :h, :w]
