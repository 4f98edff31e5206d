"""Shared fixtures: the real data in ../shared/data, a private MLflow store per test, fixed threads."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("FFN_THREADS", "2")))

ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    env = os.environ.get("FFN_DATA_DIR")
    root = Path(env) if env else ROOT.parent / "shared" / "data"
    if not (root / "forecast" / "ETTh1.csv").is_file():
        pytest.exit(f"real data not found under {root}: set FFN_DATA_DIR to the shared data directory", returncode=3)
    return root.resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    os.environ["FFN_DATA_DIR"] = str(root)  # also for module-scoped fixtures that run before _isolated
    return root


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    """One writable cache per test session (PyG's processed files, encoded spike sets)."""
    root = tmp_path_factory.mktemp("ffn-cache")
    os.environ["FFN_CACHE"] = str(root)  # also for module-scoped fixtures
    return root


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty, fully migrated MLflow sqlite store, made once; each test starts from a copy (creating and
    migrating a new database costs about 2 s, which every one of ~300 tests would otherwise pay)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
    mlflow.set_tracking_uri(None)
    return db


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path, data_root, cache_root, empty_store):
    """Every test: real data dir, its own MLflow store (a copy of the empty one) and checkpoint dir, no tracking
    server."""
    monkeypatch.setenv("FFN_DATA_DIR", str(data_root))
    monkeypatch.setenv("FFN_CACHE", str(cache_root))
    (tmp_path / "mlruns").mkdir()
    shutil.copyfile(empty_store, tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.setenv("FFN_MLRUNS", str(tmp_path / "mlruns"))
    monkeypatch.setenv("FFN_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    use_store()
    torch.manual_seed(0)


def use_store() -> None:
    """Point MLflow's process-wide tracking URI at the store the environment names now."""
    from pipelines import tracking

    tracking.activate()


def in_process(capsys, main, argv: list) -> tuple[int, str, str]:
    """A command's ``main(argv)`` run in-process -> (exit code, stdout, stderr); argparse's own exits count too.
    (A subprocess per case costs ~10 s of imports; each ``python -m`` path is still run for real somewhere.)"""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cli(capsys):
    """A pipeline's command line in-process: ``cli(job, *args) -> (exit code, stderr)``, the same
    ``pipelines.runner.main`` that ``python -m pipelines.<app>`` exits with (the ``python -m`` path itself is tested
    in test_options and by each app's end-to-end run)."""
    from pipelines.runner import main

    def call(job, *args):
        code, _, err = in_process(capsys, lambda argv: main(job, argv), list(args))
        return code, err

    return call
