"""TensorRT backend: fp16 / fp32 engines built from the exported ONNX graphs, run on one stream.

* Engines are built per padded frame size and K with a fixed optimization profile (fastest
  kernels; a robot's camera size does not change) and cached by ``EngineCache`` under
  ``<engine_dir>/tensorrt``; ``sgdfuse export --engines`` builds them offline.
* ``build="blocking"`` builds a missing plan in place (CLI, bench); ``"never"`` raises
  ``EngineMissingError`` with the export command (a robot that must never build). Building
  in the background while torch fuses is ``building_runner.TorchWhileBuilding`` around this
  runner (``make_runner`` with ``build="background"``).
* Stage I, the U-Net and the HFAH head run back to back on one ``torch.cuda.Stream`` with
  torch CUDA tensors as device buffers: the only host copies are the inputs going up and the
  fused image (and F1) coming down. Per-stage times come from CUDA events on that stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError
from . import graphs, require_tensorrt
from .diffusion_inputs import DiffusionInputs
from .engine_cache import EngineCache, EngineKey, LoadedEngine, ProfileEntry
from .export import FusionOnnx, default_engine_dir, ensure_fusion_onnx, fp16_onnx_copy

LOG = logging.getLogger("sgdfuse_ros")
WORKSPACE_BYTES = 4 << 30


def graph_profiles(
    exported: FusionOnnx, decoder_channels: Sequence[int], steps: int, height: int, width: int
) -> dict[str, tuple[ProfileEntry, ...]]:
    """Exact input shapes of the three graphs for one padded frame size and K."""
    levels = len(decoder_channels)
    image = lambda c: (1, c, height, width)  # noqa: E731
    features = tuple(
        ProfileEntry.fixed(
            name,
            (
                1,
                steps * decoder_channels[level],
                height >> (levels - 1 - level),
                width >> (levels - 1 - level),
            ),
        )
        for level, name in enumerate(graphs.feature_names(levels))
    )
    return {
        "stage1": (ProfileEntry.fixed("ir", image(1)), ProfileEntry.fixed("vis", image(3))),
        "unet": (
            ProfileEntry.fixed("f1", image(3)),
            ProfileEntry.fixed("m_ir", image(1)),
            ProfileEntry.fixed("m_vis", image(1)),
            ProfileEntry.fixed("noise", (steps, 5, height, width)),
            ProfileEntry.fixed("timesteps", (steps,)),
            ProfileEntry.fixed("signal_scale", (steps,)),
            ProfileEntry.fixed("noise_scale", (steps,)),
        ),
        graphs.head_graph_name(steps): (
            *features,
            ProfileEntry.fixed("f1", image(3)),
            ProfileEntry.fixed("vis", image(3)),
            ProfileEntry.fixed("ir", image(1)),
        ),
    }


class TensorRTBuilder:
    """ONNX file + profile → serialized plan, with the tensorrt Python API."""

    def __init__(self, trt: Any, workspace_bytes: int = WORKSPACE_BYTES) -> None:
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.workspace_bytes = workspace_bytes

    @property
    def strongly_typed_fp16(self) -> bool:
        """TensorRT ≥ 11 dropped BuilderFlag.FP16: fp16 then means an fp16 graph, strongly typed."""
        return not hasattr(self.trt.BuilderFlag, "FP16")

    def deserialize(self, plan: bytes) -> Any:
        return self.runtime.deserialize_cuda_engine(plan)

    def build(self, onnx_path: Path, profile: Sequence[ProfileEntry], fp16: bool) -> bytes:
        trt = self.trt
        strongly_typed = fp16 and self.strongly_typed_fp16
        if strongly_typed:
            onnx_path = fp16_onnx_copy(onnx_path)
        builder = trt.Builder(self.logger)
        flags = 0
        if strongly_typed:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        elif int(trt.__version__.split(".")[0]) < 10:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        if fp16 and not strongly_typed:
            config.set_flag(trt.BuilderFlag.FP16)
        opt_profile = builder.create_optimization_profile()
        for entry in profile:
            opt_profile.set_shape(entry.name, entry.min, entry.opt, entry.max)
        config.add_optimization_profile(opt_profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"TensorRT failed to build {onnx_path} (see the TensorRT log above)")
        return bytes(plan)


class TrtGraph:
    """One engine + execution context; binds torch CUDA tensors and enqueues on a stream."""

    def __init__(self, trt: Any, loaded: LoadedEngine) -> None:
        self.runtime: Any = None  # set by owners whose runtime would otherwise go out of scope
        self.engine = loaded.engine
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {loaded.path}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        ]
        for name in names:
            if self.engine.get_tensor_dtype(name) != trt.float32:
                raise RuntimeError(
                    f"{loaded.path}: tensor {name} is not float32; the ONNX I/O must stay fp32"
                )

    def __call__(self, torch: Any, feeds: dict[str, Any], stream: Any) -> dict[str, Any]:
        """Enqueue only: no synchronisation, outputs are ready once ``stream`` reaches here."""
        for name in self.inputs:
            tensor = feeds[name]
            if not tensor.is_contiguous():
                raise ValueError(f"input {name} must be contiguous")
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device=stream.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs[name] = out
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return outputs


class TensorRTRunner:
    """``NetworkRunner`` on TensorRT engines (see module docstring for the build modes)."""

    def __init__(
        self,
        model: Any,
        device: str = "cuda",
        fp16: bool | None = None,
        engine_dir: str | Path | None = None,
        build: str = "blocking",
        force_rebuild: bool = False,
        exported: FusionOnnx | None = None,
    ) -> None:
        if build not in ("blocking", "never"):
            raise ValueError(
                f"TensorRTRunner builds 'blocking' or 'never', got {build!r} (background builds: "
                "building_runner.TorchWhileBuilding, through make_runner)"
            )
        trt = require_tensorrt()
        import torch

        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"the tensorrt backend needs a CUDA device and a CUDA build of PyTorch (device {device!r}, "
                f"CUDA available: {torch.cuda.is_available()})"
            )
        self.trt, self.torch = trt, torch
        self.device = torch.device(device)
        self.device_index = (
            self.device.index if self.device.index is not None else torch.cuda.current_device()
        )
        self.model = model
        self.fp16 = True if fp16 is None else bool(fp16)
        self.precision = "fp16" if self.fp16 else "fp32"
        self.build_mode = build
        self.force_rebuild = force_rebuild
        self.exported = exported or ensure_fusion_onnx(model, engine_dir)
        self.multiple = self.exported.size_multiple
        self.supported_steps = self.exported.supported_steps
        self.decoder_channels = list(model.config.unet.decoder_channels)
        self.builder = TensorRTBuilder(trt)
        root = Path(engine_dir) if engine_dir is not None else default_engine_dir()
        self.cache = EngineCache(root / "tensorrt", self.builder.deserialize, self._build_plan)
        self.gpu_name = torch.cuda.get_device_name(self.device_index)
        self.capability = tuple(torch.cuda.get_device_capability(self.device_index))
        self.stream = torch.cuda.Stream(self.device)
        self.diffusion_inputs = DiffusionInputs(model)
        self._device_inputs: dict[tuple[int, int, int], dict[str, Any]] = {}
        self._graphs: dict[tuple[str, int, int, int], TrtGraph] = {}
        self._lock = threading.Lock()
        self.last_load_status: dict[str, str] = {}

    # ------------------------------------------------------------------ engines

    def engine_key(self, graph: str, profile: tuple[ProfileEntry, ...]) -> EngineKey:
        return EngineKey(
            graph=graph,
            onnx_sha256=self.exported.sha256(graph),
            tensorrt_version=str(self.trt.__version__),
            gpu_name=self.gpu_name,
            compute_capability=(int(self.capability[0]), int(self.capability[1])),
            precision=self.precision,
            profile=profile,
        )

    def _build_plan(self, key: EngineKey) -> bytes:
        with self.torch.cuda.device(self.device_index):
            return self.builder.build(self.exported.path(key.graph), key.profile, self.fp16)

    def _load_graphs(
        self, steps: int, height: int, width: int, allow_build: bool, force: bool
    ) -> None:
        """Load (or build) stage1, unet and head_k{steps} for one padded size into ``_graphs``."""
        profiles = graph_profiles(self.exported, self.decoder_channels, steps, height, width)
        for graph, profile in profiles.items():
            slot = (graph, steps if graph != "stage1" else 0, height, width)
            with self._lock:
                if slot in self._graphs and not force:
                    continue
            with self.torch.cuda.device(self.device_index):
                loaded = self.cache.load(
                    self.engine_key(graph, profile), allow_build=allow_build, force=force
                )
                compiled = TrtGraph(self.trt, loaded)
            LOG.info("TensorRT %s %s: %s (%s)", graph, self.precision, loaded.status, loaded.path)
            with self._lock:
                self._graphs[slot] = compiled
                self.last_load_status[graph] = loaded.status

    def _padded(self, height: int, width: int) -> tuple[int, int]:
        m = self.multiple
        return -(-height // m) * m, -(-width // m) * m

    def plan_paths(self, height: int, width: int, steps: Sequence[int]) -> dict[str, Path]:
        """Where the plans for this size and these K live in the cache."""
        hp, wp = self._padded(height, width)
        paths: dict[str, Path] = {}
        for k in steps:
            for graph, profile in graph_profiles(
                self.exported, self.decoder_channels, k, hp, wp
            ).items():
                label = f"unet_k{k}" if graph == "unet" else graph
                paths[label] = self.cache.plan_path(self.engine_key(graph, profile))
        return paths

    def prepare(self, height: int, width: int, steps: Sequence[int], force: bool = False) -> None:
        """Load the plans for a frame size now, building missing ones unless build="never"."""
        hp, wp = self._padded(height, width)
        for k in steps:
            self._load_graphs(k, hp, wp, allow_build=self.build_mode != "never", force=force)

    def _loaded(self, steps: int, hp: int, wp: int) -> bool:
        with self._lock:
            return all(
                (graph, steps if graph != "stage1" else 0, hp, wp) in self._graphs
                for graph in ("stage1", "unet", graphs.head_graph_name(steps))
            )

    def ready(self, height: int, width: int, steps: int) -> bool:
        """True when the plans are loaded, or cached and loadable now (well under a second)."""
        hp, wp = self._padded(height, width)
        if self._loaded(steps, hp, wp):
            return True
        try:
            self._load_graphs(steps, hp, wp, allow_build=False, force=False)
        except Exception as exc:  # missing or unusable plan: not ready, nothing built here
            LOG.debug("TensorRT plans for %dx%d K=%d not loadable: %s", wp, hp, steps, exc)
            return False
        return True

    # ------------------------------------------------------------------ inference

    def _frame_inputs(self, steps: int, height: int, width: int) -> dict[str, Any]:
        key = (steps, height, width)
        cached = self._device_inputs.get(key)
        if cached is None:
            host = self.diffusion_inputs.for_frame(steps, height, width)
            cached = {name: t.to(self.device).contiguous() for name, t in host.items()}
            self._device_inputs = {
                k: v for k, v in self._device_inputs.items() if k[1:] == (height, width)
            }
            self._device_inputs[key] = cached
        return cached

    def run(
        self, ir: np.ndarray, vis: np.ndarray, m_ir: np.ndarray, m_vis: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        if steps not in self.supported_steps:
            raise ValueError(f"no HFAH head for K={steps}; supported: {self.supported_steps}")
        from ..models.sgdfuse import pad_to_multiple

        torch = self.torch
        h, w = ir.shape[-2:]
        hp, wp = self._padded(h, w)
        if not self._loaded(steps, hp, wp):
            self._load_graphs(
                steps, hp, wp, allow_build=self.build_mode != "never", force=self.force_rebuild
            )
        with self._lock:
            stage1 = self._graphs[("stage1", 0, hp, wp)]
            unet = self._graphs[("unet", steps, hp, wp)]
            head = self._graphs[(graphs.head_graph_name(steps), steps, hp, wp)]
        stream = self.stream
        start, after_stage1, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        with torch.cuda.stream(stream):
            ir_d, vis_d, m_ir_d, m_vis_d = (
                pad_to_multiple(
                    torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device),
                    self.multiple,
                ).contiguous()
                for a in (ir, vis, m_ir, m_vis)
            )
            start.record(stream)
            f1 = stage1(torch, {"ir": ir_d, "vis": vis_d}, stream)["f1"]
            after_stage1.record(stream)
            feeds = {
                "f1": f1,
                "m_ir": m_ir_d,
                "m_vis": m_vis_d,
                **self._frame_inputs(steps, hp, wp),
            }
            features = unet(torch, feeds, stream)
            fused = head(torch, {**features, "f1": f1, "vis": vis_d, "ir": ir_d}, stream)["fused"]
            end.record(stream)
            fused_host = fused[..., :h, :w].cpu()  # the one device → host copy that waits
            f1_host = f1[..., :h, :w].cpu()
        stream.synchronize()
        timings = {
            "stage1": start.elapsed_time(after_stage1),
            "stage2": after_stage1.elapsed_time(end),
        }
        return fused_host.numpy(), f1_host.numpy(), timings

    def close(self) -> None:
        with self._lock:
            self._graphs.clear()
        self._device_inputs.clear()
        self.torch.cuda.empty_cache()


def build_all_engines(
    model: Any,
    engine_dir: str | Path | None = None,
    fp16: bool = True,
    height: int = 480,
    width: int = 640,
    steps: Sequence[int] | None = None,
    force: bool = False,
    device: str = "cuda",
) -> dict[str, Path]:
    """Offline build (``sgdfuse export --engines``): every graph for one frame size, each K."""
    runner = TensorRTRunner(model, device, fp16=fp16, engine_dir=engine_dir, build="blocking")
    try:
        chosen = tuple(steps or runner.supported_steps)
        runner.prepare(height, width, chosen, force=force)
        return runner.plan_paths(height, width, chosen)
    finally:
        runner.close()
