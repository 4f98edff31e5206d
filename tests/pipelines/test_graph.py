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


@pytest.mark.parametrize("args,msg", [
    (["--data", "PubMed"], "PubMed/raw: dataset files missing: ind.pubmed.x"),
    (["--split", "forwardgnn:7"], "node-index-split7.pt: missing"),
    (["--model", "graphormer"], "model.name: unknown 'graphormer'"),
    (["--method", "sf", "--model", "sage"], "task.method sf trains GCN layers"),
    (["--model.widht", "3"], "--model.widht: unknown option"),
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
