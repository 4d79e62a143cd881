"""Stage II training: the denoising U-Net and the HFAH heads (paper sections 3.4–3.6, eqs. 6–12, 16–19).

    python -m training.train_stage2 --config training/configs/small.yaml            # both phases
    python -m training.train_stage2 --config training/configs/small.yaml --resume   # after a stop
    torchrun --nproc_per_node=2 -m training.train_stage2 --config training/configs/paper.yaml

Stage I comes from ``stage2.stage1_weights`` (the ``stage1.pt`` of train_stage1) and stays
frozen. Two phases, each with its own checkpoint under ``<run_dir>/<phase>/``:

(a) ``denoiser``: the U-Net learns DDPM noise prediction on I0 = concat(F1, M_ir, M_vis)
    (eq. 12). ``max_train_timestep`` limits the sampled t: the heads only ever read features
    at small t (the K timesteps are ≤ 100), so a short run spends its steps there.
(b) ``heads``: one HFAH head per K in ``heads.steps`` reads the decoder features of the K fixed-noise
    passes and is trained with the mask-guided intensity + gradient loss and the background
    term (``training/losses.py``). The U-Net is frozen by default (``finetune_unet: false``): the
    features stay those of the denoiser, every K shares one U-Net and a head cannot erode it.
    ``finetune_unet: true`` trains it jointly at ``lr * unet_lr_scale`` (the ablation compares).

The end writes the full weights file (``stage2.output``) with metadata carried over from Stage I
and evaluates each K in ``eval_steps`` next to F1, plain mean / max fusion and the peers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sgdfuse_ros.errors import WeightsError
from sgdfuse_ros.model_io import load_weights, save_weights
from sgdfuse_ros.models.color import rgb_to_ycbcr, with_luminance
from sgdfuse_ros.models.sgdfuse import PRESETS, SGDFuse
from training import evaluation
from training.common import (
    LoopClock,
    RunLogger,
    Runtime,
    StopSignal,
    all_reduce_flag,
    autocast,
    cleanup_distributed,
    command_line,
    cosine_lr,
    git_commit,
    infinite_loader,
    is_due,
    load_checkpoint,
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
    to_device,
    to_uint8_image,
    training_pairs,
    training_parser,
    wants_mosaics,
    write_json,
)
from training.config import TrainingConfig
from training.datasets import FullFramePairs, PairSource, RandomCropPairs
from training.losses import denoising_loss, masked_fusion_loss
from training.priors import build_prior_cache

LOG = logging.getLogger("sgdfuse_ros.training")
PHASES = ("denoiser", "heads")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = training_parser(__doc__, "stage2.heads.iters=50")
    p.add_argument("--phase", choices=("all", *PHASES), default="all", help="which phase(s) to run")
    p.add_argument("--resume", action="store_true", help="continue each phase from its checkpoint")
    return p.parse_args(argv)


class HeadsForward(nn.Module):
    """F1 + priors → fused luminance of every trained head (one module, so DDP can wrap it)."""

    def __init__(self, model: SGDFuse, steps: list[int], finetune_unet: bool) -> None:
        super().__init__()
        self.model = model
        self.steps = steps
        self.finetune_unet = finetune_unet

    def forward(
        self,
        f1: torch.Tensor,
        m_ir: torch.Tensor,
        m_vis: torch.Tensor,
        ir: torch.Tensor,
        vis: torch.Tensor,
    ) -> list[torch.Tensor]:
        i0 = self.model.make_i0(f1, m_ir, m_vis)
        outputs = []
        for k in self.steps:
            with torch.set_grad_enabled(self.finetune_unet and torch.is_grad_enabled()):
                features = self.model.diffusion_features(i0, k)
            outputs.append(self.model.head_luminance(k, features, f1, ir, vis))
        return outputs


@torch.no_grad()
def validation_mosaic(
    model: SGDFuse, frames: FullFramePairs, steps: list[int], device: torch.device
) -> Any:
    """IR | VIS | M_ir | M_vis | F1 | fused for each K, on a few full-size validation pairs."""
    model.eval()
    rows = []
    for i in range(len(frames)):
        s = to_device(frames[i], device)
        ir, vis, m_ir, m_vis = (s[k][None] for k in ("ir", "vis", "m_ir", "m_vis"))
        tiles = [to_uint8_image(x[0]) for x in (ir, vis, m_ir, m_vis)]
        f1 = None
        for k in steps:
            fused, f1 = model(ir, vis, m_ir, m_vis, k)
            tiles.append(to_uint8_image(fused[0]))
        rows.append(tiles[:4] + [to_uint8_image(f1[0])] + tiles[4:])
    return mosaic(rows)


def run_phase(
    phase: str,
    model: SGDFuse,
    cfg: TrainingConfig,
    train_set: RandomCropPairs,
    mosaic_frames: FullFramePairs | None,
    run: Runtime,
    resume: bool,
) -> dict[str, Any]:
    """One phase's training loop; returns its record for the weights metadata."""
    s2, lcfg = cfg.stage2, cfg.loss
    pcfg = s2.denoiser if phase == "denoiser" else s2.heads
    device, dist_info = run.device, run.dist
    run_dir = Path(s2.run_dir) / phase
    ckpt_path = run_dir / "checkpoint.pt"
    steps = list(s2.heads.steps)
    finetune = s2.heads.finetune_unet

    # ---- what is trained in this phase
    for p in model.parameters():
        p.requires_grad_(False)
    if phase == "denoiser":
        trained_modules = [model.unet]
        forward: nn.Module = model.unet
        groups = [{"params": list(model.unet.parameters()), "lr_scale": 1.0}]
    else:
        trained_modules = [model.heads[str(k)] for k in steps]
        forward = HeadsForward(model, steps, finetune)
        groups = [{"params": [p for m in trained_modules for p in m.parameters()], "lr_scale": 1.0}]
        if finetune:
            # The output conv only serves the noise prediction, which this loss never sees.
            unet_params = [p for n, p in model.unet.named_parameters() if not n.startswith("out.")]
            trained_modules.append(model.unet)
            groups.append({"params": unet_params, "lr_scale": s2.heads.unet_lr_scale})
    for group in groups:
        for p in group["params"]:
            p.requires_grad_(True)
    model.eval()  # frozen parts (Stage I, a frozen U-Net) run in inference mode
    for m in trained_modules:
        m.train()
    trained = DistributedDataParallel(forward) if dist_info.world_size > 1 else forward
    optimizer = torch.optim.Adam(groups, lr=pcfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=run.use_amp)

    step, elapsed = 0, 0.0
    if resume and ckpt_path.is_file():
        ckpt = restore_training_state(ckpt_path, model, optimizer, scaler)
        step, elapsed = int(ckpt["step"]), float(ckpt["elapsed_s"])
        LOG.info("%s: resumed from %s at step %d", phase, ckpt_path, step)

    seed = cfg.seed + (0 if phase == "denoiser" else 1)
    batches = infinite_loader(
        train_set, pcfg.batch_size, seed, dist_info, step, cfg.data.num_workers
    )
    noise_gen = torch.Generator().manual_seed(seed * 7919 + dist_info.rank * 104729 + step)
    max_t = s2.denoiser.max_train_timestep
    if max_t is None:
        max_t = model.config.num_timesteps
    stop = StopSignal()
    logger = RunLogger(run_dir, dist_info.is_main)
    progress = progress_bar(pcfg.iters, step, f"stage 2 {phase}", dist_info)
    clock = LoopClock(elapsed)

    # ---- the training loop
    while step < pcfg.iters:
        lr = cosine_lr(step, pcfg.iters, pcfg.lr, pcfg.lr_min_ratio)
        set_learning_rate(optimizer, lr)
        b = to_device(next(batches), device)
        with torch.no_grad():
            f1 = model.stage1(b["ir"], b["vis"])  # frozen Stage I
        parts: dict[str, float] = {}
        with autocast(device, run.use_amp):
            if phase == "denoiser":
                i0 = model.make_i0(f1, b["m_ir"], b["m_vis"])
                t = torch.randint(0, max_t, (i0.shape[0],), generator=noise_gen).to(device)
                eps = torch.randn(i0.shape, generator=noise_gen).to(device)
                eps_pred, _ = trained(model.schedule.q_sample(i0, t, eps), t)
                loss = denoising_loss(eps_pred.float(), eps)
            else:
                vis_y = rgb_to_ycbcr(b["vis"])[:, :1]
                losses = []
                for k, y in zip(
                    steps, trained(f1, b["m_ir"], b["m_vis"], b["ir"], b["vis"]), strict=True
                ):
                    fused_y = rgb_to_ycbcr(with_luminance(y.float(), b["vis"]))[:, :1]
                    loss_k, _ = masked_fusion_loss(
                        fused_y,
                        b["ir"],
                        vis_y,
                        b["m_ir"],
                        b["m_vis"],
                        lcfg.lambda_intensity,
                        lcfg.lambda_gradient,
                        lcfg.background_weight,
                        lcfg.lambda_structure,
                        lcfg.lambda_object,
                    )
                    losses.append(loss_k)
                    parts[f"loss_K{k}"] = float(loss_k.detach())
                loss = torch.stack(losses).mean()
        optimizer_step(loss, optimizer, scaler)
        step += 1
        clock.step()
        progress.update(1)

        if is_due(step, s2.log_every, pcfg.iters):
            log_step(logger, progress, step, loss, lr, clock.rate(), parts)
        if mosaic_frames is not None and is_due(step, s2.val_every, pcfg.iters):
            logger.image(
                step, f"stage2_{phase}_val", validation_mosaic(model, mosaic_frames, steps, device)
            )
            for m in trained_modules:
                m.train()
        stopping = all_reduce_flag(stop.received is not None)
        if is_due(step, s2.ckpt_every, pcfg.iters) or stopping:
            elapsed = clock.sync()
            if dist_info.is_main:
                save_training_state(
                    ckpt_path, step, elapsed, model, optimizer, scaler, cfg, phase=phase
                )
        if stopping:
            progress.close()
            logger.close()
            raise SystemExit(
                f"stopped by signal during {phase} at step {step}; continue with --resume"
            )
    progress.close()
    logger.close()
    record = {
        "iters": pcfg.iters,
        "batch_size": pcfg.batch_size,
        "lr": pcfg.lr,
        "lr_min_ratio": pcfg.lr_min_ratio,
        "wall_time_s": round(clock.sync(), 1),
    }
    if phase == "denoiser":
        record["max_train_timestep"] = max_t
    else:
        record.update(
            {
                "steps": steps,
                "finetune_unet": finetune,
                "unet_lr_scale": s2.heads.unet_lr_scale if finetune else None,
                "loss": {
                    "lambda_intensity": lcfg.lambda_intensity,
                    "lambda_gradient": lcfg.lambda_gradient,
                    "background_weight": lcfg.background_weight,
                    "lambda_structure": lcfg.lambda_structure,
                    "lambda_object": lcfg.lambda_object,
                },
            }
        )
    if dist_info.is_main:
        write_json(run_dir / "done.json", record)
    return record


