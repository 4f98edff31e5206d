"""``python -m pipelines.bench graph``: the graph app's published figures beside ours, and its speed.

Sections (``--sections``): ``node`` GCN on the public Planetoid splits (Kipf & Welling); ``forward`` BP vs
ForwardGNN-SF on CitationFull Cora_ML, the 5 official splits; ``init`` Xavier / Kaiming / Virgo at depth 2-8 on
Cora; ``link`` NetInfoF vs a GCN auto-encoder through the link job, Hits@100; ``speed`` full-batch GCN epoch, ours vs PyG's GCNConv.
Accuracies are test accuracy at the best validation epoch, mean ± std over seeds / splits. One MLflow run in the
``bench`` experiment with every table as an artifact. ``--quick``: fewer seeds, splits and depths.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
import torch.nn.functional as F

from apps.graph.data import GraphData
from apps.graph.models import GNN
from pipelines.bench.sections import add_common, bench_main, check_sections, interleaved_ms, job_data, parse_quick, train
from pipelines.graph import GraphJob
from pipelines.bench.stats import paired_cell
from pipelines.bench.table import markdown, mean_std

SECTIONS = ("node", "forward", "init", "link", "speed")
PAPER_NODE = {"Cora": 81.5, "CiteSeer": 70.3}
PAPER_FORWARD = {("bp", 2): "86.84 ± 1.0", ("sf", 2): "87.95 ± 1.4", ("bp", 3): "88.65", ("sf", 3): "88.15"}
PAPER_LINK = {"Cora": (81.3, 67.1), "CiteSeer": (87.3, 60.4)}  # NetInfoF, GCN: Hits@100 in NetInfoF's paper


def _train(seed: int, dm, data: dict, **user):
    """The graph job's training (test at the best validation-accuracy epoch) on data module ``dm`` -> Outcome."""
    trainer = {"num_sanity_val_steps": 0, **user.pop("trainer", {})}
    task = {"select": "val_acc", **user.pop("task", {})}  # the bench's protocol: test at the best validation accuracy
    return train(GraphJob(), {"seed": seed, "data": data, "trainer": trainer, "task": task, **user}, dm=dm)


def _data(data: dict):
    return job_data(GraphJob(), {"seed": 0, "data": data}), data


def node(a) -> str:
    rows = []
    for name in ("Cora", "CiteSeer"):
        dm, data = _data({"dataset": name})
        accs = [100 * _train(seed, dm, data, trainer={"max_epochs": 200}).metrics["test_acc"] for seed in a.seeds]
        rows.append([name, "GCN", len(accs), mean_std(accs, 2), PAPER_NODE[name],
                     f"{statistics.mean(accs) - PAPER_NODE[name]:+.2f}"])
    return markdown(["data (public split)", "model", "seeds", "ours acc %", "paper", "Δ"], rows)


def forward(a) -> str:
    rows = []
    for layers in (2, 3):
        res, depths = {"bp": [], "sf": [], "sf_val": []}, []
        for k in a.splits:
            dm, data = _data({"dataset": "Cora_ML", "split": f"forwardgnn:{k}", "normalize_features": False})
            bp = _train(k, dm, data, model={"hidden": 128, "layers": layers}, optim={"lr": 1e-3, "weight_decay": 0.0},
                        trainer={"max_epochs": a.epochs, "patience": 50})  # ForwardGNN: every 2 epochs, patience 100
            res["bp"].append(100 * bp.metrics["test_acc"])
            sf = _train(k, dm, data, model={"layers": layers},
                        task={"method": "sf", "epochs_per_layer": a.epochs, "patience": 100}).steps
            res["sf"].append(100 * sf[f"sf_test_acc_depth{layers}"])  # the model of the stated depth
            depth = int(sf["sf_depth_chosen"])
            res["sf_val"].append(100 * sf[f"sf_test_acc_depth{depth}"])
            depths.append(depth)
        epochs = f"{a.epochs}" + (" (paper 1000)" if a.epochs < 1000 else "")
        for m in ("bp", "sf"):
            rows.append([m.upper(), layers, len(a.splits), mean_std(res[m], 2), PAPER_FORWARD[(m, layers)], epochs])
        rows.append(["SF - BP, paired per split", layers, len(a.splits),
                     paired_cell(np.subtract(res["sf"], res["bp"]), 2), "-", epochs])
        rows.append([f"SF, depth <= {layers} chosen on validation (chose {', '.join(map(str, depths))})", layers,
                     len(a.splits), mean_std(res["sf_val"], 2), "-", epochs])
    return markdown(["method", "layers", "splits", "ours acc %", "paper", "epochs (per layer)"], rows)


