"""``python -m pipelines.graph``: a 2-layer GCN on Cora's public split (Kipf & Welling's settings), by default.

    python -m pipelines.graph --model gat --model.hidden 8 --optim.lr 0.005
    python -m pipelines.graph --data CiteSeer --model.init virgo
    python -m pipelines.graph --data Cora_ML --data.split forwardgnn:0 --task.method sf   # ForwardGNN SF
    python -m pipelines.graph --model gin --model.ffn swiglu --model.ffn_sublayer true
    python -m pipelines.graph --task link                                 # NetInfoF link prediction, below

``--task link`` (``task.kind``) hands every step to :class:`pipelines.graph_link.LinkJob`.
"""
from __future__ import annotations

import sys

import torch

from apps.graph.data import GraphData, LinkData
from apps.graph.forward import SingleForwardGNN
from apps.graph.init import SCHEMES, initialize, variance_profile
from apps.graph.metrics import node_accuracy
from apps.graph.models import CONVS, GNN
from apps.graph.plots import variance_figure
from apps.graph.predict import NodePredictor
from apps.graph.task import NodeClassifier
from core.utils import deep_merge
from pipelines.config import ConfigError
from pipelines.figures import confusion_figure
from pipelines.graph_link import LinkJob
from pipelines.options import Param, Section, ffn_choices, ffn_section
from pipelines.job import RUNNER_DEFAULTS, Job
from pipelines.runner import main

METHODS = {"bp": None, "sf": SingleForwardGNN}
# ForwardGNN's settings (exp/nodeclass/*.sh): hidden 128, Adam lr 1e-3, 1000 epochs per layer, patience 100
FORWARD_PRESET = {"model": {"hidden": 128}, "optim": {"lr": 1e-3, "weight_decay": 0.0},
                  "data": {"normalize_features": False}}
LINK = LinkJob()


def _link(cfg: dict) -> bool:
    return (cfg.get("task") or {}).get("kind") == "link"


