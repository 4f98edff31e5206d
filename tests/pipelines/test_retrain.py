"""Champion / challenger retraining, the lock, failures that leave the champion alone, and the scheduler."""
import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from pipelines import retrain as rt
from pipelines import tracking

pytestmark = pytest.mark.slow

FAST = ["--model", "rlinear", "--epochs", "2", "--trainer.limit_train_batches", "10", "--trainer.limit_val_batches",
        "5", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
BAD_LR = ["--optim.lr", "1e-7"]  # a model that has barely moved from its initialisation


def _alias(name, alias):
    try:
        return MlflowClient(tracking.tracking_uri()).get_model_version_by_alias(name, alias).version
    except Exception:  # noqa: BLE001
        return None


def test_challenger_is_promoted_only_when_it_scores_better(capsys):
    assert rt.main(["forecast", *FAST, *BAD_LR]) == 0
    assert "v1 is the first model and the champion" in capsys.readouterr().out
    assert rt.main(["forecast", *FAST]) == 0  # a trained model beats the untrained champion
    out = capsys.readouterr().out
    assert "forecast: promoted v2 as champion (challenger v2 test_mse" in out
    assert str(_alias("forecast", "champion")) == "2" and _alias("forecast", "challenger") is None
    assert rt.main(["forecast", *FAST, *BAD_LR, "--margin", "0.01"]) == 0  # a worse challenger is kept out
    assert "forecast: kept v2 as champion (challenger v3" in capsys.readouterr().out
    assert str(_alias("forecast", "champion")) == "2" and str(_alias("forecast", "challenger")) == "3"
    c = MlflowClient(tracking.tracking_uri())
    mv = c.get_model_version("forecast", "3")
    assert mv.tags["retrain.decision"] == "kept" and float(mv.tags["retrain.challenger_score"]) > \
        float(mv.tags["retrain.champion_score"])
    run = c.get_run(mv.run_id)
    assert run.data.tags["retrain.decision"] == "kept" and "retrain_champion_score" in run.data.metrics
    assert "data.data_sha256" in mv.tags  # the data fingerprint travels with the version


def test_failures_leave_the_champion_untouched(monkeypatch, tmp_path, capsys):
    assert rt.main(["forecast", *FAST]) == 0
    (tmp_path / "bad.csv").write_text("date,a\n2020-01-01 00:00:00,1\n2020-01-01 01:00:00,oops\n")
    assert rt.main(["forecast", *FAST, "--data", str(tmp_path / "bad.csv")]) == 2
    assert "champion unchanged" in capsys.readouterr().err
    from pipelines.forecast import ForecastJob

    def boom(self, predictor, dm):
        raise RuntimeError("scoring crashed")

    monkeypatch.setattr(ForecastJob, "score", boom)
    assert rt.main(["forecast", *FAST]) == 1
    assert str(_alias("forecast", "champion")) == "1"


def test_second_retrain_of_one_model_is_refused_while_the_first_holds_the_lock():
    with rt.model_lock("forecast"):
        res = subprocess.run([sys.executable, "-m", "pipelines.retrain", "forecast", *FAST], capture_output=True,
                             text=True, timeout=300)
    assert res.returncode == rt.LOCKED
    assert "another retrain of 'forecast' is running (pid" in res.stderr
    assert _alias("forecast", "champion") is None  # it never trained


def test_scheduler_runs_jobs_and_survives_a_failing_one(tmp_path):
    (tmp_path / "jobs.yaml").write_text(
        "jobs:\n"
        f"  - {{name: good, app: forecast, interval_seconds: 3600, args: {FAST}}}\n"
        "  - {name: broken, app: forecast, cron: '0 3 * * *', args: [--data, /nowhere/x.csv, --mlflow.model_name, b]}\n")
    res = subprocess.run([sys.executable, "-m", "pipelines.schedule", "--config", str(tmp_path / "jobs.yaml"),
                          "--run-now", "--max-runs", "2"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2 runs, 1 failed" in res.stdout
    assert "good: exit 0: forecast: v1 is the first model and the champion" in res.stderr
    assert "broken: exit 2: error: " in res.stderr and "/nowhere/x.csv" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  - {app: forecast, cron: '61 * * * *'}\n")
    res = subprocess.run([sys.executable, "-m", "pipelines.schedule", "--config", str(bad)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "bad cron expression '61 * * * *'" in res.stderr


def test_retrain_ends_runs_whose_process_was_killed_on_this_host():
    import socket

    import mlflow

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    c = MlflowClient(tracking.tracking_uri())
    exp = tracking.use_experiment("forecast")
    orphan = c.create_run(exp, tags={"host": socket.gethostname(), "pid": str(dead.pid)}).info.run_id
    alive = c.create_run(exp, tags={"host": socket.gethostname(), "pid": str(os.getpid())}).info.run_id
    elsewhere = c.create_run(exp, tags={"host": "another-machine", "pid": str(dead.pid)}).info.run_id
    assert rt.main(["forecast", *FAST]) == 0
    assert c.get_run(orphan).info.status == "FAILED" and "no longer exists" in c.get_run(orphan).data.tags["ended_by"]
    assert c.get_run(alive).info.status == "RUNNING" and c.get_run(elsewhere).info.status == "RUNNING"
    assert mlflow.active_run() is None
