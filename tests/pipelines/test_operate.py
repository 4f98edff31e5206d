"""Operating a model: resume a killed training into the same MLflow run, serve the champion over HTTP."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest
import pytorch_lightning as pl
from mlflow.tracking import MlflowClient

from pipelines import callbacks, tracking
from pipelines.forecast import ForecastJob
from pipelines.runner import run
from pipelines.server import free_port

pytestmark = pytest.mark.slow

FAST = ["--model", "rlinear", "--trainer.limit_train_batches", "10", "--trainer.limit_val_batches", "5",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1"]


class Crash(pl.Callback):
    """Dies in the middle of the second epoch, like a killed process."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 4:
            raise RuntimeError("killed mid-epoch")


def test_resume_continues_the_same_run_from_its_last_checkpoint(monkeypatch):
    monkeypatch.setitem(callbacks.CALLBACKS, "crash", Crash)
    with pytest.raises(RuntimeError, match="killed mid-epoch"):
        run(ForecastJob(), FAST + ["--epochs", "3", "--trainer.patience", "0", "--callbacks.crash", "{}"])
    c = MlflowClient(tracking.tracking_uri())
    (failed,) = c.search_runs([c.get_experiment_by_name("forecast").experiment_id])
    assert failed.info.status == "FAILED"
    res = run(ForecastJob(), FAST + ["--epochs", "3", "--trainer.patience", "0", "--resume", "last"])
    assert res.run_id == failed.info.run_id
    r = c.get_run(res.run_id)
    assert r.info.status == "FINISHED" and r.data.tags["resumed_from"].endswith("last.ckpt")
    assert r.data.tags["pid"] == str(os.getpid())
    val = c.get_metric_history(res.run_id, "val_loss")
    assert len(val) == 3  # epoch 0 before the crash, epochs 1 and 2 after the resume: none twice, none lost
    assert len(c.search_runs([c.get_experiment_by_name("forecast").experiment_id])) == 1


def test_resume_without_anything_to_resume_is_a_clear_error():
    from pipelines.config import ConfigError

    with pytest.raises(ConfigError, match="--resume last: no unfinished forecast run with a checkpoint"):
        run(ForecastJob(), FAST + ["--epochs", "1", "--resume", "last"])


def test_champion_answers_http_predictions_from_mlflow_models_serve(data_root):
    res = run(ForecastJob(), FAST + ["--epochs", "1"])
    port = free_port()
    bindir = os.path.dirname(sys.executable)  # mlflow execs `uvicorn` from PATH: the venv's bin must be on it
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.tracking_uri(),
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    mlflow_cli = os.path.join(bindir, "mlflow")
    server = subprocess.Popen([mlflow_cli, "models", "serve", "-m", "models:/forecast@champion", "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        history = pd.read_csv(data_root / "forecast" / "ETTh1.csv").iloc[14304:14400]
        body = json.dumps({"dataframe_split": json.loads(history.to_json(orient="split", index=False))}).encode()
        deadline, reply = time.time() + 120, None
        while time.time() < deadline and reply is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                             {"Content-Type": "application/json"})
                reply = json.loads(urllib.request.urlopen(req, timeout=10).read())
            except OSError:
                assert server.poll() is None, server.stdout.read()[-3000:]
                time.sleep(1)
        assert reply is not None, "the model server did not answer within 120 s"
        rows = reply["predictions"]
        first = pd.Timestamp(history["date"].iloc[-1]) + pd.Timedelta(hours=1)
        assert len(rows) == 96 and pd.Timestamp(rows[0]["date"]) == first and "OT" in rows[0]
        local = res  # the same model, loaded in process, gives the same numbers
        import mlflow

        mine = mlflow.pyfunc.load_model(local.model_uri).predict(history.reset_index(drop=True))
        assert abs(float(mine["OT"].iloc[0]) - float(rows[0]["OT"])) < 1e-4
    finally:
        server.terminate()
        server.wait(timeout=30)
