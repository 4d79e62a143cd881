"""``sgdfuse bench``: speed of the whole pipeline per backend, K and prior refresh interval.

One run measures every requested backend (torch eager, ONNX Runtime, TensorRT) on the same
frames, interleaved round by round so that load from other processes on a shared machine hits
all backends alike; figures are medians over all rounds. Reported per case:

* per-stage latency (priors, Stage I, Stage II) and end-to-end latency (median, p90);
* back-to-back throughput and the speed-up over torch eager in the same run;
* GPU memory (device-wide in use, and torch's peak), or the process's peak RSS on the CPU;
* an Isaac-ROS-style stream table: frames arriving at ``--rate`` Hz, the newest pair processed
  whenever the pipeline is free (as the node does), giving output fps, latency from arrival to
  result, and missed frames. Arrivals are simulated on a virtual clock advanced by the real,
  measured time of each fusion, so the table does not depend on sleep accuracy.

``--compare-weights FILE...`` adds every case again with other weights in the same run (the
same interleaved rounds), so that a new default's cost is measured against the old one's under
the same load. ``--quality DIR`` adds the quality-versus-speed table over K (metrics from
``sgdfuse_ros.metrics.compute_all`` on every pair of DIR). ``--background-load N`` runs N
busy processes beside the measurement, as other nodes load a robot's CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgdfuse_ros.errors import BackendUnavailableError, first_line
from sgdfuse_ros.memory import retain_freed_memory
from sgdfuse_ros.options import PipelineOptions

LOG = logging.getLogger("sgdfuse_ros")
Frame = tuple[np.ndarray, np.ndarray]


def _bench_pipeline_options() -> PipelineOptions:
    # Build or load every plan before timing starts; never fall back mid-benchmark.
    return PipelineOptions(engine_build="blocking")


@dataclass
class BenchConfig:
    """One benchmark run; ``pipeline`` holds everything but the backend, K and prior interval,
    which are the cases compared."""

    pipeline: PipelineOptions = field(default_factory=_bench_pipeline_options)
    height: int = 480
    width: int = 640
    steps: list[int] = field(default_factory=lambda: [1])
    backends: list[str] | None = None  # None: torch + onnxruntime (+ tensorrt on CUDA)
    frames: int = 10  # timed frames per case and round
    rounds: int = 3
    warmup: int = 2
    prior_every: list[int] = field(default_factory=lambda: [1])
    rate: float = 30.0
    stream_seconds: float = 5.0
    data: str | None = None
    quality: str | None = None
    quality_pairs: int | None = None
    quality_backend: str | None = None
    background_load: int = 0  # busy processes beside the measurement (other nodes on the CPU)
    compare_weights: list[str] = field(default_factory=list)  # more weights files, same cases


def weights_labels(config: BenchConfig) -> list[tuple[str, str | None]]:
    """(label, weights path) of the benchmarked weights: the pipeline's own first, then each
    ``compare_weights`` file, labelled by file name (made unique)."""
    main = config.pipeline.weights
    entries: list[tuple[str, str | None]] = [(Path(main).name if main else "default", main)]
    for path in config.compare_weights:
        label = Path(path).name
        while label in {e[0] for e in entries}:
            label += "'"
        entries.append((label, path))
    return entries


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def load_frames(config: BenchConfig, count: int) -> list[Frame]:
    """Real pairs from ``config.data`` (``ir/`` and ``vi/``, resized to the bench size) or the
    built-in synthetic sequence."""
    import cv2

    if config.data is None:
        from sgdfuse_ros.synthetic import render_sequence

        return render_sequence(count, config.height, config.width, seed=0)
    size = (config.width, config.height)
    return [
        (cv2.resize(ir, size, interpolation=cv2.INTER_AREA), cv2.resize(vis, size))
        for ir, vis in iter_pairs(Path(config.data), count)
    ]


def iter_pairs(root: Path, limit: int | None = None) -> list[Frame]:
    """(IR gray, VIS RGB uint8) pairs matched by file stem in ``root/ir`` and ``root/vi``;
    FileNotFoundError naming the folder when there is none, or the file that cannot be read."""
    from sgdfuse_ros.imaging import pair_files, read_pair

    pairs, _ = pair_files(Path(root) / "ir", Path(root) / "vi")
    if not pairs:
        raise FileNotFoundError(f"no ir/ + vi/ image pairs in {root}")
    return [read_pair(ir_path, vi_path) for _, ir_path, vi_path in pairs[:limit]]


def default_backends(device: str) -> list[str]:
    return ["torch", "onnxruntime"] + (["tensorrt"] if device.startswith("cuda") else [])


def make_pipeline(config: BenchConfig, backend: str, weights: str | None) -> Any:
    """A pipeline for one backend and weights file with every engine built before timing starts."""
    from sgdfuse_ros.pipeline import FusionPipeline

    options = config.pipeline.replace(backend=backend, steps=config.steps[0], weights=weights)
    pipe = FusionPipeline(options)
    pipe.prepare(config.height, config.width, tuple(config.steps))
    return pipe


class Memory:
    """GPU memory (device-wide and torch peak) or the CPU process's peak resident set."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        if self.cuda:
            import torch

            self.torch = torch

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict[str, float]:
        if self.cuda:
            free, total = self.torch.cuda.mem_get_info()
            return {
                "gpu_mem_in_use_mb": (total - free) / 2**20,
                "gpu_torch_peak_mb": self.torch.cuda.max_memory_allocated() / 2**20,
            }
        return {"cpu_peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """The process's peak resident set so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate_stream(
    fuse_frame: Callable[[int], float], num_inputs: int, rate: float
) -> dict[str, float]:
    """Frames arrive every 1/rate s; when free, the pipeline takes the newest arrived frame and
    drops older ones (keep-last-1, as the node's synchroniser). ``fuse_frame(i)`` fuses input
    ``i`` for real and returns its duration in seconds, which advances the virtual clock."""
    period = 1.0 / rate
    clock = 0.0
    next_index = 0
    latencies = []
    while next_index < num_inputs:
        newest = min(int(clock / period + 1e-9), num_inputs - 1)
        if newest < next_index:  # idle until the next frame arrives
            newest = next_index
            clock = newest * period
        clock += fuse_frame(newest)
        latencies.append(clock - newest * period)
        next_index = newest + 1
    processed = len(latencies)
    span = max(clock, num_inputs * period)
    return {
        "input_hz": rate,
        "input_frames": num_inputs,
        "output_fps": processed / span,
        "latency_mean_ms": 1e3 * statistics.fmean(latencies),
        "latency_p95_ms": 1e3 * percentile(latencies, 95),
        "latency_max_ms": 1e3 * max(latencies),
        "missed_frames": num_inputs - processed,
        "missed_pct": 100.0 * (num_inputs - processed) / num_inputs,
    }


