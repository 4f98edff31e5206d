"""End to end on real ETT data: the forecast pipeline, its MLflow run and registry entry, predictions,
and bad input that must leave the store untouched."""
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from pipelines import tracking
from tests.conftest import use_store
from pipelines.forecast import ForecastJob
from pipelines.runner import run

pytestmark = pytest.mark.slow

FAST = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "4",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _cli(*args, module="pipelines.forecast"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


def _client():
    return MlflowClient(tracking.tracking_uri())


def _runs(experiment="forecast"):
    exp = _client().get_experiment_by_name(experiment)
    return [] if exp is None else _client().search_runs([exp.experiment_id])


def _history(data_root, name="ETTh1", rows=96, end=14400):
    df = pd.read_csv(data_root / "forecast" / f"{name}.csv")
    return df.iloc[end - rows:end].reset_index(drop=True)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, data_root):
    """The default job (S-Mamba, ETTh1, L=96, H=96, paper settings) for a few steps, once per module."""
    store = tmp_path_factory.mktemp("store")
    env = {"FFN_MLRUNS": str(store / "mlruns"), "FFN_CHECKPOINTS": str(store / "ckpt")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = run(ForecastJob(), FAST + ["--trainer.limit_test_batches", "5"])
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return env, result


@pytest.fixture
def in_default_store(default_run, monkeypatch):
    env, result = default_run
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    use_store()
    return result


def test_one_finished_run_with_params_metrics_artifacts(in_default_store):
    result = in_default_store
    runs = _runs()
    assert len(runs) == 1 and runs[0].info.run_id == result.run_id
    r = runs[0]
    assert r.info.status == "FINISHED"
    p = r.data.params
    assert (p["model.name"], p["model.d_state"], p["model.d_model"], p["optim.lr"]) == ("s_mamba", "2", "256", "7e-05")
    assert p["data.data_sha256"] == "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"
    client = _client()
    assert [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")].__len__() == 2  # per epoch
    assert len(client.get_metric_history(r.info.run_id, "val_loss")) == 2
    assert {"test_mse", "test_mae"} <= set(r.data.metrics)
    arts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"config.yaml", "forecast_vs_truth.png"} <= arts
    cfg = yaml.safe_load(open(mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="config.yaml")))
    assert cfg["model"]["name"] == "s_mamba" and cfg["data"]["horizon"] == 96


def test_registered_champion_reproduces_the_logged_test_metric(in_default_store, data_root):
    result = in_default_store
    client = _client()
    mv = client.get_model_version_by_alias("forecast", "champion")
    assert str(mv.version) == result.version == "1" and mv.run_id == result.run_id
    model = mlflow.pyfunc.load_model("models:/forecast@champion")
    f = model.unwrap_python_model().predictor
    # recompute test MSE over the same 5 test batches with the registered network
    from apps.forecast.data import ForecastData
    dm = ForecastData("ETTh1")
    dm.setup()
    se, n = 0.0, 0
    for i, (x, m, y) in enumerate(dm.test_dataloader()):
        if i == 5:
            break
        with torch.no_grad():
            se += float(((f.model(x, m) - y) ** 2).sum())
        n += y.numel()
    assert se / n == pytest.approx(result.metrics["test_mse"], rel=1e-4)


