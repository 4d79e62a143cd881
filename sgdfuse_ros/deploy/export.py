"""ONNX export of every network: Stage I, the K-batched U-Net, each HFAH head, SAM.

Files are exported on demand into a cache directory keyed by the weights' fingerprint, so a
node started with ``backend: onnxruntime`` works without a manual step, and a changed weights
file never reuses stale graphs. ``sgdfuse export --onnx DIR`` writes the same files offline;
``sgdfuse export --engines`` also builds the TensorRT plans from them.

Export uses the TorchScript-based ``torch.onnx.export`` (``dynamo=False``): it needs no extra
package (onnxscript) and handles the dynamic height/width these graphs need.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError
from . import names

LOG = logging.getLogger("sgdfuse_ros")
EXPORT_FORMAT = 5  # bump whenever graphs.py changes what a file contains
OPSET = 17  # supported by ONNX Runtime ≥ 1.14 and TensorRT ≥ 8.6
PRECISIONS = ("fp32", "fp16")  # TensorRT engine precisions; the ONNX files are always fp32
TRACE_HW = (64, 96)  # small, non-square: traced shapes must not leak into the graphs
TRACE_STEPS = 2  # K > 1 while tracing so the K axis is never specialised away
MANIFEST = "manifest.json"


def default_engine_dir() -> Path:
    """Where exported graphs and engines are cached: $SGDFUSE_CACHE_DIR, else the user cache."""
    if os.environ.get("SGDFUSE_CACHE_DIR"):
        return Path(os.environ["SGDFUSE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sgdfuse_ros"


def model_fingerprint(model: Any) -> str:
    """Hash of the configuration, every tensor and the export format: any change → new files."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update(f"export-format-{EXPORT_FORMAT}-opset-{OPSET}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FusionOnnx:
    """The exported fusion graphs of one model (read from their manifest)."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def num_levels(self) -> int:
        return int(self.manifest["num_levels"])

    @property
    def size_multiple(self) -> int:
        return int(self.manifest["size_multiple"])

    @property
    def supported_steps(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.manifest["heads"])

    def path(self, graph: str) -> Path:
        return self.directory / self.manifest["files"][graph]["file"]

    def sha256(self, graph: str) -> str:
        return str(self.manifest["files"][graph]["sha256"])

    def graph_names(self) -> list[str]:
        return ["stage1", "unet", *(names.head_graph_name(k) for k in self.supported_steps)]


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailableError(
            "ONNX export needs the onnx package; install it with `pip install onnx onnxruntime`"
        ) from exc
    return onnx


def _export_graph(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Trace one fp32 module to ONNX and check the file.

    The graphs stay fp32: TensorRT picks fp16 kernels itself (``BuilderFlag.FP16``), and CPU
    autocast cannot produce a real fp16 graph (it leaves convolutions in fp32)."""
    import torch

    onnx = _require_onnx()
    _register_missing_symbolics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter deprecation chatter
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                module,
                args,
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    onnx.checker.check_model(str(path))


def _register_missing_symbolics() -> None:
    """Teach the TorchScript exporter ops ONNX has but it lacks (HFAH's atanh → ONNX Atanh,
    which ONNX Runtime and TensorRT both implement)."""
    import torch

    torch.onnx.register_custom_op_symbolic("aten::atanh", lambda g, x: g.op("Atanh", x), 9)


def _spatial(names: tuple[str, ...], prefix: str = "") -> dict[str, dict[int, str]]:
    return {n: {2: f"{prefix}height", 3: f"{prefix}width"} for n in names}


