"""Offline tools over the pipeline: fusing files and bags, evaluation, benchmarks, the demo."""
