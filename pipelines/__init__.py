"""Entry points (``python -m pipelines.<app>``), the shared runner, tracking and registry helpers."""