def with_new_heads(model: SGDFuse, output: str) -> SGDFuse:
    """The same Stage I and U-Net with fresh (zero-output) heads of another output form."""
    rebuilt = SGDFuse(dataclasses.replace(model.config, head_output=output))
    rebuilt.stage1.load_state_dict(model.stage1.state_dict())
    rebuilt.unet.load_state_dict(model.unet.state_dict())
    return rebuilt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = read_config(args.config, args.set)
    s2, dcfg = cfg.stage2, cfg.data
    run = setup_run(cfg)
    device, dist_info = run.device, run.dist

    # ---- Stage I weights (frozen) and the rest of the model as the config builds it
    try:
        model, stage1_meta = load_weights(s2.stage1_weights)
    except WeightsError as error:  # no Stage I yet, or an unreadable file: one line, exit 1
        raise SystemExit(f"error: stage2.stage1_weights: {error}") from None
    if model.config.to_dict() != PRESETS[cfg.model]().to_dict():
        LOG.warning(
            "stage1 weights config differs from preset %r; using the weights' config", cfg.model
        )
    if s2.heads.output is not None and s2.heads.output != model.config.head_output:
        model = with_new_heads(model, s2.heads.output)
        LOG.info("HFAH heads rebuilt with output %r (untrained: they return F1)", s2.heads.output)
    model = model.to(device)

    # ---- data with cached priors (computed once, by rank 0 first so ranks do not race)
    def prior_source(progress: bool) -> tuple[Any, PairSource, RandomCropPairs]:
        cache = build_prior_cache(cfg.priors, dcfg.max_side, str(device), progress=progress)
        return cache, *training_pairs(dcfg, cache)  # PairSource reads or computes the priors

    if dist_info.is_main:
        priors, train_source, train_set = prior_source(progress=True)
    if dist_info.world_size > 1:
        torch.distributed.barrier()
    if not dist_info.is_main:
        priors, train_source, train_set = prior_source(progress=False)
    mosaic_frames = None
    if wants_mosaics(dcfg, dist_info):
        mosaic_frames = mosaic_pairs(dcfg, evaluation.val_priors(cfg.priors, str(device)))
    LOG.info(
        "stage 2: %d training pairs (%d problems skipped), priors %s, device %s, world size %d",
        len(train_source),
        len(train_source.report.problems),
        priors.name,
        device,
        dist_info.world_size,
    )

    records: dict[str, Any] = {}
    run_dir = Path(s2.run_dir)
    denoiser_ckpt = Path(s2.denoiser_checkpoint or run_dir / "denoiser" / "checkpoint.pt")
    denoiser_done = denoiser_ckpt.parent / "done.json"
    if s2.reuse_unet:  # the U-Net of stage1_weights is trained already: heads only
        records["denoiser"] = {
            "reused_from": s2.stage1_weights,
            **stage1_meta.get("stage2", {}).get("denoiser", {}),
        }
        LOG.info("U-Net reused from %s (no denoiser phase)", s2.stage1_weights)
    elif args.phase in ("all", "denoiser") and not (args.resume and denoiser_done.is_file()):
        records["denoiser"] = run_phase(
            "denoiser", model, cfg, train_set, mosaic_frames, run, args.resume
        )
    else:  # heads only, or a resume after the denoiser finished: start from the trained U-Net
        if not denoiser_done.is_file():
            raise SystemExit(f"no finished denoiser at {denoiser_ckpt}; run --phase denoiser first")
        model.load_state_dict(load_checkpoint(denoiser_ckpt)["model"])
        records["denoiser"] = json.loads(denoiser_done.read_text())
        LOG.info("U-Net from the finished denoiser phase %s", denoiser_ckpt)
    if args.phase in ("all", "heads"):
        records["heads"] = run_phase(
            "heads", model, cfg, train_set, mosaic_frames, run, args.resume
        )

    if dist_info.is_main and "heads" in records:
        command = command_line("training.train_stage2", argv)
        metadata = build_metadata(cfg, stage1_meta, records, train_source, priors, run, command)
        out = Path(s2.output)
        save_weights(model.cpu(), out, metadata)
        model.to(device)
        LOG.info("wrote %s", out)
        if not args.no_eval and dcfg.val:
            metadata["metrics"] = evaluate_stage2(model, cfg, run_dir / "eval", device)
            save_weights(model.cpu(), out, metadata)
    cleanup_distributed()
    return 0


