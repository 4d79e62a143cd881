"""Multi-process training through torchrun: two CPU processes on the gloo backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from training_helpers import tiny_config, write_pair_folder

from sgdfuse_ros.model_io import load_weights

REPO = Path(__file__).resolve().parents[1]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *args,
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_two_gloo_processes_train_both_stages(tmp_path: Path) -> None:
    train = write_pair_folder(tmp_path / "train", count=4, height=40, width=40)
    config = tiny_config(tmp_path, train, train, data__val_mosaic_pairs=0)
    done = torchrun("-m", "training.train_stage1", "--config", str(config), "--no-eval")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "world size 2" in done.stderr
    _, meta = load_weights(tmp_path / "s1" / "stage1.pt")
    assert meta["stage1"]["world_size"] == 2 and meta["stage1"]["iters"] == 3
    ckpt = torch.load(tmp_path / "s1" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 3

    done = torchrun(
        "-m",
        "training.train_stage2",
        "--config",
        str(config),
        "--no-eval",
        "--set",
        "stage2.heads.iters=1",
        "--set",
        "stage2.denoiser.iters=1",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    model, meta = load_weights(tmp_path / "weights" / "tiny.pt")
    assert meta["stage2"]["world_size"] == 2
    assert model.heads["1"].out.weight.abs().sum() > 0
