"""Benchmarks as commands: ``python -m pipelines.bench <area> [--quick]``. Each prints a table and logs it to MLflow."""