def test_forecast_next_h_steps_from_python_and_cli(in_default_store, data_root, tmp_path, capsys):
    hist = _history(data_root)
    out = mlflow.pyfunc.load_model("models:/forecast@champion").predict(hist)
    assert list(out.columns) == ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert len(out) == 96 and not out.isna().any().any()
    assert pd.Timestamp(out["date"].iloc[0]) == pd.Timestamp(hist["date"].iloc[-1]) + pd.Timedelta(hours=1)
    assert pd.Timestamp(out["date"].iloc[-1]) == pd.Timestamp(hist["date"].iloc[-1]) + pd.Timedelta(hours=96)
    # in original units: exactly the network's scaled forecast mapped back through the train-fit scaler
    from apps.forecast.data import time_features
    f = mlflow.pyfunc.load_model("models:/forecast@champion").unwrap_python_model().predictor
    x = hist[f.columns].to_numpy(np.float32)[None]
    marks = torch.from_numpy(time_features(pd.DatetimeIndex(pd.to_datetime(hist["date"])), f.freq))[None]
    with torch.no_grad():
        scaled = f.model(torch.as_tensor(f.scaler.transform(x), dtype=torch.float32), marks).numpy()[0]
    np.testing.assert_allclose(out[f.columns].to_numpy(), f.scaler.inverse(scaled), rtol=1e-4, atol=1e-4)
    assert np.abs(out["OT"].to_numpy() - scaled[:, -1]).max() > 1.0  # a forecast left scaled would not pass

    csv = tmp_path / "history.csv"
    hist.to_csv(csv, index=False)
    res = _cli(f"runs:/{in_default_store.run_id}/model", str(csv), "-o", str(tmp_path / "f.csv"),
               module="pipelines.predict")
    assert res.returncode == 0, res.stderr
    cli = pd.read_csv(tmp_path / "f.csv")
    np.testing.assert_allclose(cli["OT"].to_numpy(), out["OT"].to_numpy(), rtol=1e-4, atol=1e-4)

    short = tmp_path / "short.csv"
    hist.iloc[:50].to_csv(short, index=False)
    from pipelines.predict import main  # the same entry point, in-process (10 s of imports per subprocess)

    capsys.readouterr()
    assert main(["models:/forecast@champion", str(short)]) == 2
    assert "50 rows of history, the model needs lookback = 96" in capsys.readouterr().err
    hist.drop(columns=["OT"]).to_csv(short, index=False)
    assert main(["models:/forecast@champion", str(short)]) == 2
    assert "missing columns ['OT']" in capsys.readouterr().err


def test_cli_itransformer_etth2_h192():
    res = _cli("--model", "itransformer", "--data", "ETTh2", "--horizon", "192", *FAST,
               "--trainer.limit_test_batches", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "itransformer on ETTh2 (L=96, H=192, M)" in res.stdout and "paper 0.380" in res.stdout
    (r,) = _runs()
    assert (r.data.params["model.d_model"], r.data.params["data.horizon"]) == ("128", "192")
    f = mlflow.pyfunc.load_model("models:/forecast@champion").unwrap_python_model().predictor
    assert f.horizon == 192 and type(f.model).__name__ == "ITransformer"


def test_yaml_config_custom_csv_and_ffn_swap(tmp_path, data_root):
    df = pd.read_csv(data_root / "forecast" / "ETTh2.csv").iloc[:1500]
    csv = tmp_path / "plant.csv"
    df.to_csv(csv, index=False)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"data": str(csv), "lookback": 48, "horizon": 24},
        "model": {"name": "s_mamba", "d_model": 32, "d_ff": 48, "d_state": 4, "ffn": "swiglu"},
        "optim": {"lr": 1e-3},
        "mlflow": {"model_name": "plant_forecast"},
    }))
    result = run(ForecastJob(), ["--config", str(cfg), *FAST, "--model.e_layers", "1"])
    (r,) = _runs()
    assert r.data.params["data.split"] == "ratio_7_1_2" and r.data.params["model.ffn"] == "swiglu"
    f = mlflow.pyfunc.load_model("models:/plant_forecast@champion").unwrap_python_model().predictor
    assert [type(b.ffn).__name__ for b in f.model.encoder.blocks] == ["SwiGLU"]
    assert f.lookback == 48 and f.horizon == 24 and result.version == "1"


def _bad_csv(tmp_path, data_root, edit):
    df = edit(pd.read_csv(data_root / "forecast" / "ETTh1.csv", dtype=str).iloc[:3000])
    p = tmp_path / "bad.csv"
    df.to_csv(p, index=False)
    return str(p)


def _with(df, row, col, v):
    df.loc[row, col] = v
    return df