def _series(steps: dict, prefix: str) -> list[float]:
    return [steps[f"{prefix}{i}"] for i in range(len(steps)) if f"{prefix}{i}" in steps]


def init(a) -> str:
    dm, data = _data({"dataset": "Cora"})
    rows = []
    for depth in a.depths:
        acc = {}
        for scheme in ("xavier", "kaiming_in", "virgo"):
            accs, flat_f, flat_b = [], [], []
            for seed in a.seeds:
                out = _train(seed, dm, data, model={"hidden": 64, "layers": depth, "init": scheme},
                             trainer={"max_epochs": 200})
                fwd, bwd = _series(out.steps, "init_forward_var_"), _series(out.steps, "init_backward_var_")
                flat_f.append(max(fwd) / max(min(fwd), 1e-30))
                hid = bwd[:-1] or bwd
                flat_b.append(max(hid) / max(min(hid), 1e-30))
                accs.append(100 * out.metrics["test_acc"])
            rows.append([depth, scheme, mean_std(accs, 2), f"{statistics.mean(flat_f):.1f}", f"{statistics.mean(flat_b):.1f}",
                         " ".join(f"{v:.1e}" for v in fwd)])
            acc[scheme] = accs
        rows += [[depth, f"virgo - {other}, paired per seed", paired_cell(np.subtract(acc["virgo"], acc[other]), 2),
                  "", "", ""] for other in ("kaiming_in", "xavier")]
    return markdown(["depth", "init", "acc %", "fwd var max/min", "bwd var max/min", "fwd var per layer (last seed)"], rows)


# label -> (model overrides, paper's number index in PAPER_LINK or None)
LINK_MODELS = {"NetInfoF (U, R, F, Psl, Pns)": ({"name": "netinfof"}, 0),
               "NetInfoF without R (U, F, Psl, Pns)": ({"name": "netinfof", "views": ["U", "F", "Psl", "Pns"]}, 0),
               "GCN auto-encoder": ({"name": "gcn"}, 1)}


def link(a) -> str:
    """NetInfoF (all five views, and without the personalised-PageRank view R) and the GCN auto-encoder through the
    link job (``python -m pipelines.graph --task link``), one edge split per seed (the run's seed), each tested at
    its best validation Hits@100; each row's Hits@100 minus the first row's as a paired difference per split with
    its 95 % t interval."""
    rows = []
    for name in ("Cora", "CiteSeer"):
        res = {m: [] for m in LINK_MODELS}
        for seed in a.seeds:
            for m, (model, _) in LINK_MODELS.items():
                out = train(GraphJob(), {"seed": seed, "task": {"kind": "link"}, "data": {"dataset": name},
                                         "model": model, "trainer": {"num_sanity_val_steps": 0}})
                res[m].append({**out.metrics, **out.steps})
        hits = {m: [100 * r["test_hits_at_100"] for r in res[m]] for m in LINK_MODELS}
        first = next(iter(LINK_MODELS))
        for m, (_, paper_at) in LINK_MODELS.items():
            paper = PAPER_LINK[name][paper_at]
            col = lambda key, scale=100, digits=2: mean_std([scale * r[key] for r in res[m]], digits)  # noqa: E731
            rows.append([name, m, len(a.seeds), mean_std(hits[m], 2), paper,
                         f"{statistics.mean(hits[m]) - paper:+.2f}", col("test_hits_at_20"), col("test_mrr", 1, 3),
                         col("test_auc", 1, 3), col("probe_score") if "probe_score" in res[m][0] else "-",
                         "-" if m == first else paired_cell(np.subtract(hits[m], hits[first]), 2, words=False)])
    return markdown(["data", "model", "seeds (splits)", "test Hits@100", "paper", "Δ paper", "Hits@20", "MRR",
                     "AUC", "probe score % (val pairs)", "Hits@100 - first row's, 95 % CI"], rows)