def export_fusion_onnx(model: Any, out_dir: str | Path) -> FusionOnnx:
    """Export Stage I, the U-Net (K as batch axis) and every HFAH head into ``out_dir``."""
    import torch

    from . import graphs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    h, w = TRACE_HW
    gen = torch.Generator().manual_seed(0)
    ir = torch.rand(1, 1, h, w, generator=gen)
    vis = torch.rand(1, 3, h, w, generator=gen)
    m_ir = torch.rand(1, 1, h, w, generator=gen)
    m_vis = torch.rand(1, 1, h, w, generator=gen)
    files: dict[str, dict[str, Any]] = {}

    def record(graph: str, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        files[graph] = {
            "file": path.name,
            "sha256": file_sha256(path),
            "inputs": list(inputs),
            "outputs": list(outputs),
        }

    stage1_path = out / "stage1.onnx"
    _export_graph(
        graphs.Stage1Graph(model),
        (ir, vis),
        stage1_path,
        graphs.STAGE1_INPUTS,
        graphs.STAGE1_OUTPUTS,
        _spatial(graphs.STAGE1_INPUTS + graphs.STAGE1_OUTPUTS),
    )
    record("stage1", stage1_path, graphs.STAGE1_INPUTS, graphs.STAGE1_OUTPUTS)

    with torch.no_grad():
        f1 = model.stage1(ir, vis)
    levels = len(model.config.unet.decoder_channels)
    feature_names = graphs.feature_names(levels)
    k = TRACE_STEPS
    ts = torch.tensor([float(10 * (i + 1)) for i in range(k)])
    abar = model.schedule.alphas_cumprod[ts.long()]
    unet_args = (
        f1,
        m_ir,
        m_vis,
        torch.randn(k, 5, h, w, generator=gen),
        ts,
        abar.sqrt(),
        (1 - abar).sqrt(),
    )
    unet_axes = {
        **_spatial(("f1", "m_ir", "m_vis")),
        "noise": {0: "steps", 2: "height", 3: "width"},
        "timesteps": {0: "steps"},
        "signal_scale": {0: "steps"},
        "noise_scale": {0: "steps"},
        **{n: {1: f"{n}_channels", 2: f"{n}_height", 3: f"{n}_width"} for n in feature_names},
    }
    unet_path = out / "unet.onnx"
    _export_graph(
        graphs.DiffusionFeaturesGraph(model),
        unet_args,
        unet_path,
        graphs.UNET_INPUTS,
        feature_names,
        unet_axes,
    )
    record("unet", unet_path, graphs.UNET_INPUTS, feature_names)

    for steps in model.supported_steps:
        with torch.no_grad():
            noise = torch.randn(steps, 5, h, w, generator=gen)
            t = torch.tensor([float(x) for x in model.config.timesteps[steps]])
            a = model.schedule.alphas_cumprod[t.long()]
            features = graphs.DiffusionFeaturesGraph(model)(
                f1, m_ir, m_vis, noise, t, a.sqrt(), (1 - a).sqrt()
            )
        name = graphs.head_graph_name(steps)
        inputs = graphs.head_inputs(levels)
        head_path = out / f"{name}.onnx"
        head_axes = {
            **{n: {2: f"{n}_height", 3: f"{n}_width"} for n in feature_names},
            **_spatial(("f1", "vis", "ir") + graphs.HEAD_OUTPUTS),
        }
        _export_graph(
            graphs.HeadGraph(model, steps),
            (*features, f1, vis, ir),
            head_path,
            inputs,
            graphs.HEAD_OUTPUTS,
            head_axes,
        )
        record(name, head_path, inputs, graphs.HEAD_OUTPUTS)

    manifest = {
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "fingerprint": model_fingerprint(model),
        "config": model.config.to_dict(),
        "num_levels": levels,
        "size_multiple": model.config.unet.size_multiple,
        "heads": list(model.supported_steps),
        "timesteps": {str(k): list(v) for k, v in model.config.timesteps.items()},
        "noise_seed": model.config.noise_seed,
        "torch_version": torch.__version__,
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    LOG.info("exported %d ONNX graphs to %s", len(files), out)
    return FusionOnnx(out, json.loads((out / MANIFEST).read_text()))


def load_fusion_onnx(directory: str | Path) -> FusionOnnx | None:
    """The export in ``directory`` if it is complete and intact, else None."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != EXPORT_FORMAT:
        return None
    exported = FusionOnnx(directory, manifest)
    for graph in exported.graph_names():
        if not exported.path(graph).is_file():
            return None
    return exported


def ensure_fusion_onnx(model: Any, engine_dir: str | Path | None = None) -> FusionOnnx:
    """Cached export for these weights: reuse ``<engine_dir>/onnx/<fingerprint>``
    when complete, otherwise export into a temporary folder and move it in place atomically
    (two processes starting together never read a half-written file)."""
    root = Path(engine_dir) if engine_dir is not None else default_engine_dir()
    target = root / "onnx" / model_fingerprint(model)
    cached = load_fusion_onnx(target)
    if cached is not None:
        return cached
    target.parent.mkdir(parents=True, exist_ok=True)
    LOG.info("exporting ONNX graphs for these weights to %s (once per weights file)", target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        export_fusion_onnx(model, staging)
        if target.exists():  # stale or partial leftovers: the fingerprint says they are ours
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            if load_fusion_onnx(target) is None:  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    exported = load_fusion_onnx(target)
    if exported is None:
        raise RuntimeError(f"ONNX export into {target} did not produce a complete manifest")
    return exported


def export_sam_onnx(sam: Any, out_dir: str | Path) -> dict[str, Path]:
    """Export SAM's image encoder (fixed square input) and mask decoder (prompt embeddings in,
    dynamic prompt count and point count) for the given ``segment_anything.Sam``."""
    import torch

    from . import graphs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sam = sam.to("cpu").eval()
    size = int(sam.image_encoder.img_size)
    embed_hw = tuple(sam.prompt_encoder.image_embedding_size)
    embed_dim = int(sam.prompt_encoder.embed_dim)
    gen = torch.Generator().manual_seed(0)
    encoder_path = out / "sam_encoder.onnx"
    _export_graph(
        graphs.SamEncoderGraph(sam),
        (torch.randn(1, 3, size, size, generator=gen),),
        encoder_path,
        graphs.SAM_ENCODER_INPUTS,
        graphs.SAM_ENCODER_OUTPUTS,
        {},
    )
    prompts, points = 2, 3
    decoder_args = (
        torch.randn(1, embed_dim, *embed_hw, generator=gen),
        torch.randn(prompts, points, embed_dim, generator=gen),
        torch.randn(prompts, embed_dim, *embed_hw, generator=gen),
    )
    decoder_path = out / "sam_decoder.onnx"
    _export_graph(
        graphs.SamDecoderGraph(sam),
        decoder_args,
        decoder_path,
        graphs.SAM_DECODER_INPUTS,
        graphs.SAM_DECODER_OUTPUTS,
        {
            "sparse_embeddings": {0: "prompts", 1: "points"},
            "dense_embeddings": {0: "prompts"},
            "low_res_masks": {0: "prompts"},
            "iou_predictions": {0: "prompts"},
        },
    )
    return {"sam_encoder": encoder_path, "sam_decoder": decoder_path}


def fp16_onnx_copy(source: Path) -> Path:
    """An fp16 copy of an fp32 graph (fp32 I/O kept, normalisations and resizes left in fp32),
    for TensorRT ≥ 11, which builds only strongly typed networks and dropped BuilderFlag.FP16."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise BackendUnavailableError(
            "fp16 engines on TensorRT >= 11 need an fp16 ONNX graph; install the converter with "
            "`pip install onnxconverter-common`, or build fp32 engines (--engine-precision fp32)"
        ) from exc
    onnx = _require_onnx()
    target = source.with_name(source.stem + ".fp16.onnx")
    if not target.is_file():
        converted = float16.convert_float_to_float16(
            onnx.load(str(source)),
            keep_io_types=True,
            op_block_list=["InstanceNormalization", "Resize", "Atanh", "Softmax", "ReduceMean"],
        )
        staging = target.with_suffix(".tmp")
        onnx.save(converted, str(staging))
        staging.replace(target)
    return target


# ---------------------------------------------------------------------------------------- CLI
