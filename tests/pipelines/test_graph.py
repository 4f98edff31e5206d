"""End to end on real Planetoid / Cora_ML data: the graph pipeline's MLflow run, registered model, predictions
from the registry, ForwardGNN through the runner, and bad input that leaves the store untouched."""

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.graph import GraphJob
from pipelines.runner import run

pytestmark = pytest.mark.slow

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _runs():
    c = MlflowClient(tracking.tracking_uri())
    exp = c.get_experiment_by_name("graph")
    return [] if exp is None else c.search_runs([exp.experiment_id])


def test_default_gcn_run_logs_registers_and_predicts():
    res = run(GraphJob(), ["--epochs", "30"] + QUIET)
    assert res.metrics["test_acc"] > 0.6  # 30 epochs of Kipf's GCN on Cora: well above chance (0.14)
    c = MlflowClient(tracking.tracking_uri())
    r = c.get_run(res.run_id)
    assert r.info.status == "FINISHED" and r.data.params["data.nodes"] == "2708"
    assert r.data.params["data.train_nodes"] == "140" and "init_forward_var_0" in r.data.metrics  # the init step
    assert len(c.get_metric_history(res.run_id, "val_acc")) == 30  # logged once per epoch, once
    mv = c.get_model_version_by_alias("graph", "champion")
    assert str(mv.version) == res.version == "1"
    model = mlflow.pyfunc.load_model("models:/graph@champion")
    out = model.predict(pd.DataFrame({"node": [0, 5, 2707]}))
    assert list(out.columns) == ["node", "label", "confidence"] and out["label"].between(0, 6).all()
    assert out["confidence"].between(1 / 7, 1).all()


def test_single_forward_method_runs_through_the_runner():
    res = run(GraphJob(), ["--data", "Cora_ML", "--split", "forwardgnn:1", "--method", "sf",
                           "--task.epochs_per_layer", "20", "--mlflow.model_name", "graph-sf"] + QUIET)
    assert res.config["trainer"]["max_epochs"] == 40 and res.config["model"]["hidden"] == 128
    assert res.metrics["test_acc"] > 0.5
    out = mlflow.pyfunc.load_model(res.model_uri).predict(pd.DataFrame({"node": [1, 2]}))
    assert out["confidence"].between(0, 1).all()


def test_link_task_netinfof_run_logs_probe_and_registers_a_pair_scorer():
    res = run(GraphJob(), ["--task", "link", "--epochs", "30", "--seed", "0"] + QUIET)
    m = res.metrics
    assert {"test_hits_at_20", "test_hits_at_50", "test_hits_at_100", "test_mrr", "test_auc"} <= set(m)
    assert m["test_hits_at_20"] <= m["test_hits_at_50"] <= m["test_hits_at_100"]
    assert m["test_hits_at_100"] > 0.6 and m["test_auc"] > 0.85  # NetInfoF on Cora: ~0.78 / ~0.9
    c = MlflowClient(tracking.tracking_uri())
    r = c.get_run(res.run_id)
    assert r.data.params["data.task"] == "link" and r.data.params["data.features"] == "given"
    assert 0.5 < r.data.metrics["probe_score"] <= 1 and "netinfof_lam" in r.data.metrics
    assert int(r.data.params["data.test_edges"]) == 1055  # 20 % of Cora's 5278 undirected edges
    mv = c.get_model_version_by_alias("graph_link", "champion")
    assert str(mv.version) == res.version == "1"
    model = mlflow.pyfunc.load_model("models:/graph_link@champion")
    out = model.predict(pd.DataFrame({"src": [0, 5, 2707], "dst": [633, 6, 0]}))
    assert list(out.columns) == ["src", "dst", "score", "probability"] and out["probability"].between(0, 1).all()


def test_link_task_gcn_auto_encoder_beats_chance_and_names_unknown_nodes():
    from core.datadir import DataError
    from pipelines.config import ConfigError

    res = run(GraphJob(), ["--task", "link", "--model", "gcn", "--epochs", "40", "--seed", "0",
                           "--mlflow.register", "false"] + QUIET)
    assert res.metrics["test_auc"] > 0.8 and res.metrics["test_hits_at_100"] > 0.4
    predictor = GraphJob().predictor(res.outcome.task, res.outcome.datamodule, res.config)
    with pytest.raises(DataError, match=r"2 unknown node id\(s\) in 'dst' \(row 1: 2708, row 2: 'x'\)"):
        predictor.predict(pd.DataFrame({"src": [0, 1, 2], "dst": [1, 2708, "x"]}))
    with pytest.raises(DataError, match=r"needs columns 'src' and 'dst'"):
        predictor.predict(pd.DataFrame({"node": [0]}))
    job = GraphJob()
    assert 0 <= job.score(predictor, res.outcome.datamodule) < 0.6  # its own split: 1 - Hits@100
    other = job.data(job.resolve({"task": {"kind": "link"}, "seed": 1}))  # another split: its test edges were seen
    with pytest.raises(ConfigError, match=r"trained with \d+ of these 1055 test edges in its graph"):
        job.score(predictor, other)


@pytest.mark.parametrize("args,msg", [
    (["--data", "PubMed"], "PubMed/raw: dataset files missing: ind.pubmed.x"),
    (["--split", "forwardgnn:7"], "node-index-split7.pt: missing"),
    (["--model", "graphormer"], "model.name: unknown 'graphormer'"),
    (["--method", "sf", "--model", "sage"], "task.method sf trains GCN layers"),
    (["--model.widht", "3"], "--model.widht: unknown option"),
    (["--task", "link", "--data.test", "0.0001"], "leaves no test edges"),
    (["--task", "link", "--model", "graphormer"], "model.name: unknown 'graphormer' for --task link"),
    (["--task", "edge"], "task.kind: unknown 'edge'"),
])
def test_bad_input_exits_2_with_one_line_and_no_run(args, msg, cli):
    code, err = cli(GraphJob(), *args)
    assert code == 2, err[-1500:]
    assert err.startswith("error: ") and msg in err and "Traceback" not in err
    assert _runs() == []


def test_predictor_rejects_unknown_nodes():
    from apps.graph.predict import NodePredictor
    from core.datadir import DataError
    import torch

    p = NodePredictor(torch.nn.Identity(), torch.zeros(4, 3), torch.zeros(2, 0, dtype=torch.long), 3)
    with pytest.raises(DataError, match=r"row 1: node 9 is not a node id in \[0, 4\)"):
        p.predict(pd.DataFrame({"node": [0, 9]}))
    with pytest.raises(DataError, match="needs a 'node' column"):
        p.predict(pd.DataFrame({"id": [0]}))
