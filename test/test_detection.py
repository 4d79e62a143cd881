"""Detection scoring: VOC AP on hand-made boxes, bootstrap intervals, labels, the TFLite detector."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from sgdfuse_ros.errors import BackendUnavailableError, InputError
from sgdfuse_ros.tools.detection import (
    Box,
    DetectionInput,
    ImageSet,
    TFLiteDetector,
    average_precision,
    bootstrap_weights,
    evaluate_detection,
    iou_matrix,
    match_class,
    read_yolo_labels,
    score_image_sets,
    time_of_day,
    weighted_average_precision,
)

MODEL_NAME = "mobilenet_ssd_v2_coco_quant_postprocess.tflite"


def box(x0: float, y0: float, size: float = 0.1, label: str = "car", score: float = 1.0) -> Box:
    return Box(x0, y0, x0 + size, y0 + size, label, score)


def shifted(truth: Box, dx: float, score: float, label: str | None = None) -> Box:
    return Box(truth.x0 + dx, truth.y0, truth.x1 + dx, truth.y1, label or truth.label, score)


def test_iou_of_hand_made_boxes() -> None:
    a = Box(0.0, 0.0, 0.2, 0.2, "car")
    half = Box(0.1, 0.0, 0.3, 0.2, "car")  # overlap 0.1×0.2 = 0.02, union 0.06
    assert iou_matrix([a], [a, half, box(0.5, 0.5)]) == pytest.approx(np.array([[1.0, 1 / 3, 0.0]]))


def test_ap_of_a_ranked_list_uses_the_precision_envelope() -> None:
    """TP, FP, FP, TP, TP over three objects: precision 1, 1/2, 1/3, 1/2, 3/5 at recall
    1/3, 1/3, 1/3, 2/3, 1. The envelope lifts the second object's precision to 3/5:
    AP = (1 + 3/5 + 3/5) / 3 (the raw precisions would give 0.7)."""
    truth = [box(0.1, 0.1), box(0.6, 0.6), box(0.1, 0.6)]
    dets = [
        shifted(truth[0], 0.0, 0.9),
        box(0.3, 0.8, score=0.8),
        box(0.8, 0.3, score=0.75),
        shifted(truth[1], 0.01, 0.7),
        shifted(truth[2], 0.02, 0.6),
    ]
    matched = match_class([dets], [truth], "car")
    assert matched.true_positive.tolist() == [True, False, False, True, True]
    assert average_precision(matched) == pytest.approx((1 + 0.6 + 0.6) / 3)


def test_duplicates_low_overlap_missed_objects_and_other_classes() -> None:
    truth = [box(0.1, 0.1), box(0.6, 0.6), box(0.3, 0.3, label="person")]
    dets = [
        shifted(truth[0], 0.0, 0.9),  # TP
        shifted(truth[0], 0.005, 0.8),  # duplicate of a taken object: FP
        shifted(truth[1], 0.05, 0.95),  # IoU 0.05/0.15 = 1/3: FP
        shifted(truth[2], 0.0, 0.99, label="car"),  # right place, wrong class: FP for car
    ]
    matched = match_class([dets], [truth], "car")
    # ranked 0.99 FP, 0.95 FP, 0.9 TP, 0.8 FP: one of two objects at precision 1/3
    assert average_precision(matched) == pytest.approx(0.5 * (1 / 3))
    assert average_precision(match_class([dets], [truth], "person")) == 0.0  # no detections
    assert math.isnan(average_precision(match_class([dets], [truth], "bicycle")))  # no truth


def test_iou_of_exactly_one_half_is_not_a_match() -> None:
    truth = Box(0.0, 0.0, 0.2, 0.2, "car")
    detection = Box(0.0, 0.0, 0.2, 0.4, "car", 0.9)  # IoU = 0.04 / 0.08 = 0.5
    assert iou_matrix([detection], [truth])[0, 0] == pytest.approx(0.5)
    assert not match_class([[detection]], [[truth]], "car").true_positive[0]


def test_weighted_ap_equals_ap_of_images_repeated() -> None:
    """A bootstrap weight k must score exactly like the image listed k times."""
    rng = np.random.default_rng(3)
    truth, dets = [], []
    for _ in range(12):
        gts = [box(*rng.uniform(0, 0.8, 2)) for _ in range(rng.integers(0, 4))]
        found = [shifted(g, rng.uniform(0, 0.06), rng.uniform()) for g in gts]
        found += [box(*rng.uniform(0, 0.8, 2), score=rng.uniform()) for _ in range(3)]
        truth.append(gts)
        dets.append(found)
    weights = rng.integers(0, 4, size=12)
    repeated_truth = [t for t, w in zip(truth, weights, strict=True) for _ in range(w)]
    repeated_dets = [d for d, w in zip(dets, weights, strict=True) for _ in range(w)]
    expected = average_precision(match_class(repeated_dets, repeated_truth, "car"))
    got = weighted_average_precision(match_class(dets, truth, "car"), weights[None].astype(float))
    assert got[0] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_weights_are_seeded_and_stay_in_the_subset() -> None:
    members = np.array([1, 4, 5])
    first = np.vstack(list(bootstrap_weights(members, 7, 450, seed=11)))
    again = np.vstack(list(bootstrap_weights(members, 7, 450, seed=11)))
    assert first.shape == (450, 7)
    np.testing.assert_array_equal(first, again)
    assert (first.sum(axis=1) == 3).all()
    assert (first[:, [0, 2, 3, 6]] == 0).all()
    assert not np.array_equal(first, np.vstack(list(bootstrap_weights(members, 7, 450, seed=12))))


def _image_sets(stems: list[str], truth: dict[str, list[Box]]) -> list[ImageSet]:
    """'exact' finds every object, 'half' only the objects of even-numbered images plus a
    confident false positive per image."""
    exact = {s: [shifted(b, 0.0, 0.9) for b in truth[s]] for s in stems}
    half = {
        s: [box(0.85, 0.85, score=0.95)]
        + ([shifted(b, 0.0, 0.5) for b in truth[s]] if i % 2 == 0 else [])
        for i, s in enumerate(stems)
    }
    return [
        ImageSet("exact", "fused", stems, exact, grey=False),
        ImageSet("half", "fused", stems, half, grey=False),
        ImageSet("exact copy", "source", stems, dict(exact), grey=True),
    ]


def test_report_intervals_day_night_and_paired_differences() -> None:
    stems = [f"{i:05d}{'D' if i < 6 else 'N'}" for i in range(12)]
    truth = {s: [box(0.1, 0.1), box(0.5, 0.2, label="person")] for s in stems}
    report = score_image_sets(_image_sets(stems, truth), truth, samples=300, seed=5)
    exact, half = report.methods["exact"], report.methods["half"]
    assert exact["mAP50"] == 1.0 and exact["mAP50_ci"] == [1.0, 1.0]
    assert exact["subsets"]["day"]["images"] == 6 and exact["subsets"]["night"]["images"] == 6
    assert math.isnan(exact["AP50"]["bicycle"])  # no bicycles: left out of the mean
    assert half["mAP50"] < 0.5
    assert half["mAP50_ci"][0] <= half["mAP50"] <= half["mAP50_ci"][1]
    assert report.reference == "exact"
    worse = report.differences["half"]
    assert worse["mAP50"] == pytest.approx(half["mAP50"] - 1.0) and worse["real"]
    same = report.differences["exact copy"]
    assert same["mAP50"] == 0.0 and same["ci"] == [0.0, 0.0] and not same["real"]
    table = report.markdown()
    assert "| exact copy (source) | grey | 12 |" in table and "real**" in table
    columns = report.columns()
    assert columns["exact"]["mAP50"] == 1.0 and "mAP50_night" in columns["half"]
    stored = report.to_dict()
    assert stored["methods"]["exact"]["AP50"]["bicycle"] is None  # NaN → JSON null
    again = score_image_sets(_image_sets(stems, truth), truth, samples=300, seed=5)
    assert again.to_dict() == stored  # seeded


def test_no_day_night_split_for_other_names() -> None:
    stems = ["roadscene_1", "roadscene_2"]
    truth = {s: [box(0.1, 0.1)] for s in stems}
    report = score_image_sets(_image_sets(stems, truth)[:1], truth, samples=20)
    assert report.methods["exact"]["subsets"] == {}
    assert time_of_day("00012N") == "night" and time_of_day("msrs_00001D") == "day"
    assert time_of_day("00012") is None and time_of_day("roadscene_D") is None


def test_yolo_labels_become_corner_boxes(tmp_path: Path) -> None:
    good = tmp_path / "a.txt"
    good.write_text("2  0.5  0.5  0.2  0.4  \n\n0 0.1 0.2 0.1 0.1")
    first, second = read_yolo_labels(good)
    assert (first.label, second.label) == ("car", "person")
    assert (first.x0, first.y0, first.x1, first.y1) == pytest.approx((0.4, 0.3, 0.6, 0.7))
    (tmp_path / "empty.txt").write_text("")
    assert read_yolo_labels(tmp_path / "empty.txt") == []
    for bad in ("7 0.5 0.5 0.1 0.1", "car 0.5 0.5 0.1 0.1", "1 0.5 0.5"):
        (tmp_path / "bad.txt").write_text(bad)
        with pytest.raises(InputError, match="bad.txt:1"):
            read_yolo_labels(tmp_path / "bad.txt")


def test_missing_ai_edge_litert_is_a_clear_backend_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model, labels = tmp_path / "m.tflite", tmp_path / "coco_labels.txt"
    model.write_bytes(b"not a model")
    labels.write_text("0  person\n")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import fails as if absent
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(BackendUnavailableError, match="pip install ai-edge-litert"):
        TFLiteDetector(model)
    with pytest.raises(FileNotFoundError, match="not found"):
        TFLiteDetector(tmp_path / "absent.tflite")


@pytest.fixture
def tflite_detector(data_dir: Path) -> TFLiteDetector:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed (extra 'detect')")
    model = data_dir.parent / "detection" / MODEL_NAME
    if not model.is_file():
        pytest.skip(f"detector {model} not found")
    detector = TFLiteDetector(model)
    yield detector
    detector.close()


def test_tflite_detector_finds_the_labelled_objects_of_real_images(
    tflite_detector: TFLiteDetector, data_dir: Path, tmp_path: Path
) -> None:
    """Real model, real MSRS day images: visible beats the blank image, IR is seen as grey."""
    msrs = data_dir / "val" / "msrs100"
    truth = data_dir.parent / "detection" / "msrs100_labels"
    stems = ["00055D", "00091D", "00103D", "00119D", "00131D", "00139D"]
    labels = tmp_path / "labels"
    labels.mkdir()
    blank = tmp_path / "blank"
    blank.mkdir()
    for stem in stems:
        (labels / f"{stem}.txt").write_text((truth / f"{stem}.txt").read_text())
        (blank / f"{stem}.png").write_bytes((msrs / "vi" / f"{stem}.png").read_bytes())
    import cv2

    for path in blank.iterdir():  # a black frame: nothing to detect
        cv2.imwrite(str(path), np.zeros((480, 640, 3), np.uint8))
    report = evaluate_detection(
        [
            DetectionInput("VIS", msrs / "vi", "source"),
            DetectionInput("IR", msrs / "ir", "source"),
            DetectionInput("blank", blank),
        ],
        labels,
        tflite_detector,
        out_dir=tmp_path / "out",
        samples=50,
        progress=False,
    )
    assert report.methods["VIS"]["AP50"]["car"] > 0.3
    assert report.methods["blank"]["mAP50"] < report.methods["VIS"]["mAP50"]
    assert report.methods["IR"]["grey"] and not report.methods["VIS"]["grey"]
    assert report.methods["VIS"]["images"] == len(stems)
    rows = (tmp_path / "out" / "detections.csv").read_text().splitlines()
    assert rows[0].startswith("method,image,class,score") and any(",VIS," in f",{r}" for r in rows)


def test_sgdfuse_eval_adds_detection_columns(
    tflite_detector: TFLiteDetector, data_dir: Path, tmp_path: Path
) -> None:
    """`sgdfuse eval --detector --det-labels`: AP columns for the fused folder, the sources in
    the detection section and the full report in summary.json."""
    import json

    from sgdfuse_ros.cli.main import main
    from sgdfuse_ros.imaging import read_pair, write_rgb
    from sgdfuse_ros.tools.evaluate import baseline_fuse

    msrs = data_dir / "val" / "msrs100"
    stems = ["00055D", "00091D", "00012N"]
    for sub in ("ir", "vi"):
        (tmp_path / sub).mkdir()
        for stem in stems:
            (tmp_path / sub / f"{stem}.png").symlink_to(msrs / sub / f"{stem}.png")
    for stem in stems:
        write_rgb(
            tmp_path / "mean" / f"{stem}.png",
            baseline_fuse(*read_pair(msrs / "ir" / f"{stem}.png", msrs / "vi" / f"{stem}.png")),
        )
    model = data_dir.parent / "detection" / MODEL_NAME
    labels = data_dir.parent / "detection" / "msrs100_labels"
    common = ["eval", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    common += ["--fused", str(tmp_path / "mean"), "--out", str(tmp_path / "out")]
    assert (
        main(
            [*common, "--detector", str(model), "--det-labels", str(labels), "--det-samples", "50"]
        )
        == 0
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 0.0 <= summary["mean"]["mAP50"] <= 1.0 and "EN" in summary["mean"]
    assert {"AP50_person", "AP50_car", "mAP50_day", "mAP50_night"} <= set(summary["mean"])
    report = summary["detection"]
    assert set(report["methods"]) == {"mean", "VIS", "IR"}
    assert report["methods"]["VIS"]["images"] == 3  # only the evaluated pairs, not all labels
    assert report["paired"]["reference"] == "mean"
    text = (tmp_path / "out" / "metrics.md").read_text()
    assert "## Detection" in text and "| IR (source) | grey | 3 |" in text


def test_sgdfuse_eval_detection_errors_are_one_line(tmp_path: Path, capsys) -> None:
    from sgdfuse_ros.cli.main import main

    for sub in ("ir", "vi", "fused"):
        (tmp_path / sub).mkdir()
    common = ["eval", "--ir", str(tmp_path / "ir"), "--vi", str(tmp_path / "vi")]
    common += ["--fused", str(tmp_path / "fused"), "--out", str(tmp_path / "out")]
    assert main([*common, "--detector", str(tmp_path / "m.tflite")]) == 2
    assert "--detector and --det-labels go together" in capsys.readouterr().err
    missing = ["--detector", str(tmp_path / "m.tflite"), "--det-labels", str(tmp_path)]
    assert main([*common, *missing]) == 2
    assert "detector model not found" in capsys.readouterr().err


def test_a_stem_stored_twice_is_read_from_its_lossless_file(tmp_path: Path) -> None:
    from sgdfuse_ros.tools.detection import _index_folder

    for name in ("a.jpg", "a.png", "b.jpeg", "c.bmp", "c.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found = {stem: path.name for stem, path in _index_folder(tmp_path).items()}
    assert found == {"a": "a.png", "b": "b.jpeg", "c": "c.bmp"}
