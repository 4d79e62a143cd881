"""SAM prior backend: Segment Anything masks prompted by thermal hot spots (IR) and a grid (VIS).

Per modality the ViT image encoder runs once (IR replicated to three channels), then every
point prompt is decoded in one batched mask-decoder call. The candidate masks are filtered
and merged by :func:`merge_mask_logits`:

* keep mask k when  iou_k ≥ pred_iou_thresh,  stab_k ≥ stability_thresh,
  0 < area_k ≤ max_area_fraction · frame  (a mask over most of the frame is background);
  stab_k = |ℓ_k > t + δ| / |ℓ_k > t − δ|, the IoU of the mask thresholded at logit t ± δ
  (t = 0, δ = stability_offset): a mask whose outline moves with the threshold is a guess;
* soft union  M(x) = max_k  s_k · clamp((ℓ_k(x) − (t − δ)) / (2δ), 0, 1),  s_k = iou_k · stab_k:
  each mask is 1 inside its strict outline, 0 outside its loose one, a ramp across the
  uncertain band, weighted by how much SAM trusts it; the maximum (not a sum) keeps
  overlapping masks from neighbouring prompts from inflating the map. No surviving mask
  gives an all-zeros map: a real answer, "no objects".

Filtering runs on the decoder's low-resolution logits (¼ of the encoder input, padding
cropped); only the merged map is resized to the image. torch and segment_anything are
imported lazily so ``import sgdfuse_ros.semantics`` works without them. The numpy helpers
(:func:`sam_encoder_input`, :func:`points_to_input_frame`, :func:`merge_mask_logits` and
:func:`restore_prior_size` on numpy arrays) let an ONNX/TensorRT runtime reuse the exact
pre- and post-processing of this torch path.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sgdfuse_ros.errors import BackendUnavailableError, WeightsError, torch_load_reason
from sgdfuse_ros.semantics.prompts import check_pair, grid_points, thermal_hotspot_points

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

LOGGER = logging.getLogger("sgdfuse_ros")

SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
# Width of the ViT patch embedding identifies a checkpoint's model type.
_ENCODER_WIDTH_TO_TYPE = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_OFFICIAL_CHECKPOINTS = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
INSTALL_HINT = "pip install segment-anything (it needs torch: pip install torch)"
CHECKPOINT_HINT = (
    "download the official file ({files}) from "
    "https://github.com/facebookresearch/segment-anything#model-checkpoints "
    "and pass its path as sam_checkpoint"
)


@dataclass(frozen=True)
class SamSettings:
    """Prompting and mask-filter knobs of the SAM backend (all recorded by ``settings()``)."""

    ir_max_points: int = 16
    """At most this many thermal hot-spot prompts per IR frame."""
    ir_peak_percentile: float = 95.0
    """Hot spots must be hotter than this percentile of the smoothed IR frame."""
    vis_points_per_side: int = 8
    """VIS prompts: a vis_points_per_side × vis_points_per_side grid."""
    pred_iou_thresh: float = 0.8
    """Masks whose predicted IoU is lower are dropped."""
    stability_thresh: float = 0.9
    """Masks whose stability score is lower are dropped."""
    stability_offset: float = 1.0
    """δ: logit offset of the stability score and width of the soft mask edge."""
    max_area_fraction: float = 0.6
    """Masks covering more than this fraction of the frame are dropped."""
    multimask: bool = True
    """Decode SAM's three disambiguating masks per prompt (whole/part/subpart) or only one."""
    fp16: bool = True
    """Run under float16 autocast on CUDA (ignored on CPU)."""

    def validate(self) -> None:
        if self.ir_max_points < 1 or self.vis_points_per_side < 1:
            raise ValueError("ir_max_points and vis_points_per_side must be >= 1")
        if self.stability_offset <= 0:
            raise ValueError(f"stability_offset must be > 0, got {self.stability_offset}")
        if not 0.0 < self.max_area_fraction <= 1.0:
            raise ValueError(f"max_area_fraction must be in (0, 1], got {self.max_area_fraction}")


