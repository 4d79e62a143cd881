"""The typed training config: the shipped YAMLs load, and a misspelt key, an unknown key or a
wrong type is an error that names the key, where it came from and what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from training_helpers import tiny_config

from sgdfuse_ros.models.sgdfuse import PRESETS
from training import train_stage1, train_stage2
from training.common import REPO_ROOT
from training.config import ConfigError, TrainingConfig, load_config

CONFIGS = REPO_ROOT / "training" / "configs"
STAGE1_KEYS = "run_dir, init_weights, iters, batch_size, lr, lr_min_ratio, log_every, val_every, ckpt_every, eval_max_pairs"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tiny_config(tmp_path, tmp_path / "train", tmp_path / "val")


def edit(path: Path, change) -> Path:
    """Apply ``change`` to the YAML mapping in ``path`` and write it back."""
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw))
    return path


def error_of(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def test_shipped_configs_load_with_their_values() -> None:
    small = load_config(CONFIGS / "small.yaml")
    paper = load_config(CONFIGS / "paper.yaml")
    for cfg in (small, paper):
        assert isinstance(cfg, TrainingConfig) and cfg.model in PRESETS
        assert cfg.data.crop % PRESETS[cfg.model]().unet.size_multiple == 0
        assert {1, 3} <= set(cfg.stage2.heads.steps)
        assert cfg.loss.lambda_intensity == 1.5 and cfg.loss.lambda_gradient == 1.0
    assert paper.stage1.batch_size == 24 and paper.data.crop == 160 and paper.stage1.lr == 1e-4
    assert paper.threads == 0 and paper.stage2.denoiser.max_train_timestep == 1000
    assert small.threads == 1 and small.data.train == ("../shared/data/train",)
    assert small.stage2.heads.steps == (1, 2, 3) and small.stage2.denoiser.lr == 5e-4
    assert small.stage2.output == "runs/small/weights.pt"
    assert small.priors.backend == "classical" and small.priors.sam_checkpoint is None
    assert small.config_file == str(CONFIGS / "small.yaml")


def test_shipped_heads_config_trains_select_heads_on_small_yamls_output() -> None:
    """small_select.yaml: the shipped default is small.yaml's Stage I and U-Net with selecting
    heads and the object term; data, priors and the head schedule are small.yaml's."""
    small = load_config(CONFIGS / "small.yaml")
    shipped = load_config(CONFIGS / "small_select.yaml")
    s2 = shipped.stage2
    assert s2.stage1_weights == small.stage2.output and s2.reuse_unet
    assert s2.heads.output == "select" and s2.heads.steps == small.stage2.heads.steps
    assert s2.output == "sgdfuse_ros/weights/sgdfuse_small.pt"
    assert shipped.loss.lambda_object == 2.0 and shipped.loss.lambda_gradient == 0.3
    same = ("model", "seed", "threads", "data", "priors", "eval")
    assert all(getattr(shipped, key) == getattr(small, key) for key in same)
    assert s2.heads.batch_size == small.stage2.heads.batch_size
    assert (s2.heads.iters, s2.heads.lr) == (small.stage2.heads.iters, small.stage2.heads.lr)


def test_optional_keys_take_the_training_defaults(config_file: Path) -> None:
    def drop_optional(raw: dict) -> None:
        for key in ("device", "amp", "threads", "priors", "eval"):
            del raw[key]
        for key in ("max_side", "vertical_flip", "cache_in_memory", "num_workers", "val"):
            del raw["data"][key]
        del raw["data"]["val_mosaic_pairs"]
        del raw["stage1"]["lr_min_ratio"], raw["stage1"]["eval_max_pairs"]
        for key in ("eval_steps", "eval_max_pairs", "default_steps"):
            del raw["stage2"][key]
        del raw["stage2"]["denoiser"]["max_train_timestep"]
        for key in ("finetune_unet", "unet_lr_scale"):
            del raw["stage2"]["heads"][key]

    cfg = load_config(edit(config_file, drop_optional))
    assert (cfg.device, cfg.amp, cfg.threads) == ("auto", True, 0)
    assert (cfg.data.val, cfg.data.max_side, cfg.data.vertical_flip) == (None, 0, False)
    assert (cfg.data.cache_in_memory, cfg.data.num_workers, cfg.data.val_mosaic_pairs) == (
        True,
        0,
        0,
    )
    assert (cfg.priors.backend, cfg.priors.cache_dir, cfg.priors.options) == (
        "auto",
        "runs/priors_cache",
        {},
    )
    assert cfg.stage1.lr_min_ratio == 1.0 and cfg.stage1.eval_max_pairs is None
    assert (
        cfg.stage2.denoiser.lr_min_ratio == 1.0 and cfg.stage2.denoiser.max_train_timestep is None
    )
    assert cfg.stage2.heads.finetune_unet is False and cfg.stage2.heads.unet_lr_scale == 0.1
    assert (cfg.stage2.eval_steps, cfg.stage2.default_steps, cfg.stage2.denoiser_checkpoint) == (
        (1,),
        1,
        None,
    )
    assert (cfg.eval.peers, cfg.eval.workers) == ((), 1)


