"""Downstream detection on fused images: does fusion help a real detector see more?

A :class:`Detector` turns an RGB image into scored boxes of the evaluation classes;
:class:`TFLiteDetector` runs a TFLite SSD with built-in post-processing (the COCO
SSD-MobileNetV2 of ``../shared/detection``) through ``ai-edge-litert``, an optional extra
(``pip install 'sgdfuse_ros[detect]'``), imported only when a detector is built.

Scoring is VOC-style: per image and class, detections are taken by falling score and each is a
true positive when its best-overlapping ground-truth box of that class has IoU > 0.5 and is not
yet taken (else a false positive); AP is the area under the precision envelope over all recall
points ("all-point interpolation", VOC 2010+), mAP the mean over the classes that have ground
truth. Boxes stay in normalised coordinates: IoU does not change when x and y are scaled.

100 images give wide intervals, so every figure comes with a percentile bootstrap over images
(seeded), and two folders are compared with a paired bootstrap (the same resampled images for
both): a difference is called real when its 95 % interval excludes zero. AP's bootstrap
distribution sits a little above the point value (the precision envelope is a maximum, and
resampling a rare class roughens it: about +0.01 mAP on msrs100), so the percentile intervals
lean upward; a paired difference shifts both sides alike. MSRS-style names
(``00012N``, ``msrs_00001D``: D = day, N = night, which the mean visible brightness of msrs100
confirms: 96 vs 26 grey levels) are also scored as day and night subsets.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from sgdfuse_ros.errors import BackendUnavailableError, InputError, WeightsError
from sgdfuse_ros.imaging import IMAGE_SUFFIXES, require_folder

MSRS_CLASSES: tuple[str, ...] = ("person", "bicycle", "car")
"""Class ids 0, 1, 2 of the MSRS detection labels (YOLO format)."""

COCO_TO_MSRS: dict[str, str] = {
    "person": "person",
    "bicycle": "bicycle",
    "motorcycle": "bicycle",
    "car": "car",
    "bus": "car",
    "truck": "car",
}
"""COCO detector classes counted as MSRS classes; every other COCO class is dropped."""

IOU_THRESHOLD = 0.5
_LOSSY_SUFFIXES = (".jpg", ".jpeg")
DETECTIONS_CSV = "detections.csv"
_DAY_NIGHT = re.compile(r"(?:^|_)\d+([DN])$")
_SUBSET_NAMES = {"D": "day", "N": "night"}
_BOOTSTRAP_CHUNK = 200  # resamples per vectorised block: bounds memory at ~B×detections floats


# --------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in normalised image coordinates (0..1), with its class and score."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    score: float = 1.0


class Detector(Protocol):
    """What the evaluation needs from an object detector."""

    name: str
    classes: tuple[str, ...]

    def detect(self, rgb: np.ndarray) -> list[Box]:
        """H×W×3 uint8 RGB → boxes of ``classes`` (normalised coordinates, any number)."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...


