"""A real team tracking server: PostgreSQL + ``mlflow server`` on loopback (``pipelines/server.py``).

Needs PostgreSQL's server programs (Debian's ``postgresql``, which ``.ci/run`` installs). Without them the tests
are skipped on a developer machine and fail in CI (``FFN_REQUIRE_TEAM_SERVER=1``), so CI cannot pass vacuously.
"""
import os
import shutil
import tempfile

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import retrain as rt
from pipelines import tracking
from pipelines.server import ServerError, TeamServer, pg_bin

pytestmark = pytest.mark.slow

FAST = ["--model", "rlinear", "--epochs", "2", "--trainer.limit_train_batches", "10", "--trainer.limit_val_batches",
        "5", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def team_server():
    try:
        pg_bin()
    except ServerError as e:
        if os.environ.get("FFN_REQUIRE_TEAM_SERVER"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    root = tempfile.mkdtemp(prefix="ffn-team-")
    os.chmod(root, 0o755)  # PostgreSQL runs as the postgres user when we are root
    try:
        with TeamServer(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_retrain_registers_promotes_and_loads_through_postgres_and_mlflow_server(team_server, monkeypatch,
                                                                                  data_root, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.uri)
    assert tracking.activate() == team_server.uri
    name = "forecast_team"
    assert rt.main(["forecast", *FAST, "--optim.lr", "1e-7", "--mlflow.model_name", name]) == 0
    assert rt.main(["forecast", *FAST, "--mlflow.model_name", name]) == 0
    c = MlflowClient(team_server.uri)
    champ = c.get_model_version_by_alias(name, "champion")
    assert str(champ.version) == "2" and champ.tags["retrain.decision"] == "promoted"
    run = c.get_run(champ.run_id)
    assert run.info.status == "FINISHED" and "test_mse" in run.data.metrics
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied by the server, not a local path
    assert list((team_server.root / "artifacts").rglob("MLmodel")), "the server's artifact store holds the models"
    local = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert local.get_experiment_by_name("forecast") is None  # nothing went to the embedded store
    import psycopg2  # the registry really lives in PostgreSQL

    with psycopg2.connect(host="127.0.0.1", port=team_server.postgres.port, user="mlflow", dbname="mlflow") as db:
        cur = db.cursor()
        cur.execute("SELECT count(*) FROM model_versions WHERE name = %s", (name,))
        assert cur.fetchone()[0] == 2
        cur.execute("SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'", (name,))
        assert cur.fetchone()[0] == 2
    history = pd.read_csv(data_root / "forecast" / "ETTh1.csv").iloc[14304:14400].reset_index(drop=True)
    out = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(history)
    assert len(out) == 96 and pd.Timestamp(out["date"].iloc[0]) == pd.Timestamp(history["date"].iloc[-1]) + \
        pd.Timedelta(hours=1)


def test_retrain_cycles_with_injected_faults_never_lose_or_worsen_the_champion(team_server, tmp_path):
    """One cycle per fault (python -m pipelines.bench reliability runs 20): corrupt data, SIGKILL mid-training,
    the tracking server killed mid-training, two retrains at once."""
    from pipelines.bench.reliability import FAULTS, Harness, cycle

    os.chmod(tmp_path, 0o755)
    h = Harness(tmp_path, team_server)
    state, promotions = None, 0
    for i, fault in enumerate(FAULTS):
        c = cycle(h, i, fault)
        assert c["ok"], (fault, c)
        assert "before the fault" not in c["note"], c  # the fault really hit a running training
        new, bad = h.audit(state)
        assert bad == [], (fault, bad)
        promotions += bool(state) and new["version"] != state["version"]
        state = new
    assert team_server.mlflow.healthy()  # restarted after the outage
    exp = h.client.get_experiment_by_name("forecast")
    statuses = [r.info.status for r in h.client.search_runs([exp.experiment_id])]
    assert "RUNNING" not in statuses and statuses.count("FAILED") >= 2  # the killed runs were ended by later retrains
    assert promotions == 1 and state["version"] == "2"  # the barely trained v1 lost to the concurrent cycle's winner


def test_an_unreachable_tracking_server_is_one_error_line_and_exit_1(monkeypatch, capsys):
    from pipelines.forecast import ForecastJob
    from pipelines.runner import main
    from pipelines.server import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(ForecastJob(), FAST) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the tracking server did not answer (API request to http://127.0.0.1:")
    assert "Traceback" not in err
