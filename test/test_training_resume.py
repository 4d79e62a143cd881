"""Checkpoints: a hard-killed run resumes with the same step count and optimizer state, and
SIGTERM saves a checkpoint before exiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from training_helpers import tiny_config, write_pair_folder

from training import train_stage1

REPO = Path(__file__).resolve().parents[1]


def start_training(config: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training.train_stage1",
            "--config",
            str(config),
            "--no-eval",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_checkpoint(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"training exited early:\n{proc.stdout.read()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for name, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][name].float(), atol=1e-6), name
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and sa
    for key in sa:
        assert float(sa[key]["step"]) == float(sb[key]["step"])
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(sa[key][moment], sb[key][moment], atol=1e-6, rtol=1e-4), (
                key,
                moment,
            )


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    train = write_pair_folder(tmp_path / "train", count=3, height=40, width=40)
    config = tiny_config(tmp_path, train, train, data__val_mosaic_pairs=0)
    ckpt = tmp_path / "s1" / "checkpoint.pt"
    proc = start_training(config, "--set", "stage1.iters=100000", "--set", "stage1.ckpt_every=2")
    wait_for_checkpoint(ckpt, proc)
    proc.send_signal(signal.SIGKILL)  # no chance to save anything more
    proc.wait(timeout=30)
    killed_at = load(ckpt)["step"]
    assert killed_at >= 2 and killed_at % 2 == 0
    assert not list(
        ckpt.parent.glob("*.tmp")
    )  # atomic write: no half-written file is left as the checkpoint

    target = killed_at + 3
    args = ["--config", str(config), "--no-eval", "--set", f"stage1.iters={target}"]
    assert train_stage1.main([*args, "--resume"]) == 0
    resumed = load(ckpt)
    assert resumed["step"] == target
    rows = (tmp_path / "s1" / "log.csv").read_text().splitlines()
    assert rows[-1].startswith(f"{target},")

    # The same number of steps without an interruption ends in the same weights and Adam state.
    assert train_stage1.main([*args, "--set", f"stage1.run_dir={tmp_path / 'ref'}"]) == 0
    assert_same_training_state(resumed, load(tmp_path / "ref" / "checkpoint.pt"))


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    train = write_pair_folder(tmp_path / "train", count=2, height=40, width=40)
    config = tiny_config(tmp_path, train, train, data__val_mosaic_pairs=0)
    ckpt = tmp_path / "s1" / "checkpoint.pt"
    proc = start_training(
        config,
        "--set",
        "stage1.iters=100000",
        "--set",
        "stage1.ckpt_every=100000",
        "--set",
        "stage1.log_every=1",
    )
    log = tmp_path / "s1" / "log.csv"
    deadline = time.time() + 60
    while not (log.is_file() and len(log.read_text().splitlines()) > 2):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "saving a checkpoint" in output
    assert load(ckpt)["step"] >= 2  # written by the signal, not by the (never reached) schedule