def test_unknown_key_in_the_file_names_key_file_and_valid_keys(config_file: Path) -> None:
    edit(config_file, lambda raw: raw["stage1"].update(lr_min_ration=0.5))
    message = error_of(config_file)
    assert message.startswith(f"{config_file}: unknown key stage1.lr_min_ration")
    assert "did you mean stage1.lr_min_ratio?" in message
    assert message.endswith(f"valid keys of section stage1: {STAGE1_KEYS}")


def test_unknown_nested_and_top_level_keys(config_file: Path) -> None:
    edit(config_file, lambda raw: raw["stage2"]["heads"].update(step=[1]))
    message = error_of(config_file)
    assert "unknown key stage2.heads.step " in message and "section stage2.heads:" in message
    assert "steps, output, finetune_unet, unet_lr_scale" in message
    edit(config_file, lambda raw: (raw["stage2"]["heads"].pop("step"), raw.update(sed=1)))
    message = error_of(config_file)
    assert (
        "unknown key sed (did you mean seed?)" in message
        and "valid keys of the top level" in message
    )


def test_misspelt_set_key_names_the_override(config_file: Path) -> None:
    message = error_of(config_file, ["stage1.iters=5", "stage1.iter=5"])
    assert message.startswith("--set stage1.iter=5: unknown key stage1.iter")
    assert "did you mean stage1.iters?" in message and STAGE1_KEYS in message
    message = error_of(config_file, ["stage3.iters=5"])
    assert "unknown key stage3" in message and "stage1, stage2, eval" in message
    message = error_of(config_file, ["stage1.iters.max=5"])
    assert message == "--set stage1.iters.max=5: stage1.iters is a value, not a section"
    assert "key.sub=value" in error_of(config_file, ["stage1.iters"])


def test_wrong_types_name_key_expected_type_and_value(config_file: Path) -> None:
    assert error_of(config_file, ["stage1.iters=ten"]) == (
        "--set stage1.iters=ten: stage1.iters must be an integer, got 'ten'"
    )
    edit(config_file, lambda raw: raw["stage1"].update(batch_size=2.5))
    assert error_of(config_file) == f"{config_file}: stage1.batch_size must be an integer, got 2.5"
    edit(config_file, lambda raw: raw["stage1"].update(batch_size=2))
    message = error_of(config_file, ["stage2.heads.finetune_unet=1"])
    assert message.endswith("stage2.heads.finetune_unet must be true or false, got 1")
    message = error_of(config_file, ["stage2.heads.steps=[1, three]"])
    assert message.endswith("stage2.heads.steps must be a list of integers, got [1, 'three']")
    assert error_of(config_file, ["data.train=/data"]).endswith(
        "data.train must be a list of strings, got '/data'"
    )
    assert error_of(config_file, ["stage1.eval_max_pairs=all"]).endswith(
        "stage1.eval_max_pairs must be an integer or null, got 'all'"
    )
    assert error_of(config_file, ["loss.lambda_gradient=true"]).endswith(
        "loss.lambda_gradient must be a number, got True"
    )
    assert error_of(config_file, ["priors.backend=sam2"]).endswith(
        "priors.backend must be one of auto, sam, classical, none; got 'sam2'"
    )
    assert error_of(config_file, ["stage2.heads.output=blend"]).endswith(
        "stage2.heads.output must be one of correction, sources, select; got 'blend'"
    )
    assert "model must be one of" in error_of(config_file, ["model=huge"])
    assert error_of(config_file, ["stage2.ckpt_every=0"]).endswith(
        "stage2.ckpt_every must be at least 1, got 0"
    )
    # 0 pairs would fail minutes later, after training, with "no usable IR/VIS pairs".
    assert error_of(config_file, ["stage2.eval_max_pairs=0"]).endswith(
        "stage2.eval_max_pairs must be at least 1, got 0"
    )
    assert load_config(config_file, ["stage2.eval_max_pairs=null"]).stage2.eval_max_pairs is None


