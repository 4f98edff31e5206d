"""``python -m pipelines.forecast``: S-Mamba on ETTh1 (L=96, H=96) with the paper's settings, by default.

    python -m pipelines.forecast --model itransformer --data ETTh2 --horizon 192
    python -m pipelines.forecast --data path/to/my.csv --model.ffn swiglu --trainer.max_epochs 3
    python -m pipelines.forecast --config my.yaml
"""
from __future__ import annotations

import sys

import torch

from apps.forecast.data import ForecastData
from apps.forecast.models import MODELS, build_model, canonical
from apps.forecast.plots import forecast_figure
from apps.forecast.predict import Forecaster
from apps.forecast.presets import preset, published
from apps.forecast.task import ForecastTask
from core.utils import deep_merge
from pipelines.config import ConfigError
from pipelines.options import Param, Section, ffn_choices, ffn_section
from pipelines.job import RUNNER_DEFAULTS, Job
from pipelines.runner import main


class ForecastJob(Job):
    app = "forecast"
    defaults = {
        "data": {"data": "ETTh1", "lookback": 96, "horizon": 96, "batch_size": 32, "split": "auto",
                 "time_features": True},
        "model": {"name": "s_mamba"},
        "optim": {"lr": 1e-4, "lradj": "type1", "weight_decay": 0.0},
    }
    shortcuts = {"model": "model.name", "data": "data.data", "horizon": "data.horizon", "lookback": "data.lookback",
                 "epochs": "trainer.max_epochs", "ffn": "model.ffn", "lr": "optim.lr"}

    def resolve(self, user: dict) -> dict:
        base = deep_merge(RUNNER_DEFAULTS, self.defaults, user)
        try:
            name = canonical(str(base["model"]["name"]))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        paper = preset(name, str(base["data"]["data"]), base["data"]["horizon"])
        cfg = deep_merge(RUNNER_DEFAULTS, self.defaults, paper, user)
        cfg["model"]["name"] = name
        return cfg

    def sections(self, cfg: dict) -> dict[str, Section]:
        name = cfg["model"]["name"]
        return {
            "data": Section(ForecastData, help="the CSV and its windows (apps.forecast.data.ForecastData)"),
            "model": Section(MODELS[name], skip=("n_vars", "lookback", "horizon", "mixer", "mixer_kw"),
                             extra=(Param("name", str, "s_mamba", "the model", tuple(MODELS)),),
                             choices=ffn_choices(), nested={"ffn_kw": ffn_section},
                             help=f"{MODELS[name].__name__} (apps.forecast.models)"),
            "optim": Section(ForecastTask, skip=("model", "targets"), help="optimiser (apps.forecast.task)"),
        }

    def data(self, cfg: dict):
        dm = ForecastData(**cfg["data"])
        dm.setup()
        return dm

    def task(self, cfg: dict, dm):
        kw = {k: v for k, v in cfg["model"].items() if k != "name"}
        model = build_model(cfg["model"]["name"], dm.n_vars, dm.lookback, dm.horizon, **kw)
        targets = None if dm.features == "M" else dm.targets
        return ForecastTask(model, **cfg["optim"], targets=targets)

    def predictor(self, task, dm, cfg):
        return Forecaster(task.model, dm.scaler, dm.columns, dm.lookback, dm.horizon, dm.freq, dm.use_time_features,
                          dm.out_columns)

    def input_example(self, dm):
        import pandas as pd

        s, e = dm.ends[2] - dm.lookback, dm.ends[2]  # the last lookback rows of the test split
        df = pd.DataFrame(dm.values[s:e].astype("float64"), columns=dm.columns)
        df.insert(0, "date", dm.dates[s:e].astype(str))
        return df

    def data_params(self, dm) -> dict:
        return {f"data.{k}": v for k, v in dm.fingerprint().items()}

    def figures(self, outcome) -> dict:
        dm = outcome.datamodule
        s = dm.starts[2]  # the first test window starts at the test split's first row
        x, _, y = (t.numpy() for t in dm.sets["test"][0])
        pred = outcome.predictions["test"].in_order()[0]
        x, y, pred = (dm.scaler.inverse(t) for t in (x, y, pred))  # original units
        dates = dm.dates[s:s + dm.lookback + dm.horizon]
        return {"forecast_vs_truth.png": forecast_figure(x, y, pred, dm.columns, dates, channel=dm.targets[-1])}

    score_name = "test_mse"

    def score(self, predictor, dm) -> float:
        """MSE over every test window of ``dm``, on ``dm``'s scale, whatever scaler the model was trained with."""
        if list(predictor.columns) != list(dm.columns) or predictor.lookback != dm.lookback \
                or predictor.horizon != dm.horizon or list(predictor.out_columns) != list(dm.out_columns):
            raise ConfigError(f"the model predicts {predictor.columns} (L={predictor.lookback}, H={predictor.horizon}); "
                              f"the holdout has {dm.columns} (L={dm.lookback}, H={dm.horizon})")
        sq, n = 0.0, 0
        for x, marks, y in dm.test_dataloader():
            pred = predictor.forecast_windows(torch.as_tensor(dm.scaler.inverse(x.numpy())), marks)
            err = (torch.as_tensor(dm.scaler.transform(pred.numpy())) - y)[..., dm.targets]
            sq += float((err ** 2).sum())
            n += err.numel()
        return sq / n

    def report(self, metrics: dict, cfg: dict) -> str:
        d = cfg["data"]
        paper = published(cfg["model"]["name"], str(d["data"]), d["horizon"], d["lookback"])
        feats = d.get("features", "M")
        if feats != "M":
            paper = None  # the published tables are multivariate (M)
        line = f"{cfg['model']['name']} on {d['data']} (L={d['lookback']}, H={d['horizon']}, {feats}): "
        parts = []
        for i, k in enumerate(("mse", "mae")):
            v = metrics[f"test_{k}"]
            ref = f" (paper {paper[i]:.3f}, {v - paper[i]:+.3f})" if paper else ""
            parts.append(f"test {k.upper()} {v:.4f}{ref}")
        return line + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main(ForecastJob()))