@contextlib.contextmanager
def background_load(processes: int) -> Iterator[list[subprocess.Popen]]:
    """``processes`` pure-Python busy loops, each wanting a whole core, for the block's duration."""
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        yield busy
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Measure every (weights, backend, K, prior interval) case; returns the JSON-ready report."""
    backends = config.backends or default_backends(config.pipeline.device)
    frames = load_frames(config, max(config.frames, 8))
    memory = Memory(config.pipeline.device)
    # Keyed by (weights label, backend): the weights compared share one process and one clock.
    pipelines: dict[tuple[str, str], Any] = {}
    unavailable: dict[str, str] = {}
    entries = weights_labels(config)
    main_label = entries[0][0]
    for label, weights in entries:
        for backend in backends:
            try:
                pipelines[label, backend] = make_pipeline(config, backend, weights)
            except Exception as exc:  # an absent optional backend is a row, not a crash
                name = backend if label == main_label else f"{backend} ({label})"
                unavailable[name] = f"{type(exc).__name__}: {first_line(exc)}"
                LOG.warning("backend %s unavailable: %s", name, unavailable[name])
    if main_label not in {label for label, _ in pipelines}:
        raise BackendUnavailableError(
            "no backend could be built for the benchmarked weights: "
            + "; ".join(f"{name}: {why}" for name, why in unavailable.items())
        )
    if config.quality_backend and (main_label, config.quality_backend) not in pipelines:
        raise ValueError(
            f"--quality-backend {config.quality_backend} is not among the benchmarked, available "
            f"backends ({', '.join(b for label, b in pipelines if label == main_label)})"
        )
    Case = tuple[tuple[str, str], int, int]
    cases: list[Case] = [
        (p, k, n) for p in pipelines for k in config.steps for n in config.prior_every
    ]
    samples: dict[Case, list[dict[str, float]]] = {c: [] for c in cases}
    throughput: dict[Case, list[float]] = {c: [] for c in cases}
    mem: dict[Case, dict[str, float]] = {}
    # How much each case raised the process's peak RSS: the cases share one process, so the
    # peak is the memory before any frame plus these (docs/benchmarks.md, "Memory").
    peak_growth: dict[Case, float] = dict.fromkeys(cases, 0.0)
    peak_before_frames = peak_rss_mb()

    def select(case: Case) -> Any:
        pipe = pipelines[case[0]]
        pipe.set_prior_refresh_every(case[2])
        return pipe

    def fuse(case: Case, index: int) -> Any:
        before = peak_rss_mb()
        result = pipelines[case[0]].fuse(*frames[index % len(frames)], steps=case[1])
        peak_growth[case] += peak_rss_mb() - before
        return result

    def measure() -> None:
        for case in cases:  # warm-up: lazy allocations, oneDNN / cuDNN / ORT kernel selection
            select(case)
            for i in range(config.warmup):
                fuse(case, i)
        for _ in range(config.rounds):
            for case in cases:
                select(case)
                memory.reset()
                start = time.perf_counter()
                for i in range(config.frames):
                    samples[case].append(fuse(case, i).timings_ms)
                throughput[case].append(config.frames / (time.perf_counter() - start))
                mem[case] = memory.read()
        num_inputs = max(2, int(round(config.rate * config.stream_seconds)))
        for case in cases:
            select(case)

            def fuse_frame(index: int, case: Case = case) -> float:
                start = time.perf_counter()
                fuse(case, index)
                return time.perf_counter() - start

            stream_rows.append(
                {
                    "weights": case[0][0],
                    "backend": case[0][1],
                    "steps": case[1],
                    "prior_every": case[2],
                    **simulate_stream(fuse_frame, num_inputs, config.rate),
                }
            )

    stream_rows: list[dict[str, Any]] = []
    with background_load(config.background_load):
        measure()

    latency_rows = []
    for case in cases:
        (label, backend), steps, every = case
        stage = lambda name, c=case: statistics.median(s.get(name, 0.0) for s in samples[c])  # noqa: E731
        totals = [s["total"] for s in samples[case]]
        latency_rows.append(
            {
                "weights": label,
                "backend": backend,
                "steps": steps,
                "prior": pipelines[case[0]].priors.name,
                "prior_every": every,
                "priors_ms": stage("priors"),
                "stage1_ms": stage("stage1"),
                "stage2_ms": stage("stage2"),
                "total_ms": statistics.median(totals),
                "total_p90_ms": percentile(totals, 90),
                "fps": statistics.median(throughput[case]),
                "frames": len(totals),
                **mem[case],
                "peak_rss_growth_mb": peak_growth[case],
            }
        )
    for row in latency_rows:
        torch_row = next(
            (
                r
                for r in latency_rows
                if r["backend"] == "torch"
                and (r["weights"], r["steps"], r["prior_every"])
                == (row["weights"], row["steps"], row["prior_every"])
            ),
            None,
        )
        row["speedup_vs_torch"] = (
            torch_row["total_ms"] / row["total_ms"] if torch_row else float("nan")
        )

    report: dict[str, Any] = {
        "config": asdict(config),
        "environment": environment(config, pipelines),
        "unavailable": unavailable,
        "latency": latency_rows,
        "weights_compared": compare_weights_rows(latency_rows, main_label),
        "stream": stream_rows,
        "memory": {
            "peak_rss_before_frames_mb": peak_before_frames,
            "peak_rss_mb": peak_rss_mb(),
        },
    }
    # Every backend runs the same torch model's networks: one size per weights file.
    from sgdfuse_ros.models.size import model_size

    sizes = {}
    for (label, _), pipe in pipelines.items():
        if label not in sizes:
            sizes[label] = model_size(pipe.model, config.height, config.width, config.steps)
    if main_label in sizes:
        report["model"] = sizes.pop(main_label)
    report["compared_models"] = sizes
    if config.quality:
        main_backends = [b for (label, b) in pipelines if label == main_label]
        backend = config.quality_backend or main_backends[-1]  # the fastest by default
        report["quality"] = quality_table(
            pipelines[main_label, backend], Path(config.quality), config.steps, config.quality_pairs
        )
        report["quality_backend"] = backend
    report["targets"] = check_targets(
        [r for r in latency_rows if r["weights"] == main_label], config
    )
    for pipe in pipelines.values():
        pipe.close()
    return report


def compare_weights_rows(rows: list[dict[str, Any]], main_label: str) -> list[dict[str, Any]]:
    """Per compared weights file and (backend, K, prior interval): the benchmarked weights'
    median frame time over the compared one's (peak memory needs a process per file: the cases
    of one process share its peak)."""
    main = {
        (r["backend"], r["steps"], r["prior_every"]): r for r in rows if r["weights"] == main_label
    }
    out = []
    for r in rows:
        ours = main.get((r["backend"], r["steps"], r["prior_every"]))
        if r["weights"] == main_label or ours is None:
            continue
        out.append(
            {
                "weights": main_label,
                "compared": r["weights"],
                "backend": r["backend"],
                "steps": r["steps"],
                "prior_every": r["prior_every"],
                "total_ms": ours["total_ms"],
                "compared_total_ms": r["total_ms"],
                "time_ratio": ours["total_ms"] / r["total_ms"],
            }
        )
    return out


def quality_table(
    pipe: Any, root: Path, steps: Sequence[int], limit: int | None
) -> list[dict[str, Any]]:
    """Mean fusion metrics and Stage II latency per K over the pairs in ``root``."""
    from sgdfuse_ros.metrics import compute_all

    pairs = iter_pairs(root, limit)
    pipe.set_prior_refresh_every(1)
    rows = []
    for k in steps:
        pipe.reset_priors()
        scores: dict[str, list[float]] = {}
        stage2 = []
        for ir, vis in pairs:
            result = pipe.fuse(ir, vis, steps=k)
            stage2.append(result.timings_ms["stage2"])
            for name, value in compute_all(ir, vis, result.fused).items():
                scores.setdefault(name, []).append(value)
        rows.append(
            {
                "steps": k,
                "pairs": len(pairs),
                "stage2_ms": statistics.median(stage2),
                **{name: statistics.fmean(values) for name, values in scores.items()},
            }
        )
    return rows


def cpu_model() -> str:
    """The CPU's model name where Linux reports it (``platform.processor`` is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(config: BenchConfig, pipelines: dict[str, Any]) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # Whether freed activations are reused (see sgdfuse_ros.memory); it halves torch's CPU time.
        "malloc_retains_freed": retain_freed_memory(),
        # How long torch's idle OpenMP threads spin (docs/design-notes.md, "Threads and CPU").
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if config.pipeline.device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    for module in ("onnxruntime", "tensorrt"):
        try:
            env[module] = __import__(module).__version__
        except ImportError:
            env[module] = None
    if pipelines:
        pipe = next(iter(pipelines.values()))
        env["weights_metadata"] = {
            k: v for k, v in pipe.metadata.items() if isinstance(v, str | int | float | bool)
        }
    return env


