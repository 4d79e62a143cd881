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
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from sgdfuse_ros.model_io import load_weights, save_weights
from sgdfuse_ros.models.color import rgb_to_ycbcr
from sgdfuse_ros.models.sgdfuse import PRESETS, SGDFuse, pad_to_multiple
from training import evaluation
from training.common import (
    LoopClock,
    RunLogger,
    StopSignal,
    all_reduce_flag,
    autocast,
    cleanup_distributed,
    command_line,
    cosine_lr,
    git_commit,
    infinite_loader,
    is_due,
    log_step,
    machine_description,
    mosaic,
    mosaic_pairs,
    optimizer_step,
    progress_bar,
    read_config,
    restore_training_state,
    save_training_state,
    set_learning_rate,
    setup_run,
    to_uint8_image,
    training_pairs,
    training_parser,
    wants_mosaics,
    write_json,
)
from training.config import TrainingConfig
from training.datasets import FullFramePairs
from training.losses import fusion_loss

LOG = logging.getLogger("sgdfuse_ros.training")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = training_parser(__doc__, "stage1.iters=100")
    p.add_argument("--resume", action="store_true", help="continue from <run_dir>/checkpoint.pt")
    return p.parse_args(argv)


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


def initial_stage1(path: str, model: SGDFuse) -> dict[str, torch.Tensor]:
    """The Stage I tensors of a weights file, refused when its architecture differs from the
    configured preset (a silent partial load would train something else than the config says)."""
    source, _ = load_weights(path)
    if source.config.stage1 != model.config.stage1:
        raise SystemExit(
            f"stage1.init_weights {path}: its Stage I ({source.config.stage1}) is not the "
            f"configured preset's ({model.config.stage1})"
        )
    return source.stage1.state_dict()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = read_config(args.config, args.set)
    scfg, dcfg, lcfg = cfg.stage1, cfg.data, cfg.loss
    run = setup_run(cfg)
    device, dist_info = run.device, run.dist
    run_dir = Path(scfg.run_dir)
    ckpt_path = run_dir / "checkpoint.pt"

    # ---- data: random crops of every training folder, a few full frames for mosaics
    train_source, train_set = training_pairs(dcfg)
    mosaic_frames = mosaic_pairs(dcfg) if wants_mosaics(dcfg, dist_info) else None
    LOG.info(
        "stage 1: %d training pairs (%d problems skipped), device %s, world size %d",
        len(train_source),
        len(train_source.report.problems),
        device,
        dist_info.world_size,
    )

    # ---- model and optimizer (only Stage I is trained here)
    model = SGDFuse(PRESETS[cfg.model]()).to(device)
    if (
        scfg.init_weights
    ):  # continue an earlier Stage I (e.g. a committed checkpoint) from its weights
        model.stage1.load_state_dict(initial_stage1(scfg.init_weights, model))
        LOG.info("stage 1 starts from the weights of %s", scfg.init_weights)
    net = model.stage1
    trained = DistributedDataParallel(net) if dist_info.world_size > 1 else net
    optimizer = torch.optim.Adam(net.parameters(), lr=scfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=run.use_amp)
    step, elapsed = 0, 0.0
    # Every command that contributed to this run (a resumed run lists all of them).
    commands = [command_line("training.train_stage1", argv)]
    if args.resume and ckpt_path.is_file():
        ckpt = restore_training_state(ckpt_path, model, optimizer, scaler)
        step, elapsed = int(ckpt["step"]), float(ckpt["elapsed_s"])
        commands = [*ckpt.get("commands", []), *commands]
        LOG.info("resumed from %s at step %d", ckpt_path, step)
    elif args.resume:
        LOG.info("--resume: no checkpoint at %s, starting from scratch", ckpt_path)

    batches = infinite_loader(
        train_set, scfg.batch_size, cfg.seed, dist_info, step, dcfg.num_workers
    )
    stop = StopSignal()
    logger = RunLogger(run_dir, dist_info.is_main)
    progress = progress_bar(scfg.iters, step, "stage 1", dist_info)
    clock = LoopClock(elapsed)
    net.train()

    # ---- the training loop
    while step < scfg.iters:
        lr = cosine_lr(step, scfg.iters, scfg.lr, scfg.lr_min_ratio)
        set_learning_rate(optimizer, lr)
        batch = next(batches)
        ir, vis = batch["ir"].to(device), batch["vis"].to(device)
        vis_y = rgb_to_ycbcr(vis)[:, :1]
        with autocast(device, run.use_amp):
            f1 = trained(ir, vis)
        f1_y = rgb_to_ycbcr(f1.float())[:, :1]  # the luminance the metrics see (after RGB clamp)
        loss, parts = fusion_loss(
            f1_y,
            ir,
            vis_y,
            lcfg.lambda_intensity,
            lcfg.lambda_gradient,
            lambda_structure=lcfg.lambda_structure,
        )
        optimizer_step(loss, optimizer, scaler)
        step += 1
        clock.step()
        progress.update(1)

        if is_due(step, scfg.log_every, scfg.iters):
            parts = {f"loss_{k}": v for k, v in parts.items()}
            log_step(logger, progress, step, loss, lr, clock.rate(), parts)
        if mosaic_frames is not None and is_due(step, scfg.val_every, scfg.iters):
            logger.image(step, "stage1_val", validation_mosaic(model, mosaic_frames, device))
        stopping = all_reduce_flag(stop.received is not None)
        if is_due(step, scfg.ckpt_every, scfg.iters) or stopping:
            elapsed = clock.sync()
            if dist_info.is_main:
                save_training_state(
                    ckpt_path, step, elapsed, model, optimizer, scaler, cfg, commands=commands
                )
        if stopping:
            LOG.info("stopped by signal at step %d; continue with --resume", step)
            progress.close()
            logger.close()
            cleanup_distributed()
            return 0
    progress.close()

    # ---- export the Stage I weights and evaluate F1 on the validation folder
    if dist_info.is_main:
        elapsed = clock.sync()
        stage1_record = {
            "iters": scfg.iters,
            "batch_size": scfg.batch_size,
            "world_size": dist_info.world_size,
            "crop": dcfg.crop,
            "lr": scfg.lr,
            "lr_min_ratio": scfg.lr_min_ratio,
            "init_weights": scfg.init_weights,
            "loss": {
                "lambda_intensity": lcfg.lambda_intensity,
                "lambda_gradient": lcfg.lambda_gradient,
                "lambda_structure": lcfg.lambda_structure,
            },
            "wall_time_s": round(elapsed, 1),
            "machine": machine_description(),
            "device": str(device),
            "command": commands[-1],
            "commands": commands,
            "git_commit": git_commit(),
        }
        metadata = {
            "trained": True,
            "config_name": cfg.model,
            "stages_trained": ["stage1"],
            "note": "Stage I only: the Stage II heads are untrained and return F1 unchanged",
            "training_data": {
                "folders": [str(f) for f in dcfg.train],
                "pairs": len(train_source),
                "skipped": len(train_source.report.problems),
                "max_side": dcfg.max_side,
            },
            "stage1": stage1_record,
            "seed": cfg.seed,
        }
        weights_path = save_weights(model.cpu(), run_dir / "stage1.pt", metadata)
        model.to(device)
        LOG.info("wrote %s", weights_path)
        if not args.no_eval and dcfg.val:
            summary = evaluate_stage1(model, cfg, run_dir / "eval", device)
            metadata["stage1"]["metrics"] = summary
            save_weights(model.cpu(), weights_path, metadata)
        write_json(run_dir / "done.json", {"step": step, "wall_time_s": round(elapsed, 1)})
    logger.close()
    cleanup_distributed()
    return 0


def evaluate_stage1(
    model: SGDFuse, cfg: TrainingConfig, out: Path, device: torch.device
) -> dict[str, Any]:
    """F1 next to plain mean / max fusion and the configured peer methods (e.g. SeAFusion)."""
    max_pairs = cfg.stage1.eval_max_pairs
    val = cfg.data.val
    fused = [
        evaluation.fuse_folder(
            model, val, out / "fused" / "stage1_F1", None, None, device, max_pairs
        )
    ]
    summary = evaluation.score_with_baselines(val, fused, out, cfg.eval, max_pairs)
    LOG.info("stage 1 evaluation written to %s", out / "metrics.md")
    return summary["stage1_F1"]


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.train_stage1")
