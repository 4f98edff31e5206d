"""The graph app's link-prediction job, ``python -m pipelines.graph --task link`` (NetInfoF on Cora, by default).

    python -m pipelines.graph --task link                                  # NetInfoF (Lee et al., ICLR 2024)
    python -m pipelines.graph --task link --model gcn --data CiteSeer      # GCN auto-encoder, dot-product decoder
    python -m pipelines.graph --task link --model sage --model.decoder mlp --model.ffn swiglu

The split (70/10/20 of the undirected edges, one negative per positive; the seed is the run's seed) keeps the
validation and test edges out of message passing and out of every feature; the tested epoch is the one with the
best validation Hits@100. Registered as ``graph_link`` (``--mlflow.model_name``); ``predict(DataFrame(src, dst))``.
"""
from __future__ import annotations

from apps.graph.data import LinkData
from apps.graph.metrics import hits_at_k
from apps.graph.models import CONVS, DECODERS, LinkGNN
from apps.graph.netinfof import NetInfoF, compatibility, netinfof_views, probe, select_regularisers
from apps.graph.predict import LinkScorer
from apps.graph.task import NEGATIVES, LinkPredictor
from core.utils import deep_merge
from pipelines.config import ConfigError
from pipelines.options import Param, Section, ffn_choices, ffn_section
from pipelines.job import RUNNER_DEFAULTS, Job

MODELS = ("netinfof", *CONVS)
# NetInfoF: Act (a logistic regression) trained full batch on the split's fixed training negatives, its two
# regularisers chosen on the validation pairs; the GNNs: a GCN auto-encoder as NetInfoF's paper runs its baselines
# (2 layers, 128 -> 64, Adam 0.01, fresh negatives every epoch)
PRESETS = {
    "netinfof": {"optim": {"lr": 0.01, "weight_decay": None, "negatives": "fixed"}, "trainer": {"max_epochs": 300}},
    "gnn": {"model": {"hidden": 128, "out": 64, "layers": 2, "dropout": 0.0, "decoder": "dot"},
            "optim": {"lr": 0.01, "weight_decay": 0.0, "negatives": "resample"}, "trainer": {"max_epochs": 200}},
}
PAPER = {"Cora": {"netinfof": 81.3, "gcn": 67.1}, "CiteSeer": {"netinfof": 87.3, "gcn": 60.4}}  # Hits@100