def check_targets(rows: list[dict[str, Any]], config: BenchConfig) -> list[dict[str, Any]]:
    """The issue's targets that this run can decide (others need another device or setting)."""

    def find(backend: str, steps: int, every: int) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in rows
                if (r["backend"], r["steps"], r["prior_every"]) == (backend, steps, every)
            ),
            None,
        )

    targets = []
    on_gpu = config.pipeline.device.startswith("cuda")
    for row in rows:
        if row["speedup_vs_torch"] != row["speedup_vs_torch"]:  # NaN: torch not in this run
            continue
        if row["backend"] == "onnxruntime" and not on_gpu:
            targets.append(
                {
                    "target": f"CPU: ONNX Runtime >= 1.5x torch eager (K={row['steps']}, priors every {row['prior_every']})",
                    "value": row["speedup_vs_torch"],
                    "met": row["speedup_vs_torch"] >= 1.5,
                }
            )
        if row["backend"] == "tensorrt":
            targets.append(
                {
                    "target": f"TensorRT >= 3x torch eager (K={row['steps']}, priors every {row['prior_every']})",
                    "value": row["speedup_vs_torch"],
                    "met": row["speedup_vs_torch"] >= 3.0,
                }
            )
    fast = [
        r
        for r in rows
        if (r["backend"], r["steps"]) == ("tensorrt", 1)
        and (r["prior"] == "classical" or r["prior_every"] > 1)
    ]
    if fast:
        best = max(fast, key=lambda r: r["fps"])
        targets.append(
            {
                "target": f"TensorRT K=1 + fast prior ({best['prior']} every {best['prior_every']}) >= 100 fps",
                "value": best["fps"],
                "met": best["fps"] >= 100,
            }
        )
    paper = find("tensorrt", 3, 1)
    if paper and paper["prior"] == "sam":
        targets.append(
            {
                "target": "TensorRT K=3, SAM every frame >= 20 fps",
                "value": paper["fps"],
                "met": paper["fps"] >= 20,
            }
        )
    return targets


