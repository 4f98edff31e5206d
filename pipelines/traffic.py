"""``python -m pipelines.traffic``: a netFound-style hierarchical transformer labelling the flows of packet captures
(nDPI's test captures, nDPI's own labels), folds grouped by capture, shortcuts masked, the GBM beside it.

    python -m pipelines.traffic --model.pretrain_epochs 0             # from scratch, no masked-field pretraining
    python -m pipelines.traffic --data.unmask ports,ttl                # what the shortcuts are worth
    python -m pipelines.traffic --data.split leaky:0                   # the leaky control: folds over flows
    python -m pipelines.traffic --data.path zeek/ --data.labels folders --data.level capture
    python -m pipelines.traffic --model.ffn swiglu
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from apps.traffic.baseline import gbm_scores, majority_scores
from apps.traffic.data import TrafficData
from apps.traffic.metrics import scores
from apps.traffic.models import MODELS, NetFound, build_model
from apps.traffic.predict import OPTIONAL, PACKET_COLUMNS, FlowPredictor
from apps.traffic.task import FieldPretrainer, FlowClassifier, class_weights, pretrain_loader
from pipelines.figures import confusion_figure
from pipelines.options import Param, Section, ffn_choices, ffn_section
from pipelines.job import Job
from pipelines.runner import fit_module, main


class TrafficJob(Job):
    app = "traffic"
    defaults = {
        "data": {"split": "group:0"},
        "model": {"name": "netfound", "pretrain_epochs": 3},
        "optim": {"lr": 1e-3, "weight_decay": 0.01},
        "trainer": {"max_epochs": 20, "patience": 8},
    }
    def __init__(self, cache: dict | None = None):
        self.cache = cache  # flows read, kept across trainings by whoever owns this job (a benchmark)

    shortcuts = {"model": "model.name", "data": "data.path", "split": "data.split", "epochs": "trainer.max_epochs",
                 "ffn": "model.ffn", "lr": "optim.lr", "labels": "data.labels", "level": "data.level"}

    def sections(self, cfg: dict) -> dict[str, Section]:
        return {
            "data": Section(TrafficData, skip=("cache",), help="captures -> flows -> grouped folds (apps.traffic.data.TrafficData)"),
            "model": Section(NetFound, skip=("n_classes", "bursts", "burst_packets", "payload_bytes"),
                             extra=(Param("name", str, "netfound", "the model", MODELS),
                                    Param("pretrain_epochs", int, 3, "epochs of masked-field pretraining on the "
                                          "training captures' flows (0: from scratch)")),
                             choices=ffn_choices(), nested={"ffn_kw": ffn_section},
                             help="netFound-style hierarchical encoder (apps.traffic.models)"),
            "optim": Section(FlowClassifier, skip=("model", "class_weights", "level"), help="AdamW, one-cycle"),
        }

    def data(self, cfg: dict):
        dm = TrafficData(**cfg["data"], cache=self.cache)
        dm.setup()
        return dm

    def task(self, cfg: dict, dm):
        kw = {k: v for k, v in cfg["model"].items() if k not in ("name", "pretrain_epochs")}
        model = build_model(cfg["model"]["name"], len(dm.class_names), bursts=dm.bursts,
                            burst_packets=dm.burst_packets, payload_bytes=dm.payload_bytes, **kw)
        return FlowClassifier(model, class_weights(dm.sets["train"]["y"], len(dm.class_names)), dm.level,
                                  **cfg["optim"])

    def steps(self, dm, task, cfg: dict) -> dict[str, float]:
        """netFound's masked-field pretraining (``model.pretrain_epochs``; 0: from scratch) on the flows of the
        training captures (and ``data.pretrain_paths``) -> ``pretrain_loss`` of its last epoch."""
        epochs = cfg["model"]["pretrain_epochs"]
        if not epochs:
            return {}
        pl.seed_everything(dm.seed, verbose=False)
        loader = pretrain_loader(dm.tokens_of(dm.pretrain_flows()))
        return {"pretrain_loss": fit_module(FieldPretrainer(task.model), loader, epochs, report="pretrain_loss")}

    def reference(self, dm, cfg: dict) -> dict[str, float]:
        """The GBM on flow statistics, trained on the same training flows, scored on the same test flows; and the
        majority-class floor on the same test units."""
        return {**gbm_scores(dm, dm.seed), **majority_scores(dm)}

    def predictor(self, task, dm, cfg):
        return FlowPredictor(task, dm.class_names, dm.token_kw, dm.level)

    def input_example(self, dm):
        return pd.DataFrame({"path": [str(next(f for f in dm.files if f.name == dm.flows[0].capture))]})

    def signature(self, example, output):
        """Either a ``path`` column or a packet table: every input column optional."""
        from mlflow.models import ModelSignature, infer_signature
        from mlflow.types.schema import ColSpec, Schema

        types = {"path": "string", "capture": "string", "time": "double", "src": "string", "dst": "string"}
        cols = ["path", "capture", *PACKET_COLUMNS, *OPTIONAL]
        inputs = Schema([ColSpec(types.get(c, "long"), c, required=False) for c in cols])
        return ModelSignature(inputs, infer_signature(example, output).outputs)

    def data_params(self, dm) -> dict:
        return {f"data.{k}": v for k, v in dm.fingerprint().items()}

    def figures(self, outcome) -> dict:
        dm, p = outcome.datamodule, outcome.predictions["test"]
        y, prob = dm.sets["test"]["y"][p.ids], p.values
        fig = confusion_figure(torch.as_tensor(y), torch.as_tensor(prob.argmax(1)), len(dm.class_names),
                               "test flows", dm.class_names)
        return {"confusion_test.png": fig}

    score_name = "test_error"

    def score(self, predictor, dm) -> float:
        """1 - macro-F1 on ``dm``'s test flows (at ``dm.level``), labels matched by name."""
        s = dm.sets["test"]
        prob = predictor.proba([dm.flows[i] for i in s["index"]])
        names = [predictor.class_names.index(n) if n in predictor.class_names else -1 for n in dm.class_names]
        return 1.0 - scores(np.array([names[i] for i in s["y"]]), prob, s["group"], dm.level)["macro_f1"]

    def report(self, metrics: dict, cfg: dict) -> str:
        return (f"{cfg['model']['name']} on traffic ({cfg['data']['split']}, {cfg['data'].get('level', 'flow')} "
                f"level): test macro-F1 {metrics['test_macro_f1']:.3f}, accuracy {metrics['test_acc']:.3f}; "
                f"GBM on flow statistics {metrics['gbm_macro_f1']:.3f} / {metrics['gbm_acc']:.3f}")


if __name__ == "__main__":
    sys.exit(main(TrafficJob()))
