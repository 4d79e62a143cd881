"""Training's end-of-stage evaluation with the optional detector (config ``eval.detection``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from training import evaluation
from training.config import ConfigError, DetectionConfig, load_config

MODEL_NAME = "mobilenet_ssd_v2_coco_quant_postprocess.tflite"


def test_detection_is_off_without_a_model_and_the_config_is_checked(tmp_path: Path) -> None:
    assert evaluation.detection_settings(DetectionConfig()) is None
    with pytest.raises(ValueError, match="labels is not"):
        evaluation.detection_settings(DetectionConfig(model="x.tflite"))
    config = tmp_path / "train.yaml"
    shipped = yaml.safe_load(Path("training/configs/small.yaml").read_text())
    shipped.setdefault("eval", {})["detection"] = {"modle": "x.tflite"}
    config.write_text(yaml.safe_dump(shipped))
    with pytest.raises(ConfigError, match="unknown key eval.detection.modle"):
        load_config(config)


def test_score_with_detection_adds_ap_columns(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed (extra 'detect')")
    detection_dir = data_dir.parent / "detection"
    if not (detection_dir / MODEL_NAME).is_file():
        pytest.skip(f"detector not found in {detection_dir}")
    val = data_dir / "val" / "msrs100"
    fused = evaluation.write_baselines(val, tmp_path / "fused", max_pairs=2)
    config = DetectionConfig(
        model=str(detection_dir / MODEL_NAME),
        labels=str(detection_dir / "msrs100_labels"),
        samples=20,
    )
    summary = evaluation.score(val, fused, tmp_path / "eval", max_pairs=2, detection=config)
    assert set(summary) == {"mean", "max"}
    assert "mAP50" in summary["mean"] and "SSIM" in summary["mean"]
    stored = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert stored["detection"]["methods"]["VIS"]["images"] == 2
    assert stored["detection"]["bootstrap"]["samples"] == 20
