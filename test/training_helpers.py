"""Generated IR/VIS folders and a tiny training config for the training tests (no real data)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from sgdfuse_ros.synthetic import render_sequence


def write_pair_folder(
    root: Path, count: int = 3, height: int = 64, width: int = 80, seed: int = 0
) -> Path:
    """``root/ir`` + ``root/vi`` with ``count`` synthetic pairs (gray PNG IR, RGB PNG VIS)."""
    (root / "ir").mkdir(parents=True, exist_ok=True)
    (root / "vi").mkdir(parents=True, exist_ok=True)
    for i, (ir, vis) in enumerate(render_sequence(count, height, width, seed=seed)):
        cv2.imwrite(str(root / "ir" / f"{i:04d}.png"), ir)
        cv2.imwrite(str(root / "vi" / f"{i:04d}.png"), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
    return root


def tiny_config(tmp: Path, train: Path, val: Path, **stage_overrides: object) -> Path:
    """A config of the small model with tiny crops and a few iterations; returns its path."""
    config = {
        "model": "small",
        "seed": 0,
        "device": "cpu",
        "amp": False,
        "threads": 1,
        "data": {
            "train": [str(train)],
            "val": str(val),
            "crop": 32,
            "max_side": 0,
            "vertical_flip": True,
            "cache_in_memory": True,
            "num_workers": 0,
            "val_mosaic_pairs": 1,
        },
        "priors": {"backend": "classical", "cache_dir": str(tmp / "priors")},
        "loss": {"lambda_intensity": 1.5, "lambda_gradient": 1.0, "background_weight": 0.5},
        "stage1": {
            "run_dir": str(tmp / "s1"),
            "iters": 3,
            "batch_size": 2,
            "lr": 1e-3,
            "lr_min_ratio": 1.0,
            "log_every": 1,
            "val_every": 3,
            "ckpt_every": 2,
            "eval_max_pairs": None,
        },
        "stage2": {
            "run_dir": str(tmp / "s2"),
            "stage1_weights": str(tmp / "s1" / "stage1.pt"),
            "denoiser": {"iters": 2, "batch_size": 2, "lr": 1e-3, "max_train_timestep": 200},
            "heads": {
                "steps": [1, 3],
                "iters": 2,
                "batch_size": 2,
                "lr": 1e-3,
                "finetune_unet": False,
                "unet_lr_scale": 0.1,
            },
            "log_every": 1,
            "val_every": 2,
            "ckpt_every": 1,
            "eval_steps": [1],
            "eval_max_pairs": None,
            "output": str(tmp / "weights" / "tiny.pt"),
            "default_steps": 1,
        },
        "eval": {"peers": [], "workers": 1},
    }
    for key, value in stage_overrides.items():
        section, _, name = key.partition("__")
        config[section][name] = value
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def random_pair(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width), np.uint8), rng.integers(
        0, 256, (height, width, 3), np.uint8
    )