class LinkJob(Job):
    app = "graph"
    defaults = {
        "data": {"dataset": "Cora", "val": 0.1, "test": 0.2, "features": "auto", "normalize_features": False},
        "model": {"name": "netinfof"},
        "task": {"kind": "link", "k": 100},
        "trainer": {"patience": 0, "log_every_n_steps": 1},
        "mlflow": {"model_name": "graph_link"},
    }

    def resolve(self, user: dict) -> dict:
        name = deep_merge(self.defaults, user)["model"]["name"]
        if name not in MODELS:
            raise ConfigError(f"model.name: unknown {name!r} for --task link; known: {', '.join(MODELS)}")
        preset = PRESETS["netinfof" if name == "netinfof" else "gnn"]
        return deep_merge(RUNNER_DEFAULTS, self.defaults, preset, user)

    def sections(self, cfg: dict) -> dict[str, Section]:
        name = cfg["model"]["name"]
        kind = Param("kind", str, "node", "node (classification) or link (prediction)", ("node", "link"))
        k = Param("k", int, 100, "the K of the validation Hits@K that selects the tested epoch")
        model = Section(netinfof_views, skip=("x", "split", "seed"), extra=(
            Param("name", str, "netinfof", "link model", MODELS),
            Param("lam", float | None, None, "ridge of the compatibility matrices H; none: chosen on validation")),
            help="apps.graph.netinfof") if name == "netinfof" else Section(
            LinkGNN, skip=("in_channels", "conv"), extra=(Param("name", str, "gcn", "encoder convolution", MODELS),),
            choices={**ffn_choices(), "decoder": DECODERS}, nested={"ffn_kw": ffn_section},
            help="apps.graph.models.LinkGNN")
        return {
            "data": Section(LinkData, skip=("seed",), help="the graph and its edge split (apps.graph.data.LinkData)"),
            "model": model,
            "optim": Section(LinkPredictor, skip=("model", "k"), choices={"negatives": NEGATIVES}, extra=(
                Param("weight_decay", float | None, 0.0, "Adam weight decay; none (netinfof): chosen on validation"),),
                help="Adam on binary cross-entropy"),
            "task": Section(extra=(kind, k), help="the task"),
        }

    def monitor_of(self, cfg: dict) -> tuple[str, str]:
        return f"val_hits_at_{cfg['task']['k']}", "max"

    def data(self, cfg: dict):
        dm = LinkData(seed=cfg["seed"], **cfg["data"])
        dm.setup()
        return dm

    def task(self, cfg: dict, dm):
        m, optim = dict(cfg["model"]), dict(cfg["optim"])
        name = m.pop("name")
        if name == "netinfof":
            lam = m.pop("lam", None) or 1.0
            try:
                views = netinfof_views(dm.data.x, dm.split, seed=cfg["seed"], **m)
            except ValueError as e:
                raise ConfigError(f"model.{e}") from None
            model = NetInfoF(views, {n: compatibility(z, dm.split, lam) for n, z in views.items()})
            optim["weight_decay"] = optim["weight_decay"] or 0.0
        else:
            model = LinkGNN(dm.num_features, conv=name, **m)
        return LinkPredictor(model, k=cfg["task"]["k"], **optim)

    def steps(self, dm, task, cfg: dict) -> dict[str, float]:
        """netinfof: NetInfoF_Probe's usable information per view on the validation pairs (``probe_score_<view>``,
        ``probe_score`` = the best view's), then the regularisers left unset chosen on the validation pairs
        (``netinfof_lam``, ``netinfof_weight_decay``, the grid's best ``netinfof_select_val_hits``)."""
        if cfg["model"]["name"] != "netinfof":
            return {}
        model, split, k = task.model, dm.split, cfg["task"]["k"]
        views, lam = model.views(), cfg["model"].get("lam")
        result, _ = probe(views, split, lam=lam or 1.0, hs=model.hs)  # the model's H are at that ridge already
        out = {f"probe_score_{n}": v for n, v in result.scores.items()}
        out["probe_score"] = result.score
        wd = cfg["optim"]["weight_decay"]
        if lam is None or wd is None:
            used = lam or 1.0
            lam, wd, grid = select_regularisers(views, split, lams=(lam,) if lam else (1.0, 1e3, 1e4),
                                                weight_decays=(wd,) if wd is not None else (0.0, 1e-4, 1e-3),
                                                k=k, seed=cfg["seed"])
            if lam != used:
                model.set_compatibility({n: compatibility(z, split, lam) for n, z in views.items()})
            task.weight_decay = wd
            out["netinfof_select_val_hits"] = max(grid.values())
        return {**out, "netinfof_lam": lam, "netinfof_weight_decay": wd}

    def figures(self, outcome) -> dict:
        from pipelines.figures import plt

        split = outcome.datamodule.split
        scores = outcome.predictions["test"].in_order()
        pos, neg = scores[:split.test_pos.size(1)], scores[split.test_pos.size(1):]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.hist([pos, neg], bins=40, label=["test edges", "test non-edges"], histtype="step")
        ax.set(xlabel="score (logit)", ylabel="pairs", title="link scores on the test pairs")
        ax.legend()
        return {"test_scores.png": fig}

    def predictor(self, task, dm, cfg):
        return LinkScorer(task.model, dm.data.x, dm.data.edge_index)

    def input_example(self, dm):
        import pandas as pd

        pairs = dm.split.test_pos[:, :5]
        return pd.DataFrame({"src": pairs[0].numpy(), "dst": pairs[1].numpy()})

    def data_params(self, dm) -> dict:
        return {f"data.{k}": v for k, v in dm.fingerprint().items()}

    def score(self, predictor, dm) -> float:
        """1 - Hits@100 on ``dm``'s test pairs (lower is better). A model whose training graph holds any of those
        test edges (trained on another split: another seed or other data) cannot be scored on them fairly: a
        ConfigError says so, and retraining leaves the champion as it is."""
        import pandas as pd
        import torch

        leaked = predictor.seen(dm.split.test_pos)
        if leaked:
            raise ConfigError(f"the model was trained with {leaked} of these {dm.split.test_pos.size(1)} test edges "
                              f"in its graph (another edge split: --seed or the data differ); score it on its own "
                              f"split, or retrain with the seed it was trained with")

        def scores(pairs):
            frame = pd.DataFrame({"src": pairs[0].numpy(), "dst": pairs[1].numpy()})
            return torch.as_tensor(predictor.predict(frame)["score"].to_numpy())

        return 1.0 - hits_at_k(scores(dm.split.test_pos), scores(dm.split.test_neg), 100)

    def report(self, metrics: dict, cfg: dict) -> str:
        name, data = cfg["model"]["name"], cfg["data"]["dataset"]
        ref = PAPER.get(data, {}).get(name)
        paper = f" (paper {ref})" if ref and (cfg["data"]["val"], cfg["data"]["test"]) == (0.1, 0.2) else ""
        return (f"{name} link prediction on {data}: test Hits@100 {100 * metrics['test_hits_at_100']:.1f}{paper}, "
                f"Hits@20 {100 * metrics['test_hits_at_20']:.1f}, MRR {metrics['test_mrr']:.3f}, "
                f"AUC {metrics['test_auc']:.3f}")

