"""``python -m pipelines.ais``: the conv + bidirectional LSTM + FFN model of Spadon et al. (2023) forecasting vessel
positions 30 / 60 / 120 s ahead from the DMA raw AIS log, tested against dead reckoning on the same windows.

    python -m pipelines.ais --model gru                                # the paper's baselines: rnn, gru, lstm
    python -m pipelines.ais --model transformer --model.ffn swiglu    # a core encoder over the same reports
    python -m pipelines.ais --data.path noaa.csv --data.horizons 60,300
    python -m pipelines.ais --data.path log.nmea --data.columns ...   # any NMEA log, DMA / NOAA / named-column CSV
"""
from __future__ import annotations

import sys

import numpy as np

from apps.ais.data import FEATURES, AISData
from apps.ais.models import MODELS, build_model, model_class
from apps.ais.plots import error_by_horizon_figure, tracks_figure
from apps.ais.predict import TrackPredictor
from apps.ais.task import KeepBestMembers, TrackForecaster, score_windows
from pipelines.options import Param, Section, ffn_choices, ffn_section
from pipelines.job import Job
from pipelines.runner import main


class AISJob(Job):
    app = "ais"
    defaults = {
        "data": {"lookback": 10, "history": 20, "horizons": [30, 60, 120], "split": "vessel:0", "batch_size": 64},
        "model": {"name": "spadon", "members": 3},  # 3 members trained as if apart: val 28.77 vs 28.90 m (README)
        "optim": {"lr": 1e-3, "weight_decay": 1e-4},  # lr 1e-3 with the narrow spadon: validation (README)
        "trainer": {"max_epochs": 30, "patience": 8},
    }
    predict_splits = ("val", "test")
    shortcuts = {"model": "model.name", "data": "data.path", "split": "data.split", "epochs": "trainer.max_epochs",
                 "ffn": "model.ffn", "lr": "optim.lr"}

    def sections(self, cfg: dict) -> dict[str, Section]:
        name = cfg["model"]["name"]
        cls = model_class(name) if name in MODELS else None
        return {
            "data": Section(AISData, skip=("streams",), help="raw AIS -> tracks -> windows (apps.ais.data.AISData)"),
            "model": Section(cls, skip=("n_features", "horizons", "cell", "mixer"),
                             extra=(Param("name", str, "spadon", "the model", MODELS),
                                    Param("members", int, 1, "models averaged (a deep ensemble), trained in one run as "
                                          "if apart: own loss, own shuffle, own best epoch")),
                             choices=ffn_choices(), nested={"ffn_kw": ffn_section},
                             help=f"{cls.__name__ if cls else name} (apps.ais.models)"),
            "optim": Section(TrackForecaster, skip=("model", "horizons", "target_scale", "streams"),
                             help="AdamW, cosine"),
        }

    def data(self, cfg: dict):
        members = cfg["model"].get("members", 1)
        dm = AISData(**cfg["data"], streams=members)  # an ensemble's members: each its own shuffle
        dm.setup()
        return dm

    def task(self, cfg: dict, dm):
        kw = {k: v for k, v in cfg["model"].items() if k != "name"}
        model = build_model(cfg["model"]["name"], len(FEATURES), len(dm.horizons), **kw)
        members = cfg["model"].get("members", 1)
        return TrackForecaster(model, dm.horizons, dm.target_scale.tolist(), **cfg["optim"],
                               streams=members > 1 and dm.streams == members)

    def callbacks(self, cfg: dict) -> list:
        """An ensemble (``model.members`` > 1) keeps each member at its own best validation epoch."""
        return [KeepBestMembers()] if cfg["model"].get("members", 1) > 1 else []

    def evaluate(self, dm, predictions: dict, cfg: dict) -> dict[str, float]:
        """Haversine errors and RPD per horizon of the model and of the physical baselines on the same test
        windows; ``val_mean_m``: the model's validation error (local-frame metres, as ``val_loss``)."""
        val = predictions["val"].in_order()
        return {**score_windows(predictions["test"].in_order(), dm.sets["test"], dm.horizons, turn_tau=dm.turn_tau,
                              kalman_params=dm.kalman),
                "val_mean_m": float(np.linalg.norm(val - dm.sets["val"]["true_en"], axis=-1).mean())}

    def predictor(self, task, dm, cfg):
        return TrackPredictor(task, dm.lookback, dm.horizons, dm.mean, dm.std, dm.base, dm.turn_tau, dm.history)

    def input_example(self, dm):
        mmsi = dm.sets["test"]["mmsi"][0]
        g = dm.tracks[dm.tracks.mmsi == mmsi].iloc[: dm.history + 2]
        return g[["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "rot", "status"]].reset_index(drop=True)

    def signature(self, example, output):
        """mmsi, time, lat, lon required; sog, cog, heading, rate of turn and status optional (derived or left out
        as in training); params ``as_of`` (unix s; -1: the newest report) and ``max_age`` (s)."""
        from mlflow.models.signature import ModelSignature, infer_signature
        from mlflow.types.schema import ColSpec, Schema

        from mlflow.types.schema import ParamSchema, ParamSpec

        sig = infer_signature(example, output)
        cols = [ColSpec(c.type, c.name, required=c.name in ("mmsi", "time", "lat", "lon")) for c in sig.inputs.inputs]
        params = ParamSchema([ParamSpec("as_of", "double", -1.0), ParamSpec("max_age", "double", 60.0)])
        return ModelSignature(Schema(cols), sig.outputs, params)

    def data_params(self, dm) -> dict:
        return {f"data.{k}": v for k, v in dm.fingerprint().items()}

    def figures(self, outcome) -> dict:
        dm = outcome.datamodule
        return {"tracks_test.png": tracks_figure(dm.tracks, dm.sets["test"], outcome.predictions["test"].in_order(),
                                                 dm.horizons),
                "error_by_horizon.png": error_by_horizon_figure(outcome.metrics, dm.horizons)}

    score_name = "test_mean_m"

    def score(self, predictor, dm) -> float:
        """Mean haversine error (m) over the horizons and the test windows of ``dm``."""
        s = dm.sets["test"]
        pred = predictor.windows(s["x"], s["sog0"], s["cog0"], s["omega"])
        m = score_windows(pred, s, dm.horizons, turn_tau=dm.turn_tau)
        return float(np.mean([m[f"test_mean_m_{h}s"] for h in dm.horizons]))

    def report(self, metrics: dict, cfg: dict) -> str:
        hs = cfg["data"]["horizons"]
        parts = [f"+{h}s {metrics[f'test_mean_m_{h}s']:.1f} m (DR {metrics[f'dr_mean_m_{h}s']:.1f}, "
                 f"{100 * (metrics[f'test_mean_m_{h}s'] / metrics[f'dr_mean_m_{h}s'] - 1):+.1f} %)" for h in hs]
        return f"{cfg['model']['name']} on AIS ({cfg['data']['split']}): mean error " + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main(AISJob()))
