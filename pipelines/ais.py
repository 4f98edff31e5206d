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
import pandas as pd
import torch

from apps.ais.data import FEATURES, AISData, base_displacement
from apps.ais.models import MODELS, build_model, model_class
from apps.ais.plots import tracks_figure
from apps.ais.predict import TrackPredictor
from apps.ais.task import TrackForecaster, score_windows
from pipelines.options import Param, Section, ffn_choices, ffn_section
from pipelines.runner import Job, main


class AISJob(Job):
    app = "ais"
    defaults = {
        "data": {"lookback": 10, "history": 20, "horizons": [30, 60, 120], "split": "vessel:0", "batch_size": 64},
        "model": {"name": "spadon", "members": 3},  # 3 members trained as if apart: val 28.77 vs 28.90 m (README)
        "optim": {"lr": 1e-3, "weight_decay": 1e-4},  # lr 1e-3 with the narrow spadon: validation (README)
        "trainer": {"max_epochs": 30, "patience": 8},
    }
    shortcuts = {"model": "model.name", "data": "data.path", "split": "data.split", "epochs": "trainer.max_epochs",
                 "ffn": "model.ffn", "lr": "optim.lr"}

    def sections(self, cfg: dict) -> dict[str, Section]:
        name = cfg["model"]["name"]
        cls = model_class(name) if name in MODELS else None
        return {
            "data": Section(AISData, help="raw AIS -> tracks -> windows (apps.ais.data.AISData)"),
            "model": Section(cls, skip=("n_features", "horizons", "cell", "mixer"),
                             extra=(Param("name", str, "spadon", "the model", MODELS),
                                    Param("members", int, 1, "models averaged (a deep ensemble), trained in one run as "
                                          "if apart: own loss, own shuffle, own best epoch")),
                             choices=ffn_choices(), nested={"ffn_kw": ffn_section},
                             help=f"{cls.__name__ if cls else name} (apps.ais.models)"),
            "optim": Section(TrackForecaster, skip=("model", "horizons", "target_scale"), help="AdamW, cosine"),
        }

    def build(self, cfg: dict):
        dm = AISData(**cfg["data"])
        dm.setup()
        kw = {k: v for k, v in cfg["model"].items() if k != "name"}
        model = build_model(cfg["model"]["name"], len(FEATURES), len(dm.horizons), **kw)
        return dm, TrackForecaster(model, dm.horizons, dm.target_scale.tolist(), **cfg["optim"])

    def predictor(self, task, dm, cfg):
        return TrackPredictor(task, dm.lookback, dm.horizons, dm.mean, dm.std, dm.base, dm.turn_tau, dm.history)

    def input_example(self, dm):
        mmsi = dm.sets["test"]["mmsi"][0]
        g = dm.tracks[dm.tracks.mmsi == mmsi].iloc[: dm.history + 2]
        return pd.DataFrame({"mmsi": g.mmsi.to_numpy(), "time": g.time.to_numpy(), "lat": g.lat.to_numpy(),
                             "lon": g.lon.to_numpy(), "sog": g.sog.to_numpy(), "cog": g.cog.to_numpy()})

    def data_params(self, dm) -> dict:
        return {f"data.{k}": v for k, v in dm.fingerprint().items()}

    def figures(self, task, dm) -> dict:
        idx, pred = task.predictions
        s = {k: v[idx] for k, v in dm.sets["test"].items()}
        return {"tracks_test.png": tracks_figure(dm.tracks, s, pred, dm.horizons)}

    score_name = "test_mean_m"

    def score(self, predictor, dm) -> float:
        """Mean haversine error (m) over the horizons and the test windows of ``dm``."""
        task = predictor.task
        s = dm.sets["test"]
        x = torch.from_numpy(((s["x"] - predictor.mean) / predictor.std).astype(np.float32))
        cog = torch.from_numpy(s["cog0"]).float()
        dr = torch.from_numpy(base_displacement(predictor.base, s["sog0"], s["cog0"], s["omega"], dm.horizons,
                                                predictor.turn_tau)).float()
        with torch.no_grad():
            pred = task(x, dr, cog).double().numpy()
        m = score_windows(pred, dm.sets["test"], dm.horizons, turn_tau=dm.turn_tau)
        return float(np.mean([m[f"test_mean_m_{h}s"] for h in dm.horizons]))

    def report(self, metrics: dict, cfg: dict) -> str:
        hs = cfg["data"]["horizons"]
        parts = [f"+{h}s {metrics[f'test_mean_m_{h}s']:.1f} m (DR {metrics[f'dr_mean_m_{h}s']:.1f}, "
                 f"{100 * (metrics[f'test_mean_m_{h}s'] / metrics[f'dr_mean_m_{h}s'] - 1):+.1f} %)" for h in hs]
        return f"{cfg['model']['name']} on AIS ({cfg['data']['split']}): mean error " + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main(AISJob()))
