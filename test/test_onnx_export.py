"""ONNX export parity: every exported graph against the torch model, under ONNX Runtime (CPU).

Tolerances (float32, documented in the README): exported graphs and the chained runner match
torch to within 1e-4 absolute on [0, 1] images (observed ≈ 4e-7); the SAM encoder and decoder
to within 1e-3 relative to the output's scale (attention and layer norms reorder sums).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from sgdfuse_ros.deploy import graphs
from sgdfuse_ros.deploy.export import (
    ensure_fusion_onnx,
    export_sam_onnx,
    load_fusion_onnx,
    model_fingerprint,
)
from sgdfuse_ros.deploy.onnx_runner import OnnxRuntimeRunner, pad_replicate
from sgdfuse_ros.deploy.torch_runner import TorchRunner
from sgdfuse_ros.models.sgdfuse import SGDFuse, pad_to_multiple, small_config

ort = pytest.importorskip("onnxruntime")
ATOL = 1e-4


def make_model(seed: int = 0) -> SGDFuse:
    torch.manual_seed(seed)
    model = SGDFuse(small_config()).eval()
    for head in model.heads.values():  # a zero-initialised head would hide head mistakes
        torch.nn.init.normal_(head.out.weight, std=0.3)
    return model


@pytest.fixture(scope="module")
def model() -> SGDFuse:
    return make_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    # The session-wide cache: the deploy tests use the same seeded model and export it once.
    return ensure_fusion_onnx(model, tmp_path_factory.getbasetemp() / "engine_cache")


def frame(h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((1, c, h, w), dtype=np.float32) for c in (1, 3, 1, 1)]


def session(exported, graph: str):
    return ort.InferenceSession(str(exported.path(graph)), providers=["CPUExecutionProvider"])


def test_manifest_lists_every_graph_with_hashes(model, exported):
    assert exported.supported_steps == model.supported_steps
    assert exported.graph_names() == ["stage1", "unet", "head_k1", "head_k2", "head_k3"]
    for graph in exported.graph_names():
        assert exported.path(graph).is_file()
        assert len(exported.sha256(graph)) == 64
    assert load_fusion_onnx(exported.directory).manifest == exported.manifest
    assert exported.manifest["fingerprint"] == model_fingerprint(model)


@pytest.mark.parametrize("hw", [(64, 96), (112, 48)])  # the traced size and another one
def test_stage1_graph_matches_torch_at_any_size(model, exported, hw):
    ir, vis, _, _ = frame(*hw)
    (f1,) = session(exported, "stage1").run(None, {"ir": ir, "vis": vis})
    with torch.no_grad():
        expected = model.stage1(torch.from_numpy(ir), torch.from_numpy(vis)).numpy()
    np.testing.assert_allclose(f1, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("steps", [1, 3])  # traced with K=2: K stays a dynamic axis
def test_unet_and_head_graphs_match_torch_stage2(model, exported, steps):
    from sgdfuse_ros.deploy.diffusion_inputs import DiffusionInputs

    h, w = 48, 80
    ir, vis, m_ir, m_vis = frame(h, w, seed=steps)
    with torch.no_grad():
        f1 = model.stage1(torch.from_numpy(ir), torch.from_numpy(vis))
        i0 = model.make_i0(f1, torch.from_numpy(m_ir), torch.from_numpy(m_vis))
        expected_features = model.diffusion_features(i0, steps)
        expected = model.stage2(
            f1,
            torch.from_numpy(m_ir),
            torch.from_numpy(m_vis),
            torch.from_numpy(ir),
            torch.from_numpy(vis),
            steps,
        )
    feed = {"f1": f1.numpy(), "m_ir": m_ir, "m_vis": m_vis}
    feed.update({k: v.numpy() for k, v in DiffusionInputs(model).for_frame(steps, h, w).items()})
    features = session(exported, "unet").run(None, feed)
    assert len(features) == len(expected_features)
    for got, want in zip(features, expected_features, strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=1e-4)
    head_feed = dict(zip(graphs.feature_names(len(features)), features, strict=True))
    head_feed.update(f1=f1.numpy(), vis=vis, ir=ir)
    (fused,) = session(exported, graphs.head_graph_name(steps)).run(None, head_feed)
    np.testing.assert_allclose(fused, expected.numpy(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("output", ["sources", "select"])
def test_other_head_forms_graph_matches_torch(tmp_path, output):
    """The source-anchored and the selecting head forms export and run like the correction form."""
    torch.manual_seed(2)
    config = small_config()
    config.head_output = output
    model = SGDFuse(config).eval()
    for head in model.heads.values():
        torch.nn.init.normal_(head.out.weight, std=0.3)
    runner = OnnxRuntimeRunner(model, "cpu", exported=ensure_fusion_onnx(model, tmp_path / "cache"))
    reference = TorchRunner(model, "cpu", fp16=False)
    ir, vis, m_ir, m_vis = frame(48, 64, seed=5)
    for steps in model.supported_steps:
        fused, _, _ = runner.run(ir, vis, m_ir, m_vis, steps)
        want, f1, _ = reference.run(ir, vis, m_ir, m_vis, steps)
        np.testing.assert_allclose(fused, want, atol=ATOL, rtol=0)
        assert np.abs(want - f1).max() > 1e-3  # the head really moved F1


@pytest.mark.parametrize("hw", [(50, 71)])  # an unpadded size goes through the padding
def test_runner_matches_torch_runner_for_every_k(model, exported, hw):
    runner = OnnxRuntimeRunner(model, "cpu", exported=exported)
    reference = TorchRunner(make_model(), "cpu", fp16=False)
    ir, vis, m_ir, m_vis = frame(*hw, seed=7)
    for steps in model.supported_steps:
        fused, f1, timings = runner.run(ir, vis, m_ir, m_vis, steps)
        want_fused, want_f1, _ = reference.run(ir, vis, m_ir, m_vis, steps)
        assert fused.shape == (1, 3, *hw) and fused.dtype == np.float32
        np.testing.assert_allclose(f1, want_f1, atol=ATOL, rtol=0)
        np.testing.assert_allclose(fused, want_fused, atol=ATOL, rtol=0)
        assert set(timings) == {"stage1", "stage2"}
    with pytest.raises(ValueError, match="K=4"):
        runner.run(ir, vis, m_ir, m_vis, 4)


def test_different_k_give_different_fusions(model, exported):
    """The head per K is really selected (not always the same graph)."""
    runner = OnnxRuntimeRunner(model, "cpu", exported=exported)
    ir, vis, m_ir, m_vis = frame(32, 48, seed=3)
    outs = [runner.run(ir, vis, m_ir, m_vis, k)[0] for k in model.supported_steps]
    assert np.abs(outs[0] - outs[2]).max() > 1e-3


def test_pad_replicate_matches_torch_padding():
    arr = np.random.default_rng(0).random((1, 3, 21, 35), dtype=np.float32)
    np.testing.assert_array_equal(
        pad_replicate(arr, 16), pad_to_multiple(torch.from_numpy(arr), 16).numpy()
    )


def test_cache_reuses_export_and_changes_with_weights(model, exported, tmp_path):
    target = tmp_path / "onnx" / model_fingerprint(model)
    shutil.copytree(exported.directory, target)  # as a previous run would have left it
    stamp = (target / "unet.onnx").stat().st_mtime_ns
    again = ensure_fusion_onnx(model, tmp_path)
    assert again.directory == target
    assert again.path("unet").stat().st_mtime_ns == stamp  # reused, not exported again
    assert model_fingerprint(make_model(seed=1)) != model_fingerprint(model)
    again.path("head_k2").unlink()  # an incomplete export is never used (it is redone)
    assert load_fusion_onnx(target) is None


def test_sam_encoder_and_decoder_match_torch(tmp_path):
    from sgdfuse_ros.semantics import build_small_sam

    sam = build_small_sam(seed=0)
    paths = export_sam_onnx(sam, tmp_path)
    size = sam.image_encoder.img_size
    image = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    encoder = ort.InferenceSession(str(paths["sam_encoder"]), providers=["CPUExecutionProvider"])
    (embedding,) = encoder.run(None, {"image": image.numpy()})
    with torch.no_grad():
        expected_embedding = sam.image_encoder(image)
    scale = float(expected_embedding.abs().max())
    np.testing.assert_allclose(embedding, expected_embedding.numpy(), atol=1e-3 * scale, rtol=0)

    decoder = ort.InferenceSession(str(paths["sam_decoder"]), providers=["CPUExecutionProvider"])
    for prompts in (1, 5):  # the prompt count is a dynamic axis
        coords = torch.rand(prompts, 1, 2, generator=torch.Generator().manual_seed(prompts)) * size
        labels = torch.ones(prompts, 1, dtype=torch.int64)
        with torch.inference_mode():
            sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            want_masks, want_iou = sam.mask_decoder.predict_masks(
                expected_embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense
            )
        masks, iou = decoder.run(
            None,
            {
                "image_embeddings": expected_embedding.numpy(),
                "sparse_embeddings": sparse.detach().numpy(),
                "dense_embeddings": dense.detach().numpy(),
            },
        )
        assert masks.shape == tuple(want_masks.shape)
        mask_scale = float(want_masks.abs().max())
        np.testing.assert_allclose(masks, want_masks.numpy(), atol=1e-3 * mask_scale, rtol=0)
        np.testing.assert_allclose(
            iou, want_iou.numpy(), atol=1e-3 * float(want_iou.abs().max()), rtol=0
        )
