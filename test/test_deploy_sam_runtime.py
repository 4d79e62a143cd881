"""SAM priors with the encoder and decoder on ONNX Runtime match the torch SAM priors."""

from __future__ import annotations

import numpy as np
import pytest

from sgdfuse_ros.deploy.sam_runtime import RuntimeImageEncoder, ensure_sam_onnx, install_sam_runtime
from sgdfuse_ros.semantics import SamPriorBackend, build_small_sam

pytest.importorskip("onnxruntime")


OPEN_FILTERS = dict(stability_thresh=0.5, max_area_fraction=1.0)


def decisive_sam():
    """A random small SAM made confident (large mask logits, IoU 0.95) so that its masks pass
    the filters and the priors are non-zero: otherwise the comparison would be vacuous."""
    import torch

    sam = build_small_sam(seed=0)
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(500.0)
        iou_layer = sam.mask_decoder.iou_prediction_head.layers[-1]
        iou_layer.weight.zero_()
        iou_layer.bias.fill_(0.95)
    return sam


def test_onnxruntime_sam_gives_the_torch_priors(tmp_path):
    rng = np.random.default_rng(0)
    ir = (0.3 + 0.01 * rng.standard_normal((96, 128))).astype(np.float32)
    ir[30:70, 40:80] = 0.8  # one warm object: hot-spot prompts land on it
    vis = np.full((96, 128, 3), 120, np.uint8)
    vis[30:70, 40:80] = (220, 30, 30)
    reference = SamPriorBackend(decisive_sam(), **OPEN_FILTERS)
    want_ir, want_vis = reference.compute(ir, vis)
    backend = SamPriorBackend(decisive_sam(), **OPEN_FILTERS)
    install_sam_runtime(backend, "onnxruntime", "cpu", engine_dir=tmp_path)
    assert isinstance(backend.sam.image_encoder, RuntimeImageEncoder)
    got_ir, got_vis = backend.compute(ir, vis)
    for got, want in ((got_ir, want_ir), (got_vis, want_vis)):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-3)
    assert float(want_vis.max()) > 0.1 and float(want_ir.max()) > 0.1, "priors should not be empty"


def test_sam_graphs_are_exported_once_per_weights(tmp_path):
    sam = build_small_sam(seed=0)
    first = ensure_sam_onnx(sam, tmp_path)
    stamp = first["sam_encoder"].stat().st_mtime_ns
    assert ensure_sam_onnx(sam, tmp_path)["sam_encoder"].stat().st_mtime_ns == stamp
    other = ensure_sam_onnx(build_small_sam(seed=1), tmp_path)
    assert other["sam_encoder"].parent != first["sam_encoder"].parent


def _has_tensorrt_gpu() -> bool:
    import torch

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _has_tensorrt_gpu(), reason="needs an NVIDIA GPU and TensorRT")
@pytest.mark.parametrize("fp16,atol", [(False, 1e-2), (True, 5e-2)])
def test_tensorrt_sam_gives_the_torch_priors(tmp_path, fp16, atol):
    ir = np.full((96, 128), 0.3, np.float32)
    ir[30:70, 40:80] = 0.8
    vis = np.full((96, 128, 3), 120, np.uint8)
    vis[30:70, 40:80] = (220, 30, 30)
    reference = SamPriorBackend(decisive_sam(), device="cuda", fp16=False, **OPEN_FILTERS)
    want = reference.compute(ir, vis)
    backend = SamPriorBackend(decisive_sam(), device="cuda", fp16=False, **OPEN_FILTERS)
    install_sam_runtime(backend, "tensorrt", "cuda", fp16=fp16, engine_dir=tmp_path)
    got = backend.compute(ir, vis)
    for g, w in zip(got, want, strict=True):
        assert np.abs(g - w).mean() < atol


def test_background_sam_build_keeps_torch_until_the_plans_are_ready(tmp_path, monkeypatch):
    """engine_build "background": configure does not wait on SAM's TensorRT build; priors keep
    coming from torch SAM, and the runtime takes over once the plans exist. The GPU-only piece
    (loading / building plans) is replaced by one that needs a build and then runs the torch
    modules, so the orchestration runs here."""
    import threading

    from sgdfuse_ros.deploy import sam_runtime
    from sgdfuse_ros.deploy.engine_cache import EngineMissingError

    release = threading.Event()
    calls = []

    def fake_callables(sam, paths, device, fp16, engine_dir, allow_build=True):
        calls.append(allow_build)
        if not allow_build:
            raise EngineMissingError("no plan for sam_encoder")
        assert release.wait(30), "the test never released the build"
        encoder, decoder = sam.image_encoder, sam.mask_decoder
        return (
            lambda feeds: {"image_embeddings": encoder(feeds["image"])},
            lambda feeds: dict(
                zip(
                    ("low_res_masks", "iou_predictions"),
                    decoder.predict_masks(  # every mask slice, as the exported graph
                        feeds["image_embeddings"],
                        sam.prompt_encoder.get_dense_pe(),
                        feeds["sparse_embeddings"],
                        feeds["dense_embeddings"],
                    ),
                    strict=True,
                )
            ),
        )

    monkeypatch.setattr(sam_runtime, "_tensorrt_callables", fake_callables)
    rng = np.random.default_rng(1)
    ir = rng.random((64, 80), dtype=np.float32)
    vis = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    backend = SamPriorBackend(decisive_sam(), **OPEN_FILTERS)
    want = backend.compute(ir, vis)
    build = install_sam_runtime(backend, "tensorrt", "cpu", engine_dir=tmp_path, build="background")
    assert build is not None and not build.done()
    assert not isinstance(backend.sam.image_encoder, RuntimeImageEncoder)  # torch meanwhile
    during = backend.compute(ir, vis)
    release.set()
    build.result(timeout=30)
    assert isinstance(backend.sam.image_encoder, RuntimeImageEncoder)
    after = backend.compute(ir, vis)
    assert calls == [False, True]  # cached plans tried first, then one build
    for got in (during, after):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-5)
    with pytest.raises(EngineMissingError):  # "never": refuse instead of building
        install_sam_runtime(
            SamPriorBackend(decisive_sam()), "tensorrt", "cpu", engine_dir=tmp_path, build="never"
        )
