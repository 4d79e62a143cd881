"""Score a weights file on a validation set exactly as `sgdfuse fuse` + `sgdfuse eval` do, and
record the result in the weights' metadata.

    python -m training.evaluate_weights --weights sgdfuse_ros/weights/sgdfuse_small.pt \
        --val ../shared/data/val/msrs100 --peer ../shared/data/val/msrs100_peers/SeAFusion \
        --out runs/small/msrs100 --table training/results/msrs100.md --update-metadata

Fuses with :class:`sgdfuse_ros.pipeline.FusionPipeline` (the library / CLI / node path, priors
from the backend the weights were trained with) for each K of ``--steps``, adds plain mean and
max fusion, scores everything with :func:`sgdfuse_ros.tools.evaluate.evaluate_dirs` and writes the
Markdown table with the per-metric comparison against the peer.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from sgdfuse_ros.model_io import load_weights, save_weights
from sgdfuse_ros.pipeline import FusionPipeline
from sgdfuse_ros.tools.evaluate import format_markdown_table
from sgdfuse_ros.tools.fuse_files import fuse_paths
from training import evaluation
from training.common import write_json

LOG = logging.getLogger("sgdfuse_ros.training")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--weights", default="sgdfuse_ros/weights/sgdfuse_small.pt")
    p.add_argument("--val", default="../shared/data/val/msrs100")
    p.add_argument("--peer", action="append", default=[], help="fused folder of a published method")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 3])
    p.add_argument("--out", default="runs/small/msrs100")
    p.add_argument("--table", default=None, help="also write the Markdown table here")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--update-metadata", action="store_true", help="store the means in the weights file"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    val, out = Path(args.val), Path(args.out)
    model, meta = load_weights(args.weights)
    backend = meta.get("prior_backend", "auto")
    ir_dir, vi_dir = val / "ir", val / "vi"

    fused_dirs, timings = [], {}
    for k in args.steps:
        folder = out / "fused" / f"sgdfuse_K{k}"
        pipeline = FusionPipeline(
            weights=args.weights, device="cpu", steps=k, prior_backend=backend
        )
        start = time.time()
        report = fuse_paths(pipeline, ir_dir, vi_dir, folder, progress=False)
        timings[f"K{k}"] = round((time.time() - start) / max(len(report.fused), 1), 3)
        fused_dirs.append(folder)
    fused_dirs += evaluation.write_baselines(val, out / "fused")
    fused_dirs += [Path(peer) for peer in args.peer]
    summary = evaluation.score(val, fused_dirs, out / "eval", args.workers)

    peer_names = [Path(peer).name for peer in args.peer]
    lines = [
        f"# {val.name}: shipped weights vs. {', '.join(peer_names) or 'baselines'}",
        "",
        f"`{args.weights}` ({meta.get('config_name')} config, {meta.get('prior_backend')} priors), "
        f"fused with `FusionPipeline` (as `sgdfuse fuse`) and scored with `sgdfuse eval` on "
        f"{len(list(ir_dir.iterdir()))} pairs of `{val}`. Higher is better, best in bold. "
        "`mean` / `max`: plain luminance fusion with the visible chroma.",
        "",
        format_markdown_table(summary),
    ]
    for peer in peer_names:
        for k in args.steps:
            wins = evaluation.wins_against(summary, f"sgdfuse_K{k}", peer)
            lines.append(
                f"- K={k} above {peer} on {len(wins)} of 9 metrics: {', '.join(wins) or 'none'}"
            )
    lines += [
        "",
        f"CPU seconds per 640×480 pair (priors + network, this run): {timings}",
        "",
        "Command: `python -m training.evaluate_weights "
        + shlex.join(sys.argv[1:] if argv is None else argv)
        + "`",
    ]
    text = "\n".join(lines) + "\n"
    (out / "msrs100.md").write_text(text)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(text)
    write_json(out / "summary.json", summary)
    print(text)
    if args.update_metadata:
        meta["metrics"] = {
            "validation": str(val),
            "pairs": len(list(ir_dir.iterdir())),
            "means": summary,
            "above_peer": {
                peer: {
                    f"K{k}": evaluation.wins_against(summary, f"sgdfuse_K{k}", peer)
                    for k in args.steps
                }
                for peer in peer_names
            },
        }
        save_weights(model, args.weights, meta)
    return 0


if __name__ == "__main__":
    from sgdfuse_ros.cli.main import run_tool

    run_tool(main, "training.evaluate_weights")