def build_metadata(
    cfg: TrainingConfig,
    stage1_meta: dict[str, Any],
    records: dict[str, Any],
    source: PairSource,
    priors: Any,
    run: Runtime,
    command: str,
) -> dict[str, Any]:
    """Everything needed to know what the weights are and to reproduce them."""
    stage2_record = {
        **records,
        "world_size": run.dist.world_size,
        "crop": cfg.data.crop,
        "machine": machine_description(),
        "device": str(run.device),
        "command": command,
        "git_commit": git_commit(),
    }
    prior_settings = priors.backend.settings() if hasattr(priors, "backend") else priors.settings()
    return {
        "trained": True,
        "config_name": cfg.model,
        "training_config": cfg.config_file,
        "stages_trained": ["stage1", "stage2"],
        "default_steps": cfg.stage2.default_steps,
        "timesteps": {str(k): list(v) for k, v in PRESETS[cfg.model]().timesteps.items()},
        "prior_backend": priors.name,
        "prior_settings": prior_settings,
        "prior_note": (
            "trained with the classical prior backend (no SAM checkpoint was used); retrain with "
            "priors.backend: sam and priors.sam_checkpoint: <file> for SAM priors"
            if priors.name == "classical"
            else f"trained with {priors.name} priors"
        ),
        "training_data": {
            "folders": [str(f) for f in cfg.data.train],
            "pairs": len(source),
            "skipped": len(source.report.problems),
            "max_side": cfg.data.max_side,
            "validation": cfg.data.val,
        },
        "seed": cfg.seed,
        "stage1": stage1_meta.get("stage1", {}),
        "stage2": stage2_record,
    }


def evaluate_stage2(
    model: SGDFuse, cfg: TrainingConfig, out: Path, device: torch.device
) -> dict[str, Any]:
    """Each K of ``eval_steps`` and F1 next to plain mean / max fusion and the peers."""
    max_pairs = cfg.stage2.eval_max_pairs
    val = cfg.data.val
    priors = evaluation.val_priors(cfg.priors, str(device))
    fused = [
        evaluation.fuse_folder(
            model, val, out / "fused" / f"sgdfuse_K{k}", k, priors, device, max_pairs
        )
        for k in cfg.stage2.eval_steps
    ]
    fused.append(
        evaluation.fuse_folder(
            model, val, out / "fused" / "stage1_F1", None, priors, device, max_pairs
        )
    )
    summary = evaluation.score_with_baselines(val, fused, out, cfg.eval, max_pairs)
    LOG.info("stage 2 evaluation written to %s", out / "metrics.md")
    return {"validation": val, "pairs": max_pairs or "all", "means": summary}


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.train_stage2")