class GraphJob(Job):
    app = "graph"
    defaults = {
        "data": {"dataset": "Cora", "split": "public", "normalize_features": True},
        "model": {"name": "gcn", "hidden": 16, "layers": 2, "dropout": 0.5, "init": "default"},
        "optim": {"lr": 0.01, "weight_decay": 5e-4},
        "task": {"kind": "node", "method": "bp", "select": "val_loss", "epochs_per_layer": 1000, "patience": 100},
        "trainer": {"max_epochs": 200, "patience": 0, "log_every_n_steps": 1},
    }
    shortcuts = {"model": "model.name", "data": "data.dataset", "split": "data.split", "method": "task.method",
                 "epochs": "trainer.max_epochs", "ffn": "model.ffn", "lr": "optim.lr", "init": "model.init",
                 "task": "task.kind"}

    def resolve(self, user: dict) -> dict:
        if _link(user):
            return LINK.resolve(user)
        kind = (user.get("task") or {}).get("kind", "node")
        if kind != "node":
            raise ConfigError(f"task.kind: unknown {kind!r}; known: node, link")
        base = deep_merge(RUNNER_DEFAULTS, self.defaults, user)
        method = base["task"]["method"]
        if method not in METHODS:
            raise ConfigError(f"task.method: unknown {method!r}; known: {', '.join(METHODS)}")
        if base["model"]["name"] not in CONVS:
            raise ConfigError(f"model.name: unknown {base['model']['name']!r}; known: {', '.join(CONVS)}")
        if method == "bp":
            return base
        cfg = deep_merge(RUNNER_DEFAULTS, self.defaults, FORWARD_PRESET, user)
        # layer-wise schedule: the task stops itself; the runner's early stopping is off
        cfg["trainer"]["max_epochs"] = cfg["model"]["layers"] * cfg["task"]["epochs_per_layer"]
        cfg["trainer"]["patience"] = 0
        return cfg

    def sections(self, cfg: dict) -> dict[str, Section]:
        if _link(cfg):
            return LINK.sections(cfg)
        method = cfg["task"]["method"]
        task_params = (
            Param("kind", str, "node", "node (classification) or link (prediction)", ("node", "link")),
            Param("method", str, "bp", "bp: backpropagation; sf: ForwardGNN single-forward", tuple(METHODS)),
            Param("select", str, "val_loss", "the tested epoch: lowest validation loss (Kipf & Welling) or highest "
                  "validation accuracy (ForwardGNN; sf always)", ("val_loss", "val_acc")),
            Param("epochs_per_layer", int, 1000, "sf: epochs each layer trains"),
            Param("patience", int, 100, "sf: a layer stops after this many epochs without a better val acc"))
        layerwise = ("in_channels", "num_classes", "hidden", "layers", "lr", "weight_decay", "epochs", "patience")
        return {
            "data": Section(GraphData, skip=("seed",), help="the graph and its split (apps.graph.data.GraphData)"),
            "model": Section(GNN, skip=("in_channels", "out_channels", "conv"), extra=(
                Param("name", str, "gcn", "graph convolution", CONVS),
                Param("init", str, "default", "weight initialisation (apps.graph.init; virgo: Li et al. 2023)",
                      SCHEMES)), choices=ffn_choices(), nested={"ffn_kw": ffn_section},
                help="apps.graph.models.GNN"),
            "optim": Section(NodeClassifier, skip=("model",), help="Adam"),
            "task": Section(METHODS[method], skip=layerwise, extra=task_params) if METHODS.get(method)
            else Section(extra=task_params, help="training method"),
        }

    def monitor_of(self, cfg: dict) -> tuple[str, str]:
        if _link(cfg):
            return LINK.monitor_of(cfg)
        if cfg["task"]["method"] != "bp" or cfg["task"].get("select") == "val_acc":
            return "val_acc", "max"
        return "val_loss", "min"

    def data(self, cfg: dict):
        if _link(cfg):
            return LINK.data(cfg)
        dm = GraphData(seed=cfg["seed"], **cfg["data"])
        dm.setup()
        return dm

    def task(self, cfg: dict, dm):
        if _link(cfg):
            return LINK.task(cfg, dm)
        m = {k: v for k, v in cfg["model"].items() if k not in ("name", "init")}
        method, t = cfg["task"]["method"], cfg["task"]
        if method == "bp":
            model = GNN(dm.num_features, dm.num_classes, conv=cfg["model"]["name"], **m)
            return NodeClassifier(model, **cfg["optim"])
        if cfg["model"]["name"] != "gcn":
            raise ConfigError("task.method sf trains GCN layers; set model.name gcn")
        cls = METHODS[method]
        kw = {k: v for k, v in m.items() if k in ("hidden", "layers")}
        extra = {k: v for k, v in t.items() if k not in ("kind", "method", "epochs_per_layer", "select")}
        return cls(dm.num_features, dm.num_classes, epochs=t["epochs_per_layer"], **kw, **cfg["optim"], **extra)

    def steps(self, dm, task, cfg: dict) -> dict[str, float]:
        """bp: the initialisation (``model.init``), then its variance per layer (forward: activations, backward:
        gradients) as ``init_forward_var_<l>`` / ``init_backward_var_<l>``."""
        if _link(cfg):
            return LINK.steps(dm, task, cfg)
        if cfg["task"]["method"] != "bp":
            return {}
        d = dm.data
        initialize(task.model, cfg["model"]["init"], d.x, d.edge_index, d.train_mask)
        prof = variance_profile(task.model, d.x, d.edge_index, d.y, d.train_mask)
        return {f"init_{k}_var_{i}": v for k, vs in prof.items() for i, v in enumerate(vs)}

    def figures(self, outcome) -> dict:
        if _link(outcome.config):
            return LINK.figures(outcome)
        dm = outcome.datamodule
        d, scores = dm.data, torch.as_tensor(outcome.predictions["test"].in_order())
        nodes = d.test_mask
        out = {"confusion_test.png": confusion_figure(d.y[nodes], scores[nodes].argmax(-1), dm.num_classes)}
        prof = {k: [outcome.steps[f"init_{k}_var_{i}"] for i in range(len(outcome.steps))
                    if f"init_{k}_var_{i}" in outcome.steps] for k in ("forward", "backward")}
        if prof["forward"]:
            out["init_variance.png"] = variance_figure(prof, outcome.config["model"]["init"])
        return out

    def predictor(self, task, dm, cfg):
        if _link(cfg):
            return LINK.predictor(task, dm, cfg)
        model = task if cfg["task"]["method"] != "bp" else task.model
        scores = "probability_sums" if cfg["task"]["method"] == "sf" else "logits"
        return NodePredictor(model, dm.data.x, dm.data.edge_index, dm.num_classes, scores)

    def input_example(self, dm):
        if isinstance(dm, LinkData):
            return LINK.input_example(dm)
        import pandas as pd

        return pd.DataFrame({"node": dm.data.test_mask.nonzero().flatten()[:5].numpy()})

    def data_params(self, dm) -> dict:  # the link job's too: both data modules have fingerprint()
        return {f"data.{k}": v for k, v in dm.fingerprint().items()}

    score_name = "test_error"

    def score(self, predictor, dm) -> float:
        """1 - accuracy on ``dm``'s test nodes; link prediction: 1 - Hits@100 on its test pairs."""
        if isinstance(dm, LinkData):
            return LINK.score(predictor, dm)
        import pandas as pd

        nodes = dm.data.test_mask.nonzero().flatten()
        pred = torch.as_tensor(predictor.predict(pd.DataFrame({"node": nodes.numpy()}))["label"].to_numpy())
        return 1.0 - float(node_accuracy(pred, dm.data.y[nodes], torch.ones(len(nodes), dtype=torch.bool)))

    def report(self, metrics: dict, cfg: dict) -> str:
        if _link(cfg):
            return LINK.report(metrics, cfg)
        ref = {("Cora", "gcn"): 81.5, ("CiteSeer", "gcn"): 70.3}.get((cfg["data"]["dataset"], cfg["model"]["name"]))
        paper = f" (Kipf & Welling {ref})" if ref and cfg["data"]["split"] == "public" else ""
        return (f"{cfg['task']['method']} {cfg['model']['name']} on {cfg['data']['dataset']} "
                f"({cfg['data']['split']}): test accuracy {100 * metrics['test_acc']:.1f}{paper}")


if __name__ == "__main__":
    sys.exit(main(GraphJob()))
