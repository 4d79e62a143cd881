"""``sgdfuse export --onnx DIR [--engines]``: offline ONNX export and TensorRT engine build."""

from __future__ import annotations

import argparse
from typing import Any

from sgdfuse_ros.cli.common import positive_int
from sgdfuse_ros.deploy.export import (
    PRECISIONS,
    ensure_fusion_onnx,
    export_fusion_onnx,
    export_sam_onnx,
)
from sgdfuse_ros.semantics.sam import SAM_MODEL_TYPES


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``sgdfuse export --onnx DIR [--engines]``: offline export (and TensorRT engine build)."""
    parser = subparsers.add_parser(
        "export",
        help="export the networks to ONNX and optionally build TensorRT engines",
        description=(
            "Export Stage I, the U-Net, every HFAH head and (with a SAM checkpoint) SAM's image "
            "encoder and mask decoder to ONNX. With --engines, also build the TensorRT plans "
            "into the engine cache so a robot never builds them at start-up."
        ),
    )
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.add_argument("--allow-untrained", action="store_true", help="export untrained weights")
    parser.add_argument(
        "--onnx", metavar="DIR", help="write the ONNX files here (default: the cache)"
    )
    parser.add_argument("--engines", action="store_true", help="also build TensorRT engines (GPU)")
    parser.add_argument("--engine-dir", help="engine / ONNX cache directory (default: user cache)")
    parser.add_argument("--engine-precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--device", default="cuda", help="GPU the engines are built for (cuda[:N])")
    parser.add_argument(
        "--height", type=positive_int, default=480, help="frame height the engines are for"
    )
    parser.add_argument(
        "--width", type=positive_int, default=640, help="frame width the engines are for"
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        nargs="*",
        help="K values to build engines for (default: every K the weights support)",
    )
    parser.add_argument(
        "--sam-model-type", default="vit_b", choices=SAM_MODEL_TYPES, help="SAM variant"
    )
    parser.add_argument(
        "--sam-checkpoint", help="SAM checkpoint; exports SAM's encoder and decoder"
    )
    parser.add_argument("--force", action="store_true", help="rebuild engines even when cached")
    parser.set_defaults(func=run)
    return parser


def _load_for_export(weights: str | None, allow_untrained: bool) -> Any:
    from sgdfuse_ros.model_io import DEFAULT_WEIGHTS, RETRAIN_HINT, load_weights, untrained_model

    if weights is None and not DEFAULT_WEIGHTS.is_file():
        if not allow_untrained:
            from sgdfuse_ros.errors import WeightsError

            raise WeightsError(f"the default weights {DEFAULT_WEIGHTS} are missing; {RETRAIN_HINT}")
        return untrained_model()[0]
    return load_weights(weights or DEFAULT_WEIGHTS)[0]


def run(args: argparse.Namespace) -> int:
    if args.engines:
        from sgdfuse_ros.deploy import require_tensorrt

        require_tensorrt()  # fail before minutes of export on a machine that cannot build
    model = _load_for_export(args.weights, args.allow_untrained)
    unsupported = sorted(set(args.steps or ()) - set(model.supported_steps))
    if unsupported:
        supported = ", ".join(str(k) for k in model.supported_steps)
        raise ValueError(
            f"--steps {' '.join(map(str, unsupported))}: these weights have no HFAH head for "
            f"that K (supported: {supported})"
        )
    sam = None
    if args.sam_checkpoint:  # load SAM before writing anything: a bad checkpoint fails first
        from sgdfuse_ros.semantics import SamPriorBackend

        sam = SamPriorBackend.from_checkpoint(args.sam_model_type, args.sam_checkpoint).sam
    if args.onnx:
        exported = export_fusion_onnx(model, args.onnx)
    else:
        exported = ensure_fusion_onnx(model, args.engine_dir)
    for graph in exported.graph_names():
        print(f"{graph:10s} {exported.path(graph)}")
    if sam is not None:
        from sgdfuse_ros.deploy.sam_runtime import ensure_sam_onnx

        sam_paths = (
            export_sam_onnx(sam, args.onnx) if args.onnx else ensure_sam_onnx(sam, args.engine_dir)
        )
        for graph, path in sam_paths.items():
            print(f"{graph:10s} {path}")
    if args.engines:
        from sgdfuse_ros.deploy.tensorrt_runner import build_all_engines

        plans = build_all_engines(
            model,
            engine_dir=args.engine_dir,
            fp16=args.engine_precision == "fp16",
            height=args.height,
            width=args.width,
            steps=tuple(args.steps) if args.steps else None,
            force=args.force,
            device=args.device,
        )
        if sam is not None:
            from sgdfuse_ros.deploy.sam_runtime import build_sam_engines

            plans.update(
                build_sam_engines(
                    sam, args.engine_dir, args.device, args.engine_precision == "fp16"
                )
            )
        for name, path in plans.items():
            print(f"{name:10s} {path}")
    return 0
