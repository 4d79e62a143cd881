"""TensorRT backend. The shape-profile test runs on the CPU (against ONNX Runtime); the rest
needs CUDA and TensorRT and is skipped without them: engine build, cache hit, rebuild on a
corrupted plan, parity against torch, background build with torch fallback.

GPU tolerances: fp32 engines within 1e-3 of torch fp32 (TF32 may be used for convolutions);
fp16 engines within 3e-2 absolute on [0, 1] images (≈ 8 grey levels worst case).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdfuse_ros.deploy import graphs
from sgdfuse_ros.deploy.diffusion_inputs import DiffusionInputs
from sgdfuse_ros.deploy.export import ensure_fusion_onnx
from sgdfuse_ros.deploy.tensorrt_runner import graph_profiles
from sgdfuse_ros.models.sgdfuse import SGDFuse, small_config

H, W = 64, 96


def make_model() -> SGDFuse:
    torch.manual_seed(0)
    model = SGDFuse(small_config()).eval()
    for head in model.heads.values():
        torch.nn.init.normal_(head.out.weight, std=0.3)
    return model


def frame(h: int = H, w: int = W, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((1, c, h, w), dtype=np.float32) for c in (1, 3, 1, 1)]


@pytest.fixture(scope="module")
def model() -> SGDFuse:
    return make_model()


def test_profiles_are_the_shapes_the_graphs_really_take_and_produce(model, tmp_path_factory):
    """The fixed TensorRT profiles must equal the tensors the runner binds (checked on ORT)."""
    ort = pytest.importorskip("onnxruntime")
    exported = ensure_fusion_onnx(model, tmp_path_factory.getbasetemp() / "engine_cache")
    channels = model.config.unet.decoder_channels
    steps = 3
    profiles = graph_profiles(exported, channels, steps, H, W)
    assert set(profiles) == {"stage1", "unet", "head_k3"}
    for graph, profile in profiles.items():
        session = ort.InferenceSession(
            str(exported.path(graph)), providers=["CPUExecutionProvider"]
        )
        assert [p.name for p in profile] == [i.name for i in session.get_inputs()]
    ir, vis, m_ir, m_vis = frame()
    sess = lambda g: ort.InferenceSession(str(exported.path(g)), providers=["CPUExecutionProvider"])  # noqa: E731
    (f1,) = sess("stage1").run(None, {"ir": ir, "vis": vis})
    feed = {"f1": f1, "m_ir": m_ir, "m_vis": m_vis}
    feed.update({k: v.numpy() for k, v in DiffusionInputs(model).for_frame(steps, H, W).items()})
    for entry in profiles["unet"]:
        assert feed[entry.name].shape == entry.opt
    features = sess("unet").run(None, feed)
    head_profile = {p.name: p.opt for p in profiles["head_k3"]}
    for name, tensor in zip(graphs.feature_names(len(channels)), features, strict=True):
        assert tensor.shape == head_profile[name]


# ------------------------------------------------------------------------------- GPU only

HAS_CUDA = torch.cuda.is_available()
try:
    import tensorrt  # noqa: F401

    HAS_TRT = True
except ImportError:
    HAS_TRT = False

gpu = pytest.mark.skipif(
    not (HAS_CUDA and HAS_TRT),
    reason=f"needs an NVIDIA GPU and TensorRT (CUDA available: {HAS_CUDA}, tensorrt importable: "
    f"{HAS_TRT}); `pip install tensorrt` on a GPU machine",
)


def torch_reference(model, inputs, steps, fp16):
    from sgdfuse_ros.deploy.torch_runner import TorchRunner

    return TorchRunner(make_model(), "cuda", fp16=fp16).run(*inputs, steps)


@gpu
@pytest.mark.parametrize("fp16,tol", [(False, 1e-3), (True, 3e-2)])
def test_engines_build_and_match_torch(model, tmp_path, fp16, tol):
    from sgdfuse_ros.deploy.tensorrt_runner import TensorRTRunner

    runner = TensorRTRunner(model, "cuda", fp16=fp16, engine_dir=tmp_path, build="blocking")
    inputs = frame(H - 5, W - 3)  # padded to 64×96 inside
    for steps in model.supported_steps:
        fused, f1, timings = runner.run(*inputs, steps)
        want_fused, want_f1, _ = torch_reference(model, inputs, steps, fp16=False)
        assert fused.shape == want_fused.shape and fused.dtype == np.float32
        np.testing.assert_allclose(f1, want_f1, atol=tol, rtol=0)
        np.testing.assert_allclose(fused, want_fused, atol=tol, rtol=0)
        assert timings["stage1"] > 0 and timings["stage2"] > 0
    assert set(runner.last_load_status.values()) == {"built"}
    runner.close()


@gpu
def test_second_runner_hits_the_cache_and_corrupt_plan_is_rebuilt(model, tmp_path, caplog):
    from sgdfuse_ros.deploy.engine_cache import EngineMissingError
    from sgdfuse_ros.deploy.tensorrt_runner import TensorRTRunner

    first = TensorRTRunner(model, "cuda", engine_dir=tmp_path, build="blocking")
    first.prepare(H, W, steps=[1])
    plans = first.plan_paths(H, W, steps=[1])
    expected = first.run(*frame(), 1)[0]
    first.close()
    second = TensorRTRunner(model, "cuda", engine_dir=tmp_path, build="never")
    np.testing.assert_allclose(second.run(*frame(), 1)[0], expected, atol=1e-5)
    assert set(second.last_load_status.values()) == {"hit"}
    second.close()

    plans["stage1"].write_bytes(b"not a TensorRT plan")
    with pytest.raises(EngineMissingError, match="will not deserialize"):
        TensorRTRunner(model, "cuda", engine_dir=tmp_path, build="never").run(*frame(), 1)
    third = TensorRTRunner(model, "cuda", engine_dir=tmp_path, build="blocking")
    np.testing.assert_allclose(third.run(*frame(), 1)[0], expected, atol=1e-5)
    assert third.last_load_status["stage1"] == "rebuilt"
    assert "will not deserialize" in caplog.text
    third.close()


@gpu
def test_background_build_fuses_with_torch_until_engines_are_ready(model, tmp_path):
    from sgdfuse_ros.deploy import make_runner

    runner = make_runner("tensorrt", model, "cuda", engine_dir=tmp_path, build="background")
    inputs = frame()
    fused, _, _ = runner.run(*inputs, 1)  # returns at once: torch fallback while building
    assert runner.building(), "a background build should have been started"
    runner.wait_until_ready(timeout=900)
    fused_trt, _, _ = runner.run(*inputs, 1)
    np.testing.assert_allclose(fused_trt, fused, atol=3e-2)
    assert runner.target.last_load_status
    runner.close()


@gpu
def test_pipeline_selects_tensorrt_backend(tmp_path):
    from sgdfuse_ros.pipeline import FusionPipeline
    from sgdfuse_ros.synthetic import render_sequence

    pipe = FusionPipeline(
        device="cuda",
        backend="tensorrt",
        allow_untrained=True,
        prior_backend="classical",
        engine_dir=tmp_path,
    )
    pipe.runner.build_mode = "blocking"
    ir, vis = render_sequence(1, 64, 96, seed=1)[0]
    result = pipe.fuse(ir, vis, steps=1)
    assert result.fused.shape == (64, 96, 3)
    pipe.close()
