"""The node's parameters: one table (name, default, meaning) and their validation.

The table is the single source: the node declares from it, tests check that
config/sgdfuse.yaml and the README list exactly these names, and ``NodeSettings`` turns the
values into checked settings, so a typo in a parameter file fails at configure with a message
instead of at the first frame. Nothing here imports rclpy.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sgdfuse_ros.io.image_codec import SUPPORTED_OUTPUT_ENCODINGS, AgcSettings
from sgdfuse_ros.io.registration import REGISTRATION_MODES, Registration
from sgdfuse_ros.options import PipelineOptions
from sgdfuse_ros.ros.parameter_files import GivenValue, ParameterFileError, rcl_scalar

QOS_CHOICES = ("sensor_data", "reliable", "system_default", "auto")
# 2048 × 2048 = 4 MiP: above every thermal camera and 1080p / 2048×1536 RGB, below the 12 MP
# frame that took ~100 s and peaked at 8 GB on CPU (fusion memory grows with the pixel count).
DEFAULT_MAX_INPUT_PIXELS = 2048 * 2048
TRANSPORTS = ("raw", "compressed")
SYNC_BACKENDS = ("auto", "message_filters", "sgdfuse_ros")

# PipelineOptions field -> node parameter. ROS parameters have no null: "" / 0 stand for None,
# and inference.fp16 true means "half precision where it helps" (None: on CUDA only).
PIPELINE_PARAMETERS: dict[str, str] = {
    "weights": "weights",
    "device": "device",
    "steps": "steps",
    "backend": "inference.backend",
    "prior_backend": "prior.backend",
    "sam_model_type": "prior.sam_model_type",
    "sam_checkpoint": "prior.sam_checkpoint",
    "prior_refresh_every": "prior.refresh_every",
    "allow_untrained": "allow_untrained",
    "resize_mismatched": "resize_mismatched",
    "fp16": "inference.fp16",
    "engine_dir": "inference.engine_dir",
    "engine_build": "inference.engine_build",
    "cpu_threads": "inference.cpu_threads",
}


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "autostart",
        True,
        "Configure and activate right after start; false leaves the lifecycle node "
        "unconfigured for a lifecycle manager.",
    ),
    ParameterSpec("device", "cpu", "Torch device for inference: cpu, cuda or cuda:N."),
    ParameterSpec("weights", "", "Weights file; empty uses the weights shipped with the package."),
    ParameterSpec(
        "allow_untrained",
        False,
        "Run with randomly initialised networks when no weights exist (tests and CI "
        "only; logged as a warning, output is not a real fusion).",
    ),
    ParameterSpec(
        "resize_mismatched",
        False,
        "Resize the thermal frame to the RGB size when they differ (after registration); "
        "false counts such pairs as bad input.",
    ),
    ParameterSpec(
        "steps",
        0,
        "Diffusion steps K (timesteps whose U-Net passes feed the head); 0 uses the "
        "weights' default. 1 is the real-time setting.",
    ),
    ParameterSpec(
        "prior.backend",
        "auto",
        "Semantic prior backend: auto (SAM when a checkpoint is set, else classical), "
        "sam or classical.",
    ),
    ParameterSpec("prior.sam_model_type", "vit_b", "SAM variant: vit_b, vit_l or vit_h."),
    ParameterSpec("prior.sam_checkpoint", "", "SAM checkpoint file; empty means none."),
    ParameterSpec(
        "prior.refresh_every",
        1,
        "Recompute the semantic priors every N frames and reuse them in between.",
    ),
    ParameterSpec(
        "inference.backend",
        "torch",
        "Runtime of the networks: torch (eager), onnxruntime (CPU or CUDA execution provider; "
        "graphs exported on first use) or tensorrt (CUDA; plans from the engine cache).",
    ),
    ParameterSpec(
        "inference.fp16",
        True,
        "Half precision on CUDA (torch autocast, fp16 TensorRT plans); false runs fp32. The CPU "
        "always runs fp32.",
    ),
    ParameterSpec(
        "inference.engine_dir",
        "",
        "Cache of exported ONNX graphs and TensorRT plans; empty = $SGDFUSE_CACHE_DIR or "
        "~/.cache/sgdfuse_ros.",
    ),
    ParameterSpec(
        "inference.engine_build",
        "background",
        "tensorrt without a cached plan for this GPU and frame size: background (build on a "
        "worker thread while torch fuses), blocking (the first frame of that size waits for "
        "the build) or never (no build: frames fail as pipeline errors whose log names the "
        "`sgdfuse export --engines` command). SAM's plans are built during configure unless "
        "never.",
    ),
    ParameterSpec(
        "inference.cpu_threads",
        0,
        "CPU inference threads (torch intra-op, onnxruntime session threads); 0 keeps the "
        "runtime's default (one per core). Set it to bound the node's CPU use on a computer "
        "shared with other nodes.",
    ),
    ParameterSpec(
        "sync.slop",
        0.05,
        "Largest stamp difference (seconds) between a thermal and an RGB frame that "
        "still form a pair.",
    ),
    ParameterSpec("sync.queue_size", 10, "Messages kept per topic while waiting for a partner."),
    ParameterSpec(
        "sync.backend",
        "auto",
        "auto (message_filters when importable, else the package's own), "
        "message_filters or sgdfuse_ros.",
    ),
    ParameterSpec(
        "input_qos",
        "auto",
        "QoS of both image subscriptions: auto (reliable when every publisher offers it, else "
        "best effort; rechecked every 2 s), sensor_data (best effort), reliable or "
        "system_default.",
    ),
    ParameterSpec(
        "qos.thermal", "", "Override input_qos for the thermal topic; empty = input_qos."
    ),
    ParameterSpec("qos.rgb", "", "Override input_qos for the RGB topic; empty = input_qos."),
    ParameterSpec("qos.depth", 5, "History depth of the image subscriptions."),
    ParameterSpec(
        "thermal.transport",
        "raw",
        "raw (sensor_msgs/Image on thermal/image_raw) or compressed "
        "(sensor_msgs/CompressedImage on thermal/image_raw/compressed).",
    ),
    ParameterSpec("rgb.transport", "raw", "raw or compressed, as thermal.transport."),
    ParameterSpec(
        "max_input_pixels",
        DEFAULT_MAX_INPUT_PIXELS,
        "Largest input frame (width × height) the node decodes; larger frames are rejected "
        "from their header, before any pixel is copied, and counted as "
        "bad_input.<topic>:too_large. 0 = no limit.",
    ),
    ParameterSpec(
        "thermal.agc.mode",
        "percentile",
        "Gain control for 16-bit / float thermal: percentile, minmax or fixed.",
    ),
    ParameterSpec(
        "thermal.agc.percentiles",
        [1.0, 99.0],
        "Low and high percentile mapped to black and white in percentile mode.",
    ),
    ParameterSpec(
        "thermal.agc.fixed_range",
        [0.0, 65535.0],
        "Low and high raw value (camera units) mapped to black and white in fixed mode.",
    ),
    ParameterSpec(
        "registration.mode",
        "none",
        "none (same size required) or homography (warp thermal into the RGB image).",
    ),
    ParameterSpec(
        "registration.homography",
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "Row-major 3×3 matrix mapping thermal pixel coordinates to RGB pixel coordinates (floats).",
    ),
    ParameterSpec("output.encoding", "rgb8", "Encoding of fused/image: rgb8, bgr8 or mono8."),
    ParameterSpec(
        "debug.publish_priors",
        False,
        "Publish fused/priors (rgb8: red = thermal prior, green = visible prior).",
    ),
    ParameterSpec(
        "debug.publish_stage1", False, "Publish fused/stage1, the Stage I preliminary fusion F1."
    ),
    ParameterSpec("diagnostics.period", 1.0, "Seconds between /diagnostics messages."),
    ParameterSpec(
        "watchdog.timeout",
        5.0,
        "Warn when one image topic is silent, or both carry traffic but nothing "
        "synced, for this many seconds.",
    ),
    ParameterSpec(
        "log_throttle_period",
        5.0,
        "Seconds between repeated log lines about the same recurring problem.",
    ),
)

DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        kinds = sorted({_type_name(item) for item in value})
        return f"{' and '.join(kinds)} array" if kinds else "empty array"
    names = {bool: "bool", int: "integer", float: "double", str: "string"}
    return names.get(type(value), type(value).__name__)


def _given(value: Any) -> str:
    shown = (
        f"{value!r}"
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    return f"{_type_name(value)} {shown}"


def _exact_float(value: Any) -> float | None:
    """An integer as a double when the conversion is exact (0 -> 0.0); None otherwise."""
    if type(value) is float:
        return value
    if type(value) is int and int(float(value)) == value:
        return float(value)
    return None


def coerce_value(given: GivenValue) -> Any:
    """The value of a declared parameter in its declared type (the type of its default).

    Only exact, unambiguous conversions are made: an integer where a double is declared
    (``sync.slop: 0`` -> 0.0, integer items of a double array) and a whole double where an
    integer is (``steps: 2.0`` -> 2). Everything else, a quoted number included (``steps: "3"``
    is a string in YAML), raises ParameterFileError naming the parameter, the expected type, the
    value given and its source.
    """
    expected, value = DEFAULTS[given.name], given.value
    result: Any = None
    if type(expected) is bool:
        result = value if type(value) is bool else None
    elif type(expected) is int:
        if type(value) is int:
            result = value
        elif type(value) is float and value.is_integer():
            result = int(value)
    elif type(expected) is float:
        result = _exact_float(value)
    elif type(expected) is str:
        result = value if type(value) is str else None
    elif isinstance(expected, list) and isinstance(value, list) and value:
        items = [_exact_float(item) for item in value]
        result = None if any(item is None for item in items) else items
    if result is None:
        hint = ""
        if type(value) is str and type(rcl_scalar(value)) in (int, float):
            hint = "; write the number without quotes (quoted, it is a string)"
        raise ParameterFileError(
            f"parameter {given.name} in {given.source}: expected {_type_name(expected)}, "
            f"got {_given(value)}{hint}"
        )
    return result


def check_given_values(
    given: Iterable[GivenValue], also_known: Iterable[str] = ()
) -> dict[str, Any]:
    """The given values of the node's parameters in their declared types; ParameterFileError (one
    line) for a value of the wrong type or for names the node does not have (``also_known``:
    parameters rclpy declares itself, such as use_sim_time), each with a did-you-mean."""
    given = list(given)
    known = set(DEFAULTS) | set(also_known)
    unknown = [item for item in given if item.name not in known]
    if unknown:
        problems = []
        for item in unknown:
            close = difflib.get_close_matches(item.name, sorted(known), n=1, cutoff=0.6)
            suggestion = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{item.name} in {item.source}{suggestion}")
        raise ParameterFileError(
            "unknown parameter" + ("s " if len(problems) > 1 else " ") + "; ".join(problems)
        )
    return {item.name: coerce_value(item) for item in given if item.name in DEFAULTS}


def _choice(values: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = str(values[name])
    if value not in choices:
        raise ValueError(f"parameter {name}={value!r} is not one of: " + ", ".join(choices))
    return value


MAX_SECONDS = 1e6  # ~11 days: beyond it rclpy's timers and durations overflow


def _positive(
    values: dict[str, Any], name: str, allow_zero: bool = False, minimum: float = 0.0
) -> float:
    """A duration in seconds: finite, at most MAX_SECONDS, above 0 (or ``minimum``), or 0 when
    ``allow_zero``. NaN or inf would pass a plain comparison and fail later, unnamed, in rclpy."""
    value = float(values[name])
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ValueError(f"parameter {name}={value} must be a finite number of seconds <= 1e6")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"parameter {name}={value} must be {'>= 0' if allow_zero else '> 0'}")
    if 0 < value < minimum:
        raise ValueError(f"parameter {name}={value} must be >= {minimum}")
    return value


def _pair(values: dict[str, Any], name: str) -> tuple[float, float]:
    items = [float(v) for v in values[name]]
    if len(items) != 2:
        raise ValueError(f"parameter {name} needs two numbers [low, high], got {items}")
    return items[0], items[1]


@dataclass(frozen=True)
class NodeSettings:
    """Validated node configuration (read once per configure transition)."""

    pipeline: PipelineOptions
    sync_slop: float
    sync_queue_size: int
    sync_backend: str
    thermal_qos: str
    rgb_qos: str
    qos_depth: int
    thermal_transport: str
    rgb_transport: str
    max_input_pixels: int
    agc: AgcSettings
    registration: Registration
    output_encoding: str
    publish_priors: bool
    publish_stage1: bool
    diagnostics_period: float
    watchdog_timeout: float
    log_throttle_period: float

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeSettings:
        """Check every value; raise ValueError naming the parameter at fault."""
        unknown = set(values) - set(DEFAULTS)
        if unknown:
            raise ValueError("unknown parameters: " + ", ".join(sorted(unknown)))
        merged = {**DEFAULTS, **values}
        input_qos = _choice(merged, "input_qos", QOS_CHOICES)
        overrides = {}
        for topic in ("thermal", "rgb"):
            override = str(merged[f"qos.{topic}"])
            if override and override not in QOS_CHOICES:
                raise ValueError(
                    f"parameter qos.{topic}={override!r} is not empty or one of: "
                    + ", ".join(QOS_CHOICES)
                )
            overrides[topic] = override or input_qos
        queue_size = int(merged["sync.queue_size"])
        if queue_size < 1:
            raise ValueError(f"parameter sync.queue_size={queue_size} must be >= 1")
        depth = int(merged["qos.depth"])
        if depth < 1:
            raise ValueError(f"parameter qos.depth={depth} must be >= 1")
        max_input_pixels = int(merged["max_input_pixels"])
        if max_input_pixels < 0:
            raise ValueError(f"parameter max_input_pixels={max_input_pixels} must be >= 0")
        agc_mode = _choice(merged, "thermal.agc.mode", ("percentile", "minmax", "fixed"))
        try:
            agc = AgcSettings(
                mode=agc_mode,  # type: ignore[arg-type]
                percentiles=_pair(merged, "thermal.agc.percentiles"),
                fixed_range=_pair(merged, "thermal.agc.fixed_range"),
            )
        except ValueError as error:  # AgcSettings speaks of its fields, not the parameters
            name = "fixed_range" if agc_mode == "fixed" else "percentiles"
            raise ValueError(f"parameter thermal.agc.{name}: {error}") from None
        registration = Registration.from_parameters(
            _choice(merged, "registration.mode", REGISTRATION_MODES),
            list(merged["registration.homography"]),
        )
        return cls(
            pipeline=pipeline_options(merged),
            sync_slop=_positive(merged, "sync.slop", allow_zero=True),
            sync_queue_size=queue_size,
            sync_backend=_choice(merged, "sync.backend", SYNC_BACKENDS),
            thermal_qos=overrides["thermal"],
            rgb_qos=overrides["rgb"],
            qos_depth=depth,
            thermal_transport=_choice(merged, "thermal.transport", TRANSPORTS),
            rgb_transport=_choice(merged, "rgb.transport", TRANSPORTS),
            max_input_pixels=max_input_pixels,
            agc=agc,
            registration=registration,
            output_encoding=_choice(merged, "output.encoding", SUPPORTED_OUTPUT_ENCODINGS),
            publish_priors=bool(merged["debug.publish_priors"]),
            publish_stage1=bool(merged["debug.publish_stage1"]),
            diagnostics_period=_positive(merged, "diagnostics.period", minimum=0.01),
            watchdog_timeout=_positive(merged, "watchdog.timeout"),
            log_throttle_period=_positive(merged, "log_throttle_period", allow_zero=True),
        )


def pipeline_options(values: dict[str, Any]) -> PipelineOptions:
    """The node's parameter values (all of them, defaults filled in) as PipelineOptions."""
    raw = {field: values[name] for field, name in PIPELINE_PARAMETERS.items()}
    for field in ("steps", "cpu_threads"):  # 0, not None, is the node's "automatic"
        if int(raw[field]) < 0:
            name = PIPELINE_PARAMETERS[field]
            raise ValueError(f"parameter {name}={raw[field]} must be >= 0 (0: automatic)")
    try:
        return PipelineOptions(
            weights=str(raw["weights"]) or None,
            device=str(raw["device"]) or "cpu",
            steps=int(raw["steps"]) or None,
            backend=str(raw["backend"]),
            prior_backend=str(raw["prior_backend"]),
            sam_model_type=str(raw["sam_model_type"]),
            sam_checkpoint=str(raw["sam_checkpoint"]) or None,
            prior_refresh_every=int(raw["prior_refresh_every"]),
            allow_untrained=bool(raw["allow_untrained"]),
            resize_mismatched=bool(raw["resize_mismatched"]),
            fp16=None if raw["fp16"] else False,
            engine_dir=str(raw["engine_dir"]) or None,
            engine_build=str(raw["engine_build"]),
            cpu_threads=int(raw["cpu_threads"]) or None,
        )
    except ValueError as error:  # name the node parameter, not the dataclass field
        message = str(error)
        for field, name in PIPELINE_PARAMETERS.items():
            if message.startswith(f"{field}="):
                message = f"parameter {name}" + message[len(field) :]
                break
        raise ValueError(message) from error


def parameters_for(options: PipelineOptions) -> dict[str, Any]:
    """The node parameter values that give ``options`` (demo, tests: launch with the CLI's flags)."""
    return {
        "weights": options.weights or "",
        "device": options.device,
        "steps": options.steps or 0,
        "inference.backend": options.backend,
        "prior.backend": options.prior_backend,
        "prior.sam_model_type": options.sam_model_type,
        "prior.sam_checkpoint": options.sam_checkpoint or "",
        "prior.refresh_every": options.prior_refresh_every,
        "allow_untrained": options.allow_untrained,
        "resize_mismatched": options.resize_mismatched,
        "inference.fp16": options.fp16 is not False,
        "inference.engine_dir": options.engine_dir or "",
        "inference.engine_build": options.engine_build,
        "inference.cpu_threads": options.cpu_threads or 0,
    }
