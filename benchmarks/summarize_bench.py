"""Median over several ``sgdfuse bench --json`` reports of the same cases (a shared machine's
load varies between runs; the median of per-run medians is the figure to quote).

    python benchmarks/summarize_bench.py benchmarks/results/cpu_640x480_run*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args()
    runs = [json.loads(p.read_text()) for p in args.reports]
    cases: dict[tuple, list[dict]] = {}
    for run in runs:
        for row in run["latency"]:
            cases.setdefault((row["backend"], row["steps"], row["prior_every"]), []).append(row)
    print(f"Median of {len(runs)} runs ({', '.join(p.name for p in args.reports)}):\n")
    print(
        "| backend | K | prior every | Stage I ms | Stage II ms | total ms | fps | x torch (per run) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for (backend, steps, every), rows in cases.items():
        med = lambda key, rows=rows: statistics.median(r[key] for r in rows)  # noqa: E731
        per_run = ", ".join(f"{r['speedup_vs_torch']:.2f}" for r in rows)
        print(
            f"| {backend} | {steps} | {every} | {med('stage1_ms'):.0f} | {med('stage2_ms'):.0f} | "
            f"{med('total_ms'):.0f} | {med('fps'):.2f} | {med('speedup_vs_torch'):.2f} ({per_run}) |"
        )


if __name__ == "__main__":
    main()
