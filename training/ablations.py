"""Ablations on a validation set in the spirit of the seed paper's Table 3, as one Markdown table.

    python -m training.ablations --config training/configs/small.yaml \
        --weights sgdfuse_ros/weights/sgdfuse_small.pt --out runs/small/ablations \
        --table training/results/ablations.md

Rows from the shipped weights (no retraining):
  * ``full K=3`` / ``full K=1`` — the diffusion-steps knob (K = 1 vs K = 3);
  * ``without Stage II (F1)`` — Stage I alone;
  * ``without priors at inference`` — zero prior maps fed to the shipped K = 1 head.
Rows retrained from the same Stage I and denoiser, a K = 1 head only, ``--retrain-iters`` steps
each (equal budgets, so they compare with each other rather than with the shipped head):
  * ``frozen U-Net`` — the shipped recipe;
  * ``without priors (trained and evaluated with zero maps)``;
  * ``fine-tuned U-Net`` — the U-Net trained jointly with the head.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from sgdfuse_ros.model_io import load_weights
from sgdfuse_ros.tools.evaluate import CSV_NAME, format_markdown_table
from training import evaluation
from training.common import REPO_ROOT, read_config, write_json
from training.priors import ZeroPriors
from training.priors_ablation import difference_table, paired_metric_differences, read_per_image

LOG = logging.getLogger("sgdfuse_ros.training")

RETRAINED = {
    "retrained frozen U-Net": [],
    "retrained without priors": ["--set", "priors.backend=none"],
    "retrained fine-tuned U-Net": ["--set", "stage2.heads.finetune_unet=true"],
}


def retrain_head(
    config: str, out: Path, extra: list[str], iters: int, denoiser: Path, nproc: int
) -> Path:
    """Train a K = 1 head from the finished denoiser with the given overrides; returns the weights."""
    weights = out / "weights.pt"
    if weights.is_file():
        return weights
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [
        *launcher,
        "-m",
        "training.train_stage2",
        "--config",
        config,
        "--phase",
        "heads",
        "--no-eval",
        "--set",
        f"stage2.run_dir={out}",
        "--set",
        f"stage2.denoiser_checkpoint={denoiser}",
        "--set",
        "stage2.heads.steps=[1]",
        "--set",
        f"stage2.heads.iters={iters}",
        "--set",
        f"stage2.output={weights}",
        *extra,
    ]
    LOG.info("running %s", " ".join(cmd))
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True)
    p.add_argument("--weights", default="sgdfuse_ros/weights/sgdfuse_small.pt")
    p.add_argument("--out", default="runs/small/ablations")
    p.add_argument("--table", default="training/results/ablations.md")
    p.add_argument("--retrain-iters", type=int, default=200)
    p.add_argument(
        "--nproc", type=int, default=2, help="processes for the retraining runs (torchrun)"
    )
    p.add_argument("--max-pairs", type=int, default=None, help="evaluate only the first pairs")
    p.add_argument(
        "--skip-retrain", action="store_true", help="only the rows of the shipped weights"
    )
    p.add_argument(
        "--reuse-k1", help="folder with the shipped weights' K=1 outputs (evaluate_weights)"
    )
    p.add_argument(
        "--reuse-k3", help="folder with the shipped weights' K=3 outputs (evaluate_weights)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = read_config(args.config, [])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(args.out)
    val = cfg.data.val
    device = torch.device("cpu")
    model, meta = load_weights(args.weights)
    priors = evaluation.val_priors(cfg.priors, "cpu")
    fused_root = out / "fused"
    rows: dict[str, Path] = {}

    def fuse(name: str, net, steps: int | None, prior_source) -> None:
        folder = fused_root / name.replace(" ", "_").replace("=", "").replace("(", "").replace(
            ")", ""
        )
        if not folder.is_dir() or not any(folder.iterdir()):
            evaluation.fuse_folder(net, val, folder, steps, prior_source, device, args.max_pairs)
        rows[name] = folder

    if not args.skip_retrain:  # first, so they can run while the shipped rows are still being fused
        s2 = cfg.stage2
        denoiser = Path(s2.denoiser_checkpoint or Path(s2.run_dir) / "denoiser" / "checkpoint.pt")
        retrained = {
            name: retrain_head(
                args.config,
                out / name.replace(" ", "_"),
                extra,
                args.retrain_iters,
                denoiser,
                args.nproc,
            )
            for name, extra in RETRAINED.items()
        }
    for label, steps, reuse in (("full K=3", 3, args.reuse_k3), ("full K=1", 1, args.reuse_k1)):
        if reuse:  # the same weights already fused by training.evaluate_weights
            rows[label] = Path(reuse)
        else:
            fuse(label, model, steps, priors)
    fuse("without Stage II (F1)", model, None, priors)
    fuse("without priors at inference, K=1", model, 1, ZeroPriors())
    if not args.skip_retrain:
        for name, weights in retrained.items():
            variant, _ = load_weights(weights)
            fuse(f"{name}, K=1", variant, 1, ZeroPriors() if "without priors" in name else priors)

    # evaluate_dirs names methods by folder; map them back to the row labels.
    summary = evaluation.score(
        val,
        list(rows.values()),
        out / "eval",
        cfg.eval.workers,
        args.max_pairs,
    )
    by_label = {label: summary[folder.name] for label, folder in rows.items()}
    pairs = args.max_pairs or "all"
    retrained_diffs: list[str] = []
    if not args.skip_retrain:  # equal-budget rows against the frozen-U-Net head, image by image
        per_image = read_per_image(out / "eval" / CSV_NAME)
        labels = [f"{name}, K=1" for name in RETRAINED]
        diffs = paired_metric_differences(
            {label: per_image[rows[label].name] for label in labels}, labels[0], 1000, 0
        )
        retrained_diffs = [
            f"Paired differences to `{labels[0]}` (mean [95 % CI] over images, 1000 bootstrap "
            "resamples, seed 0; **bold** = the interval excludes 0):",
            "",
            *difference_table(diffs, "method"),
            "",
        ]
    lines = [
        "# Ablations (msrs100)",
        "",
        f"Validation: `{val}`, {pairs} pairs, metrics as `sgdfuse eval` (higher is better, best in "
        f"bold). Weights: `{args.weights}` (prior backend `{meta.get('prior_backend')}`).",
        "",
        "Rows 1–4 use the shipped weights as they are. The `retrained` rows train a K = 1 head for "
        f"{args.retrain_iters} steps each from the same Stage I and denoiser, so they compare with "
        "each other (equal budget), not with the longer-trained shipped head. `without priors` feeds "
        "all-zero prior maps (in training too for the retrained row).",
        "",
        format_markdown_table(by_label),
        *retrained_diffs,
        "Command: `python -m training.ablations "
        + shlex.join(sys.argv[1:] if argv is None else argv)
        + "`",
        "",
    ]
    table = Path(args.table)
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text("\n".join(lines))
    write_json(out / "ablations.json", by_label)
    LOG.info("wrote %s", table)
    return 0


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.ablations")
