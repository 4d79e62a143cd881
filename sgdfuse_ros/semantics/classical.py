"""Classical prior backend: hot objects in IR and salient structure in VIS, numpy + OpenCV only.

It stands in for SAM when no SAM checkpoint is configured (``build_prior_backend("auto")``
without a checkpoint says so in a warning), so the pipeline, the node and training run on any
machine. Its maps are coarser than SAM's masks but have the same meaning: a soft object map in
[0, 1], high on things worth keeping in the fused image, zero on plain background. Both maps
are computed at a working resolution (``work_size`` on the longest side) and resized back,
which keeps the cost near 5–10 ms per pair on one CPU core whatever the camera resolution.

IR map (hot objects):
  1. Gaussian smoothing of the thermal frame.
  2. Robust scene statistics: median and MAD (scaled to a standard deviation, with a floor so
     a flat frame's noise is not amplified). z = (T − median) / scale.
  3. Soft threshold: sigmoid((z − ir_z_threshold) / ir_softness): warm outliers → 1.
  4. Optional local cue (``ir_local_z_threshold`` > 0; off by default): the same soft
     threshold on T minus a wide blur of T (``ir_local_sigma`` of the longest side), against
     that difference map's own robust statistics, opened with an ``ir_local_open``-pixel disc
     (the wide blur also lights up thin warm edges: kerbs, roof lines), and the larger of the
     two maps kept. A scene with a wide spread of temperatures (warm pavement, lit walls:
     LLVIP, RoadScene) makes the frame's MAD so large that a pedestrian is no outlier of the
     frame, though they are one of their neighbourhood. Heads must be trained with the maps
     they will see: measured in ``training/results/fusion_quality.md`` §5.
  5. Support: the map > 0.5, opened (speckle) and closed (holes), connected components;
     components smaller than ``min_area_fraction`` or larger than ``max_area_fraction`` of the
     frame are dropped (a hot sky/road/wall is scene, not object).
  6. Map = soft threshold × slightly blurred support, so edges stay soft and everything
     outside kept components is exactly zero.

VIS map (salient structure):
  1. Centre–surround contrast on CIE Lab at two scales: |G_small * Lab − G_large * Lab|
     (Euclidean over the three channels), so objects that differ in brightness or colour
     from their surroundings stand out while smooth sky and road do not.
  2. Multiplied by the spectral-residual saliency (Hou & Zhang, 2007) of the luminance, which
     favours compact, unexpected structure over long repetitive edges.
  3. Soft threshold against the map's own robust statistics, with an absolute floor in Lab
     units so a flat or nearly flat frame gives a zero map.
  4. The same support/component filtering as the IR map.

Deterministic: no random state, same input → same output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sgdfuse_ros.semantics.prompts import check_pair

_MAD_TO_STD = 1.4826
_SUM_CHANNELS = np.ones((1, 3), np.float32)
# OpenCV's 8-bit Lab stores L·255/100, a + 128, b + 128.
_LAB8_OFFSET = np.array([0.0, 128.0, 128.0], np.float32)
_LAB8_SCALE = np.array([100.0 / 255.0, 1.0, 1.0], np.float32)


@dataclass(frozen=True)
class ClassicalSettings:
    """Tuning knobs of the classical backend (all recorded by ``settings()``)."""

    work_size: int = 320
    """Longest side (pixels) of the resolution the maps are computed at."""
    ir_smooth_sigma: float = 1.0
    """Gaussian sigma (working-resolution pixels) before the IR statistics."""
    ir_z_threshold: float = 3.0
    """Robust z-score (MADs above the median) at which the IR map reaches 0.5."""
    ir_softness: float = 0.75
    """Sigmoid width in z units: larger → softer IR map."""
    ir_min_scale: float = 0.02
    """Floor of the robust IR spread (in [0, 1] intensity units): flat frames stay zero."""
    ir_local_sigma: float = 0.04
    """Surround of the local IR cue: Gaussian sigma as a fraction of the longest side."""
    ir_local_z_threshold: float = 0.0
    """Robust z-score of (T − surround) at which the local IR cue reaches 0.5; 0: no local cue
    (the default, which the shipped weights were trained with); 3 finds LLVIP's pedestrians."""
    ir_local_open: int = 7
    """Disc (working-resolution pixels) the local cue is opened with: thinner warm lines go."""
    vis_z_threshold: float = 2.0
    """Robust z-score of the VIS contrast at which the VIS map reaches 0.5."""
    vis_softness: float = 0.75
    """Sigmoid width in z units for the VIS map."""
    vis_min_contrast: float = 1.0
    """Floor of the VIS saliency spread (Lab contrast × spectral residual, L on 0..100):
    flat and noise-only frames stay zero."""
    min_area_fraction: float = 0.0005
    """Components smaller than this fraction of the frame are noise and dropped."""
    max_area_fraction: float = 0.6
    """Components covering more than this fraction of the frame are background and dropped."""


