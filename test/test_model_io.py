"""Weights files: round trip, metadata, and clear errors for missing or corrupt files."""

from __future__ import annotations

import json

import pytest
import torch

from sgdfuse_ros.errors import WeightsError
from sgdfuse_ros.model_io import load_weights, save_weights
from sgdfuse_ros.models.sgdfuse import SGDFuse, small_config


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(3)
    model = SGDFuse(small_config()).eval()
    path = save_weights(model, tmp_path / "w.pt", {"prior_backend": "classical", "trained": True})
    loaded, meta = load_weights(path)
    assert meta["prior_backend"] == "classical" and meta["supported_steps"] == [1, 2, 3]
    sidecar = json.loads((tmp_path / "w.json").read_text())
    assert sidecar["metadata"]["prior_backend"] == "classical" and "unet" in sidecar["config"]
    x = [
        torch.rand(1, 1, 16, 16),
        torch.rand(1, 3, 16, 16),
        torch.rand(1, 1, 16, 16),
        torch.rand(1, 1, 16, 16),
    ]
    with torch.inference_mode():
        assert torch.equal(model(*x, steps=2)[0], loaded(*x, steps=2)[0])


def test_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(WeightsError) as err:
        load_weights(tmp_path / "nope.pt")
    assert "nope.pt" in str(err.value) and "train" in str(err.value)


def test_corrupt_and_foreign_files(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="corrupt"):
        load_weights(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(WeightsError, match="not an sgdfuse_ros weights file"):
        load_weights(foreign)
    with pytest.raises(WeightsError, match="is a folder"):
        load_weights(tmp_path)
    with pytest.raises(WeightsError) as err:  # torch's long advice is cut to one line
        load_weights(corrupt)
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)


@pytest.mark.parametrize(
    "break_config",
    [
        lambda config: config["stage1"].update(bogus=1),  # a field of a newer version
        lambda config: config["unet"].update(base_channels="wide"),  # edited by hand
    ],
)
def test_weights_with_an_unusable_config_are_a_weights_error(tmp_path, break_config):
    path = save_weights(SGDFuse(small_config()), tmp_path / "w.pt", {"trained": True})
    record = torch.load(path, weights_only=True)
    break_config(record["config"])
    torch.save(record, path)
    with pytest.raises(WeightsError, match="unusable model config"):
        load_weights(path)


def test_tensors_that_do_not_fit_the_config_are_reported_on_one_line(tmp_path):
    path = save_weights(SGDFuse(small_config()), tmp_path / "w.pt", {"trained": True})
    record = torch.load(path, weights_only=True)
    record["config"]["unet"]["base_channels"] *= 2  # every U-Net tensor now mismatches
    torch.save(record, path)
    with pytest.raises(WeightsError, match="does not match its own config") as err:
        load_weights(path)
    assert "\n" not in str(err.value) and "size mismatch for unet." in str(err.value)
