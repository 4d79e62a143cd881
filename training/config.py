"""The training config as typed, frozen dataclasses, checked when it is loaded.

A YAML file (``training/configs/*.yaml``) plus ``--set key.sub=value`` overrides become one
:class:`TrainingConfig`. Every key is checked against the sections below: a misspelt or unknown
key, a missing required key and a value of the wrong type are a :class:`ConfigError` that names
the key, where it came from (the file or the ``--set`` that gave it) and what is allowed, instead
of silently falling back to a default. The defaults here are the training scripts' defaults; a
field without a default is required.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sgdfuse_ros.models.hfah import HEAD_OUTPUTS
from sgdfuse_ros.models.sgdfuse import PRESETS
from sgdfuse_ros.semantics import PRIOR_BACKEND_KINDS


class ConfigError(ValueError):
    """A training config that cannot be used, with a message that says which key and why."""


def _choices(*values: str) -> dict[str, tuple[str, ...]]:
    """Field metadata: the value must be one of ``values``."""
    return {"choices": values}


def _positive() -> Any:
    """A required integer that must be at least 1 (a count, a size or an interval in steps)."""
    return field(metadata={"min": 1})


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Training folders (random crops) and the validation folder (mosaics, evaluation)."""

    train: tuple[str, ...]
    val: str | None = None
    crop: int = _positive()
    max_side: int = 0  # 0 = keep the frames' size
    vertical_flip: bool = False
    cache_in_memory: bool = True
    num_workers: int = 0
    val_mosaic_pairs: int = 0


@dataclass(frozen=True, kw_only=True)
class PriorsConfig:
    """The prior-map backend (``none`` = all-zero maps) and its on-disk cache."""

    backend: str = field(default="auto", metadata=_choices(*PRIOR_BACKEND_KINDS, "none"))
    sam_model_type: str = "vit_b"
    sam_checkpoint: str | None = None
    cache_dir: str = "runs/priors_cache"
    options: dict[str, Any] = field(default_factory=dict)  # backend settings, checked there


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    lambda_intensity: float
    lambda_gradient: float
    background_weight: float  # pixels outside the priors, Stage II heads loss
    lambda_structure: float = 0.0  # SSIM to both sources; 0 = the paper's loss
    lambda_object: float = 0.0  # Stage II heads: objects keep their prior's source; 0 = paper


@dataclass(frozen=True, kw_only=True)
class Stage1Config:
    run_dir: str
    init_weights: str | None = None  # start from this weights file's Stage I (None = random)
    iters: int
    batch_size: int = _positive()  # per process
    lr: float
    lr_min_ratio: float = 1.0  # cosine decay to lr * lr_min_ratio; 1.0 = constant
    log_every: int = _positive()
    val_every: int = _positive()
    ckpt_every: int = _positive()
    eval_max_pairs: int | None = field(default=None, metadata={"min": 1})  # None: every pair


@dataclass(frozen=True, kw_only=True)
class PhaseConfig:
    """What both Stage II phases share: the length, batch and learning-rate schedule."""

    iters: int
    batch_size: int = _positive()  # per process
    lr: float
    lr_min_ratio: float = 1.0


@dataclass(frozen=True, kw_only=True)
class DenoiserConfig(PhaseConfig):
    max_train_timestep: int | None = None  # None = the model's full DDPM range


@dataclass(frozen=True, kw_only=True)
class HeadsConfig(PhaseConfig):
    steps: tuple[int, ...]  # one HFAH head per K
    output: str | None = field(default=None, metadata=_choices(*HEAD_OUTPUTS))  # None: the file's
    finetune_unet: bool = False
    unet_lr_scale: float = 0.1


@dataclass(frozen=True, kw_only=True)
class Stage2Config:
    run_dir: str
    stage1_weights: str
    denoiser_checkpoint: str | None = None  # None = <run_dir>/denoiser/checkpoint.pt
    reuse_unet: bool = (
        False  # stage1_weights is a full model whose U-Net is trained: no denoiser phase
    )
    denoiser: DenoiserConfig
    heads: HeadsConfig
    log_every: int = _positive()
    val_every: int = _positive()
    ckpt_every: int = _positive()
    eval_steps: tuple[int, ...] = (1,)
    eval_max_pairs: int | None = field(default=None, metadata={"min": 1})
    output: str
    default_steps: int = 1


