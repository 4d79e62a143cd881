"""FusionPipeline: numpy in, fused numpy out, with clear errors for every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from sgdfuse_ros.errors import InputError, WeightsError
from sgdfuse_ros.imaging import ir_to_unit
from sgdfuse_ros.model_io import save_weights
from sgdfuse_ros.models.sgdfuse import SGDFuse, small_config
from sgdfuse_ros.pipeline import FusionPipeline
from sgdfuse_ros.synthetic import render_sequence


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = SGDFuse(small_config())
    for head in model.heads.values():  # make Stage II visibly change F1
        torch.nn.init.normal_(head.out.weight, std=0.3)
    path = tmp_path_factory.mktemp("w") / "test.pt"
    return save_weights(
        model, path, {"prior_backend": "classical", "trained": False, "default_steps": 1}
    )


@pytest.fixture(scope="module")
def pipeline(weights):
    return FusionPipeline(weights=weights, prior_backend="classical")


@pytest.fixture(scope="module")
def pair():
    ir, vis = render_sequence(1, 64, 96, seed=1)[0]
    return ir, vis


def test_fuses_to_rgb_uint8_with_intermediates(pipeline, pair):
    ir, vis = pair
    result = pipeline.fuse(ir, vis, return_intermediate=True)
    assert result.fused.shape == (64, 96, 3) and result.fused.dtype == np.uint8
    assert result.stage1.shape == (64, 96, 3) and result.stage1.dtype == np.uint8
    for prior in (result.prior_ir, result.prior_vis):
        assert prior.shape == (64, 96) and prior.dtype == np.float32
        assert 0.0 <= prior.min() and prior.max() <= 1.0
    assert set(result.timings_ms) == {"priors", "stage1", "stage2", "total"}
    assert not np.array_equal(result.fused, result.stage1)  # Stage II did something


def test_repeated_frames_give_identical_output(pipeline, pair):
    a = pipeline.fuse(*pair).fused
    b = pipeline.fuse(pair[0].copy(), pair[1].copy()).fused
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "ir_variant",
    [
        lambda ir: ir.astype(np.uint16) * 257,
        lambda ir: ir.astype(np.float32) / 255.0,
        lambda ir: np.repeat(ir[..., None], 3, axis=2),
        lambda ir: ir[..., None],
    ],
    ids=["uint16", "float", "3-equal-channels", "HxWx1"],
)
def test_accepts_ir_formats(pipeline, pair, ir_variant):
    out = pipeline.fuse(ir_variant(pair[0]), pair[1]).fused
    assert out.shape == (64, 96, 3)


def test_steps_per_call(pipeline, pair):
    assert pipeline.supported_steps == (1, 2, 3)
    k1 = pipeline.fuse(*pair, steps=1).fused
    k3 = pipeline.fuse(*pair, steps=3).fused
    assert not np.array_equal(k1, k3)
    with pytest.raises(ValueError, match="K=5 not supported"):
        pipeline.fuse(*pair, steps=5)


@pytest.mark.parametrize(
    "ir, vis, message",
    [
        (np.zeros((64, 96), np.uint8), np.zeros((60, 96, 3), np.uint8), "differ in size"),
        (np.zeros((0, 96), np.uint8), np.zeros((64, 96, 3), np.uint8), "empty"),
        (np.zeros((64, 96), np.uint8), np.zeros((64, 0, 3), np.uint8), "empty"),
        (np.zeros((64, 96), np.int8), np.zeros((64, 96, 3), np.uint8), "dtype int8"),
        (np.zeros((64, 96), np.uint8), np.zeros((64, 96, 3), np.float32), "dtype float32"),
        (np.zeros((64, 96, 2), np.uint8), np.zeros((64, 96, 3), np.uint8), "2 channels"),
        (np.zeros((64, 96), np.uint8), np.zeros((64, 96, 4), np.uint8), "H×W×3"),
        (np.full((64, 96), np.nan, np.float32), np.zeros((64, 96, 3), np.uint8), "NaN or inf"),
        (np.full((64, 96), np.inf, np.float64), np.zeros((64, 96, 3), np.uint8), "NaN or inf"),
        (
            np.dstack([np.zeros((64, 96)), np.ones((64, 96)), np.zeros((64, 96))]).astype(np.uint8),
            np.zeros((64, 96, 3), np.uint8),
            "colour palette",
        ),
        ([[0, 1]], np.zeros((64, 96, 3), np.uint8), "numpy array"),
    ],
)
def test_bad_input_raises_clear_input_error(pipeline, ir, vis, message):
    with pytest.raises(InputError, match=message):
        pipeline.fuse(ir, vis)


def test_pipeline_survives_bad_input_and_fuses_next(pipeline, pair):
    with pytest.raises(InputError):
        pipeline.fuse(np.zeros((3, 3), np.uint8), pair[1])
    assert pipeline.fuse(*pair).fused.shape == (64, 96, 3)


def test_resize_mismatched_on_request(weights, pair):
    pipe = FusionPipeline(weights=weights, prior_backend="classical", resize_mismatched=True)
    small_ir = pair[0][::2, ::2]
    assert pipe.fuse(small_ir, pair[1]).fused.shape == (64, 96, 3)


def test_priors_reused_for_n_frames(weights):
    pipe = FusionPipeline(weights=weights, prior_backend="classical", prior_refresh_every=3)
    calls = []
    original = pipe.priors.compute
    pipe.priors.compute = lambda ir, vis: calls.append(1) or original(ir, vis)
    frames = render_sequence(7, 32, 48)
    for ir, vis in frames:
        pipe.fuse(ir, vis)
    assert len(calls) == 3  # frames 0, 3, 6


@pytest.mark.parametrize("prior_backend", ["classical", "auto"])
def test_priors_are_computed_with_the_settings_the_weights_were_trained_with(
    tmp_path, prior_backend
):
    from sgdfuse_ros.semantics import ClassicalPriorBackend

    model = _small_model()
    trained_with = ClassicalPriorBackend(ir_z_threshold=1.5, ir_local_z_threshold=3.0).settings()
    path = save_weights(model, tmp_path / "tuned.pt", {"prior_settings": trained_with})
    pipe = FusionPipeline(weights=path, prior_backend=prior_backend)
    assert pipe.priors.settings() == trained_with
    ir, vis = render_sequence(1, 64, 96, seed=3)[0]
    result = pipe.fuse(ir, vis, return_intermediate=True)
    expected_ir, _ = ClassicalPriorBackend(ir_z_threshold=1.5, ir_local_z_threshold=3.0).compute(
        ir_to_unit(ir), vis
    )
    np.testing.assert_array_equal(result.prior_ir, expected_ir)


def _small_model() -> SGDFuse:
    import torch

    torch.manual_seed(0)
    return SGDFuse(small_config())


def test_missing_weights_and_explicit_untrained(tmp_path, caplog, monkeypatch):
    with pytest.raises(WeightsError, match="missing.pt"):
        FusionPipeline(weights=tmp_path / "missing.pt", prior_backend="classical")
    import sgdfuse_ros.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "DEFAULT_WEIGHTS", tmp_path / "none.pt")
    with pytest.raises(WeightsError, match="allow_untrained"):
        FusionPipeline(prior_backend="classical")
    with caplog.at_level("WARNING", logger="sgdfuse_ros"):
        pipe = FusionPipeline(prior_backend="classical", allow_untrained=True)
    assert "UNTRAINED" in caplog.text and pipe.metadata["trained"] is False


def test_unknown_backend_and_missing_cuda(weights):
    with pytest.raises(ValueError, match="backend=.openvino. is not one of: torch"):
        FusionPipeline(weights=weights, backend="openvino")
    import torch

    if not torch.cuda.is_available():
        from sgdfuse_ros.errors import BackendUnavailableError

        with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
            FusionPipeline(weights=weights, prior_backend="classical", device="cuda")


def test_shipped_weights_fuse_the_same_image_with_one_or_two_threads(data_dir):
    """The torch backend runs channels-last; its output must not depend on the CPU thread count
    (torch's own channels-last GroupNorm moved 61 % of the pixels of this pair by up to 3 levels)."""
    import torch

    from sgdfuse_ros.imaging import read_pair

    ir, vis = read_pair(
        data_dir / "val" / "msrs100" / "ir" / "00371D.png",
        data_dir / "val" / "msrs100" / "vi" / "00371D.png",
    )
    pipeline = FusionPipeline(prior_backend="classical")
    threads = torch.get_num_threads()
    try:
        fused = {}
        for count in (1, 2):
            torch.set_num_threads(count)
            fused[count] = pipeline.fuse(ir, vis).fused.astype(int)
    finally:
        torch.set_num_threads(threads)
    diff = np.abs(fused[1] - fused[2])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def _devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
def test_fp16_autocast_fuses_like_fp32(device):
    """CUDA runs the torch backend under fp16 autocast by default; on the CPU the same autocast
    exercises the mixed-dtype paths (norms, attention, colour conversion, cached noise)."""
    from sgdfuse_ros.deploy.torch_runner import TorchRunner
    from sgdfuse_ros.model_io import DEFAULT_WEIGHTS, load_weights

    ir, vis = render_sequence(1, 120, 200, seed=3)[0]
    ir_f = (ir.astype(np.float32) / 255.0)[None, None]
    vis_f = np.ascontiguousarray(vis.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    m_ir = np.clip(ir_f * 1.5 - 0.5, 0, 1)
    m_vis = np.zeros_like(m_ir)
    reference = TorchRunner(load_weights(DEFAULT_WEIGHTS)[0], "cpu", fp16=False)
    expected = {k: reference.run(ir_f, vis_f, m_ir, m_vis, k)[:2] for k in (1, 3)}
    half = TorchRunner(load_weights(DEFAULT_WEIGHTS)[0], device, fp16=True)
    for k in (1, 3):
        fused, f1, _ = half.run(ir_f, vis_f, m_ir, m_vis, k)
        assert fused.dtype == np.float32 and fused.shape == (1, 3, 120, 200)
        assert np.abs(fused - expected[k][0]).max() > 0  # it did run in half precision
        assert np.abs(f1 - expected[k][1]).max() < 5e-3
        assert np.abs(fused - expected[k][0]).max() < 5e-3
