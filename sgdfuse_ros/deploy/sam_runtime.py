"""SAM's image encoder and mask decoder on ONNX Runtime or TensorRT, inside the SAM prior backend.

``install_sam_runtime`` swaps ``sam.image_encoder`` and ``sam.mask_decoder`` of a
``SamPriorBackend`` for modules that run the exported graphs, keeping the call signatures of
segment_anything's modules. Everything else (prompt selection, the prompt encoder — a few table
look-ups —, IoU / stability filtering, the soft union, resizing) stays the backend's own code,
so the priors are the same computation, only the two heavy networks change runtime.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import BUILD_MODES, require_onnxruntime
from .engine_cache import EngineCache, EngineKey, EngineMissingError, ProfileEntry
from .export import default_engine_dir, export_sam_onnx, file_sha256

LOG = logging.getLogger("sgdfuse_ros")
MAX_PROMPTS = 256  # TensorRT decoder profile: prompts per call (grid + hot spots)
SAM_ONNX_FORMAT = 1


def sam_fingerprint(sam: Any) -> str:
    import hashlib

    digest = hashlib.sha256(f"sam-export-{SAM_ONNX_FORMAT}".encode())
    for name, tensor in sorted(sam.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def ensure_sam_onnx(sam: Any, engine_dir: str | Path | None = None) -> dict[str, Path]:
    """SAM graphs cached under ``<engine_dir>/onnx/sam-<fingerprint>`` (exported once)."""
    root = Path(engine_dir) if engine_dir is not None else default_engine_dir()
    target = root / "onnx" / f"sam-{sam_fingerprint(sam)}"
    paths = {name: target / f"{name}.onnx" for name in ("sam_encoder", "sam_decoder")}
    if all(p.is_file() for p in paths.values()):
        return paths
    staging = target.with_name(target.name + ".partial")
    exported = export_sam_onnx(sam, staging)
    target.mkdir(parents=True, exist_ok=True)
    for name, path in exported.items():
        path.replace(paths[name])  # decoder and encoder land whole or not at all
    staging.rmdir()
    return paths


class RuntimeImageEncoder(nn.Module):
    """Drop-in for ``sam.image_encoder``: (1, 3, S, S) → (1, C, S/16, S/16)."""

    def __init__(self, run: Any, img_size: int) -> None:
        super().__init__()
        self.run = run
        self.img_size = img_size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.run({"image": image.float().contiguous()})["image_embeddings"]


class RuntimeMaskDecoder(nn.Module):
    """Drop-in for ``sam.mask_decoder`` (same arguments, same mask-slice selection)."""

    def __init__(self, run: Any) -> None:
        super().__init__()
        self.run = run

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        del image_pe  # baked into the exported graph (it is a constant of the prompt encoder)
        out = self.run(
            {
                "image_embeddings": image_embeddings.float().contiguous(),
                "sparse_embeddings": sparse_prompt_embeddings.float().contiguous(),
                "dense_embeddings": dense_prompt_embeddings.float().contiguous(),
            }
        )
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return out["low_res_masks"][:, chosen], out["iou_predictions"][:, chosen]


def _onnxruntime_callable(path: Path, device: str) -> Any:
    from .onnx_runner import providers_for

    ort = require_onnxruntime()
    providers, _, _ = providers_for(device, ort.get_available_providers())
    session = ort.InferenceSession(str(path), providers=providers)
    names = [o.name for o in session.get_outputs()]

    def run(feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        target = next(iter(feeds.values())).device
        outputs = session.run(names, {k: v.detach().cpu().numpy() for k, v in feeds.items()})
        return {n: torch.from_numpy(o).to(target) for n, o in zip(names, outputs, strict=True)}

    return run


def build_sam_engines(
    sam: Any, engine_dir: str | Path | None, device: str = "cuda", fp16: bool = True
) -> dict[str, Path]:
    """Offline build (``sgdfuse export --engines --sam-checkpoint …``) of SAM's two plans."""
    paths = ensure_sam_onnx(sam, engine_dir)
    plans: dict[str, Path] = {}
    _tensorrt_callables(sam, paths, device, fp16, engine_dir, plans)
    return plans