def read_label_map(path: Path) -> dict[int, str]:
    """``<id> <name>`` per line (the coco_labels.txt next to the Coral models) → {id: name}."""
    mapping: dict[int, str] = {}
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise InputError(f"label map {path} is not a text file ('<id> <name>' per line)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        head, _, name = line.strip().partition(" ")
        if not head.isdigit() or not name.strip():
            raise InputError(f"{path}:{number}: expected '<id> <name>', got {line!r}")
        mapping[int(head)] = name.strip()
    return mapping


class TFLiteDetector:
    """A TFLite SSD whose graph ends in ``TFLite_Detection_PostProcess`` (boxes, classes, scores,
    count), run with ai-edge-litert on the CPU.

    The image is resized to the model's input with ``interpolation`` (default area averaging:
    an anti-aliased downscale, 640×480 → 300×300; bilinear scores msrs100 about 0.005 mAP
    higher); COCO classes are renamed through ``class_map`` and the rest dropped. ``labels`` defaults to ``coco_labels.txt`` beside the
    model. One thread by default: the evaluation runs beside other work on small machines.
    """

    def __init__(
        self,
        model_path: str | Path,
        labels: str | Path | None = None,
        class_map: dict[str, str] | None = None,
        threads: int = 1,
        interpolation: int = cv2.INTER_AREA,
    ) -> None:
        model_path = Path(model_path)
        self.interpolation = interpolation
        if not model_path.is_file():
            raise FileNotFoundError(f"detector model not found: {model_path}")
        labels = Path(labels) if labels else model_path.with_name("coco_labels.txt")
        if not labels.is_file():
            raise FileNotFoundError(
                f"detector label map {labels} not found (a coco_labels.txt beside the model, "
                "or the file given with --det-classes / labels=)"
            )
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailableError(
                "the TFLite detector needs ai-edge-litert; install it with "
                "`pip install ai-edge-litert` (or `pip install 'sgdfuse_ros[detect]'`)"
            ) from exc
        try:
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise WeightsError(f"cannot load detector {model_path}: {exc}") from exc
        self.name = model_path.stem
        self.class_map = dict(COCO_TO_MSRS if class_map is None else class_map)
        self.classes = tuple(dict.fromkeys(self.class_map.values()))
        self._names = read_label_map(labels)
        (self._input,) = self._interpreter.get_input_details()
        _, self._height, self._width, channels = (int(v) for v in self._input["shape"])
        outputs = self._interpreter.get_output_details()
        if channels != 3 or len(outputs) != 4:
            raise WeightsError(
                f"{model_path} is not an SSD with built-in post-processing (input "
                f"{self._input['shape']}, {len(outputs)} outputs; expected 1×H×W×3 and 4)"
            )
        # TFLite_Detection_PostProcess order: boxes, classes, scores, count.
        self._boxes, self._class_ids, self._scores, self._count = (o["index"] for o in outputs)

    def detect(self, rgb: np.ndarray) -> list[Box]:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise InputError(f"detector input must be H×W×3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
        resized = cv2.resize(rgb, (self._width, self._height), interpolation=self.interpolation)
        if self._input["dtype"] == np.uint8:
            tensor = resized[None]
        else:  # float SSDs take [-1, 1]
            tensor = (resized[None].astype(np.float32) - 127.5) / 127.5
        self._interpreter.set_tensor(self._input["index"], tensor)
        self._interpreter.invoke()
        get = self._interpreter.get_tensor
        count = int(get(self._count).reshape(-1)[0])
        boxes, ids, scores = get(self._boxes)[0], get(self._class_ids)[0], get(self._scores)[0]
        found = []
        for (ymin, xmin, ymax, xmax), class_id, score in zip(
            boxes[:count], ids[:count], scores[:count], strict=True
        ):
            label = self.class_map.get(self._names.get(int(class_id), ""))
            if label is None:
                continue
            x0, y0, x1, y1 = np.clip([xmin, ymin, xmax, ymax], 0.0, 1.0).tolist()
            found.append(Box(x0, y0, x1, y1, label, float(score)))
        return found

    def close(self) -> None:
        self._interpreter = None


# --------------------------------------------------------------------------- ground truth


def read_yolo_labels(path: Path, classes: Sequence[str] = MSRS_CLASSES) -> list[Box]:
    """YOLO ``class cx cy w h`` (normalised) lines → boxes; an empty file means no objects."""
    boxes = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            class_id = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:5])
        except (ValueError, IndexError):
            raise InputError(f"{path}:{number}: expected 'class cx cy w h', got {line!r}") from None
        if not 0 <= class_id < len(classes) or len(fields) < 5 or min(w, h) < 0:
            raise InputError(f"{path}:{number}: bad label {line!r} (classes: {list(classes)})")
        boxes.append(Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, classes[class_id]))
    return boxes