@dataclass
class MaskMerge:
    """Result of :func:`merge_mask_logits`; per-mask arrays let callers see why masks fell."""

    prior: Any
    """H×W float32 soft union in [0, 1] (numpy array or torch tensor, like the input)."""
    keep: Any
    """(N,) bool: the masks that passed every filter."""
    scores: Any
    """(N,) float32: iou · stability, the weight of each mask in the union."""
    stability: Any
    """(N,) float32 stability scores."""
    area_fraction: Any
    """(N,) float32 fraction of the frame each mask covers."""


def merge_mask_logits(
    mask_logits: Any,
    iou_predictions: Any,
    *,
    pred_iou_thresh: float = 0.8,
    stability_thresh: float = 0.9,
    stability_offset: float = 1.0,
    max_area_fraction: float = 0.6,
    mask_threshold: float = 0.0,
) -> MaskMerge:
    """Filter candidate masks and merge the survivors into one soft map (formula: module doc).

    ``mask_logits`` is (N, H, W) over the image only (padding already cropped),
    ``iou_predictions`` is (N,). Works on numpy arrays and on torch tensors on any device
    (the same code: torch accepts numpy's reductions), so the GPU path never copies the
    candidate masks to the host.
    """
    is_torch = type(mask_logits).__module__.startswith("torch")
    xp: Any
    if is_torch:
        import torch

        xp = torch
        logits = mask_logits.float()
        iou = iou_predictions.float().reshape(-1)
    else:
        xp = np
        logits = np.asarray(mask_logits, np.float32)
        iou = np.asarray(iou_predictions, np.float32).reshape(-1)
    if logits.ndim != 3 or iou.shape[0] != logits.shape[0]:
        raise ValueError(
            f"expected (N, H, W) logits and (N,) IoU, got {tuple(logits.shape)}, {tuple(iou.shape)}"
        )
    count, height, width = logits.shape
    flat = logits.reshape(count, height * width)
    strict = (flat > mask_threshold + stability_offset).sum(axis=1)
    loose = (flat > mask_threshold - stability_offset).sum(axis=1)
    area = (flat > mask_threshold).sum(axis=1)
    stability = _as_float32(strict / xp.maximum(loose, xp.ones_like(loose)), is_torch)
    area_fraction = _as_float32(area / float(height * width), is_torch)
    scores = xp.clip(iou, 0.0, 1.0) * stability
    keep = (
        (iou >= pred_iou_thresh)
        & (stability >= stability_thresh)
        & (area > 0)
        & (area_fraction <= max_area_fraction)
    )
    if bool(keep.any()):
        ramp = xp.clip(
            (logits[keep] - (mask_threshold - stability_offset)) / (2 * stability_offset), 0.0, 1.0
        )
        prior = xp.amax(ramp * scores[keep][:, None, None], axis=0)
    elif is_torch:
        prior = logits.new_zeros((height, width))
    else:
        prior = np.zeros((height, width), np.float32)
    return MaskMerge(prior, keep, scores, stability, area_fraction)


def _as_float32(values: Any, is_torch: bool) -> Any:
    if is_torch:
        return values.float()
    return np.asarray(values, np.float32)


def encoder_input_shape(height: int, width: int, image_size: int) -> tuple[int, int]:
    """(h, w) of an image resized so its longest side is image_size (SAM's ResizeLongestSide)."""
    scale = image_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_encoder_input(
    image: np.ndarray,
    image_size: int,
    pixel_mean: np.ndarray | list[float],
    pixel_std: np.ndarray | list[float],
) -> tuple[np.ndarray, tuple[int, int]]:
    """SAM's image-encoder input for an H×W×3 RGB image (uint8, or float on the 0..255 scale).

    Returns the (1, 3, S, S) float32 tensor (resized so the longest side is S, normalised,
    zero-padded at the bottom/right, as ``Sam.preprocess`` does) and the resized (h, w).
    """
    import cv2

    height, width = image.shape[:2]
    input_hw = encoder_input_shape(height, width, image_size)
    upscaling = input_hw[0] >= height
    resized = cv2.resize(
        image.astype(np.float32, copy=False),
        (input_hw[1], input_hw[0]),
        interpolation=cv2.INTER_LINEAR if upscaling else cv2.INTER_AREA,
    )
    mean = np.asarray(pixel_mean, np.float32).reshape(1, 1, 3)
    std = np.asarray(pixel_std, np.float32).reshape(1, 1, 3)
    padded = np.zeros((image_size, image_size, 3), np.float32)
    padded[: input_hw[0], : input_hw[1]] = (resized - mean) / std
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None]), input_hw


