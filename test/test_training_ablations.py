"""The ablation script end to end on generated pairs: every row present in one table."""

from __future__ import annotations

from pathlib import Path

from training_helpers import tiny_config, write_pair_folder

from training import ablations, train_stage1, train_stage2


def test_ablation_table_has_every_row(tmp_path: Path) -> None:
    train = write_pair_folder(tmp_path / "train", count=2, height=48, width=48)
    val = write_pair_folder(tmp_path / "val", count=2, height=48, width=48, seed=5)
    config = tiny_config(tmp_path, train, val, data__val_mosaic_pairs=0)
    assert train_stage1.main(["--config", str(config), "--no-eval"]) == 0
    assert train_stage2.main(["--config", str(config), "--no-eval"]) == 0
    table = tmp_path / "ablations.md"
    args = [
        "--config",
        str(config),
        "--weights",
        str(tmp_path / "weights" / "tiny.pt"),
        "--out",
        str(tmp_path / "abl"),
        "--table",
        str(table),
        "--retrain-iters",
        "1",
        "--nproc",
        "1",
    ]
    assert ablations.main(args) == 0
    text = table.read_text()
    for row in (
        "full K=3",
        "full K=1",
        "without Stage II (F1)",
        "without priors at inference, K=1",
        "retrained frozen U-Net, K=1",
        "retrained without priors, K=1",
        "retrained fine-tuned U-Net, K=1",
    ):
        assert f"| {row} |" in text, row
    assert text.count("\n| ") >= 8  # header + 7 rows
    paired = text[text.index("Paired differences to `retrained frozen U-Net, K=1`") :]
    for row in ("retrained without priors, K=1", "retrained fine-tuned U-Net, K=1"):
        cells = paired[paired.index(f"| {row} |") :].splitlines()[0].split("|")[2:-1]
        assert len(cells) == 9 and all("[" in cell for cell in cells), cells  # mean [CI] each