@pytest.mark.parametrize("case,args,message", [
    ("no date", lambda t, d: ["--data", _bad_csv(t, d, lambda x: x.drop(columns=["date"]))], "no date column"),
    ("text cell", lambda t, d: ["--data", _bad_csv(t, d, lambda x: _with(x, 99, "OT", "n/a"))],
     "line 101, column 'OT': 'n/a' is not a number"),
    ("nan", lambda t, d: ["--data", _bad_csv(t, d, lambda x: _with(x, 5, "HUFL", "NaN"))], "line 7, column 'HUFL'"),
    ("inf", lambda t, d: ["--data", _bad_csv(t, d, lambda x: _with(x, 6, "HUFL", "-inf"))], "is missing, NaN or infinite"),
    ("too short", lambda t, d: ["--data", _bad_csv(t, d, lambda x: x.iloc[:200])], "fewer than lookback + horizon"),
    ("unknown name", lambda t, d: ["--data", "ETTq7"], "unknown dataset 'ETTq7'"),
    ("horizon 0", lambda t, d: ["--horizon", "0"], "horizon must be a positive integer"),
    ("unknown model", lambda t, d: ["--model", "informer"], "unknown forecast model 'informer'"),
    ("unknown option", lambda t, d: ["--model.depth", "3"], "--model.depth: unknown option; valid: "),
    ("unknown trainer option", lambda t, d: ["--trainer.max_epoch", "3"], "--trainer.max_epoch: unknown option"),
    ("wrong type", lambda t, d: ["--model.d_model", "abc"], "--model.d_model: expected int, got 'abc'"),
])
def test_bad_input_fails_cleanly_and_writes_nothing(case, args, message, tmp_path, data_root, cli):
    code, err = cli(ForecastJob(), *args(tmp_path, data_root), *FAST)
    assert code == 2, (case, err[-2000:])
    assert message in err and "Traceback" not in err
    assert _runs() == []
    assert _client().search_registered_models() == []


def test_failure_mid_training_marks_run_failed_and_registers_nothing(monkeypatch):
    from apps.forecast.task import ForecastTask

    def boom(self, batch, batch_idx):
        if self.global_step >= 2:
            raise RuntimeError("disk on fire")
        return ForecastTask.__dict__["_orig"](self, batch, batch_idx)

    monkeypatch.setattr(ForecastTask, "_orig", ForecastTask.training_step, raising=False)
    monkeypatch.setattr(ForecastTask, "training_step", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run(ForecastJob(), FAST)
    (r,) = _runs()
    assert r.info.status == "FAILED"
    assert _client().search_registered_models() == []


def test_ms_job_scores_and_serves_the_target_only(data_root):
    result = run(ForecastJob(), ["--model", "rlinear", "--data.features", "MS", "--data.columns", "HUFL,MUFL,OT",
                                 *FAST])
    (r,) = _runs()
    assert r.data.params["data.features"] == "MS" and r.data.params["data.targets"] == "OT"
    f = mlflow.pyfunc.load_model("models:/forecast@champion")
    out = f.predict(_history(data_root))
    assert list(out.columns) == ["date", "OT"] and len(out) == 96
    arts = {a.path for a in _client().list_artifacts(r.info.run_id)}
    assert {"learning_curves.png", "forecast_vs_truth.png"} <= arts
    # the logged test MSE is the target column's: rescore it
    from apps.forecast.data import ForecastData
    dm = ForecastData("ETTh1", features="MS", columns=["HUFL", "MUFL", "OT"], time_features=False, batch_size=128)
    dm.setup()
    pred = f.unwrap_python_model().predictor
    assert ForecastJob().score(pred, dm) == pytest.approx(result.metrics["test_mse"], rel=1e-3)


def test_default_job_runs_offline_on_a_fresh_clone(tmp_path):
    """No data directory at all: the shipped ETTh1 is used and nothing is downloaded."""
    env = dict(os.environ, FFN_DATA_DIR=str(tmp_path / "empty"), http_proxy="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    res = subprocess.run([sys.executable, "-m", "pipelines.forecast", *FAST, "--trainer.limit_test_batches", "2"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "s_mamba on ETTh1 (L=96, H=96, M)" in res.stdout
    (r,) = _runs()
    assert r.data.params["data.data_file"].endswith("apps/forecast/datasets/ETTh1.csv")


def test_a_run_logs_into_its_own_experiment_whatever_experiment_is_active():
    """A bench earlier in the process leaves MLflow's active experiment at "bench"; a job run after it must still log
    and register in its own experiment (MLflow refuses to reopen a run outside the active experiment)."""
    tracking.activate()
    tracking.use_experiment("bench")
    res = run(ForecastJob(), ["--model", "rlinear", *FAST, "--trainer.limit_test_batches", "2"])
    (r,) = _runs()
    assert r.info.run_id == res.run_id and "test_mse" in r.data.metrics and res.version == "1"
