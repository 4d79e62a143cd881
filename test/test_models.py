"""Shapes, gradients and determinism of every SGDFuse building block."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sgdfuse_ros.models.color import rgb_to_ycbcr, with_luminance, ycbcr_to_rgb
from sgdfuse_ros.models.diffusion import NoiseSchedule, fixed_noise
from sgdfuse_ros.models.hfah import HFAH, SELECT_F1_LOGIT
from sgdfuse_ros.models.norm import GroupNorm
from sgdfuse_ros.models.sgdfuse import SGDFuse, SGDFuseConfig, paper_config, small_config
from sgdfuse_ros.models.stage1 import (
    MSFEM,
    ChannelAttention,
    CrossAttentionFusion,
    Stage1Config,
    Stage1Net,
    TransformerBlock,
)
from sgdfuse_ros.models.unet import DenoisingUNet, ResBlock, UNetConfig


def _grad_ok(module: torch.nn.Module) -> bool:
    grads = [p.grad for p in module.parameters() if p.requires_grad]
    return all(g is not None and torch.isfinite(g).all() for g in grads) and any(
        g.abs().sum() > 0 for g in grads
    )


def _randomize_heads(model: SGDFuse) -> None:
    """HFAH output convs start at zero (identity to F1); give them weights so features matter."""
    torch.manual_seed(1)
    for head in model.heads.values():
        torch.nn.init.normal_(head.out.weight, std=0.5)


@pytest.mark.parametrize(
    "block, inputs",
    [
        (MSFEM(8), (torch.randn(2, 8, 12, 10),)),
        (TransformerBlock(8, 2, 2.0), (torch.randn(2, 8, 12, 10),)),
        (ChannelAttention(8, 2), (torch.randn(2, 8, 12, 10), torch.randn(2, 8, 12, 10))),
        (CrossAttentionFusion(8, 2), (torch.randn(2, 8, 12, 10), torch.randn(2, 8, 12, 10))),
    ],
)
def test_stage1_blocks_keep_shape_and_pass_gradients(block, inputs):
    out = block(*inputs)
    assert out.shape == inputs[0].shape
    out.square().mean().backward()
    assert _grad_ok(block)


@pytest.mark.parametrize("channels", [8, 16])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_msfem_inference_form_equals_the_trained_branches(channels, memory_format):
    torch.manual_seed(0)
    block = MSFEM(channels).to(memory_format=memory_format)
    for p in block.parameters():  # default init leaves biases small: make every term count
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(2, channels, 17, 23).contiguous(memory_format=memory_format)
    with torch.no_grad():
        trained = block.train()(x)
        merged = block.eval()(x)
    torch.testing.assert_close(merged, trained, rtol=0, atol=1e-5)
    reduce_w, _, spatial_w, _ = block.merged_branches()
    assert reduce_w.shape == (4 * max(channels // 4, 4), channels, 1, 1)
    assert spatial_w.shape == (len(reduce_w), 1, 7, 7)


def test_stage1_outputs_rgb_with_visible_chroma():
    net = Stage1Net(Stage1Config(channels=8))
    ir, vis = torch.rand(2, 1, 20, 24), torch.rand(2, 3, 20, 24)
    f1 = net(ir, vis)
    assert f1.shape == (2, 3, 20, 24) and 0 <= f1.min() and f1.max() <= 1
    # Chroma comes from the visible image (up to the clamp at the RGB gamut edge).
    chroma_f1, chroma_vis = rgb_to_ycbcr(f1)[:, 1:], rgb_to_ycbcr(vis)[:, 1:]
    assert (chroma_f1 - chroma_vis).abs().median() < 0.02
    f1.mean().backward()
    assert _grad_ok(net)


def test_color_roundtrip():
    rgb = torch.rand(1, 3, 8, 8)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=2e-3)
    y = torch.full((1, 1, 8, 8), 0.25)
    assert torch.allclose(
        rgb_to_ycbcr(with_luminance(y, torch.full((1, 3, 8, 8), 0.5)))[:, :1], y, atol=1e-4
    )


def test_resblock_uses_the_time_embedding():
    block = ResBlock(8, 16, 32, groups=8, dropout=0.0)
    x = torch.randn(1, 8, 8, 8)
    a, b = block(x, torch.zeros(1, 32)), block(x, torch.ones(1, 32))
    assert a.shape == (1, 16, 8, 8) and not torch.allclose(a, b)


def test_unet_predicts_noise_shape_and_returns_five_decoder_levels():
    cfg = UNetConfig(base_channels=8, attention_levels=(4,))
    unet = DenoisingUNet(cfg)
    x = torch.randn(2, 5, 32, 48)
    eps, feats = unet(x, torch.tensor([3, 700]))
    assert eps.shape == x.shape
    assert [f.shape[1] for f in feats] == cfg.decoder_channels
    assert feats[0].shape[-2:] == (2, 3) and feats[-1].shape[-2:] == (32, 48)
    eps.square().mean().backward()
    assert _grad_ok(unet)
    with pytest.raises(ValueError, match="multiple of 16"):
        unet(torch.randn(1, 5, 30, 48), torch.tensor([1]))


def test_hfah_starts_as_identity_to_f1_and_learns():
    head = HFAH([16, 8], steps=2, width=8)
    feats = [torch.randn(1, 32, 4, 4), torch.randn(1, 16, 8, 8)]
    y1 = torch.rand(1, 1, 8, 8) * 0.9 + 0.05
    ir, vis_y = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    out = head(feats, y1, ir, vis_y)
    assert out.shape == y1.shape and torch.allclose(out, y1, atol=1e-5)
    target = torch.maximum(ir, vis_y)
    (out - target).abs().mean().backward()
    assert head.out.weight.grad.abs().sum() > 0
    torch.optim.SGD(head.parameters(), lr=0.1).step()
    head.zero_grad()
    (head(feats, y1, ir, vis_y) - target).abs().mean().backward()
    # Once the output conv is non-zero, the refinement learns from the source channels too.
    assert head.refine[0].weight.grad[:, -2:].abs().sum() > 0


def test_noise_schedules():
    for kind in ("linear", "cosine"):
        s = NoiseSchedule(kind)
        abar = s.alphas_cumprod
        assert (
            abar.shape == (1000,) and (abar[1:] < abar[:-1]).all() and 0 < abar[-1] < abar[0] <= 1
        )
        x0 = torch.rand(2, 5, 4, 4)
        noise = torch.randn_like(x0)
        xt = s.q_sample(x0, torch.tensor([0, 999]), noise)
        assert torch.allclose(xt[0], x0[0], atol=0.05)
        assert (xt[1] - noise[1]).abs().max() < 0.1
    with pytest.raises(ValueError):
        NoiseSchedule("quadratic")


def test_fixed_noise_is_reproducible():
    a = fixed_noise(3, (5, 8, 8), seed=7, device="cpu", dtype=torch.float32)
    assert torch.equal(a, fixed_noise(3, (5, 8, 8), seed=7, device="cpu", dtype=torch.float32))
    assert not torch.equal(a, fixed_noise(3, (5, 8, 8), seed=8, device="cpu", dtype=torch.float32))


@pytest.mark.parametrize("size", [(97, 131), (481, 641)])
def test_sgdfuse_any_input_size(size):
    model = SGDFuse(small_config()).eval()
    h, w = size
    with torch.inference_mode():
        fused, f1 = model(
            torch.rand(1, 1, h, w),
            torch.rand(1, 3, h, w),
            torch.rand(1, 1, h, w),
            torch.rand(1, 1, h, w),
            1,
        )
    assert fused.shape == (1, 3, h, w) and f1.shape == (1, 3, h, w)
    assert torch.isfinite(fused).all() and 0 <= fused.min() and fused.max() <= 1


def test_stage2_is_bit_identical_for_equal_inputs_and_seed():
    torch.manual_seed(0)
    model = SGDFuse(small_config()).eval()
    _randomize_heads(model)
    inputs = [
        torch.rand(1, 1, 32, 48),
        torch.rand(1, 3, 32, 48),
        torch.rand(1, 1, 32, 48),
        torch.rand(1, 1, 32, 48),
    ]
    with torch.inference_mode():
        a, _ = model(*inputs, steps=3)
        b, _ = model(*[x.clone() for x in inputs], steps=3)
        model.config.noise_seed = 1
        c, _ = model(*inputs, steps=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # the seed, not chance, makes them equal


def test_steps_select_their_own_head_and_unknown_steps_fail():
    torch.manual_seed(0)
    model = SGDFuse(small_config()).eval()
    _randomize_heads(model)
    assert model.supported_steps == (1, 2, 3)
    inputs = [
        torch.rand(1, 1, 32, 32),
        torch.rand(1, 3, 32, 32),
        torch.rand(1, 1, 32, 32),
        torch.rand(1, 1, 32, 32),
    ]
    with torch.inference_mode():
        k1, _ = model(*inputs, steps=1)
        k3, _ = model(*inputs, steps=3)
    assert not torch.equal(k1, k3)
    with pytest.raises(ValueError, match="no HFAH head for K=4"):
        model(*inputs, steps=4)


def test_k_noised_copies_run_in_one_unet_call():
    model = SGDFuse(small_config()).eval()
    calls = []
    model.unet.stem.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    with torch.inference_mode():
        model(
            torch.rand(2, 1, 32, 32),
            torch.rand(2, 3, 32, 32),
            torch.rand(2, 1, 32, 32),
            torch.rand(2, 1, 32, 32),
            3,
        )
    assert calls == [6]  # K=3 timesteps × batch 2 in a single forward


def test_config_roundtrip_and_validation():
    for cfg in (small_config(), paper_config()):
        again = SGDFuseConfig.from_dict(cfg.to_dict())
        assert again.to_dict() == cfg.to_dict()
    bad = small_config()
    bad.timesteps = {2: (5,)}
    with pytest.raises(ValueError, match="timesteps for K=2"):
        SGDFuse(bad)


@pytest.mark.parametrize("groups, channels", [(1, 8), (8, 8), (4, 16)])
def test_group_norm_is_exact_in_every_memory_format_and_thread_count(groups, channels):
    """torch's channels-last CPU GroupNorm drifts by 1e-2 on large groups with one thread;
    ours must match a float64 reference whatever the layout and thread count."""
    torch.manual_seed(0)
    norm = GroupNorm(groups, channels)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1.0, 1.0)
    x = torch.randn(1, channels, 240, 320) * 0.5 + 5.0  # offset mean: where precision is lost
    reference = F.group_norm(
        x.double(), groups, norm.weight.double(), norm.bias.double(), norm.eps
    ).float()
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            for layout in (torch.contiguous_format, torch.channels_last):
                with torch.inference_mode():
                    out = norm(x.contiguous(memory_format=layout))
                assert out.is_contiguous(memory_format=layout)
                assert (out - reference).abs().max() < 1e-5
    finally:
        torch.set_num_threads(threads)


def test_cached_noise_follows_frame_size_steps_and_seed():
    """A video changes size, K or seed mid-stream: every call must noise as a fresh model does."""
    torch.manual_seed(0)
    model = SGDFuse(small_config()).eval()
    _randomize_heads(model)

    def pair(h: int, w: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(h * w)
        return [torch.rand(1, c, h, w, generator=g) for c in (1, 3, 1, 1)]

    with torch.inference_mode():
        for h, w, steps, seed in [(32, 32, 1, 0), (32, 48, 1, 0), (32, 48, 3, 0), (32, 48, 3, 5)]:
            model.config.noise_seed = seed
            cached, _ = model(*pair(h, w), steps=steps)
            model._noise_cache.clear()
            fresh, _ = model(*pair(h, w), steps=steps)
            assert torch.equal(cached, fresh), (h, w, steps, seed)


def test_sources_head_starts_at_f1_and_can_keep_either_source_exactly():
    head = HFAH([16, 8], steps=1, width=8, output="sources")
    feats = [torch.randn(1, 16, 4, 4), torch.randn(1, 8, 8, 8)]
    y1 = torch.rand(1, 1, 8, 8)
    ir, vis_y = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    assert torch.equal(head(feats, y1, ir, vis_y), y1)  # zero coefficients: F1 exactly
    with torch.no_grad():
        head.out.bias.copy_(torch.tensor([1.0, 0.0]))  # a = 1, b = 0: the IR pixels
    assert torch.allclose(head(feats, y1, ir, vis_y), ir, atol=1e-6)
    with torch.no_grad():
        head.out.bias.copy_(torch.tensor([0.0, 1.0]))  # the visible luminance
    assert torch.allclose(head(feats, y1, ir, vis_y), vis_y, atol=1e-6)
    with torch.no_grad():
        head.out.bias.copy_(torch.tensor([0.0, 0.0]))
    (head(feats, y1, ir, vis_y) - torch.maximum(ir, vis_y)).abs().mean().backward()
    assert head.out.weight.grad.abs().sum() > 0 and head.out.bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="is not one of: correction, sources, select"):
        HFAH([16, 8], steps=1, output="residual")


def test_select_head_starts_near_f1_and_a_confident_choice_is_the_candidate_exactly():
    head = HFAH([16, 8], steps=1, width=8, output="select")
    feats = [torch.randn(1, 16, 4, 4), torch.randn(1, 8, 8, 8)]
    y1 = torch.rand(1, 1, 8, 8)
    ir, vis_y = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    w_f1 = 1 / (1 + 2 * math.exp(-SELECT_F1_LOGIT))
    start = w_f1 * y1 + (1 - w_f1) / 2 * (ir + vis_y)
    assert torch.allclose(head(feats, y1, ir, vis_y), start, atol=1e-6)
    for logits, candidate in (
        ([0.0, 30.0, 0.0], ir),
        ([0.0, 0.0, 30.0], vis_y),
        ([30.0, 0, 0], y1),
    ):
        with torch.no_grad():
            head.out.bias.copy_(torch.tensor(logits))
        assert torch.equal(head(feats, y1, ir, vis_y), candidate)  # bit-exact source pixels
    with torch.no_grad():  # equal logits: the plain mean, never outside the candidates' range
        head.out.bias.zero_()
        head.out.weight.normal_(std=5.0)
    mixed = head(feats, y1, ir, vis_y)
    low = torch.minimum(torch.minimum(y1, ir), vis_y)
    high = torch.maximum(torch.maximum(y1, ir), vis_y)
    assert bool(((mixed >= low - 1e-6) & (mixed <= high + 1e-6)).all())
    (mixed - torch.maximum(ir, vis_y)).abs().mean().backward()
    assert head.out.weight.grad.abs().sum() > 0


def test_head_output_is_part_of_the_config_and_old_configs_read_as_correction():
    sources = small_config()
    sources.head_output = "sources"
    data = sources.to_dict()
    assert data["head_output"] == "sources"
    model = SGDFuse(SGDFuseConfig.from_dict(data))
    assert all(head.output == "sources" for head in model.heads.values())
    # Weights written before the option existed have no key: they keep the correction head,
    # and a correction config writes no key (its dict, and the files' hashes, are unchanged).
    assert "head_output" not in small_config().to_dict()
    assert SGDFuseConfig.from_dict(small_config().to_dict()).head_output == "correction"