def test_overrides_set_values_with_yaml_types(config_file: Path) -> None:
    cfg = load_config(
        config_file,
        [
            "stage1.iters=7",
            "stage1.lr=1e-4",  # PyYAML reads this as a string: still a number here
            "stage2.heads.steps=[1]",
            "stage2.denoiser_checkpoint=/x/checkpoint.pt",
            "priors.options.points_per_side=8",
            "stage1.eval_max_pairs=null",
        ],
    )
    assert cfg.stage1.iters == 7 and cfg.stage1.lr == 1e-4 and cfg.stage2.heads.steps == (1,)
    assert cfg.stage2.denoiser_checkpoint == "/x/checkpoint.pt"
    assert cfg.priors.options == {"points_per_side": 8} and cfg.stage1.eval_max_pairs is None


def test_missing_required_key_and_bad_files(config_file: Path, tmp_path: Path) -> None:
    edit(config_file, lambda raw: raw["stage2"]["heads"].pop("steps"))
    assert error_of(config_file) == f"{config_file}: missing required key stage2.heads.steps"
    replaced = "stage2.denoiser={iters: 3, batch_size: 1}"
    assert error_of(config_file, [replaced]) == (
        f"--set {replaced}: missing required key stage2.denoiser.lr"
    )
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n")
    assert "must be a YAML mapping" in error_of(listing)
    assert "cannot read training config" in error_of(tmp_path / "absent.yaml")


def test_config_is_frozen_and_round_trips_through_plain_data(config_file: Path) -> None:
    cfg = load_config(config_file)
    with pytest.raises(AttributeError):
        cfg.stage1.iters = 5  # type: ignore[misc]
    plain = cfg.to_dict()
    assert plain["stage2"]["heads"]["steps"] == [1, 3] and "config_file" not in plain
    copy = config_file.with_name("copy.yaml")
    copy.write_text(yaml.safe_dump(plain))
    assert load_config(copy) == dataclasses.replace(cfg, config_file=str(copy))


@pytest.mark.parametrize("script", [train_stage1, train_stage2])
def test_training_commands_stop_on_a_bad_key_before_training(
    script, config_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        script.main(["--config", str(config_file), "--set", "stage2.heads.itres=3"])
    assert str(info.value).startswith("error: --set stage2.heads.itres=3: unknown key")
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists()


def test_stage2_without_stage1_weights_is_one_error_line(config_file: Path) -> None:
    with pytest.raises(SystemExit) as info:
        train_stage2.main(["--config", str(config_file)])
    message = str(info.value)
    assert message.startswith("error: stage2.stage1_weights: weights file ")
    assert "does not exist" in message and "\n" not in message


def test_shipped_weights_are_what_their_training_config_says() -> None:
    """The default weights file names the config that trained it, and its head form, K values
    and head loss are that config's: the README's reproduction command gives these weights."""
    import json

    from sgdfuse_ros.model_io import DEFAULT_WEIGHTS, load_weights

    model, meta = load_weights(DEFAULT_WEIGHTS)
    cfg = load_config(REPO_ROOT / meta["training_config"])
    assert cfg.stage2.output == str(DEFAULT_WEIGHTS.relative_to(REPO_ROOT))
    assert model.config.head_output == cfg.stage2.heads.output
    assert meta["supported_steps"] == list(cfg.stage2.heads.steps)
    heads = meta["stage2"]["heads"]
    assert (
        heads["loss"] == dataclasses.asdict(cfg.loss) and heads["iters"] == cfg.stage2.heads.iters
    )
    assert meta["prior_backend"] == cfg.priors.backend
    sidecar = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert sidecar["metadata"]["metrics"] == json.loads(json.dumps(meta["metrics"]))