def format_tables(report: dict[str, Any]) -> str:
    """Markdown tables of a report (what ``sgdfuse bench`` prints)."""
    env = report["environment"]
    cfg = report["config"]
    device = (
        env.get("gpu")
        or f"{env['cpu']} ({env['cpu_count']} CPUs, {env['torch_threads']} torch threads, "
        f"malloc {'keeps' if env.get('malloc_retains_freed') else 'returns'} freed memory)"
    )
    lines = [
        f"Device {cfg.get('pipeline', cfg)['device']}: {device}; {cfg['width']}x{cfg['height']}; "
        f"{cfg['rounds']} rounds x {cfg['frames']} frames, medians"
        + (
            f"; background load: {cfg['background_load']} busy processes"
            if cfg.get("background_load")
            else ""
        ),
        "",
        "| backend | K | prior (every N) | priors ms | Stage I ms | Stage II ms | total ms | p90 ms | fps | x torch | memory MB | peak RSS + MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    compared = report.get("weights_compared")
    if compared:  # name the weights of every row
        lines[-2] = "| weights " + lines[-2]
        lines[-1] = "|---" + lines[-1]
    for r in report["latency"]:
        memory = r.get("gpu_mem_in_use_mb", r.get("cpu_peak_rss_mb", float("nan")))
        lines.append(
            (f"| {r['weights']} " if compared else "")
            + f"| {r['backend']} | {r['steps']} | {r['prior']} ({r['prior_every']}) | {r['priors_ms']:.1f} | "
            f"{r['stage1_ms']:.1f} | {r['stage2_ms']:.1f} | {r['total_ms']:.1f} | {r['total_p90_ms']:.1f} | "
            f"{r['fps']:.2f} | {r['speedup_vs_torch']:.2f} | {memory:.0f} | {r['peak_rss_growth_mb']:.0f} |"
        )
    for backend, reason in report["unavailable"].items():
        lines.append(f"| {backend} | - | - | unavailable: {reason} |")
    mem = report["memory"]
    lines += [
        "",
        f"Process peak RSS {mem['peak_rss_mb']:.0f} MB: {mem['peak_rss_before_frames_mb']:.0f} MB "
        "before the first frame (imports, weights, sessions), then each case's "
        "'peak RSS +' in turn (the backends share this process; one backend alone needs less).",
    ]
    if report.get("model"):
        lines += ["", *model_size_table(report["model"])]
    if compared:
        lines += [
            "",
            "Weights compared in this run (same frames, interleaved rounds):",
            "",
            "| weights | compared with | backend | K | prior every | total ms | compared total ms | time ratio |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for c in compared:
            lines.append(
                f"| {c['weights']} | {c['compared']} | {c['backend']} | {c['steps']} | "
                f"{c['prior_every']} | {c['total_ms']:.1f} | {c['compared_total_ms']:.1f} | "
                f"{c['time_ratio']:.2f} |"
            )
        for label, size in report.get("compared_models", {}).items():
            lines += ["", f"{label}:", *model_size_table(size)]
    lines += [
        "",
        f"Stream at {cfg['rate']:g} Hz input (newest pair processed when free):",
        "",
        "| backend | K | prior every | output fps | mean latency ms | p95 latency ms | max latency ms | missed frames |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if compared:
        lines[-2] = "| weights " + lines[-2]
        lines[-1] = "|---" + lines[-1]
    for r in report["stream"]:
        lines.append(
            (f"| {r['weights']} " if compared else "")
            + f"| {r['backend']} | {r['steps']} | {r['prior_every']} | {r['output_fps']:.2f} | "
            f"{r['latency_mean_ms']:.1f} | {r['latency_p95_ms']:.1f} | {r['latency_max_ms']:.1f} | "
            f"{r['missed_frames']}/{r['input_frames']} ({r['missed_pct']:.0f}%) |"
        )
    if report.get("quality"):
        from sgdfuse_ros.metrics import METRIC_NAMES

        lines += [
            "",
            f"Quality vs speed over K ({report['quality'][0]['pairs']} pairs, {report['quality_backend']}):",
            "",
            "| K | Stage II ms | " + " | ".join(METRIC_NAMES) + " |",
            "|---:|---:|" + "---:|" * len(METRIC_NAMES),
        ]
        for r in report["quality"]:
            values = " | ".join(f"{r[m]:.4g}" for m in METRIC_NAMES)
            lines.append(f"| {r['steps']} | {r['stage2_ms']:.1f} | {values} |")
    if report["targets"]:
        lines += ["", "Targets:"]
        for t in report["targets"]:
            lines.append(f"- {t['target']}: {t['value']:.2f} -> {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def model_size_table(size: dict[str, Any]) -> list[str]:
    """Markdown lines: parameters per part and GMAC per part and per frame for each K."""
    params = size["params"]
    heads = ", ".join(f"K={k} {n / 1e6:.4f}" for k, n in params["heads"].items())
    lines = [
        f"Model size at {size['width']}x{size['height']} (GPU-relevant; MACs of convolutions, "
        "linear layers and matrix products): parameters Stage I "
        f"{params['stage1'] / 1e6:.4f} M, U-Net {params['unet'] / 1e6:.4f} M, heads ({heads}) M, "
        f"total {params['total'] / 1e6:.4f} M",
        "",
        "| K | Stage I GMAC | U-Net GMAC | head GMAC | per frame GMAC |",
        "|---:|---:|---:|---:|---:|",
    ]
    for k, s in size["steps"].items():
        lines.append(
            f"| {k} | {size['stage1_macs'] / 1e9:.2f} | {s['unet_macs'] / 1e9:.2f} | "
            f"{s['head_macs'] / 1e9:.2f} | {s['frame_macs'] / 1e9:.2f} |"
        )
    return lines
