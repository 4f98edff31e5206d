"""End to end on nDPI's real captures: the traffic pipeline's run, metrics, privacy, registered model, predict CLI,
retrain scoring, bad input."""
import ipaddress
import os
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import tracking
from pipelines.runner import run
from pipelines.traffic import TrafficJob

pytestmark = pytest.mark.slow

FAST = ["--trainer.max_epochs", "2", "--model.pretrain_epochs", "1", "--model.d_model", "32",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _runs():
    c = MlflowClient(tracking.tracking_uri())
    exp = c.get_experiment_by_name("traffic")
    return [] if exp is None else c.search_runs([exp.experiment_id])


def _addresses(flows) -> set[str]:
    return {a for f in flows for a in (f.key()[1], f.key()[3])}


def test_pipeline_logs_scores_gbm_and_a_model_that_labels_captures(tmp_path, data_root):
    result = run(TrafficJob(), FAST)
    (r,) = _runs()
    assert r.info.status == "FINISHED"
    m = r.data.metrics
    assert {"test_macro_f1", "test_acc", "gbm_macro_f1", "gbm_acc", "pretrain_loss", "val_macro_f1"} <= set(m)
    assert 0 < m["test_macro_f1"] <= 1 and 0.5 < m["gbm_macro_f1"] <= 1  # GBM: 0.63-0.78 over the folds
    p = r.data.params
    assert p["data.split"] == "group:0" and p["data.unmask"] == "none" and int(p["data.captures"]) == 543
    assert p["data.classes"] == "DNS,HTTP,NetBIOS,QUIC,STUN,TLS,WhatsApp"
    c = MlflowClient(tracking.tracking_uri())
    arts = {a.path for a in c.list_artifacts(r.info.run_id)}
    assert {"confusion_test.png", "learning_curves.png", "config.yaml"} <= arts
    # privacy: no address of any flow in a param, a metric name, a tag or a text artifact
    dm = result.datamodule
    addrs = _addresses(dm.all_flows)
    text = " ".join([*p.values(), *m, *r.data.tags.values()])
    local = mlflow.artifacts.download_artifacts(run_id=r.info.run_id, dst_path=str(tmp_path / "arts"))
    for f in __import__("pathlib").Path(local).rglob("*"):
        if f.is_file() and f.suffix in (".yaml", ".json", ".txt", ".md", ".csv", ".log", ""):
            text += " " + f.read_text(errors="ignore")
    leaked = [a for a in addrs if a in text and not ipaddress.ip_address(a).is_unspecified]
    assert not leaked, leaked[:5]
    # the registered model labels the flows of a capture, from Python and from the CLI
    cap = data_root / "traffic" / "ndpi" / "pcap" / "dns.pcap"
    model = mlflow.pyfunc.load_model("models:/traffic@champion")
    out = model.predict(pd.DataFrame({"path": [str(cap)]}))
    assert list(out.columns) == ["capture", "flow", "proto", "client", "server", "packets", "label", "probability"]
    assert len(out) > 0 and set(out.label) <= set(dm.class_names) and out.probability.between(0, 1).all()
    csv = tmp_path / "flows.csv"
    res = subprocess.run([sys.executable, "-m", "pipelines.predict", "models:/traffic@champion", str(cap), "-o",
                          str(csv)], capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert pd.read_csv(csv).shape[0] == len(out)
    # a table of packets works too (one flow, two directions)
    pk = pd.DataFrame({"time": [0.0, 0.01], "src": ["10.0.0.1", "10.0.0.2"], "sport": [5353, 53],
                       "dst": ["10.0.0.2", "10.0.0.1"], "dport": [53, 5353], "proto": [17, 17], "ip_len": [60, 120]})
    one = model.predict(pk)
    assert len(one) == 1 and one.packets[0] == 2 and one.client[0] == "10.0.0.1:5353"
    # retrain scoring reproduces the logged test macro-F1
    score = TrafficJob().score(model.unwrap_python_model().predictor, dm)
    assert score == pytest.approx(1 - m["test_macro_f1"], abs=1e-6)


def test_a_bad_capture_is_one_error_line_exit_2_and_nothing_registered(tmp_path, cli):
    (tmp_path / "empty.pcap").write_bytes(b"")
    code, err = cli(TrafficJob(), "--data.path", tmp_path / "empty.pcap", *FAST)
    assert code == 2, err[-2000:]
    assert "empty.pcap: byte 0: empty file" in err and "Traceback" not in err
    assert _runs() == []


@pytest.mark.parametrize("args,message", [
    (["--data.labels", "{tmp}/labels.csv"], r"labels.csv: line 1: missing column\(s\) \['l4_proto'"),
    (["--data.unmask", "mac"], r"--data.unmask: unknown field\(s\) \['mac'\]"),
    (["--data.split", "random:0"], "--data.split: expected group:K or leaky:K"),
    (["--data.level", "packet"], "--data.level: expected flow or capture"),
])
def test_bad_options_and_labels_stop_before_any_run(tmp_path, args, message):
    from core.datadir import DataError
    from pipelines.config import ConfigError

    (tmp_path / "labels.csv").write_text("pcap,src_ip\nx.pcap,1.1.1.1\n")
    with pytest.raises((DataError, ConfigError), match=message):
        run(TrafficJob(), [a.replace("{tmp}", str(tmp_path)) for a in args] + FAST)
    assert _runs() == []
