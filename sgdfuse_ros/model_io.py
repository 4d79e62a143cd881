"""Save and load SGDFuse weights together with the metadata record that says what they are.

A weights file is one ``torch.save`` dict: ``format``, ``config`` (SGDFuseConfig.to_dict()),
``state_dict`` and ``metadata`` (supported K, prior backend and its settings, training data,
metrics, the commands that produced them). A JSON copy of config + metadata sits beside it so
people can read it without torch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .errors import WeightsError, first_line, torch_load_reason

FORMAT = "sgdfuse_ros/weights/1"
LOG = logging.getLogger("sgdfuse_ros")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "sgdfuse_small.pt"

RETRAIN_HINT = (
    "train them with `python -m training.train_stage1 --config training/configs/small.yaml` and "
    "`python -m training.train_stage2 --config training/configs/small.yaml` (see README), pass another "
    "file with --weights / the `weights` parameter, or run with untrained weights explicitly "
    "(allow_untrained=True / --allow-untrained)"
)


def metadata_path(weights_path: Path) -> Path:
    return weights_path.with_suffix(".json")


def save_weights(model: Any, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write weights + metadata atomically (a crash never leaves a half-written default file)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"supported_steps": list(model.supported_steps), **metadata}
    record = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(record, tmp)
    tmp.replace(path)
    meta_tmp = metadata_path(path).with_suffix(".json.tmp")
    meta_tmp.write_text(
        json.dumps({"config": record["config"], "metadata": metadata}, indent=2) + "\n"
    )
    meta_tmp.replace(metadata_path(path))
    return path


def load_weights(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Build the model the file describes, load its tensors and return (model in eval mode, metadata)."""
    import torch

    from .models.sgdfuse import SGDFuse, SGDFuseConfig

    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"weights path {path} is a folder; pass the weights file (.pt) in it")
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; {RETRAIN_HINT}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign files
        raise WeightsError(
            f"weights file {path} is corrupt or not a torch file ({torch_load_reason(exc)}); "
            f"restore it (git checkout / re-download your training output) or {RETRAIN_HINT}"
        ) from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise WeightsError(
            f"weights file {path} is not an sgdfuse_ros weights file (expected format {FORMAT}); "
            "save weights with sgdfuse_ros.model_io.save_weights"
        )
    try:
        model = SGDFuse(SGDFuseConfig.from_dict(record["config"]))
    except (KeyError, TypeError, ValueError) as exc:  # missing, unknown or mistyped fields
        raise WeightsError(
            f"weights file {path} has an unusable model config ({type(exc).__name__}: {exc}); "
            "it was written by another version of sgdfuse_ros or edited by hand"
        ) from exc
    try:
        model.load_state_dict(record["state_dict"])
    except (KeyError, RuntimeError) as exc:  # torch lists every mismatched tensor, one per line
        problems = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        detail = f"{len(problems)} tensor(s), first: {problems[0]}" if problems else first_line(exc)
        raise WeightsError(f"weights file {path} does not match its own config ({detail})") from exc
    return model.to(device).eval(), dict(record.get("metadata", {}))


def untrained_model(
    config_name: str = "small", seed: int = 0, device: str = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """A randomly initialised model, labelled as such: only ever used when asked for explicitly."""
    import torch

    from .models.sgdfuse import PRESETS, SGDFuse

    torch.manual_seed(seed)
    model = SGDFuse(PRESETS[config_name]()).to(device).eval()
    LOG.warning(
        "using UNTRAINED SGDFuse weights (config %s, seed %d): output is not a trained fusion",
        config_name,
        seed,
    )
    return model, {"trained": False, "config_name": config_name, "seed": seed}
