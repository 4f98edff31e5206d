"""Lightning DDP on CPU: two processes (gloo) train one forecast model into one MLflow run."""
import os
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.forecast import ForecastJob

pytestmark = pytest.mark.slow


def test_ddp_two_processes_make_one_run_with_metrics_logged_once_and_a_loadable_model(data_root, tmp_path):
    env = {**os.environ, "FFN_THREADS": "1"}  # two ranks on two cores
    args = ["--model", "rlinear", "--epochs", "2", "--trainer.patience", "0", "--trainer.strategy", "ddp",
            "--trainer.devices", "2", "--trainer.limit_train_batches", "8", "--trainer.limit_val_batches", "4",
            "--trainer.enable_progress_bar", "false"]
    res = subprocess.run([sys.executable, "-m", "pipelines.forecast", *args], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("MLflow run ") == 1  # only rank 0 reports
    c = MlflowClient(tracking.tracking_uri())
    (run,) = c.search_runs([c.get_experiment_by_name("forecast").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["trainer.strategy"] == "ddp"
    for name, n in (("val_loss", 2), ("train_loss", 2), ("test_mse", 1)):
        hist = c.get_metric_history(run.info.run_id, name)
        assert len(hist) == n, (name, [(m.step, m.value) for m in hist])
    (mv,) = c.search_model_versions("name='forecast'")
    assert mv.run_id == run.info.run_id
    history = pd.read_csv(data_root / "forecast" / "ETTh1.csv").iloc[:96]
    out = mlflow.pyfunc.load_model("models:/forecast@champion").predict(history)
    assert len(out) == 96 and out.drop(columns="date").notna().all().all()
    # the logged test MSE covers every test window once (a DistributedSampler would split and pad them)
    job = ForecastJob()
    dm = job.data(job.resolve({"model": {"name": "rlinear"}}))
    whole = job.score(mlflow.pyfunc.load_model("models:/forecast@champion").unwrap_python_model().predictor, dm)
    assert run.data.metrics["test_mse"] == pytest.approx(whole, rel=1e-4)
