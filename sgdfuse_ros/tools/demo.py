"""`sgdfuse demo`: see the fusion work on a machine with nothing but this package.

By default the synthetic sequence is published as a replayed bag to the real ROS 2 node
(`fusion_node`) and the fused frames are received from `/fused/image`. Where rclpy is not
importable, or with ``--library``, the same frames are fused in-process and that is said.
``--data DIR`` fuses real pairs from a folder with ``ir/`` and ``vi/`` instead, in-process
(their sizes may differ from pair to pair; the node demo publishes one camera size).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgdfuse_ros.imaging import ir_to_unit, mosaic, pair_files, read_pair, write_rgb
from sgdfuse_ros.options import PipelineOptions


@dataclass(frozen=True)
class DemoRequest:
    """What to show: synthetic frames of a size, or real pairs from ``data``; where to write."""

    out: Path = Path("outputs/demo")
    frames: int = 20
    height: int = 480
    width: int = 640
    data: Path | None = None
    library: bool = False  # fuse in-process instead of through the ROS 2 node


def timing_table(timings: dict[str, list[float]]) -> str:
    """Per-stage median / p95 milliseconds as a Markdown table."""
    lines = ["| stage | median ms | p95 ms |", "|---|---:|---:|"]
    for stage, values in timings.items():
        lines.append(f"| {stage} | {np.median(values):.1f} | {np.percentile(values, 95):.1f} |")
    return "\n".join(lines)


def _frames(args: DemoRequest) -> list[tuple[str, np.ndarray, np.ndarray]]:
    if args.data is not None:
        pairs, _ = pair_files(args.data / "ir", args.data / "vi")
        if not pairs:
            raise FileNotFoundError(f"no ir/vi pairs in {args.data}")
        return [(name, *read_pair(ir, vi)) for name, ir, vi in pairs[: args.frames]]
    from sgdfuse_ros.synthetic import render_sequence

    seq = render_sequence(args.frames, args.height, args.width)
    return [(f"frame_{i:04d}", ir, vis) for i, (ir, vis) in enumerate(seq)]


def run_library_demo(
    args: DemoRequest,
    options: PipelineOptions,
    frames: list[tuple[str, np.ndarray, np.ndarray]],
) -> int:
    from sgdfuse_ros.pipeline import FusionPipeline

    pipeline = FusionPipeline(options.replace(resize_mismatched=True, engine_build="blocking"))
    print(
        f"pipeline: backend={options.backend} device={options.device} K={pipeline.default_steps} "
        f"priors={pipeline.priors.name} weights trained={pipeline.metadata.get('trained', True)}"
    )
    timings: dict[str, list[float]] = {}
    start = time.perf_counter()
    middle = len(frames) // 2
    for i, (name, ir, vis) in enumerate(frames):
        result = pipeline.fuse(ir, vis, return_intermediate=(i == middle))
        write_rgb(args.out / "fused" / f"{name}.png", result.fused)
        if i == middle:
            tiles = [
                ("IR", ir_to_unit(ir)),
                ("VIS", vis),
                ("M_ir", result.prior_ir),
                ("M_vis", result.prior_vis),
                ("F1", result.stage1),
                ("fused", result.fused),
            ]
            write_rgb(args.out / "mosaic.png", mosaic(tiles))
        if i > 0 or len(frames) == 1:  # the first frame pays one-off warm-up costs
            for stage, ms in result.timings_ms.items():
                timings.setdefault(stage, []).append(ms)
    elapsed = time.perf_counter() - start
    print(timing_table(timings))
    print(f"{len(frames)} frames in {elapsed:.1f} s ({len(frames) / elapsed:.2f} fps, in-process)")
    print(f"fused frames: {args.out / 'fused'}  mosaic: {args.out / 'mosaic.png'}")
    return 0


def write_node_mosaic(out: Path, frames: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """IR | VIS | M_ir | M_vis | F1 | fused of the middle frame, all as the node published them
    (fused/image, and the debug topics fused/priors: red = M_ir, green = M_vis; fused/stage1)."""
    import cv2

    def read(name: str) -> np.ndarray | None:
        image = cv2.imread(str(out / "node_fused" / f"{name}_{middle:04d}.png"), cv2.IMREAD_COLOR)
        return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    middle = len(frames) // 2
    fused, priors, stage1 = read("fused"), read("priors"), read("stage1")
    if fused is None:
        print(f"no mosaic: the node's fused frame {middle} was not received")
        return
    _, ir, vis = frames[middle]
    tiles = [("IR", ir_to_unit(ir)), ("VIS", vis)]
    if priors is not None:
        tiles += [("M_ir", priors[..., 0]), ("M_vis", priors[..., 1])]
    if stage1 is not None:
        tiles.append(("F1", stage1))
    tiles.append(("fused", fused))
    missing = [name for name, image in (("priors", priors), ("F1", stage1)) if image is None]
    write_rgb(out / "mosaic.png", mosaic(tiles))
    note = f" (without {', '.join(missing)}: not received from the node)" if missing else ""
    print(f"mosaic: {out / 'mosaic.png'}{note}")


def run_demo(request: DemoRequest, options: PipelineOptions) -> int:
    """The demo through the node where rclpy imports (unless ``library``), else in-process."""
    request = DemoRequest(**{**request.__dict__, "out": Path(request.out)})
    frames = _frames(request)
    if request.data is None and not request.library:
        if importlib.util.find_spec("rclpy") is None:
            print(
                "ROS 2 (rclpy) is not importable here: fusing in-process instead of through the node"
            )
        else:
            from sgdfuse_ros.ros.demo_node import run_node_demo

            report = run_node_demo(
                request.out,
                len(frames),
                request.height,
                request.width,
                frames=[(ir, vis) for _, ir, vis in frames],
                options=options,
            )
            write_node_mosaic(request.out, frames)
            return 0 if report["frames_fused"] == report["frames_published"] else 1
    if request.data is not None and not request.library:
        print(f"--data {request.data}: fusing the pairs in-process, not through the node")
    return run_library_demo(request, options, frames)
