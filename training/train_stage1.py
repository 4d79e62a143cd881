"""Stage I training: the preliminary fusion network F1 (paper sections 3.3 and 3.6, eqs. 13–15).

    python -m training.train_stage1 --config training/configs/small.yaml
    torchrun --nproc_per_node=2 -m training.train_stage1 --config training/configs/paper.yaml
    python -m training.train_stage1 --config training/configs/small.yaml --resume

Loss: λ1·|Y_F1 − max(I_ir, Y_vis)|₁ + λ2·| |∇Y_F1| − max(|∇I_ir|, |∇Y_vis|) |₁ on random crops,
Adam. Writes ``<run_dir>/checkpoint.pt`` every ``ckpt_every`` steps (and on SIGINT / SIGTERM),
``log.csv`` + TensorBoard, validation mosaics, and at the end ``<run_dir>/stage1.pt`` — a full
SGDFuse weights file whose untrained Stage II heads return F1 unchanged — plus the metric table
of F1 on the validation folder (``<run_dir>/eval/metrics.md``).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sgdfuse_ros.model_io import save_weights
from sgdfuse_ros.models.color import rgb_to_ycbcr
from sgdfuse_ros.models.sgdfuse import PRESETS, SGDFuse, pad_to_multiple
from training import evaluation
from training.common import (
    RunLogger,
    StopSignal,
    all_reduce_flag,
    autocast,
    cleanup_distributed,
    command_line,
    git_commit,
    infinite_loader,
    load_checkpoint,
    load_config,
    local_device,
    machine_description,
    mean_across_ranks,
    mosaic,
    pick_device,
    save_checkpoint_atomic,
    seed_everything,
    setup_distributed,
    to_uint8_image,
    write_json,
)
from training.datasets import FullFramePairs, PairSource, RandomCropPairs
from training.losses import fusion_loss

LOG = logging.getLogger("sgdfuse_ros.training")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True, help="YAML training config (training/configs/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from <run_dir>/checkpoint.pt")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config entry, e.g. --set stage1.iters=100 (repeatable)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip the end-of-stage evaluation")
    return p.parse_args(argv)


def cosine_lr(step: int, total: int, base: float, min_ratio: float) -> float:
    """Cosine decay from ``base`` to ``base * min_ratio`` over ``total`` steps (1.0 = constant)."""
    progress = min(step / max(total, 1), 1.0)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def validation_mosaic(model: SGDFuse, frames: FullFramePairs, device: torch.device) -> Any:
    """IR | VIS | F1 for a few full-size validation pairs."""
    model.eval()
    rows = []
    m = model.config.unet.size_multiple
    for i in range(len(frames)):
        s = frames[i]
        ir, vis = s["ir"][None].to(device), s["vis"][None].to(device)
        h, w = ir.shape[-2:]
        f1 = model.stage1(pad_to_multiple(ir, m), pad_to_multiple(vis, m))[..., :h, :w]
        rows.append([to_uint8_image(ir[0]), to_uint8_image(vis[0]), to_uint8_image(f1[0])])
    model.train()
    return mosaic(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.set)
    scfg, dcfg, lcfg = cfg["stage1"], cfg["data"], cfg["loss"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    device = pick_device(cfg.get("device", "auto"))
    dist_info = setup_distributed(device)
    device = local_device(device, dist_info)
    seed_everything(int(cfg["seed"]) + dist_info.rank)
    use_amp = bool(cfg.get("amp", True)) and device.type == "cuda"
    run_dir = Path(scfg["run_dir"])
    ckpt_path = run_dir / "checkpoint.pt"
    iters, batch_size = int(scfg["iters"]), int(scfg["batch_size"])

    # ---- data: random crops of every training folder, a few full frames for mosaics
    train_source = PairSource(
        dcfg["train"], int(dcfg.get("max_side", 0)), bool(dcfg.get("cache_in_memory", True))
    )
    train_set = RandomCropPairs(
        train_source, int(dcfg["crop"]), bool(dcfg.get("vertical_flip", False))
    )
    mosaic_frames = None
    if dist_info.is_main and dcfg.get("val") and int(dcfg.get("val_mosaic_pairs", 0)) > 0:
        mosaic_frames = FullFramePairs(
            PairSource([dcfg["val"]], 0, False, max_pairs=int(dcfg["val_mosaic_pairs"]))
        )
    LOG.info(
        "stage 1: %d training pairs (%d problems skipped), device %s, world size %d",
        len(train_source),
        len(train_source.report.problems),
        device,
        dist_info.world_size,
    )

    # ---- model and optimizer (only Stage I is trained here)
    model = SGDFuse(PRESETS[cfg["model"]]()).to(device)
    net = model.stage1
    trained = DistributedDataParallel(net) if dist_info.world_size > 1 else net
    optimizer = torch.optim.Adam(net.parameters(), lr=float(scfg["lr"]))
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    step, elapsed = 0, 0.0
    # Every command that contributed to this run (a resumed run lists all of them).
    commands = [command_line("training.train_stage1", argv)]
    if args.resume and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step, elapsed = int(ckpt["step"]), float(ckpt["elapsed_s"])
        commands = [*ckpt.get("commands", []), *commands]
        LOG.info("resumed from %s at step %d", ckpt_path, step)
    elif args.resume:
        LOG.info("--resume: no checkpoint at %s, starting from scratch", ckpt_path)

    def save_checkpoint() -> None:
        if dist_info.is_main:
            save_checkpoint_atomic(
                ckpt_path,
                {
                    "step": step,
                    "elapsed_s": elapsed,
                    "commands": commands,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "config": cfg,
                },
            )

    batches = infinite_loader(
        train_set, batch_size, int(cfg["seed"]), dist_info, step, int(dcfg.get("num_workers", 0))
    )
    stop = StopSignal()
    logger = RunLogger(run_dir, dist_info.is_main)
    progress = tqdm(
        total=iters, initial=step, desc="stage 1", disable=not dist_info.is_main, dynamic_ncols=True
    )
    net.train()
    window_start, window_steps = time.time(), 0

    # ---- the training loop
    while step < iters:
        lr = cosine_lr(step, iters, float(scfg["lr"]), float(scfg.get("lr_min_ratio", 1.0)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        ir, vis = batch["ir"].to(device), batch["vis"].to(device)
        vis_y = rgb_to_ycbcr(vis)[:, :1]
        with autocast(device, use_amp):
            f1 = trained(ir, vis)
        f1_y = rgb_to_ycbcr(f1.float())[:, :1]  # the luminance the metrics see (after RGB clamp)
        loss, parts = fusion_loss(
            f1_y, ir, vis_y, float(lcfg["lambda_intensity"]), float(lcfg["lambda_gradient"])
        )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        window_steps += 1
        progress.update(1)

        if step % int(scfg["log_every"]) == 0 or step == iters:
            now = time.time()
            elapsed += now - window_start
            rate = window_steps / max(now - window_start, 1e-9)
            window_start, window_steps = now, 0
            values = {
                "loss": mean_across_ranks(float(loss.detach())),
                "lr": lr,
                "it_per_s": rate,
                **{f"loss_{k}": mean_across_ranks(v) for k, v in parts.items()},
            }
            logger.scalars(step, values)
            progress.set_postfix(loss=f"{values['loss']:.4f}", it_s=f"{rate:.2f}")
        if mosaic_frames is not None and (step % int(scfg["val_every"]) == 0 or step == iters):
            logger.image(step, "stage1_val", validation_mosaic(model, mosaic_frames, device))
        stopping = all_reduce_flag(stop.received is not None)
        if step % int(scfg["ckpt_every"]) == 0 or step == iters or stopping:
            elapsed += time.time() - window_start
            window_start = time.time()
            save_checkpoint()
        if stopping:
            LOG.info("stopped by signal at step %d; continue with --resume", step)
            progress.close()
            logger.close()
            cleanup_distributed()
            return 0
    progress.close()

    # ---- export the Stage I weights and evaluate F1 on the validation folder
    if dist_info.is_main:
        stage1_record = {
            "iters": iters,
            "batch_size": batch_size,
            "world_size": dist_info.world_size,
            "crop": int(dcfg["crop"]),
            "lr": float(scfg["lr"]),
            "lr_min_ratio": scfg.get("lr_min_ratio"),
            "loss": {k: lcfg[k] for k in ("lambda_intensity", "lambda_gradient")},
            "wall_time_s": round(elapsed, 1),
            "machine": machine_description(),
            "device": str(device),
            "command": commands[-1],
            "commands": commands,
            "git_commit": git_commit(),
        }
        metadata = {
            "trained": True,
            "config_name": cfg["model"],
            "stages_trained": ["stage1"],
            "note": "Stage I only: the Stage II heads are untrained and return F1 unchanged",
            "training_data": {
                "folders": [str(f) for f in dcfg["train"]],
                "pairs": len(train_source),
                "skipped": len(train_source.report.problems),
                "max_side": dcfg.get("max_side", 0),
            },
            "stage1": stage1_record,
            "seed": cfg["seed"],
        }
        weights_path = save_weights(model.cpu(), run_dir / "stage1.pt", metadata)
        model.to(device)
        LOG.info("wrote %s", weights_path)
        if not args.no_eval and dcfg.get("val"):
            summary = evaluate_stage1(model, cfg, run_dir / "eval", device)
            metadata["stage1"]["metrics"] = summary
            save_weights(model.cpu(), weights_path, metadata)
        write_json(run_dir / "done.json", {"step": step, "wall_time_s": round(elapsed, 1)})
    logger.close()
    cleanup_distributed()
    return 0


def evaluate_stage1(
    model: SGDFuse, cfg: dict[str, Any], out: Path, device: torch.device
) -> dict[str, Any]:
    """F1 next to plain mean / max fusion and the configured peer methods (e.g. SeAFusion)."""
    scfg = cfg["stage1"]
    max_pairs = scfg.get("eval_max_pairs")
    val = cfg["data"]["val"]
    fused = [
        evaluation.fuse_folder(
            model, val, out / "fused" / "stage1_F1", None, None, device, max_pairs
        )
    ]
    fused += evaluation.write_baselines(val, out / "fused", max_pairs)
    fused += [Path(p) for p in cfg.get("eval", {}).get("peers", []) if Path(p).is_dir()]
    summary = evaluation.score(
        val,
        fused,
        out,
        int(cfg.get("eval", {}).get("workers", 1)),
        max_pairs,
        detection=cfg.get("eval", {}).get("detection"),
    )
    LOG.info("stage 1 evaluation written to %s", out / "metrics.md")
    return summary["stage1_F1"]


if __name__ == "__main__":
    raise SystemExit(main())
