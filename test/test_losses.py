"""Every training loss on hand-made planes whose values can be worked out by hand."""

from __future__ import annotations

import pytest
import torch

from training.losses import (
    denoising_loss,
    fusion_loss,
    gradient_loss,
    intensity_loss,
    masked_fusion_loss,
    object_loss,
    prior_weight,
    sobel_magnitude,
    ssim_map,
    structure_loss,
)


def plane(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[None, None]


def step_edge(height: int = 5, width: int = 6, column: int = 3, high: float = 1.0) -> torch.Tensor:
    """0 left of ``column``, ``high`` from ``column`` on."""
    y = torch.zeros(1, 1, height, width)
    y[..., column:] = high
    return y


def test_sobel_flat_is_zero_and_step_edge_is_four_times_the_step() -> None:
    assert sobel_magnitude(torch.full((1, 1, 4, 4), 0.7)).abs().max().item() < 1e-6
    g = sobel_magnitude(step_edge(high=0.5))
    # |G_x| = (1 + 2 + 1) * 0.5 on the two columns beside the step, zero elsewhere (replicate pad).
    assert torch.allclose(g[0, 0, :, 2], torch.full((5,), 2.0))
    assert torch.allclose(g[0, 0, :, 3], torch.full((5,), 2.0))
    assert g[0, 0, :, :2].abs().max().item() < 1e-6 and g[0, 0, :, 4:].abs().max().item() < 1e-6


def test_intensity_loss_targets_the_brighter_source() -> None:
    ir = plane([[0.2, 0.9], [0.2, 0.9]])
    vis = plane([[0.6, 0.1], [0.6, 0.1]])
    assert intensity_loss(plane([[0.6, 0.9], [0.6, 0.9]]), ir, vis).item() == pytest.approx(0.0)
    # All-zero output: mean of max = (0.6 + 0.9) / 2.
    assert intensity_loss(torch.zeros_like(ir), ir, vis).item() == pytest.approx(0.75)
    # The mean image is off by |0.4 − 0.6| = 0.2 and |0.5 − 0.9| = 0.4.
    assert intensity_loss((ir + vis) / 2, ir, vis).item() == pytest.approx(0.3)


def test_gradient_loss_targets_the_stronger_edge() -> None:
    ir = step_edge(high=1.0)
    vis = step_edge(high=0.25)
    assert gradient_loss(ir, ir, vis).item() == pytest.approx(0.0)
    # A flat output misses the IR edge: two columns of 4.0 in a 5×6 plane.
    assert gradient_loss(torch.full_like(ir, 0.3), ir, vis).item() == pytest.approx(
        2 * 5 * 4.0 / 30
    )
    # The weaker VIS edge leaves 4.0 − 1.0 on those columns.
    assert gradient_loss(vis, ir, vis).item() == pytest.approx(2 * 5 * 3.0 / 30)


def test_fusion_loss_combines_with_lambdas() -> None:
    ir, vis = step_edge(high=1.0), torch.full((1, 1, 5, 6), 0.2)
    fused = torch.full_like(ir, 0.5)
    total, parts = fusion_loss(fused, ir, vis, lambda_intensity=1.5, lambda_gradient=1.0)
    expected_int = intensity_loss(fused, ir, vis).item()
    expected_grad = gradient_loss(fused, ir, vis).item()
    assert parts == pytest.approx({"intensity": expected_int, "gradient": expected_grad})
    assert total.item() == pytest.approx(1.5 * expected_int + expected_grad)
    total2, _ = fusion_loss(fused, ir, vis, lambda_intensity=0.0, lambda_gradient=2.0)
    assert total2.item() == pytest.approx(2 * expected_grad)


def test_prior_weight_is_mask_plus_beta_background() -> None:
    m_ir = plane([[1.0, 0.0], [0.5, 0.0]])
    m_vis = plane([[0.0, 0.0], [0.2, 0.8]])
    w = prior_weight(m_ir, m_vis, background_weight=0.5)
    # M = max → [[1, 0], [0.5, 0.8]]; weight = M + 0.5 (1 − M).
    assert torch.allclose(w, plane([[1.0, 0.5], [0.75, 0.9]]))
    assert torch.allclose(prior_weight(m_ir, m_vis, 1.0), torch.ones_like(w))
    with pytest.raises(ValueError):
        prior_weight(m_ir, m_vis, 1.5)


def test_masked_loss_only_sees_objects_without_background_term() -> None:
    ir = plane([[1.0, 0.0], [0.0, 0.0]])
    vis = torch.zeros_like(ir)
    fused = torch.zeros_like(ir)  # misses the hot pixel (error 1.0) and nothing else
    hot = plane([[1.0, 0.0], [0.0, 0.0]])
    cold = plane([[0.0, 0.0], [0.0, 1.0]])
    zero = torch.zeros_like(ir)
    on_object, parts = masked_fusion_loss(
        fused, ir, vis, hot, zero, 1.0, 0.0, background_weight=0.0
    )
    assert on_object.item() == pytest.approx(0.25) and parts["intensity"] == pytest.approx(0.25)
    off_object, _ = masked_fusion_loss(fused, ir, vis, cold, zero, 1.0, 0.0, background_weight=0.0)
    assert off_object.item() == pytest.approx(0.0)
    # With β = 0.5 the error outside the prior counts half.
    half, _ = masked_fusion_loss(fused, ir, vis, cold, zero, 1.0, 0.0, background_weight=0.5)
    assert half.item() == pytest.approx(0.125)


def test_masked_loss_with_full_background_weight_equals_plain_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    fused, ir, vis, m = (torch.rand(2, 1, 8, 8, generator=gen) for _ in range(4))
    plain, _ = fusion_loss(fused, ir, vis)
    masked, _ = masked_fusion_loss(fused, ir, vis, m, m, background_weight=1.0)
    assert masked.item() == pytest.approx(plain.item(), rel=1e-6)


def test_losses_are_differentiable_toward_the_target() -> None:
    ir, vis = step_edge(high=0.9), torch.full((1, 1, 5, 6), 0.3)
    fused = torch.full_like(ir, 0.5, requires_grad=True)
    loss, _ = fusion_loss(fused, ir, vis)
    loss.backward()
    # Raising the output where the target (max = 0.9) is above it lowers the loss.
    assert fused.grad[0, 0, 0, 5] < 0


def test_denoising_loss_is_mean_squared_error() -> None:
    eps = torch.tensor([1.0, -1.0, 0.0, 2.0])
    pred = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert denoising_loss(pred, eps).item() == pytest.approx((0 + 4 + 0 + 4) / 4)
    assert denoising_loss(eps, eps).item() == 0.0


def textured(seed: int, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, size, size, generator=generator)


def test_ssim_map_is_one_for_identical_planes_and_matches_the_global_formula_on_flat_ones() -> None:
    x = textured(0)
    assert torch.allclose(ssim_map(x, x), torch.ones_like(x), atol=1e-5)
    # Two flat planes: variances and covariance vanish, SSIM = (2ab + c1) / (a² + b² + c1).
    a, b, c1 = 0.2, 0.6, 0.01**2
    flat = ssim_map(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert torch.allclose(flat, torch.full_like(flat, expected), atol=1e-3)
    # An inverted texture is structurally opposite: strongly negative SSIM.
    assert ssim_map(x, 1.0 - x).mean().item() < -0.5


def test_structure_loss_prefers_keeping_both_sources_structure() -> None:
    ir, vis = textured(1), textured(2)
    keeps_ir = structure_loss(ir, ir, vis).item()
    blurred = torch.nn.functional.avg_pool2d(ir, 5, stride=1, padding=2)
    # Keeping one source exactly scores half the loss of losing all texture of both.
    assert structure_loss(torch.full_like(ir, 0.5), ir, vis).item() > keeps_ir
    assert structure_loss(blurred, ir, vis).item() > keeps_ir
    # A weight of zero off a region removes that region's contribution.
    weight = torch.zeros_like(ir)
    assert structure_loss(blurred, ir, vis, weight).item() == 0.0


def test_fusion_loss_adds_the_structure_term_only_when_weighted() -> None:
    ir, vis, fused = textured(3), textured(4), textured(5)
    paper, parts = fusion_loss(fused, ir, vis, 1.5, 1.0)
    assert "structure" not in parts
    with_structure, parts = fusion_loss(fused, ir, vis, 1.5, 1.0, lambda_structure=0.5)
    assert with_structure.item() == pytest.approx(paper.item() + 0.5 * parts["structure"])
    assert parts["structure"] == pytest.approx(structure_loss(fused, ir, vis).item())
    # The masked head loss passes it through with the prior weight.
    masks = torch.ones_like(ir)
    masked, _ = masked_fusion_loss(
        fused, ir, vis, masks, masks, 1.5, 1.0, 0.5, lambda_structure=0.5
    )
    assert masked.item() == pytest.approx(with_structure.item(), rel=1e-6)


def test_object_loss_pulls_each_object_to_the_source_its_prior_found_it_in() -> None:
    ir = plane([[0.9, 0.2], [0.2, 0.2]])
    vis = plane([[0.4, 0.8], [0.1, 0.1]])
    m_ir = plane([[1.0, 0.0], [0.0, 0.0]])  # a hot body top left
    m_vis = plane([[0.0, 1.0], [0.0, 0.0]])  # visible structure top right
    kept = plane([[0.9, 0.8], [0.0, 0.0]])  # each object from its source: no loss
    assert object_loss(kept, ir, vis, m_ir, m_vis).item() == pytest.approx(0.0)
    swapped = plane([[0.4, 0.2], [0.0, 0.0]])  # each object from the other source
    assert object_loss(swapped, ir, vis, m_ir, m_vis).item() == pytest.approx((0.5 + 0.6) / 4)
    # Where both priors cover a pixel, the stronger map's source is the minimum.
    both_ir, both_vis = plane([[0.8, 0.0], [0.0, 0.0]]), plane([[0.3, 0.0], [0.0, 0.0]])
    values = torch.linspace(0.0, 1.0, 101)
    costs = [
        object_loss(plane([[float(v), 0.0], [0.0, 0.0]]), ir, vis, both_ir, both_vis).item()
        for v in values
    ]
    assert values[int(torch.tensor(costs).argmin())].item() == pytest.approx(0.9)


def test_masked_loss_adds_the_object_term_only_when_weighted() -> None:
    gen = torch.Generator().manual_seed(3)
    fused, ir, vis, m_ir, m_vis = (torch.rand(1, 1, 8, 8, generator=gen) for _ in range(5))
    plain, parts = masked_fusion_loss(fused, ir, vis, m_ir, m_vis)
    assert "object" not in parts
    weighted, parts = masked_fusion_loss(fused, ir, vis, m_ir, m_vis, lambda_object=2.0)
    expected = object_loss(fused, ir, vis, m_ir, m_vis).item()
    assert parts["object"] == pytest.approx(expected)
    assert weighted.item() == pytest.approx(plain.item() + 2.0 * expected, rel=1e-6)
    # Zero priors: the term vanishes, whatever the output.
    zero = torch.zeros_like(m_ir)
    assert object_loss(fused, ir, vis, zero, zero).item() == 0.0