class ClassicalPriorBackend:
    """Prior maps from hand-made cues; see the module docstring for the method."""

    name = "classical"

    def __init__(self, **settings: object) -> None:
        self._settings = ClassicalSettings(**settings)  # type: ignore[arg-type]
        s = self._settings
        if s.work_size < 32:
            raise ValueError(f"work_size must be >= 32, got {s.work_size}")
        if not 0.0 < s.max_area_fraction <= 1.0:
            raise ValueError(f"max_area_fraction must be in (0, 1], got {s.max_area_fraction}")
        if s.ir_softness <= 0 or s.vis_softness <= 0:
            raise ValueError("ir_softness and vis_softness must be > 0")
        if s.ir_local_sigma <= 0 or s.ir_local_z_threshold < 0 or s.ir_local_open < 1:
            raise ValueError(
                "ir_local_sigma must be > 0, ir_local_z_threshold >= 0 and ir_local_open >= 1"
            )

    def settings(self) -> dict[str, object]:
        """JSON-serialisable description, recorded in training caches and weight metadata."""
        return {"backend": self.name, **asdict(self._settings)}

    def compute(self, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (m_ir, m_vis), float32 H×W in [0, 1], for a registered IR/VIS pair."""
        import cv2

        ir, vis = check_pair(ir, vis)
        height, width = ir.shape
        work_hw = _work_shape(height, width, self._settings.work_size)
        ir_small = _resize(ir, work_hw)
        vis_small = _resize(vis, work_hw)
        m_ir = self._ir_map(ir_small)
        m_vis = self._vis_map(vis_small)
        if work_hw != (height, width):
            m_ir = cv2.resize(m_ir, (width, height), interpolation=cv2.INTER_LINEAR)
            m_vis = cv2.resize(m_vis, (width, height), interpolation=cv2.INTER_LINEAR)
        return _unit(m_ir), _unit(m_vis)

    def close(self) -> None:
        """Nothing to free: the classical backend holds no device memory."""

    def _ir_map(self, ir: np.ndarray) -> np.ndarray:
        import cv2

        s = self._settings
        smooth = cv2.GaussianBlur(ir, (0, 0), sigmaX=s.ir_smooth_sigma, sigmaY=s.ir_smooth_sigma)
        scene = self._ir_outliers(smooth, s.ir_z_threshold)
        if s.ir_local_z_threshold > 0:
            surround = _wide_blur(smooth, s.ir_local_sigma * max(smooth.shape))
            local = self._ir_outliers(smooth - surround, s.ir_local_z_threshold)
            disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (s.ir_local_open,) * 2)
            kept = cv2.morphologyEx((local > 0.5).astype(np.uint8), cv2.MORPH_OPEN, disc)
            # dilated back so an object's soft rim, below 0.5, is not cut off
            local *= cv2.dilate(kept, disc).astype(np.float32)
            scene = np.maximum(scene, local)
        return scene * self._support(scene)

    def _ir_outliers(self, values: np.ndarray, z_threshold: float) -> np.ndarray:
        """Soft map of values well above the map's own median, in robust standard deviations."""
        s = self._settings
        median, spread = _robust_stats(values)
        z = (values - median) / max(spread, s.ir_min_scale)
        return _sigmoid((z - z_threshold) / s.ir_softness)

    def _vis_map(self, vis: np.ndarray) -> np.ndarray:
        import cv2

        s = self._settings
        lab = _rgb_to_lab(vis)
        longest = max(vis.shape[:2])
        contrast = np.zeros(vis.shape[:2], np.float32)
        # Centre ~ object-part scale, surround ~ a few object sizes at work_size resolution.
        for centre_sigma, surround_sigma in ((1.0, 0.03 * longest), (2.0, 0.08 * longest)):
            centre = cv2.GaussianBlur(lab, (0, 0), centre_sigma)
            surround = _wide_blur(lab, surround_sigma)
            difference = centre - surround
            # Euclidean norm over L, a, b; cv2.transform sums the channels ~5× faster than numpy.
            squared = cv2.transform(difference * difference, _SUM_CHANNELS)
            contrast += cv2.sqrt(squared)
        contrast *= 0.5
        contrast *= _spectral_residual(lab[..., 0])
        median, spread = _robust_stats(contrast)
        scale = max(spread, s.vis_min_contrast)
        z = (contrast - median) / scale
        soft = _sigmoid((z - s.vis_z_threshold) / s.vis_softness)
        return soft * self._support(soft)

    def _support(self, soft: np.ndarray) -> np.ndarray:
        """Kept connected components of soft > 0.5, as a softly edged float map in [0, 1]."""
        import cv2

        s = self._settings
        binary = (soft > 0.5).astype(np.uint8)
        if not binary.any():
            return np.zeros(soft.shape, np.float32)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel, iterations=2)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        frame_area = soft.size
        areas = stats[:, cv2.CC_STAT_AREA]
        keep = (areas >= s.min_area_fraction * frame_area) & (
            areas <= s.max_area_fraction * frame_area
        )
        keep[0] = False  # label 0 is the background
        if not keep.any():
            return np.zeros(soft.shape, np.float32)
        support = keep[labels].astype(np.float32)
        # Dilate a little before blurring so the object's own soft edge is not cut by the support.
        support = cv2.dilate(support, kernel, iterations=2)
        return cv2.GaussianBlur(support, (0, 0), 1.0)


