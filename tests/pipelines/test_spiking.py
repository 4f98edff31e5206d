"""End to end on the real FSDD recordings: the spiking pipeline's MLflow run, registered model, predictions from
wav files through the registry, and bad input that leaves the store untouched."""
import shutil

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.runner import run
from pipelines.spiking import SpikingJob

pytestmark = pytest.mark.slow

FAST = ["--epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--model.hidden", "32", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def test_default_run_logs_registers_and_predicts_from_wavs(data_root):
    res = run(SpikingJob(), FAST)
    c = MlflowClient(tracking.tracking_uri())
    r = c.get_run(res.run_id)
    assert r.info.status == "FINISHED" and r.data.params["data.files"] == "3000"
    assert r.data.metrics["params_positions"] == 128 * 32 + 32 * 32 + 32 * 10  # the model size, with the steps
    assert "test_acc" in res.metrics and "sigma" in r.data.metrics
    assert str(c.get_model_version_by_alias("spiking", "champion").version) == res.version
    rec = data_root / "audio" / "fsdd" / "recordings"
    out = mlflow.pyfunc.load_model("models:/spiking@champion").predict(
        pd.DataFrame({"path": [str(rec / "4_lucas_0.wav"), str(rec / "9_nicolas_3.wav")]}))
    assert list(out.columns) == ["path", "label", "confidence"] and out["label"].between(0, 9).all()


def _runs():
    c = MlflowClient(tracking.tracking_uri())
    exp = c.get_experiment_by_name("spiking")
    return [] if exp is None else c.search_runs([exp.experiment_id])


@pytest.mark.parametrize("args,msg", [
    (["--data", "/nowhere/shd_train.h5"], "/nowhere/shd_train.h5: not found"),
    (["--split", "speaker:bob"], "no speaker 'bob'"),
    (["--model.delays", "lots"], "model.delays: unknown 'lots'"),
])
def test_bad_config_exits_2_without_a_run(args, msg, cli):
    code, err = cli(SpikingJob(), *args)
    assert code == 2 and msg in err and "Traceback" not in err, err[-1500:]
    assert _runs() == []


def test_corrupt_wav_names_the_file_and_writes_nothing(tmp_path, data_root, monkeypatch, cli):
    rec = tmp_path / "audio" / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for f in sorted((data_root / "audio" / "fsdd" / "recordings").glob("*_0.wav"))[:12]:
        shutil.copy(f, rec / f.name)
    (rec / "5_theo_33.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    monkeypatch.setenv("FFN_DATA_DIR", str(tmp_path))
    code, err = cli(SpikingJob())
    assert code == 2 and "5_theo_33.wav: not a readable WAV file" in err, err[-1500:]
    assert _runs() == []
