"""Swapping the FFN of a pipeline model is one option, and training aids are config callbacks."""
import mlflow
import pytest
import torch

from apps.forecast.models import build_model
from apps.forecast.task import ForecastTask
from pipelines import tracking
from pipelines.config import ConfigError
from pipelines.forecast import ForecastJob
from pipelines.runner import run

pytestmark = pytest.mark.slow

FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false",
        "--mlflow.register", "false", "--trainer.log_every_n_steps", "1"]


def test_task_adds_the_ffn_aux_loss():
    model = build_model("s_mamba", 7, 96, 24, d_model=32, d_ff=32, d_state=2, ffn="moe", ffn_kw={"experts": 4})
    task = ForecastTask(model).eval()  # no dropout: the two forwards below must agree
    batch = (torch.randn(4, 96, 7), torch.randn(4, 96, 4), torch.randn(4, 24, 7))
    task.log = lambda *a, **k: None
    total = task.training_step(batch, 0)
    mse = torch.nn.functional.mse_loss(model(batch[0], batch[1]), batch[2])
    aux = sum(m.aux_loss for m in model.modules() if hasattr(m, "aux_loss"))
    assert float(aux) > 0
    torch.testing.assert_close(total, mse + aux, rtol=1e-4, atol=1e-5)


def _run_metrics(run_id):
    c = mlflow.tracking.MlflowClient(tracking.tracking_uri())
    return c, c.get_run(run_id)


def test_moe_ffn_by_option_and_gradient_noise():
    res = run(ForecastJob(), ["--model.ffn", "moe", "--model.ffn_kw.experts", "4", "--model.ffn_kw.top_k", "1",
                              "--callbacks.gradient_noise.eta", "0.01", *FAST])
    client, r = _run_metrics(res.run_id)
    assert r.data.params["model.ffn"] == "moe" and r.data.params["model.ffn_kw.experts"] == "4"
    assert "grad_noise_std" in r.data.metrics and "test_mse" in r.data.metrics


def test_lowrank_with_self_guidance_decays_to_structured():
    res = run(ForecastJob(), ["--model", "itransformer", "--model.ffn", "lowrank", "--model.ffn_kw.rank", "16",
                              "--callbacks.self_guidance.decay_fraction", "0.5", *FAST, "--trainer.max_epochs", "2"])
    client, _ = _run_metrics(res.run_id)
    a = [m.value for m in sorted(client.get_metric_history(res.run_id, "guidance"), key=lambda m: m.step)]
    assert a[0] == 1.0 and a[-1] == 0.0 and a[6] == 0.0  # dense at step 0, structured from step 6 of 12
    assert all(x >= y for x, y in zip(a, a[1:]))
    f = mlflow.pyfunc.load_model(f"runs:/{res.run_id}/model").unwrap_python_model().predictor
    alphas = {float(m.alpha) for m in f.model.modules() if type(m).__name__ == "GuidedLinear"}
    assert alphas == {0.0}


def test_unknown_callback_is_a_config_error():
    with pytest.raises(ConfigError, match="--callbacks.dropout_noise: unknown option; valid: gradient_noise, self_guidance"):
        run(ForecastJob(), ["--callbacks.dropout_noise.p", "0.1", *FAST])