def _work_shape(height: int, width: int, work_size: int) -> tuple[int, int]:
    """(h, w) with the longest side at most work_size, aspect kept; never upsampled."""
    scale = min(1.0, work_size / max(height, width))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    if image.shape[:2] == hw:
        return image
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _wide_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a large sigma, done on a downsampled copy (same result, ~10× faster).

    A wide Gaussian removes the fine detail that downsampling would alias, so blurring at
    1/factor resolution with sigma/factor and resizing back differs from the direct blur by
    far less than the soft thresholds care about.
    """
    import cv2

    factor = 1
    while sigma / (factor * 2) >= 2.0 and min(image.shape[:2]) // (factor * 2) >= 8:
        factor *= 2
    if factor == 1:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _robust_stats(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD scaled to a standard deviation: the scene, unmoved by a few objects.

    Taken on every other row and column: the statistics of a smooth map barely change and
    the two medians cost a quarter.
    """
    flat = values[::2, ::2].ravel()
    median = float(np.median(flat))
    mad = float(np.median(np.abs(flat - median)))
    return median, _MAD_TO_STD * mad


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))).astype(np.float32)


def _spectral_residual(luminance: np.ndarray, size: int = 64) -> np.ndarray:
    """Spectral-residual saliency of a luminance image, resized to its shape, in [0, 1].

    The log-amplitude spectrum minus its local mean is what a scene has that natural images
    in general do not; transformed back with the original phase it lights up unexpected
    structure. Computed at size×size as in the original method, where it is most reliable.
    """
    import cv2

    small = cv2.resize(luminance, (size, size), interpolation=cv2.INTER_AREA)
    spectrum = cv2.dft(small.astype(np.float32), flags=cv2.DFT_COMPLEX_OUTPUT)
    real, imag = spectrum[..., 0], spectrum[..., 1]
    amplitude = np.sqrt(real * real + imag * imag)
    log_amplitude = np.log(amplitude + 1e-6)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    gain = np.exp(residual) / (amplitude + 1e-6)
    spectrum[..., 0] = real * gain
    spectrum[..., 1] = imag * gain
    back = cv2.idft(spectrum, flags=cv2.DFT_SCALE)
    saliency = back[..., 0] ** 2 + back[..., 1] ** 2
    saliency = cv2.GaussianBlur(saliency, (0, 0), 2.5)
    peak = float(saliency.max())
    if peak <= 0.0:
        return np.zeros(luminance.shape, np.float32)
    saliency /= peak
    height, width = luminance.shape
    return cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)


def _rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab as float32 (L in 0..100, a/b centred on 0) via OpenCV's fast 8-bit conversion.

    The 8-bit path is a table lookup, several times faster than the float conversion; its
    quantisation (< 0.4 L units) is far below the contrasts the VIS map responds to.
    """
    import cv2

    lab8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    lab = lab8.astype(np.float32)
    lab -= _LAB8_OFFSET
    lab *= _LAB8_SCALE
    return lab


def _unit(prior: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]; the maps are there by construction, the clip guards rounding."""
    import cv2

    prior = prior.astype(np.float32, copy=False)
    cv2.threshold(prior, 1.0, 1.0, cv2.THRESH_TRUNC, dst=prior)
    cv2.threshold(prior, 0.0, 0.0, cv2.THRESH_TOZERO, dst=prior)
    return prior
