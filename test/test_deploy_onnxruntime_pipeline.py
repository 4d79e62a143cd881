"""The onnxruntime backend inside FusionPipeline on real msrs100 pairs, against the torch backend.

Documented tolerance (README): fused uint8 images differ from the torch backend's by at most
1 grey level per pixel (float outputs agree to ~1e-6; rounding at .5 can flip one level).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sgdfuse_ros.deploy import make_runner
from sgdfuse_ros.deploy.onnx_runner import providers_for
from sgdfuse_ros.errors import BackendUnavailableError
from sgdfuse_ros.model_io import save_weights
from sgdfuse_ros.models.sgdfuse import SGDFuse, small_config
from sgdfuse_ros.pipeline import FusionPipeline

pytest.importorskip("onnxruntime")
PAIRS = ("00012N.png", "00040N.png")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = SGDFuse(small_config())
    for head in model.heads.values():  # Stage II must visibly change F1
        torch.nn.init.normal_(head.out.weight, std=0.3)
    path = tmp_path_factory.mktemp("w") / "deploy.pt"
    return save_weights(model, path, {"prior_backend": "classical", "default_steps": 1})


def load_pair(data_dir, name):
    root = data_dir / "val" / "msrs100"
    ir = cv2.imread(str(root / "ir" / name), cv2.IMREAD_GRAYSCALE)
    vis = cv2.cvtColor(cv2.imread(str(root / "vi" / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return ir, vis


def test_onnxruntime_pipeline_fuses_msrs100_like_torch(weights, data_dir, tmp_path_factory):
    # Same seeded model as the other deploy tests: the session-wide export is reused.
    engine_dir = tmp_path_factory.getbasetemp() / "engine_cache"
    common = dict(weights=weights, prior_backend="classical", engine_dir=engine_dir)
    onnx_pipe = FusionPipeline(backend="onnxruntime", **common)
    torch_pipe = FusionPipeline(backend="torch", **common)
    for name, steps in zip(PAIRS, (1, 3), strict=True):
        ir, vis = load_pair(data_dir, name)
        got = onnx_pipe.fuse(ir, vis, steps=steps, return_intermediate=True)
        want = torch_pipe.fuse(ir, vis, steps=steps, return_intermediate=True)
        assert got.fused.shape == vis.shape and got.fused.dtype == np.uint8
        diff = np.abs(got.fused.astype(int) - want.fused.astype(int))
        assert diff.max() <= 1, f"{name} K={steps}: max difference {diff.max()} grey levels"
        assert np.abs(got.stage1.astype(int) - want.stage1.astype(int)).max() <= 1
        assert {"priors", "stage1", "stage2", "total"} <= set(got.timings_ms)
    assert any((engine_dir / "onnx").iterdir())  # exported on demand into engine_dir
    onnx_pipe.close()
    torch_pipe.close()


def test_cuda_without_the_cuda_provider_says_what_to_install():
    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        providers_for("cuda:0", ["CPUExecutionProvider"])
    providers, device, index = providers_for(
        "cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert providers[0] == ("CUDAExecutionProvider", {"device_id": 1}) and (device, index) == (
        "cuda",
        1,
    )
    with pytest.raises(ValueError, match="unsupported device"):
        providers_for("mps", ["CPUExecutionProvider"])


def test_unknown_backend_and_missing_tensorrt_are_clear_errors():
    model = SGDFuse(small_config())
    with pytest.raises(ValueError, match="unknown backend"):
        make_runner("openvino", model, "cpu")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="pip install tensorrt"):
            make_runner("tensorrt", model, "cuda")


def _has_ort_cuda() -> bool:
    import onnxruntime

    return (
        torch.cuda.is_available()
        and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    )


@pytest.mark.skipif(
    not _has_ort_cuda(),
    reason="needs a GPU and onnxruntime-gpu (CUDAExecutionProvider); `pip install onnxruntime-gpu`",
)
def test_cuda_execution_provider_matches_torch(weights, tmp_path_factory):
    from sgdfuse_ros.deploy.torch_runner import TorchRunner
    from sgdfuse_ros.model_io import load_weights

    model, _ = load_weights(weights)
    runner = make_runner(
        "onnxruntime", model, "cuda", engine_dir=tmp_path_factory.getbasetemp() / "engine_cache"
    )
    rng = np.random.default_rng(0)
    inputs = [rng.random((1, c, 70, 101), dtype=np.float32) for c in (1, 3, 1, 1)]
    reference = TorchRunner(load_weights(weights)[0], "cuda", fp16=False)
    for steps in (1, 3):
        fused, f1, _ = runner.run(*inputs, steps)
        want_fused, want_f1, _ = reference.run(*inputs, steps)
        np.testing.assert_allclose(fused, want_fused, atol=1e-3)
        np.testing.assert_allclose(f1, want_f1, atol=1e-3)


def test_sessions_share_one_cpu_arena_with_the_same_output_bits(
    weights, data_dir, tmp_path_factory, monkeypatch
):
    """The fusion graphs' sessions draw on one process-wide arena (they never run at once; five
    private arenas held 2.9x the memory at 640×480, K = 1 and 3), and that changes no bit."""
    from sgdfuse_ros.deploy import onnx_runner

    engine_dir = tmp_path_factory.getbasetemp() / "engine_cache"
    common = dict(weights=weights, prior_backend="classical", engine_dir=engine_dir)
    shared = FusionPipeline(backend="onnxruntime", **common)
    sessions = [shared.runner.stage1, shared.runner.unet, *shared.runner.heads.values()]
    for session in sessions:
        entry = session.get_session_options().get_session_config_entry
        assert entry("session.use_env_allocators") == "1"
    monkeypatch.setattr(onnx_runner, "shared_cpu_arena", lambda ort: False)
    private = FusionPipeline(backend="onnxruntime", **common)
    with pytest.raises(RuntimeError, match="does not have configuration"):  # private arenas
        private.runner.unet.get_session_options().get_session_config_entry(
            "session.use_env_allocators"
        )
    ir, vis = load_pair(data_dir, PAIRS[0])
    for steps in (1, 3):
        a = shared.fuse(ir, vis, steps=steps, return_intermediate=True)
        b = private.fuse(ir, vis, steps=steps, return_intermediate=True)
        assert np.array_equal(a.fused, b.fused) and np.array_equal(a.stage1, b.stage1)
    shared.close()
    private.close()