def speed(a) -> str:
    """Three measures, Cora, interleaved: (1) the first layer's convolution and its backward on the same dense
    input, ours (cached CSR Â and Â^T) vs PyG's GCNConv(cached=True) with the same weights, checked equal first;
    (2) the same layer with the features kept sparse (our default for bag-of-words input); (3) a whole full-batch
    training epoch as each model runs it by default (ours: sparse features and dropout on their stored values;
    PyG: dense features and dense dropout)."""
    from torch_geometric.nn import GCNConv as PyGGCNConv

    from apps.graph.conv import GCNConv, gcn_norm
    from core.sparse import SparseOperator

    dm = GraphData("Cora")
    dm.setup()
    d = dm.data
    torch.manual_seed(0)
    ours, ref = GCNConv(dm.num_features, 16), PyGGCNConv(dm.num_features, 16, cached=True)
    with torch.no_grad():
        ref.lin.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    adj, xs = gcn_norm(d.edge_index, d.num_nodes), SparseOperator.from_dense(d.x)
    g = torch.randn(d.num_nodes, 16, generator=torch.Generator().manual_seed(1))
    y_ours, y_ref, y_sparse = ours(d.x, adj), ref(d.x, d.edge_index), ours(xs, adj)
    torch.testing.assert_close(y_ours, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y_sparse, y_ref, rtol=1e-4, atol=1e-5)

    def layer(fn):
        def step():
            for p in (*ours.parameters(), *ref.parameters()):
                p.grad = None
            (fn() * g).sum().backward()
        return step

    models = {}
    for name in ("gcn", "pyg_gcn"):
        torch.manual_seed(0)
        models[name] = GNN(dm.num_features, dm.num_classes, conv=name)
    opts = {k: torch.optim.Adam(m.parameters(), lr=0.01) for k, m in models.items()}

    def epoch(name):
        def step():
            m, opt = models[name], opts[name]
            m.train()
            opt.zero_grad()
            out = m(d.x, d.edge_index)
            F.cross_entropy(out[d.train_mask], d.y[d.train_mask]).backward()
            opt.step()
        return step

    ms = interleaved_ms({"conv ours": layer(lambda: ours(d.x, adj)), "conv pyg": layer(lambda: ref(d.x, d.edge_index)),
                 "conv sparse": layer(lambda: ours(xs, adj)), "epoch ours": epoch("gcn"),
                 "epoch pyg": epoch("pyg_gcn")}, a.reps, warmup=5, inner=10)
    rows = [["first GCN layer (1433 -> 16), forward + backward, the same dense input", "dense features",
             f"{ms['conv ours']:.2f}", f"{ms['conv pyg']:.2f}", f"{ms['conv ours'] / ms['conv pyg']:.2f}"],
            ["the same layer, the features kept sparse (1.3 % nonzero)", "sparse features",
             f"{ms['conv sparse']:.2f}", f"{ms['conv pyg']:.2f}", f"{ms['conv sparse'] / ms['conv pyg']:.2f}"],
            ["full-batch training epoch, 2-layer GCN, each as it runs by default",
             "ours sparse + sparse dropout; PyG dense + dense dropout",
             f"{ms['epoch ours']:.2f}", f"{ms['epoch pyg']:.2f}", f"{ms['epoch ours'] / ms['epoch pyg']:.2f}"]]
    return markdown(["measure (Cora)", "input", "ours ms", "PyG GCNConv(cached=True) ms", "ratio ours / PyG"], rows)


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench graph", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1-2 seeds, 1 split, depths 2 and 8, 200 epochs per layer")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--depths", nargs="+", type=int, default=[2, 4, 8])
    ap.add_argument("--epochs", type=int, default=1000, help="max epochs (per layer for SF) on Cora_ML")
    add_common(ap, SECTIONS)
    a = parse_quick(ap, argv, seeds=ap.get_default("seeds")[:2], splits=[0], depths=[2, 8], epochs=200,
                    reps=5)
    return check_sections(ap, a, SECTIONS)


def main(argv: list[str]) -> int:
    a = parse(argv)
    params = {"sections": ",".join(a.sections), "seeds": ",".join(map(str, a.seeds)),
              "splits": ",".join(map(str, a.splits)), "epochs": a.epochs}
    return bench_main("graph", a, {s: globals()[s] for s in SECTIONS}, lambda: GraphData("Cora").setup(), params)
