"""Where MLflow lives: the embedded sqlite store under ``mlruns/`` or ``$MLFLOW_TRACKING_URI``.

``FFN_MLRUNS`` moves the embedded store (tests point it at a temp dir). MLflow >= 3.13 refuses a bare
``./mlruns`` file store, so the embedded URI is always an absolute ``sqlite:///`` path.
"""
from __future__ import annotations

import os
from pathlib import Path

import mlflow

PROJECT = Path(__file__).resolve().parents[1]


def mlruns_dir() -> Path:
    return Path(os.environ.get("FFN_MLRUNS", PROJECT / "mlruns")).resolve()


_SET_BY_US: set[str] = set()  # mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI: tell ours apart


def user_uri() -> str | None:
    """The tracking server the user chose with $MLFLOW_TRACKING_URI, if any."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return None if not uri or uri in _SET_BY_US else uri


def tracking_uri() -> str:
    uri = user_uri()
    if uri:
        return uri
    d = mlruns_dir()
    d.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{d / 'mlflow.db'}"


def artifact_location(experiment: str) -> str | None:
    """Artifacts beside the embedded store; a tracking server decides its own."""
    if user_uri():
        return None
    return (mlruns_dir() / "artifacts" / experiment).as_uri()


def checkpoint_dir(app: str, run_id: str) -> Path:
    return Path(os.environ.get("FFN_CHECKPOINTS", PROJECT / "checkpoints")).resolve() / app / run_id


def activate() -> str:
    """Make :func:`tracking_uri` MLflow's process-wide tracking URI and return it."""
    uri = tracking_uri()
    if uri != user_uri():
        _SET_BY_US.add(uri)
        _create_store(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def _create_store(uri: str) -> None:
    """Create the embedded sqlite store under a file lock: two processes migrating one new database at once
    (two scheduled jobs starting together) would otherwise collide in MLflow's schema migration."""
    db = mlruns_dir() / "mlflow.db"
    if db.exists() and db.stat().st_size > 0:
        return
    import fcntl

    from mlflow.tracking import MlflowClient

    with open(mlruns_dir() / ".create.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the schema once


def use_experiment(name: str) -> str:
    """Make ``name`` the active experiment, creating it with the project's artifact location if new."""
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=artifact_location(name))
    return mlflow.set_experiment(name).experiment_id
