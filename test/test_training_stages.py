"""Tiny end-to-end run of both training stages on generated pairs (runs in CI, no real data)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import tiny_config, write_pair_folder

from sgdfuse_ros.model_io import load_weights, save_weights
from sgdfuse_ros.models.sgdfuse import PRESETS, SGDFuse
from training import train_stage1, train_stage2
from training.datasets import FullFramePairs, PairSource


def test_both_stages_train_export_and_evaluate(tmp_path: Path) -> None:
    train = write_pair_folder(tmp_path / "train", count=4, height=48, width=64)
    val = write_pair_folder(tmp_path / "val", count=2, height=48, width=48, seed=3)
    config = tiny_config(tmp_path, train, val)

    assert train_stage1.main(["--config", str(config)]) == 0
    s1 = tmp_path / "s1"
    model1, meta1 = load_weights(s1 / "stage1.pt")
    assert meta1["stage1"]["iters"] == 3 and meta1["training_data"]["pairs"] == 4
    assert set(meta1["stage1"]["metrics"]) >= {"EN", "SSIM", "Qabf"}
    rows = list(csv.DictReader((s1 / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and all(
        np.isfinite(float(r["loss"])) for r in rows
    )
    assert list((s1 / "mosaics").glob("stage1_val_*.png")) and (s1 / "tensorboard").is_dir()
    table = (s1 / "eval" / "metrics.md").read_text()
    assert "| stage1_F1 |" in table and "| mean |" in table and "| max |" in table
    assert torch.load(s1 / "checkpoint.pt", weights_only=False)["step"] == 3

    assert train_stage2.main(["--config", str(config)]) == 0
    model, meta = load_weights(tmp_path / "weights" / "tiny.pt")
    assert meta["prior_backend"] == "classical" and meta["prior_settings"]["backend"] == "classical"
    assert meta["stage2"]["denoiser"]["iters"] == 2 and meta["stage2"]["heads"]["steps"] == [1, 3]
    assert meta["default_steps"] == 1 and meta["metrics"]["means"]["sgdfuse_K1"]["EN"] > 0
    assert "train_stage2" in meta["stage2"]["command"]
    # Stage I is carried over unchanged; the U-Net and the trained heads moved.
    for name, value in model1.stage1.state_dict().items():
        assert torch.equal(value, model.stage1.state_dict()[name])
    assert not torch.equal(model.unet.stem.weight, model1.unet.stem.weight)
    assert (
        model.heads["1"].out.weight.abs().sum() > 0 and model.heads["3"].out.weight.abs().sum() > 0
    )
    assert model.heads["2"].out.weight.abs().sum() == 0  # K=2 was not in heads.steps
    # The trained heads change the output relative to F1; K=1 and K=3 differ.
    frame = FullFramePairs(PairSource([val]))[0]
    ir, vis = frame["ir"][None], frame["vis"][None]
    m = torch.zeros_like(ir)
    with torch.no_grad():
        fused1, f1 = model(ir, vis, m, m, 1)
        fused3, _ = model(ir, vis, m, m, 3)
    assert (fused1 - f1).abs().max() > 0 and (fused1 - fused3).abs().max() > 0
    s2 = tmp_path / "s2"
    assert json.loads((s2 / "heads" / "done.json").read_text())["finetune_unet"] is False
    assert list((s2 / "heads" / "mosaics").glob("*.png"))
    assert "| sgdfuse_K1 |" in (s2 / "eval" / "metrics.md").read_text()
    cache = next((tmp_path / "priors").glob("classical-*"))
    assert json.loads((cache / "backend.json").read_text())["backend"] == "classical"
    assert len(list(cache.glob("*.npz"))) == 6  # 4 training + 2 validation pairs (same max_side)


def test_finetune_and_no_prior_variants(tmp_path: Path) -> None:
    """The two ablation switches: U-Net fine-tuned with the heads, and zero prior maps."""
    train = write_pair_folder(tmp_path / "train", count=2, height=48, width=48)
    config = tiny_config(tmp_path, train, train)
    assert train_stage1.main(["--config", str(config), "--no-eval"]) == 0
    assert train_stage2.main(["--config", str(config), "--no-eval", "--phase", "denoiser"]) == 0
    denoised, _ = load_weights(tmp_path / "s1" / "stage1.pt")
    denoised.load_state_dict(
        torch.load(tmp_path / "s2" / "denoiser" / "checkpoint.pt", weights_only=False)["model"]
    )
    args = [
        "--config",
        str(config),
        "--no-eval",
        "--phase",
        "heads",
        "--set",
        "stage2.heads.finetune_unet=true",
        "--set",
        "priors.backend=none",
        "--set",
        f"stage2.output={tmp_path / 'ft.pt'}",
    ]
    assert train_stage2.main(args) == 0
    model, meta = load_weights(tmp_path / "ft.pt")
    assert meta["prior_backend"] == "none" and meta["stage2"]["heads"]["finetune_unet"] is True
    assert not torch.equal(model.unet.stem.weight, denoised.unet.stem.weight)
    assert torch.equal(
        model.unet.out[2].weight, denoised.unet.out[2].weight
    )  # not used by the heads


def test_stage1_continues_from_init_weights_with_the_structure_loss(tmp_path: Path) -> None:
    """``stage1.init_weights`` starts from a file's Stage I (not random) and the structure term is
    logged and recorded; a file of another architecture is refused instead of half-loaded."""
    train = write_pair_folder(tmp_path / "train", count=2, height=48, width=48)
    config = tiny_config(tmp_path, train, train)
    assert train_stage1.main(["--config", str(config), "--no-eval"]) == 0
    first, _ = load_weights(tmp_path / "s1" / "stage1.pt")
    continued = [
        "--config",
        str(config),
        "--no-eval",
        "--set",
        f"stage1.init_weights={tmp_path / 's1' / 'stage1.pt'}",
        "--set",
        f"stage1.run_dir={tmp_path / 's1b'}",
        "--set",
        "stage1.iters=1",
        "--set",
        "stage1.lr=0.0",
        "--set",
        "loss.lambda_structure=0.5",
    ]
    assert train_stage1.main(continued) == 0
    again, meta = load_weights(tmp_path / "s1b" / "stage1.pt")
    for name, value in first.stage1.state_dict().items():  # lr 0: the init weights, unchanged
        assert torch.equal(value, again.stage1.state_dict()[name])
    assert meta["stage1"]["loss"]["lambda_structure"] == 0.5
    assert meta["stage1"]["init_weights"] == str(tmp_path / "s1" / "stage1.pt")
    assert "loss_structure" in (tmp_path / "s1b" / "log.csv").read_text().splitlines()[0]

    other = tmp_path / "other.pt"
    save_weights(SGDFuse(PRESETS["paper"]()), other, {"trained": False})
    refused = [*continued[:4], f"stage1.init_weights={other}", *continued[5:]]
    with pytest.raises(SystemExit, match="is not the configured preset"):
        train_stage1.main(refused)


@pytest.mark.parametrize(
    ("output", "channels", "lambda_object"), [("sources", 2, 0.0), ("select", 3, 1.0)]
)
def test_heads_only_run_on_a_finished_model_with_other_heads(
    tmp_path: Path, output: str, channels: int, lambda_object: float
) -> None:
    """``stage2.reuse_unet`` trains only the heads on a finished model's U-Net (no denoiser
    phase), and ``stage2.heads.output`` rebuilds them in another output form."""
    train = write_pair_folder(tmp_path / "train", count=2, height=48, width=48)
    config = tiny_config(tmp_path, train, train)
    assert train_stage1.main(["--config", str(config), "--no-eval"]) == 0
    assert train_stage2.main(["--config", str(config), "--no-eval"]) == 0
    finished, _ = load_weights(tmp_path / "weights" / "tiny.pt")
    args = ["--config", str(config), "--no-eval"]
    for item in (
        f"stage2.stage1_weights={tmp_path / 'weights' / 'tiny.pt'}",
        "stage2.reuse_unet=true",
        f"stage2.heads.output={output}",
        f"loss.lambda_object={lambda_object}",
        f"stage2.run_dir={tmp_path / 's2b'}",
        f"stage2.output={tmp_path / 'sources.pt'}",
    ):
        args += ["--set", item]
    assert train_stage2.main(args) == 0
    model, meta = load_weights(tmp_path / "sources.pt")
    assert model.config.head_output == output
    assert meta["stage2"]["heads"]["loss"]["lambda_object"] == lambda_object
    assert meta["stage2"]["denoiser"]["reused_from"] == str(tmp_path / "weights" / "tiny.pt")
    assert not (tmp_path / "s2b" / "denoiser").exists()
    for part in ("stage1", "unet"):
        for name, value in getattr(finished, part).state_dict().items():
            assert torch.equal(value, getattr(model, part).state_dict()[name]), name
    out = model.heads["1"].out
    assert out.weight.shape[0] == channels and out.weight.abs().sum() > 0