def _tensorrt_callables(
    sam: Any,
    paths: dict[str, Path],
    device: str,
    fp16: bool,
    engine_dir: str | Path | None,
    plans: dict[str, Path] | None = None,
    allow_build: bool = True,
) -> tuple[Any, Any]:
    from . import require_tensorrt
    from .tensorrt_runner import TensorRTBuilder, TrtGraph

    trt = require_tensorrt()
    dev = torch.device(device)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    builder = TensorRTBuilder(trt)
    root = Path(engine_dir) if engine_dir is not None else default_engine_dir()
    cache = EngineCache(
        root / "tensorrt",
        builder.deserialize,
        lambda key: builder.build(paths[key.graph], key.profile, fp16),
    )
    size = int(sam.image_encoder.img_size)
    dim = int(sam.prompt_encoder.embed_dim)
    grid = tuple(int(g) for g in sam.prompt_encoder.image_embedding_size)
    profiles = {
        "sam_encoder": (ProfileEntry.fixed("image", (1, 3, size, size)),),
        "sam_decoder": (
            ProfileEntry.fixed("image_embeddings", (1, dim, *grid)),
            ProfileEntry("sparse_embeddings", (1, 1, dim), (64, 2, dim), (MAX_PROMPTS, 3, dim)),
            ProfileEntry(
                "dense_embeddings", (1, dim, *grid), (64, dim, *grid), (MAX_PROMPTS, dim, *grid)
            ),
        ),
    }

    def engine(graph: str) -> Any:
        key = EngineKey(
            graph=graph,
            onnx_sha256=file_sha256(paths[graph]),
            tensorrt_version=str(trt.__version__),
            gpu_name=torch.cuda.get_device_name(index),
            compute_capability=tuple(int(c) for c in torch.cuda.get_device_capability(index)),
            precision="fp16" if fp16 else "fp32",
            profile=profiles[graph],
        )
        with torch.cuda.device(index):
            loaded = cache.load(key, allow_build=allow_build)
            compiled = TrtGraph(trt, loaded)
            compiled.runtime = builder.runtime  # a TensorRT runtime must outlive its engines
        if plans is not None:
            plans[graph] = loaded.path

        def run(feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            # Enqueued on the caller's current stream, like the torch modules it replaces:
            # no extra synchronisation and no cross-stream buffer lifetimes.
            stream = torch.cuda.current_stream(dev)
            return compiled(torch, {k: v.to(dev) for k, v in feeds.items()}, stream)

        return run

    return engine("sam_encoder"), engine("sam_decoder")


def install_sam_runtime(
    prior_backend: Any,
    backend: str,
    device: str = "cpu",
    fp16: bool = True,
    engine_dir: str | Path | None = None,
    build: str = "blocking",
) -> Future | None:
    """Run ``prior_backend``'s SAM encoder and decoder on ``backend`` from now on.

    ``build`` decides what tensorrt does about missing plans: "blocking" builds them before
    returning, "never" raises ``EngineMissingError`` naming the export command, "background"
    builds them on a worker thread while SAM keeps running on torch and switches when they are
    ready (a node's executor never waits minutes on a build). Returns that build's Future, or
    None when the runtime is in place on return.
    """
    if build not in BUILD_MODES:
        raise ValueError(f"build must be one of {BUILD_MODES}, got {build!r}")
    sam = prior_backend.sam
    if isinstance(sam.image_encoder, RuntimeImageEncoder):
        return None
    paths = ensure_sam_onnx(sam, engine_dir)
    if backend == "onnxruntime":
        encoder, decoder = (
            _onnxruntime_callable(paths[g], device) for g in ("sam_encoder", "sam_decoder")
        )
        _switch(sam, encoder, decoder, backend, device)
        return None
    if backend != "tensorrt":
        raise ValueError(f"SAM runtime backend must be onnxruntime or tensorrt, got {backend!r}")

    def install(allow_build: bool) -> None:
        encoder, decoder = _tensorrt_callables(
            sam, paths, device, fp16, engine_dir, allow_build=allow_build
        )
        _switch(sam, encoder, decoder, backend, device)

    if build != "background":
        install(allow_build=build == "blocking")
        return None
    try:
        install(allow_build=False)  # cached plans load in seconds
        return None
    except EngineMissingError as exc:
        LOG.warning(
            "SAM TensorRT plans not ready (%s); building them in the background, "
            "SAM runs on torch meanwhile",
            exc,
        )
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam-trt-build")
    future = worker.submit(install, True)
    worker.shutdown(wait=False)
    future.add_done_callback(_log_failed_build)
    return future


def _switch(sam: Any, encoder: Any, decoder: Any, backend: str, device: str) -> None:
    # Two attribute assignments: a frame in flight may pair a torch encoder output with the
    # runtime decoder once, which is the same computation.
    sam.image_encoder = RuntimeImageEncoder(encoder, int(sam.image_encoder.img_size))
    sam.mask_decoder = RuntimeMaskDecoder(decoder)
    LOG.info("SAM image encoder and mask decoder now run on %s (%s)", backend, device)


def _log_failed_build(future: Future) -> None:
    if future.exception() is not None:
        LOG.error("SAM TensorRT build failed: %s; SAM stays on torch", future.exception())
