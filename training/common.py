"""Plumbing shared by both training stages: setup, seeds, DDP, data, the loop's bookkeeping,
checkpoints, signals, logs.

Everything that is not the training loop itself lives here (the config is ``training/config.py``),
so each ``train_stage*.py`` reads top to bottom as one plain loop.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from training.config import ConfigError, DataConfig, TrainingConfig, load_config
from training.datasets import FullFramePairs, PairSource, RandomCropPairs

REPO_ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- setup


def training_parser(description: str, set_example: str) -> argparse.ArgumentParser:
    """The command line both stages share: the config, its overrides, and skipping evaluation."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True, help="YAML training config (training/configs/*.yaml)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config entry, e.g. --set {set_example} (repeatable; checked like the file)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip the end-of-stage evaluation")
    return p


def read_config(path: str | Path, overrides: list[str]) -> TrainingConfig:
    """The checked training config of a command line; a bad one exits with one error line."""
    try:
        return load_config(path, overrides)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its device, its place in a torchrun job, mixed precision."""

    device: torch.device
    dist: Dist
    use_amp: bool


def setup_run(cfg: TrainingConfig) -> Runtime:
    """Logging, torch threads, device, process group and seeds, in the same order for every stage
    (the order fixes what the seeded generators produce)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    dist_info = setup_distributed(device)
    device = local_device(device, dist_info)
    seed_everything(cfg.seed + dist_info.rank)
    return Runtime(device, dist_info, cfg.amp and device.type == "cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def machine_description() -> str:
    """Where a run happened, recorded in weight metadata (CPU model, cores, GPU)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} threads={torch.get_num_threads()}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that started this run, as typed from the repository root (torchrun included)."""
    import shlex

    args = sys.argv[1:] if argv is None else argv
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --standalone --nproc_per_node={world}" if world > 1 else "python"
    return f"{launcher} -m {module} {shlex.join(args)}"


# ----------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, NCCL on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    info = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def local_device(device: torch.device, info: Dist) -> torch.device:
    return torch.device("cuda", info.local_rank) if device.type == "cuda" else device


def cleanup_distributed() -> None:
    """Leave the process group together: a rank that tears gloo down while another still
    writes its files can abort the whole job (seen as 'terminate called' at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_flag(flag: bool) -> bool:
    """True on every rank when any rank saw ``flag`` (e.g. a signal): all ranks stop together."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_across_ranks(value: float) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


# ----------------------------------------------------------------------------- sampling


class ResumableSampler(torch.utils.data.Sampler):
    """Endless, seeded stream of ``(index, sample_seed)``, split across ranks, resumable.

    Epoch ``e`` is a permutation drawn from ``seed + e``; rank ``r`` of ``w`` takes every w-th
    entry. The sample seed makes each crop/flip a function of (seed, position), so a resumed
    run sees exactly the samples an uninterrupted one would have seen.
    """

    def __init__(
        self, size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> None:
        if size < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.seed, self.rank, self.world_size, self.start = (
            size,
            seed,
            rank,
            world_size,
            start,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start  # global position counted over all ranks
        while True:
            epoch, offset = divmod(position, self.size)
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
            for i in range(offset, self.size):
                if position % self.world_size == self.rank:
                    yield int(order[i]), self.seed * 1_000_003 + position
                position += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a length for progress bars
        return 2**62


def infinite_loader(
    dataset: Any, batch_size: int, seed: int, info: Dist, start_batch: int, workers: int
):
    """Batches for steps ``start_batch, start_batch + 1, …`` (the same ones on a resume)."""
    sampler = ResumableSampler(
        len(dataset),
        seed,
        info.rank,
        info.world_size,
        start=start_batch * batch_size * info.world_size,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    return iter(loader)


# ----------------------------------------------------------------------------- data


def training_pairs(
    data: DataConfig, priors: Any | None = None
) -> tuple[PairSource, RandomCropPairs]:
    """Every training folder (with its priors, if any) and the random crops drawn from it."""
    source = PairSource(data.train, data.max_side, data.cache_in_memory, priors)
    return source, RandomCropPairs(source, data.crop, data.vertical_flip)


def wants_mosaics(data: DataConfig, info: Dist) -> bool:
    """Validation mosaics are drawn by rank 0 when a validation folder and a pair count are set."""
    return info.is_main and bool(data.val) and data.val_mosaic_pairs > 0


def mosaic_pairs(data: DataConfig, priors: Any | None = None) -> FullFramePairs:
    """The first full-size validation pairs, shown in the mosaics."""
    assert data.val is not None
    return FullFramePairs(PairSource([data.val], 0, False, priors, max_pairs=data.val_mosaic_pairs))


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors of a batch on ``device`` (pair names and other fields left out)."""
    return {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}


# ----------------------------------------------------------------------------- the loop


def cosine_lr(step: int, total: int, base: float, min_ratio: float) -> float:
    """Cosine decay from ``base`` to ``base * min_ratio`` over ``total`` steps (1.0 = constant)."""
    progress = min(step / max(total, 1), 1.0)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """``lr`` for every parameter group, times the group's ``lr_scale`` where it has one."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


def optimizer_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> None:
    """Backward and one optimizer step through the (CUDA-only) gradient scaler."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def is_due(step: int, every: int, last: int) -> bool:
    """Every ``every`` steps, and always at the last step."""
    return step % every == 0 or step == last


def progress_bar(total: int, initial: int, desc: str, info: Dist) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=desc, disable=not info.is_main, dynamic_ncols=True
    )


class LoopClock:
    """Wall time spent in the loop (carried over a resume) and the step rate between log lines."""

    def __init__(self, elapsed_s: float = 0.0) -> None:
        self.elapsed_s = elapsed_s
        self._mark = time.time()
        self._window_start, self._window_steps = self._mark, 0

    def step(self) -> None:
        self._window_steps += 1

    def sync(self) -> float:
        """Add the time since the last call to ``elapsed_s`` and return it (before a checkpoint)."""
        now = time.time()
        self.elapsed_s += now - self._mark
        self._mark = now
        return self.elapsed_s

    def rate(self) -> float:
        """Steps per second since the previous call (for the log line)."""
        self.sync()
        rate = self._window_steps / max(self._mark - self._window_start, 1e-9)
        self._window_start, self._window_steps = self._mark, 0
        return rate


def log_step(
    logger: RunLogger,
    progress: tqdm,
    step: int,
    loss: torch.Tensor,
    lr: float,
    rate: float,
    parts: dict[str, float],
) -> None:
    """One log row (loss averaged over the ranks, learning rate, speed, loss parts)."""
    values = {
        "loss": mean_across_ranks(float(loss.detach())),
        "lr": lr,
        "it_per_s": rate,
        **{k: mean_across_ranks(v) for k, v in parts.items()},
    }
    logger.scalars(step, values)
    progress.set_postfix(loss=f"{values['loss']:.4f}", it_s=f"{rate:.2f}")


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint_atomic(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, fsync, then rename: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def save_training_state(
    path: Path,
    step: int,
    elapsed_s: float,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: TrainingConfig,
    **extra: Any,
) -> None:
    """A resumable checkpoint: step, time, model, optimizer and scaler, and the config (plain data)."""
    save_checkpoint_atomic(
        path,
        {
            **extra,
            "step": step,
            "elapsed_s": elapsed_s,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "config": cfg.to_dict(),
            "config_file": cfg.config_file,
        },
    )


def restore_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> dict[str, Any]:
    """Load a :func:`save_training_state` checkpoint into the objects; returns the checkpoint."""
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    return ckpt


class StopSignal:
    """Records SIGINT / SIGTERM so the loop can save a checkpoint and exit cleanly."""

    def __init__(self) -> None:
        self.received: int | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.received is not None:  # second signal: the user really wants out now
            raise KeyboardInterrupt
        self.received = signum
        print(
            f"\nsignal {signal.Signals(signum).name}: saving a checkpoint and stopping", flush=True
        )


# ----------------------------------------------------------------------------- logging


class RunLogger:
    """CSV + TensorBoard scalars and images, written by rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.writer = None
        self._csv_file = None
        self._csv_writer: Any = None
        self._columns: list[str] = []
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {
            "step": step,
            "time": round(time.time(), 2),
            **{k: float(v) for k, v in values.items()},
        }
        if self._csv_writer is None or list(row) != self._columns:
            path = self.run_dir / "log.csv"
            new_file = not path.exists() or path.stat().st_size == 0
            self._csv_file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
            self._columns = list(row)
            self._csv_writer = csv.DictWriter(self._csv_file, fieldnames=self._columns)
            if new_file:
                self._csv_writer.writeheader()
        self._csv_writer.writerow(row)
        self._csv_file.flush()
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, step: int, tag: str, rgb: np.ndarray) -> None:
        """Save an H×W×3 uint8 mosaic to ``mosaics/`` and TensorBoard."""
        if not self.enabled:
            return
        from sgdfuse_ros.imaging import write_rgb

        write_rgb(self.run_dir / "mosaics" / f"{tag}_{step:07d}.png", rgb)
        if self.writer is not None:
            self.writer.add_image(tag, rgb, step, dataformats="HWC")

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
        if self.writer is not None:
            self.writer.close()


def mosaic(rows: list[list[np.ndarray]], max_width: int = 1600) -> np.ndarray:
    """Grid of H×W×3 uint8 tiles (each row: IR | VIS | outputs…), downscaled to ``max_width``."""
    import cv2

    lines = []
    for tiles in rows:
        h = tiles[0].shape[0]
        tiles = [t if t.ndim == 3 else np.repeat(t[..., None], 3, axis=2) for t in tiles]
        tiles = [cv2.resize(t, (round(t.shape[1] * h / t.shape[0]), h)) for t in tiles]
        lines.append(np.concatenate(tiles, axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines]
    grid = np.concatenate(lines, axis=0)
    if grid.shape[1] > max_width:
        scale = max_width / grid.shape[1]
        grid = cv2.resize(
            grid, (max_width, round(grid.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
    return grid


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """C×H×W tensor in [0, 1] → H×W×3 uint8."""
    arr = (x.detach().float().clamp(0, 1) * 255 + 0.5).byte().cpu().numpy()
    arr = arr.transpose(1, 2, 0)
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision on CUDA only (float16 + GradScaler); CPU runs stay in float32."""
    return torch.autocast(
        device_type=device.type, dtype=torch.float16, enabled=enabled and device.type == "cuda"
    )
