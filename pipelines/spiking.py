"""``python -m pipelines.spiking``: a 2-hidden-layer LIF network with learned synaptic delays (DCLS-style) on
spoken digits (FSDD turned into spike trains by a gammatone front end), official split, by default. The checkpoint
is chosen on validation accuracy with the delays rounded (the model that is tested and registered).

    python -m pipelines.spiking --model.delays none            # the no-delay baseline
    python -m pipelines.spiking --data.split speaker:theo      # speaker held out
    python -m pipelines.spiking --data.encoder.filterbank mel  # the mel front end
    python -m pipelines.spiking --data.source /data/shd_train.h5 --model.hidden 256 --model.max_delay 25
    python -m pipelines.spiking --data.source synthetic --model.hidden 24 --model.max_delay 16  # burst order
"""
from __future__ import annotations

import sys

import torch

from apps.spiking.data import SpikeData
from apps.spiking.encode import FILTERBANKS, SpikeEncoder
from apps.spiking.delays import DELAYS
from apps.spiking.models import DelaySNN, class_probs, count_parameters
from apps.spiking.plots import delay_histogram, raster_figure
from apps.spiking.predict import DigitPredictor
from apps.spiking.task import LOSSES, SpikeClassifier
from pipelines.options import Section
from pipelines.job import Job
from pipelines.runner import main


class SpikingJob(Job):
    app = "spiking"
    monitor = ("val_acc", "max")  # with integer delays (SpikeClassifier validates the rounded model)
    defaults = {
        "data": {"source": "fsdd", "split": "official", "batch_size": 64},
        "model": {"hidden": 128, "layers": 2, "delays": "learned", "max_delay": 13, "dropout": 0.4},
        "optim": {"lr": 5e-3, "lr_positions": 0.1},  # positions: the paper's 0.1 (val 99.0 vs 98.3 at 100 x lr)
        "trainer": {"max_epochs": 30, "patience": 0},
    }
    shortcuts = {"delays": "model.delays", "data": "data.source", "split": "data.split",
                 "epochs": "trainer.max_epochs", "lr": "optim.lr"}

    def sections(self, cfg: dict) -> dict[str, Section]:
        return {
            "data": Section(SpikeData, skip=("seed",), nested={"encoder": lambda v: Section(SpikeEncoder, choices={"filterbank": FILTERBANKS})},
                            help="spike trains (apps.spiking.data.SpikeData)"),
            "model": Section(DelaySNN, skip=("in_channels", "num_classes"), choices={"delays": DELAYS},
                             help="apps.spiking.models.DelaySNN"),
            "optim": Section(SpikeClassifier, skip=("model",), choices={"loss": LOSSES},
                             help="Adam, two learning rates (apps.spiking.task.SpikeClassifier)"),
        }

    def data(self, cfg: dict):
        dm = SpikeData(seed=cfg["seed"], **cfg["data"])
        dm.setup()
        return dm

    def task(self, cfg: dict, dm):
        model = DelaySNN(dm.channels, dm.num_classes, **cfg["model"])
        return SpikeClassifier(model, **cfg["optim"])

    def steps(self, dm, task, cfg: dict) -> dict[str, float]:
        """No step before the fit; the model's size: ``params_weights``, ``params_positions`` (delay positions)."""
        return {f"params_{k}": float(v) for k, v in count_parameters(task.model).items()}

    def figures(self, outcome) -> dict:
        dm, model = outcome.datamodule, outcome.task.model.rounded().eval()
        x, y = dm.sets["test"][0]
        probs = torch.as_tensor(outcome.predictions["test"].in_order()[0])
        bin_ms = dm.encoder.bin_ms if dm.source == "fsdd" else None
        out = {"spike_raster_test.png": raster_figure(x, probs, int(y), bin_ms)}
        if model.readout.delays != "none":
            layers = [(f"hidden {i + 1}", m.integer_delays()) for i, m in enumerate(model.synapses)]
            layers.append(("readout", model.readout.integer_delays()))
            out["delays.png"] = delay_histogram(layers, model.readout.max_delay)
        return out

    def predictor(self, task, dm, cfg):
        return DigitPredictor(task.model.rounded(), dm.encoder)

    def input_example(self, dm):
        import json

        import pandas as pd

        from apps.spiking.data import fsdd_files
        from core.datadir import data_dir

        if dm.source == "fsdd":
            files = fsdd_files(data_dir() / "audio" / "fsdd" / "recordings")
            return pd.DataFrame({"path": [str(f[0]) for f in files if f[3] < 5][:3]})
        x = dm.sets["test"].tensors[0][:2]
        return pd.DataFrame({"spikes": [json.dumps(s.tolist()) for s in x]})

    def data_params(self, dm) -> dict:
        out = {f"data.{k}": v for k, v in dm.stats.items()}
        out["data.encoder_key"] = dm.encoder.key()
        return out

    score_name = "test_error"

    def score(self, predictor, dm) -> float:
        """1 - accuracy on ``dm``'s test set (integer delays)."""
        right, n = 0, 0
        with torch.no_grad():
            for x, y in dm.test_dataloader():
                right += int((class_probs(predictor.model(x)).argmax(-1) == y).sum())
                n += len(y)
        return 1.0 - right / n

    def report(self, metrics: dict, cfg: dict) -> str:
        return (f"{cfg['model']['delays']} delays on {cfg['data']['source']} ({cfg['data']['split']}): "
                f"test accuracy {100 * metrics['test_acc']:.1f} (integer delays)")


if __name__ == "__main__":
    sys.exit(main(SpikingJob()))