def time_of_day(stem: str) -> str | None:
    """ "day" / "night" for MSRS-style names (digits then D or N at the end), else None."""
    found = _DAY_NIGHT.search(stem)
    return _SUBSET_NAMES[found.group(1)] if found else None


# --------------------------------------------------------------------------- matching and AP


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (len(a) × len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    pa = np.array([(x.x0, x.y0, x.x1, x.y1) for x in a], dtype=np.float64)
    pb = np.array([(x.x0, x.y0, x.x1, x.y1) for x in b], dtype=np.float64)
    ix = np.clip(
        np.minimum(pa[:, None, 2], pb[None, :, 2]) - np.maximum(pa[:, None, 0], pb[None, :, 0]),
        0,
        None,
    )
    iy = np.clip(
        np.minimum(pa[:, None, 3], pb[None, :, 3]) - np.maximum(pa[:, None, 1], pb[None, :, 1]),
        0,
        None,
    )
    inter = ix * iy
    area = lambda p: np.clip(p[:, 2] - p[:, 0], 0, None) * np.clip(p[:, 3] - p[:, 1], 0, None)  # noqa: E731
    union = area(pa)[:, None] + area(pb)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_image(
    detections: Sequence[Box], truth: Sequence[Box], iou_threshold: float = IOU_THRESHOLD
) -> list[tuple[float, bool]]:
    """(score, true positive?) of one image's detections of one class, by falling score (VOC:
    a detection whose best ground truth is already taken is a false positive)."""
    ordered = sorted(detections, key=lambda d: -d.score)
    overlaps = iou_matrix(ordered, truth)
    taken = np.zeros(len(truth), dtype=bool)
    matched = []
    for row, det in enumerate(ordered):
        hit = False
        if len(truth):
            best = int(np.argmax(overlaps[row]))
            if overlaps[row, best] > iou_threshold and not taken[best]:
                taken[best] = hit = True
        matched.append((det.score, hit))
    return matched


@dataclass(frozen=True)
class MatchedClass:
    """Every detection of one class over an image list, matched once, by falling score.

    Bootstrap resamples only reweight images, so AP of any resample follows from these arrays.
    """

    scores: np.ndarray  # (n_det,) falling
    true_positive: np.ndarray  # (n_det,) bool
    image: np.ndarray  # (n_det,) index into the image list
    truth_per_image: np.ndarray  # (n_images,) ground-truth boxes of this class


def match_class(
    detections: Sequence[Sequence[Box]],
    truth: Sequence[Sequence[Box]],
    label: str,
    iou_threshold: float = IOU_THRESHOLD,
) -> MatchedClass:
    """Match one class over aligned per-image lists of detections and ground truth."""
    if len(detections) != len(truth):
        raise ValueError("detections and ground truth must list the same images")
    scores, hits, images = [], [], []
    for index, (dets, gts) in enumerate(zip(detections, truth, strict=True)):
        for score, hit in match_image(
            [d for d in dets if d.label == label],
            [g for g in gts if g.label == label],
            iou_threshold,
        ):
            scores.append(score)
            hits.append(hit)
            images.append(index)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return MatchedClass(
        scores=np.asarray(scores, dtype=np.float64)[order],
        true_positive=np.asarray(hits, dtype=bool)[order],
        image=np.asarray(images, dtype=np.int64)[order],
        truth_per_image=np.array([sum(g.label == label for g in gts) for gts in truth], np.int64),
    )


def weighted_average_precision(matched: MatchedClass, weights: np.ndarray) -> np.ndarray:
    """VOC all-point AP for each row of image weights (B × n_images; weight k = the image drawn
    k times). Rows without ground truth of the class give NaN; no detections give 0."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    positives = weights @ matched.truth_per_image
    if matched.scores.size == 0:
        return np.where(positives > 0, 0.0, np.nan)
    per_detection = weights[:, matched.image]
    tp = per_detection * matched.true_positive
    cumulative_tp = np.cumsum(tp, axis=1)
    cumulative_all = np.cumsum(per_detection, axis=1)
    precision = np.divide(
        cumulative_tp, cumulative_all, out=np.zeros_like(cumulative_tp), where=cumulative_all > 0
    )
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (tp * envelope).sum(axis=1) / positives
    return np.where(positives > 0, ap, np.nan)


def average_precision(matched: MatchedClass) -> float:
    """AP over all images once (NaN when the class has no ground truth)."""
    return float(weighted_average_precision(matched, np.ones(matched.truth_per_image.size))[0])


def mean_ap(per_class: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over classes of per-row APs, ignoring classes without ground truth (NaN)."""
    stacked = np.vstack([np.atleast_1d(v) for v in per_class])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        return np.nanmean(stacked, axis=0)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_weights(
    members: np.ndarray, n_images: int, samples: int, seed: int
) -> Iterator[np.ndarray]:
    """Blocks of resample weights (≤ _BOOTSTRAP_CHUNK × n_images): each row draws
    ``len(members)`` images with replacement from ``members``; images outside get weight 0.
    The same seed gives the same resamples, which is what makes a comparison paired."""
    rng = np.random.default_rng(seed)
    members = np.asarray(members, dtype=np.int64)
    done = 0
    while done < samples:
        rows = min(_BOOTSTRAP_CHUNK, samples - done)
        drawn = members[rng.integers(0, members.size, size=(rows, members.size))]
        block = np.zeros((rows, n_images))
        np.add.at(block, (np.repeat(np.arange(rows), members.size), drawn.ravel()), 1.0)
        done += rows
        yield block


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Central percentile interval of the finite bootstrap values (NaN, NaN when none)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return (float(low), float(high))


def bootstrap_map(
    matched: Sequence[MatchedClass], members: np.ndarray, samples: int, seed: int
) -> np.ndarray:
    """mAP of each bootstrap resample of ``members`` (the images of a subset)."""
    n_images = matched[0].truth_per_image.size
    values = [
        mean_ap([weighted_average_precision(m, block) for m in matched])
        for block in bootstrap_weights(members, n_images, samples, seed)
    ]
    return np.concatenate(values) if values else np.zeros(0)


# --------------------------------------------------------------------------- folder evaluation


@dataclass(frozen=True)
class DetectionInput:
    """A folder to run the detector over: a fused result (``role="fused"``) or a source."""

    name: str
    folder: Path
    role: str = "fused"


@dataclass
class ImageSet:
    """Detections of one folder on the labelled images it has."""

    name: str
    role: str
    stems: list[str]
    detections: dict[str, list[Box]]
    grey: bool  # every image had three equal channels (IR, luminance-only outputs)
    missing: list[str] = field(default_factory=list)


def _index_folder(folder: Path) -> dict[str, Path]:
    """Stem → image file; a stem stored twice counts its lossless file (as the metrics do)."""
    require_folder(folder)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES and path.is_file():
            if path.stem not in found or found[path.stem].suffix.lower() in _LOSSY_SUFFIXES:
                found[path.stem] = path
    return found


def load_labels(label_dir: Path, classes: Sequence[str] = MSRS_CLASSES) -> dict[str, list[Box]]:
    """Every ``<stem>.txt`` of ``label_dir`` → its ground-truth boxes."""
    label_dir = require_folder(label_dir, "detection label folder")
    labels = {
        path.stem: read_yolo_labels(path, classes) for path in sorted(label_dir.glob("*.txt"))
    }
    if not labels:
        raise InputError(f"no <name>.txt detection labels in {label_dir}")
    return labels


def detect_folder(
    detector: Detector,
    source: DetectionInput,
    stems: Sequence[str],
    progress: Callable[[int], None] | None = None,
) -> ImageSet:
    """Run the detector over the images of ``stems`` that the folder has (grey files are read
    as three equal channels, which is how a colour detector sees a grey camera)."""
    files = _index_folder(Path(source.folder))
    present = [s for s in stems if s in files]
    detections: dict[str, list[Box]] = {}
    grey = True
    for stem in present:
        bgr = cv2.imread(str(files[stem]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read image {files[stem]}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        grey = grey and bool(
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
        )
        detections[stem] = detector.detect(rgb)
        if progress:
            progress(1)
    missing = [s for s in stems if s not in files]
    if missing:
        warnings.warn(
            f"{source.name}: {len(missing)} labelled image(s) missing, skipped: {missing[:5]}",
            stacklevel=2,
        )
    return ImageSet(source.name, source.role, present, detections, grey and bool(present), missing)


def _subsets(stems: Sequence[str]) -> dict[str, np.ndarray]:
    """ "all" plus day / night image indices where every name is MSRS-style."""
    subsets = {"all": np.arange(len(stems))}
    times = [time_of_day(s) for s in stems]
    if stems and all(times):
        for name in ("day", "night"):
            members = np.array([i for i, t in enumerate(times) if t == name], dtype=np.int64)
            if members.size:
                subsets[name] = members
    return subsets


@dataclass
class DetectionReport:
    """AP tables of several folders on the same labels, with bootstrap and paired intervals."""

    detector: str
    label_dir: str
    classes: tuple[str, ...]
    samples: int
    seed: int
    confidence: float
    methods: dict[str, dict[str, Any]]
    reference: str | None
    differences: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN → None) for summary.json."""
        return _json_ready(
            {
                "detector": self.detector,
                "labels": self.label_dir,
                "iou_threshold": IOU_THRESHOLD,
                "ap": "VOC all-point interpolation, mAP = mean over classes with ground truth",
                "bootstrap": {
                    "samples": self.samples,
                    "seed": self.seed,
                    "confidence": self.confidence,
                    "unit": "image",
                },
                "classes": list(self.classes),
                "methods": self.methods,
                "paired": {"reference": self.reference, "differences": self.differences},
            }
        )

    def columns(self) -> dict[str, dict[str, float]]:
        """Flat AP columns per folder (``mAP50``, ``AP50_<class>``, ``mAP50_day`` …)."""
        flat = {}
        for name, result in self.methods.items():
            row = {"mAP50": result["mAP50"]}
            row.update({f"AP50_{c}": result["AP50"][c] for c in self.classes})
            for subset, values in result["subsets"].items():
                row[f"mAP50_{subset}"] = values["mAP50"]
            flat[name] = row
        return flat

    def markdown(self) -> str:
        """Two tables: AP per folder with intervals, then paired differences to the reference."""
        pct = f"{round(self.confidence * 100)} %"
        subsets = [
            s for s in ("day", "night") if any(s in m["subsets"] for m in self.methods.values())
        ]
        header = ["method", "input", "images", f"mAP@0.5 [{pct} CI]", *self.classes]
        header += [f"{s} mAP [{pct} CI]" for s in subsets]
        lines = [
            f"Detector `{self.detector}`, labels `{self.label_dir}`: AP@0.5 (VOC all-point), "
            f"mAP = mean over classes; intervals: percentile bootstrap over images "
            f"({self.samples} resamples, seed {self.seed}). `grey`: luminance-only images, "
            "replicated to 3 channels for the detector.",
            "",
            "| " + " | ".join(header) + " |",
            "|---|---|" + "---:|" * (len(header) - 2),
        ]
        for name, result in self.methods.items():
            kind = "grey" if result["grey"] else "colour"
            role = " (source)" if result["role"] == "source" else ""
            cells = [
                f"{name}{role}",
                kind,
                str(result["images"]),
                _with_interval(result["mAP50"], result["mAP50_ci"]),
                *(_number(result["AP50"][c]) for c in self.classes),
            ]
            for subset in subsets:
                values = result["subsets"].get(subset)
                cells.append(
                    f"{_with_interval(values['mAP50'], values['mAP50_ci'])} ({values['images']})"
                    if values
                    else "–"
                )
            lines.append("| " + " | ".join(cells) + " |")
        if self.reference and self.differences:
            lines += [
                "",
                f"Paired differences, method − `{self.reference}` (same resampled images for "
                f"both; **real** = the {pct} interval excludes 0):",
                "",
                "| method | images | ΔmAP ["
                + pct
                + " CI] | "
                + " | ".join(f"{s} ΔmAP [{pct} CI]" for s in subsets)
                + (" |" if subsets else "|"),
                "|---|---:|---:|" + "---:|" * len(subsets),
            ]
            for name, diff in self.differences.items():
                cells = [name, str(diff["images"]), _difference(diff)]
                cells += [
                    _difference(diff["subsets"][s]) if s in diff["subsets"] else "–"
                    for s in subsets
                ]
                lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def _with_interval(value: float, interval: Sequence[float]) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3f} [{_number(interval[0])}, {_number(interval[1])}]"


def _difference(diff: dict[str, Any]) -> str:
    text = f"{diff['mAP50']:+.3f} [{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]"
    if math.isnan(diff["mAP50"]):
        return "–"
    return f"**{text} real**" if diff["real"] else text


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def score_image_sets(
    image_sets: Sequence[ImageSet],
    labels: dict[str, list[Box]],
    classes: Sequence[str] = MSRS_CLASSES,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    reference: str | None = None,
    detector_name: str = "",
    label_dir: str = "",
) -> DetectionReport:
    """AP tables of detections already made (see :func:`evaluate_detection`).

    Every folder is scored on the labelled images it has; a paired difference uses the images
    both folders have, resampled identically (same seed) for both.
    """
    if samples < 1:
        raise ValueError("bootstrap samples must be >= 1")
    methods: dict[str, dict[str, Any]] = {}
    for image_set in image_sets:
        stems = image_set.stems
        truth = [labels[s] for s in stems]
        dets = [image_set.detections[s] for s in stems]
        matched = [match_class(dets, truth, c) for c in classes]
        subsets: dict[str, dict[str, Any]] = {}
        result: dict[str, Any] = {"role": image_set.role, "grey": image_set.grey}
        for subset, members in _subsets(stems).items() if stems else []:
            weights = np.zeros((1, len(stems)))
            weights[0, members] = 1.0
            per_class = [float(weighted_average_precision(m, weights)[0]) for m in matched]
            interval = percentile_interval(
                bootstrap_map(matched, members, samples, seed), confidence
            )
            values = {
                "images": int(members.size),
                "mAP50": float(mean_ap([np.array([v]) for v in per_class])[0]),
                "mAP50_ci": list(interval),
                "AP50": dict(zip(classes, per_class, strict=True)),
            }
            if subset == "all":
                result.update(values)
            else:
                subsets[subset] = values
        if not stems:
            result.update(
                {
                    "images": 0,
                    "mAP50": math.nan,
                    "mAP50_ci": [math.nan, math.nan],
                    "AP50": {c: math.nan for c in classes},
                }
            )
        result["missing"] = len(image_set.missing)
        result["subsets"] = subsets
        methods[image_set.name] = result

    by_name = {s.name: s for s in image_sets}
    if reference is None:
        reference = next((s.name for s in image_sets if s.role == "fused"), None)
    if reference is not None and reference not in by_name:
        raise ValueError(f"reference {reference!r} is not one of {list(by_name)}")
    differences = {
        other.name: paired_difference(
            by_name[reference], other, labels, classes, samples, seed, confidence
        )
        for other in image_sets
        if reference is not None and other.name != reference
    }
    return DetectionReport(
        detector=detector_name,
        label_dir=label_dir,
        classes=tuple(classes),
        samples=samples,
        seed=seed,
        confidence=confidence,
        methods=methods,
        reference=reference,
        differences=differences,
    )


def paired_difference(
    reference: ImageSet,
    other: ImageSet,
    labels: dict[str, list[Box]],
    classes: Sequence[str] = MSRS_CLASSES,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """mAP(other) − mAP(reference) on their common images, with a paired bootstrap interval
    (each resample draws the same images for both), overall and per day / night subset."""
    common = [s for s in reference.stems if s in other.detections]
    truth = [labels[s] for s in common]
    matched = {
        image_set.name: [
            match_class([image_set.detections[s] for s in common], truth, c) for c in classes
        ]
        for image_set in (reference, other)
    }
    result: dict[str, Any] = {"images": len(common), "subsets": {}}
    if not common:
        result.update({"mAP50": math.nan, "ci": [math.nan, math.nan], "real": False})
        return result
    for subset, members in _subsets(common).items():
        weights = np.zeros((1, len(common)))
        weights[0, members] = 1.0
        point = [
            mean_ap([weighted_average_precision(m, weights) for m in matched[n]])[0]
            for n in (reference.name, other.name)
        ]
        spread = [
            mean_ap([weighted_average_precision(m, block) for m in matched[other.name]])
            - mean_ap([weighted_average_precision(m, block) for m in matched[reference.name]])
            for block in bootstrap_weights(members, len(common), samples, seed)
        ]
        interval = percentile_interval(np.concatenate(spread), confidence)
        values = {
            "images": int(members.size),
            "mAP50": float(point[1] - point[0]),
            "ci": list(interval),
            "real": bool(interval[0] > 0 or interval[1] < 0),
        }
        if subset == "all":
            result.update(values)
        else:
            result["subsets"][subset] = values
    return result


@dataclass(frozen=True)
class DetectionSettings:
    """Detection in a folder evaluation (``sgdfuse eval --detector … --det-labels …``)."""

    detector: Detector
    labels: Path
    samples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"bootstrap samples must be >= 1, got {self.samples}")


def evaluate_detection(
    inputs: Sequence[DetectionInput],
    label_dir: Path,
    detector: Detector,
    out_dir: Path | None = None,
    samples: int = 1000,
    seed: int = 0,
    reference: str | None = None,
    progress: bool = True,
    stems: Sequence[str] | None = None,
) -> DetectionReport:
    """Run ``detector`` over every folder's labelled images and score AP@0.5.

    ``reference`` (default: the first fused folder) is what the paired differences are taken
    against; ``stems`` limits the evaluation to those labelled images (e.g. the source pairs).
    With ``out_dir``, every detection is written to ``detections.csv`` there.
    """
    from tqdm import tqdm

    labels = load_labels(Path(label_dir), detector.classes)
    if stems is not None:
        wanted = set(stems)
        labels = {stem: boxes for stem, boxes in labels.items() if stem in wanted}
        if not labels:
            raise InputError(f"none of the {len(wanted)} images has a label in {label_dir}")
    stems = sorted(labels)
    bar = tqdm(total=len(stems) * len(inputs), desc="detection", unit="image", disable=not progress)
    try:
        image_sets = [detect_folder(detector, source, stems, bar.update) for source in inputs]
    finally:
        bar.close()
    if out_dir is not None:
        write_detections_csv(Path(out_dir) / DETECTIONS_CSV, image_sets)
    return score_image_sets(
        image_sets,
        labels,
        detector.classes,
        samples,
        seed,
        reference=reference,
        detector_name=detector.name,
        label_dir=str(label_dir),
    )


def write_detections_csv(path: Path, image_sets: Sequence[ImageSet]) -> None:
    """Every detection (method, image, class, score, normalised box) for later re-scoring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "image", "class", "score", "x0", "y0", "x1", "y1"])
        for image_set in image_sets:
            for stem in image_set.stems:
                for box in image_set.detections[stem]:
                    writer.writerow(
                        [image_set.name, stem, box.label, f"{box.score:.5f}"]
                        + [f"{v:.5f}" for v in (box.x0, box.y0, box.x1, box.y1)]
                    )
