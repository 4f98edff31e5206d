"""End to end on real FSDD clips: the audio pipeline's staged training, run metrics, registered model answering
questions about wav files (any question), retrain scoring, and bad input."""
import os
import shutil
import subprocess
import sys

import mlflow
import pandas as pd
import torch
import pytest
from mlflow.tracking import MlflowClient

from apps.audio.questions import TYPES
from pipelines import tracking
from pipelines.audio import AudioJob
from pipelines.runner import run

pytestmark = pytest.mark.slow

FAST = ["--data.subset", "2", "--data.encoders", "mel", "--model.dim", "32", "--model.depth", "2",
        "--model.stage0_epochs", "1", "--model.stage1_epochs", "1", "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _runs():
    c = MlflowClient(tracking.tracking_uri())
    exp = c.get_experiment_by_name("audio")
    return [] if exp is None else c.search_runs([exp.experiment_id])


def test_pipeline_logs_per_type_blind_and_rephrased_accuracy_and_a_model_that_answers(tmp_path, data_root):
    result = run(AudioJob(), FAST)
    (r,) = _runs()
    assert r.info.status == "FINISHED"
    m = r.data.metrics
    assert {"test_acc", "test_acc_blind", "test_acc_rephrased", "stage0_val_acc", "stage1_val_acc"} <= set(m)
    assert {f"test_acc_{t}" for t in TYPES} <= set(m)
    assert 0 <= m["test_acc_blind"] <= 1 and 0 < m["test_acc"] <= 1
    assert 0 < m["stage0_val_acc"] <= 1 and 0 < m["stage1_val_acc"] <= 1  # both stages ran and were validated
    assert 0 < m["floor_majority_acc"] < 1 and {f"floor_majority_acc_{t}" for t in TYPES} <= set(m)
    assert r.data.params["data.encoders"] == "mel" and int(r.data.params["data.train_questions"]) > 100
    rec = data_root / "audio" / "fsdd" / "recordings"
    model = mlflow.pyfunc.load_model("models:/audio@champion")
    df = pd.DataFrame({"path": [str(rec / "7_theo_0.wav"), str(rec / "2_george_1.wav"), str(rec / "4_lucas_2.wav")],
                       "question": ["which digit is spoken ?", "who is speaking ?", "what colour is the sky ?"]})
    out = model.predict(df)
    vocab = model.unwrap_python_model().predictor.vocab
    assert list(out.columns) == ["path", "question", "answer", "probability"] and len(out) == 3
    assert all(a in {vocab.itos[i] for i in vocab.answers} for a in out.answer)  # an unknown question: an answer
    assert out.probability.between(0, 1).all()
    csv = tmp_path / "questions.csv"
    df.to_csv(csv, index=False)
    res = subprocess.run([sys.executable, "-m", "pipelines.predict", "models:/audio@champion", str(csv), "-o",
                          str(tmp_path / "answers.csv")], capture_output=True, text=True, env=dict(os.environ),
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert pd.read_csv(tmp_path / "answers.csv").answer.tolist() == out.answer.tolist()
    score = AudioJob().score(model.unwrap_python_model().predictor, result.datamodule)
    assert score == pytest.approx(1 - m["test_acc"], abs=1e-6)


def test_a_corrupt_wav_is_one_error_line_exit_2_and_no_run(tmp_path, data_root, monkeypatch, cli):
    rec = tmp_path / "audio" / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for f in sorted((data_root / "audio" / "fsdd" / "recordings").glob("*_1?.wav"))[:40]:
        shutil.copy(f, rec / f.name)
    (rec / "5_theo_3.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    monkeypatch.setenv("FFN_DATA_DIR", str(tmp_path))
    code, err = cli(AudioJob(), *FAST)
    assert code == 2 and "5_theo_3.wav: not a readable audio file" in err, err[-1500:]
    assert "Traceback" not in err and _runs() == []


@pytest.mark.parametrize("args,msg", [(["--data.encoders", "mel,wav2vec"], "--data.encoders: unknown ['wav2vec']"),
                                      (["--data.split", "speaker:alice"], "--data.split: expected official or"),
                                      (["--model.integration", "concat"], "--model.integration")])
def test_bad_options_are_one_error_line_exit_2_and_no_run(args, msg, capsys):
    from pipelines.runner import main

    assert main(AudioJob(), [*FAST, *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err, err[-1500:]
    assert _runs() == []


def test_a_local_pretrained_lm_runs_the_same_job_frozen_and_registered(tmp_path, data_root):
    """``--model.lm hf:PATH`` (a tiny random Llama saved to a temp dir): the staged job runs, logs the same metrics,
    registers a model that answers with answer words, and the LM's weights are the checkpoint's."""
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM

    from tests.apps.audio.tiny_lm import save_tiny_lm

    folder = save_tiny_lm(tmp_path / "tiny-llama", "llama", layers=2)
    fast = [a for i, a in enumerate(FAST) if "--model.d" not in FAST[i - (i % 2)]]  # the scratch LM's size: not used
    result = run(AudioJob(), fast + ["--model.lm", f"hf:{folder}", "--model.start", "1"])
    (r,) = _runs()
    assert r.info.status == "FINISHED" and r.data.params["model.lm"] == f"hf:{folder}"
    assert {"test_acc", "test_acc_blind", "stage0_val_acc", "stage1_val_acc"} <= set(r.data.metrics)
    trained = result.outcome.task.model.lm.state_dict()
    saved = AutoModelForCausalLM.from_pretrained(str(folder)).state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in saved.items())
    model = mlflow.pyfunc.load_model("models:/audio@champion")
    rec = data_root / "audio" / "fsdd" / "recordings"
    out = model.predict(pd.DataFrame({"path": [str(rec / "7_theo_0.wav")], "question": ["who is speaking ?"]}))
    text = model.unwrap_python_model().predictor.vocab
    assert out.answer[0] in text.answer_ids