@dataclass(frozen=True, kw_only=True)
class DetectionConfig:
    """Downstream detection in the end-of-stage evaluation; off while ``model`` is unset."""

    model: str | None = None  # detector file (.tflite), e.g. ../shared/detection/*.tflite
    labels: str | None = None  # folder of YOLO <name>.txt labels, one per validation pair
    classes: str | None = None  # the detector's class names file (None: COCO)
    samples: int = field(default=1000, metadata={"min": 1})  # bootstrap resamples
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    peers: tuple[str, ...] = ()  # folders of other methods' fused images, scored alongside
    workers: int = 1
    detection: DetectionConfig = field(default_factory=DetectionConfig)


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    model: str = field(metadata=_choices(*PRESETS))
    seed: int
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision, CUDA only
    threads: int = 0  # torch CPU threads; 0 = torch's default
    data: DataConfig
    priors: PriorsConfig = field(default_factory=PriorsConfig)
    loss: LossConfig
    stage1: Stage1Config
    stage2: Stage2Config
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Where the config was read from; set by load_config, not a YAML key.
    config_file: str | None = field(default=None, metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML data (lists, dicts; ``config_file`` left out): what a
        checkpoint records, and a file :func:`load_config` reads back to the same config."""
        return _plain(self)


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainingConfig:
    """Read a YAML training config, apply ``key.sub=value`` overrides (values parsed as YAML) and
    check the result; raises :class:`ConfigError` naming the offending key."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as error:
        raise ConfigError(f"cannot read training config {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a training config must be a YAML mapping of sections")
    origins: dict[str, str] = {}  # dotted key -> the --set that gave it (file keys are absent)
    for item in overrides or []:
        key, value = _apply_override(raw, item)
        origins = {k: v for k, v in origins.items() if not k.startswith(key + ".")}
        origins[key] = f"--set {item}"
    config = _build(TrainingConfig, raw, "", _Origins(path, origins))
    return dataclasses.replace(config, config_file=path)


@dataclass(frozen=True)
class _Origins:
    file: str
    overrides: dict[str, str]

    def of(self, key: str) -> str:
        """Where ``key`` came from: the --set that set it or one of its sections, or the file."""
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            origin = self.overrides.get(".".join(parts[:n]))
            if origin:
                return origin
        return self.file


def _apply_override(raw: dict[str, Any], item: str) -> tuple[str, Any]:
    """Set one ``key.sub=value`` in the raw mapping after checking the key against the schema."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r} must look like key.sub=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {item}: the value is not valid YAML: {error}") from error
    *sections, name = key.split(".")
    cls: Any = TrainingConfig  # the schema of the current section; dict = free-form options
    node = raw
    for depth, part in enumerate(sections):
        hint = _override_hint(cls, part, ".".join(sections[:depth]), item)
        if _is_section(hint):
            cls = hint
        elif cls is dict or _origin(hint) is dict:  # into free-form options
            cls = dict
        else:
            path = ".".join(sections[: depth + 1])
            raise ConfigError(f"--set {item}: {path} is a value, not a section")
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    _override_hint(cls, name, ".".join(sections), item)
    node[name] = value
    return key, value


def _override_hint(cls: Any, key: str, prefix: str, item: str) -> Any:
    """The type of ``key`` in the section ``cls`` (any key of a free-form dict), or the error."""
    if cls is dict:
        return Any
    hints = _fields(cls)
    if key not in hints:
        raise ConfigError(_unknown_key_message(cls, key, prefix, f"--set {item}"))
    return hints[key]


def _build(cls: Any, raw: Any, prefix: str, origins: _Origins) -> Any:
    """One section: check its keys, convert each value to its field's type, recurse."""
    where = origins.of(prefix) if prefix else origins.file
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {prefix} must be a mapping of keys, got {raw!r}")
    hints = _fields(cls)
    for key in raw:
        if key not in hints:
            dotted = _join(prefix, str(key))
            raise ConfigError(_unknown_key_message(cls, str(key), prefix, origins.of(dotted)))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        dotted = _join(prefix, f.name)
        hint = hints[f.name]
        if f.name not in raw:
            has_default = f.default is not dataclasses.MISSING
            if not has_default and f.default_factory is dataclasses.MISSING:
                if _is_section(hint) and _all_defaulted(hint):
                    values[f.name] = hint()
                    continue
                raise ConfigError(f"{origins.of(dotted)}: missing required key {dotted}")
            continue
        if _is_section(hint):
            values[f.name] = _build(hint, raw[f.name], dotted, origins)
            continue
        value = _convert(raw[f.name], hint, dotted, origins.of(dotted))
        choices = f.metadata.get("choices")
        if choices is not None and value is not None and value not in choices:
            raise ConfigError(
                f"{origins.of(dotted)}: {dotted} must be one of {', '.join(choices)}; got {value!r}"
            )
        minimum = f.metadata.get("min")
        if minimum is not None and value is not None and value < minimum:
            raise ConfigError(
                f"{origins.of(dotted)}: {dotted} must be at least {minimum}, got {value!r}"
            )
        values[f.name] = value
    return cls(**values)


def _convert(value: Any, hint: Any, key: str, where: str) -> Any:
    """``value`` as the type ``hint`` names, or a ConfigError with the key and expected type."""
    origin, args = _origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        try:
            return _convert(value, inner, key, where)
        except ConfigError:
            raise _type_error(key, hint, value, where) from None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, hint, value, where)
        try:
            return tuple(_convert(v, args[0], key, where) for v in value)
        except ConfigError:
            raise _type_error(key, hint, value, where) from None
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _type_error(key, hint, value, where)
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"no conversion for {hint!r}")
    raise _type_error(key, hint, value, where)


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _type_name(hint: Any) -> str:
    origin, args = _origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in args if a is not type(None)]
        return f"{_type_name(inner)} or null"
    if origin is tuple:
        return f"a list of {_TYPE_NAMES[args[0]].removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    return _TYPE_NAMES[hint]


def _type_error(key: str, hint: Any, value: Any, where: str) -> ConfigError:
    return ConfigError(f"{where}: {key} must be {_type_name(hint)}, got {value!r}")


def _unknown_key_message(cls: Any, key: str, prefix: str, where: str) -> str:
    valid = [name for name in _fields(cls)]
    section = f"section {prefix}" if prefix else "the top level"
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {_join(prefix, close[0])}?)" if close else ""
    return (
        f"{where}: unknown key {_join(prefix, key)}{hint}; valid keys of {section}: "
        + ", ".join(valid)
    )


def _fields(cls: Any) -> dict[str, Any]:
    """Field name -> resolved type of a config dataclass (internal fields left out)."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name] for f in dataclasses.fields(cls) if not f.metadata.get("internal")
    }


def _origin(hint: Any) -> Any:
    return typing.get_origin(hint)


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _all_defaulted(cls: Any) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    )


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.metadata.get("internal")
        }
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