def points_to_input_frame(
    points_xy: np.ndarray, original_hw: tuple[int, int], image_size: int
) -> np.ndarray:
    """Map (N, 2) (x, y) pixel prompts of the original image into the encoder-input frame."""
    input_h, input_w = encoder_input_shape(original_hw[0], original_hw[1], image_size)
    scale = np.array([input_w / original_hw[1], input_h / original_hw[0]], np.float32)
    return (np.asarray(points_xy, np.float32) * scale).astype(np.float32)


def lowres_valid_shape(
    input_hw: tuple[int, int], image_size: int, lowres_size: int
) -> tuple[int, int]:
    """Part of the decoder's lowres_size² logits that covers the image (not the padding)."""
    ratio = lowres_size / image_size
    return (
        min(lowres_size, math.ceil(input_hw[0] * ratio)),
        min(lowres_size, math.ceil(input_hw[1] * ratio)),
    )


def restore_prior_size(
    prior_lowres: Any,
    input_hw: tuple[int, int],
    original_hw: tuple[int, int],
    image_size: int,
    lowres_size: int,
) -> Any:
    """Resize a merged low-resolution map (cropped to the image) to the original image size.

    Follows ``Sam.postprocess_masks``: up to encoder-input scale, crop the resized image's
    extent, then to the original size. numpy in → numpy out (OpenCV); torch in → torch out.
    """
    up = image_size / lowres_size
    scaled_hw = (round(prior_lowres.shape[0] * up), round(prior_lowres.shape[1] * up))
    if type(prior_lowres).__module__.startswith("torch"):
        from torch.nn import functional

        scaled = functional.interpolate(
            prior_lowres[None, None], size=scaled_hw, mode="bilinear", align_corners=False
        )[..., : input_hw[0], : input_hw[1]]
        restored = functional.interpolate(
            scaled, size=tuple(original_hw), mode="bilinear", align_corners=False
        )[0, 0]
        return restored.clamp(0.0, 1.0)
    import cv2

    prior = np.asarray(prior_lowres, np.float32)
    scaled = cv2.resize(prior, (scaled_hw[1], scaled_hw[0]), interpolation=cv2.INTER_LINEAR)
    cropped = np.ascontiguousarray(scaled[: input_hw[0], : input_hw[1]])
    restored = cv2.resize(cropped, (original_hw[1], original_hw[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(restored, 0.0, 1.0).astype(np.float32, copy=False)


def import_segment_anything() -> Any:
    """The segment_anything module, or BackendUnavailableError saying how to install it."""
    try:
        import segment_anything
        import torch  # noqa: F401  (segment_anything needs it; fail with the same hint)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the SAM prior backend needs segment_anything and torch ({exc}); {INSTALL_HINT}"
        ) from exc
    return segment_anything


def build_small_sam(
    image_size: int = 256,
    embed_dim: int = 64,
    depth: int = 2,
    num_heads: int = 2,
    patch_size: int = 16,
    prompt_embed_dim: int = 32,
    window_size: int = 8,
    seed: int = 0,
) -> Sam:
    """A real segment_anything ``Sam`` with a tiny ViT encoder and random weights.

    A test and benchmark aid only: its masks mean nothing, but every code path (encoder,
    prompt encoder, batched mask decoder, filters, resizing) runs exactly as with vit_b/l/h,
    in milliseconds on a CPU. ``seed`` makes the weights reproducible without touching the
    caller's global random state.
    """
    from functools import partial

    import torch

    sam_lib = import_segment_anything()
    modeling = sam_lib.modeling
    grid = image_size // patch_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = modeling.Sam(
            image_encoder=modeling.ImageEncoderViT(
                img_size=image_size,
                patch_size=patch_size,
                embed_dim=embed_dim,
                depth=depth,
                num_heads=num_heads,
                mlp_ratio=4.0,
                out_chans=prompt_embed_dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=window_size,
                global_attn_indexes=(depth - 1,),
            ),
            prompt_encoder=modeling.PromptEncoder(
                embed_dim=prompt_embed_dim,
                image_embedding_size=(grid, grid),
                input_image_size=(image_size, image_size),
                mask_in_chans=16,
            ),
            mask_decoder=modeling.MaskDecoder(
                num_multimask_outputs=3,
                transformer=modeling.TwoWayTransformer(
                    depth=2,
                    embedding_dim=prompt_embed_dim,
                    mlp_dim=4 * prompt_embed_dim,
                    num_heads=2,
                ),
                transformer_dim=prompt_embed_dim,
                iou_head_depth=3,
                iou_head_hidden_dim=prompt_embed_dim,
            ),
        )
    return sam.eval()


class SamPriorBackend:
    """Soft object maps from SAM masks; see the module docstring for prompts, filters, merge."""

    name = "sam"

    def __init__(
        self,
        sam: Sam,
        *,
        device: str = "cpu",
        model_type: str | None = None,
        checkpoint_name: str | None = None,
        **settings: Any,
    ) -> None:
        """Wrap an already built ``Sam`` of any size (official, fine-tuned or ``build_small_sam``).

        ``model_type`` (default: read from the encoder width, else "custom") and
        ``checkpoint_name`` are only recorded in ``settings()``.
        """
        import torch

        self._settings = SamSettings(**settings)
        self._settings.validate()
        self._device = torch.device(device)
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device {device!r} requested for SAM but this torch has no CUDA "
                f"(torch {torch.__version__}); use device='cpu' or install a CUDA build of torch"
            )
        self._sam: Sam | None = sam.to(self._device).eval()
        encoder_width = int(sam.image_encoder.patch_embed.proj.out_channels)
        self._model_type = model_type or _ENCODER_WIDTH_TO_TYPE.get(encoder_width, "custom")
        self._checkpoint_name = checkpoint_name

    @classmethod
    def from_checkpoint(
        cls, model_type: str, checkpoint: str | Path, device: str = "cpu", **settings: Any
    ) -> SamPriorBackend:
        """Build vit_b / vit_l / vit_h and load an official (or fine-tuned) SAM checkpoint."""
        if model_type not in SAM_MODEL_TYPES:
            raise ValueError(f"unknown SAM model type {model_type!r}; use one of {SAM_MODEL_TYPES}")
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"SAM checkpoint {path} not found; "
                + CHECKPOINT_HINT.format(files=_OFFICIAL_CHECKPOINTS[model_type])
            )
        sam_lib = import_segment_anything()
        import torch

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt zip, pickle, truncated download: all "bad weights"
            raise WeightsError(
                f"cannot read SAM checkpoint {path}: {torch_load_reason(exc)}"
            ) from exc
        if not isinstance(state, dict):
            raise WeightsError(f"SAM checkpoint {path} is not a state dict")
        patch_weight = state.get("image_encoder.patch_embed.proj.weight")
        detected = (
            None if patch_weight is None else _ENCODER_WIDTH_TO_TYPE.get(int(patch_weight.shape[0]))
        )
        if detected is not None and detected != model_type:
            raise WeightsError(
                f"SAM checkpoint {path} holds a {detected} model but model type {model_type} "
                f"was requested; pass sam_model_type={detected!r}"
            )
        sam = sam_lib.sam_model_registry[model_type]()
        try:
            sam.load_state_dict(state)
        except RuntimeError as exc:
            raise WeightsError(f"SAM checkpoint {path} does not fit {model_type}: {exc}") from exc
        return cls(sam, device=device, model_type=model_type, checkpoint_name=path.name, **settings)

    @property
    def sam(self) -> Sam:
        """The segment_anything ``Sam`` module (for export to ONNX/TensorRT)."""
        if self._sam is None:
            raise RuntimeError("the SAM prior backend is closed")
        return self._sam

    @property
    def image_size(self) -> int:
        """Side of the square image-encoder input (1024 for the official models)."""
        return int(self.sam.image_encoder.img_size)

    def settings(self) -> dict[str, object]:
        """JSON-serialisable description, recorded in training caches and weight metadata."""
        return {
            "backend": self.name,
            "model_type": self._model_type,
            "checkpoint": self._checkpoint_name,
            "image_size": self.image_size,
            **asdict(self._settings),
        }

    def encoder_input(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Preprocessed (1, 3, S, S) float32 encoder input for an RGB image, and the resized (h, w).

        For an IR frame pass it replicated to three channels on the 0..255 scale, as
        ``compute`` does (see :meth:`ir_as_rgb`).
        """
        sam = self.sam
        return sam_encoder_input(
            image,
            self.image_size,
            sam.pixel_mean.detach().cpu().numpy().ravel(),
            sam.pixel_std.detach().cpu().numpy().ravel(),
        )

    @staticmethod
    def ir_as_rgb(ir: np.ndarray) -> np.ndarray:
        """Thermal [0, 1] frame as the three-channel 0..255 float image the encoder expects."""
        return np.repeat(ir[..., None] * np.float32(255.0), 3, axis=2)

    def ir_prompts(self, ir: np.ndarray) -> np.ndarray:
        """(N, 2) (x, y) hot-spot prompts of a thermal frame in its own pixel coordinates."""
        s = self._settings
        return thermal_hotspot_points(
            ir, max_points=s.ir_max_points, percentile=s.ir_peak_percentile
        )

    def vis_prompts(self, height: int, width: int) -> np.ndarray:
        """(N, 2) (x, y) grid prompts for a visible frame of the given size."""
        return grid_points(height, width, self._settings.vis_points_per_side)

    def compute(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (m_ir, m_vis), float32 H×W in [0, 1], for a registered IR/VIS pair."""
        ir, vis = check_pair(ir, vis)
        height, width = ir.shape
        m_ir = self.prior_map(self.ir_as_rgb(ir), self.ir_prompts(ir))
        m_vis = self.prior_map(vis, self.vis_prompts(height, width))
        return m_ir, m_vis

    def prior_map(self, image: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
        """One modality: encode the image once, decode all point prompts in one batch, merge."""
        import torch

        sam = self.sam
        s = self._settings
        original_hw = (int(image.shape[0]), int(image.shape[1]))
        if len(points_xy) == 0:
            return np.zeros(original_hw, np.float32)  # no prompt, no object
        encoder_input, input_hw = self.encoder_input(image)
        coords = points_to_input_frame(points_xy, original_hw, self.image_size)
        device = self._device
        use_fp16 = s.fp16 and device.type == "cuda"
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.float16)
            if use_fp16
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            embedding = sam.image_encoder(torch.from_numpy(encoder_input).to(device))
            point_coords = torch.from_numpy(coords).to(device)[:, None, :]
            point_labels = torch.ones(point_coords.shape[:2], dtype=torch.int64, device=device)
            sparse, dense = sam.prompt_encoder(
                points=(point_coords, point_labels), boxes=None, masks=None
            )
            lowres_logits, iou_predictions = sam.mask_decoder(
                image_embeddings=embedding,
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=s.multimask,
            )
        with torch.inference_mode():
            lowres_size = int(lowres_logits.shape[-1])
            valid_h, valid_w = lowres_valid_shape(input_hw, self.image_size, lowres_size)
            candidates = lowres_logits[..., :valid_h, :valid_w].float()
            merged = merge_mask_logits(
                candidates.reshape(-1, valid_h, valid_w),
                iou_predictions.reshape(-1),
                pred_iou_thresh=s.pred_iou_thresh,
                stability_thresh=s.stability_thresh,
                stability_offset=s.stability_offset,
                max_area_fraction=s.max_area_fraction,
                mask_threshold=float(sam.mask_threshold),
            )
            prior = restore_prior_size(
                merged.prior, input_hw, original_hw, self.image_size, lowres_size
            )
            return prior.cpu().numpy().astype(np.float32, copy=False)

    def close(self) -> None:
        """Drop the model and release cached CUDA memory; the backend cannot compute afterwards."""
        if self._sam is None:
            return
        on_cuda = self._device.type == "cuda"
        if on_cuda:
            # Move off the GPU rather than only dropping the reference: a caller that built
            # the module may still hold it, and its weights would keep the memory.
            self._sam.to("cpu")
        self._sam = None
        if on_cuda:
            import torch

            torch.cuda.empty_cache()
        LOGGER.debug("SAM prior backend closed")
