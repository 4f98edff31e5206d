"""Benchmark commands run and log (quick modes, reduced further); they measure, the tests check the plumbing."""
import subprocess
import sys
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from pipelines import tracking
from tests.conftest import in_process

pytestmark = pytest.mark.slow


@pytest.fixture
def bench_cli(capsys):
    """``python -m pipelines.bench`` in-process (its imports cost ~10 s per subprocess); the forecast test below runs
    the real command."""
    from pipelines.bench.__main__ import main

    def call(*args):
        code, out, err = in_process(capsys, main, list(args))
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return call


def test_forecast_bench_quick_has_parent_and_child_runs():
    res = subprocess.run([sys.executable, "-m", "pipelines.bench", "forecast", "--quick", "--models", "rlinear",
                          "--max-epochs", "2"], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("| rlinear | ETTh1 | 96 |"))
    ours_mse = float(row.split("|")[4].split()[0])  # our cell, not the paper's constant beside it
    assert 0.37 < ours_mse < 0.45, row  # RLinear reaches 0.385 in 2 epochs (paper 0.386)
    c = MlflowClient(tracking.tracking_uri())
    runs = c.search_runs([c.get_experiment_by_name("bench").experiment_id])
    parent = [r for r in runs if r.info.run_name == "bench-forecast-quick"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(parent) == 1 and len(children) == 1 and "test_mse" in children[0].data.metrics
    assert "bench_forecast_published.md" in {a.path for a in c.list_artifacts(parent[0].info.run_id)}


def test_forecast_bench_resume_keeps_finished_trainings_and_retrains_the_rest(bench_cli):
    from pipelines.bench.forecast import _params, parse, resumable

    args = ["forecast", "--models", "rlinear", "--data", "ETTh1", "--horizons", "96", "--seeds", "1", "2",
            "--max-epochs", "1", "--threads", "1"]
    first = bench_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    c = MlflowClient(tracking.tracking_uri())
    exp = c.get_experiment_by_name("bench").experiment_id
    (parent,) = [r for r in c.search_runs([exp]) if r.info.run_name == "bench-forecast"]
    kids = {r.info.run_name: r for r in c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
    assert set(kids) == {"rlinear-ETTh1-96-s1", "rlinear-ETTh1-96-s2"}
    c.set_terminated(kids["rlinear-ETTh1-96-s2"].info.run_id, "KILLED")  # as if interrupted during seed 2

    again = bench_cli(*args, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming parent run {parent.info.run_id}: 1 finished trainings kept" in again.stdout
    assert "seed 1: MSE" in again.stdout.split("kept from the interrupted run")[0]
    after = c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.info.status for r in after) == ["FINISHED", "FINISHED", "KILLED"]  # only seed 2 trained again
    row = lambda out: next(ln for ln in out.splitlines() if ln.startswith("| rlinear | ETTh1 | 96 |"))  # noqa: E731
    assert row(again.stdout) == row(first.stdout)  # same seeds, same code: the same cell

    a = parse(args[1:])
    assert resumable("bench-forecast", _params(a, 1))[0] == parent.info.run_id
    a.max_epochs = 2  # other arguments: another experiment, never resumed into this one
    assert resumable("bench-forecast", _params(a, 1)) == (None, {})


def test_forecast_cell_is_reproduced_only_within_the_tolerance_on_either_side():
    from pipelines.bench.forecast import _row
    from apps.forecast.presets import published

    mse, mae = published("rlinear", "ETTh1", 96)
    verdict = {d: _row("rlinear", "ETTh1", 96, [(mse + d, mae)], None)[-1] for d in (-0.02, -0.005, 0.005, 0.02)}
    assert verdict == {-0.02: "no", -0.005: "yes", 0.005: "yes", 0.02: "no"}, verdict


def test_bench_rejects_bad_configs_fast(bench_cli):
    """Exit 2 and the reason, before any work."""
    for args, msg in [(("forecast", "--models", "informer"), "unknown forecast model 'informer'"),
                      (("forecast", "--data", "ETTh9"), "unknown dataset 'ETTh9'"),
                      (("forecast", "--lr", "1e-3", "-1"), "--lr must be positive, got [-1.0]"),
                      (("ffn", "--variants", "mlp", "nope"), "unknown FFN variant(s) ['nope']"),
                      (("audio", "--split", "speaker:nobody"), "expected official or speaker:<"),
                      (("warp",), "unknown benchmark area")]:
        res = bench_cli(*args)
        code, err = res.returncode, res.stderr
        assert code == 2 and msg in err, (args, code, err[-500:])


@pytest.mark.parametrize("area", ["forecast", "ffn", "ssm", "graph", "spiking", "ais", "traffic", "audio"])
def test_bench_options_given_by_the_user_win_over_the_quick_defaults(area):
    """--quick changes defaults only: what the user types (--reps, --seeds) is what runs."""
    import importlib

    mod = importlib.import_module(f"pipelines.bench.{area}")
    parse = mod.parse_args if area in ("traffic", "audio") else mod.parse
    if area != "forecast":
        assert parse(["--quick", "--reps", "11"]).reps == parse(["--reps", "11"]).reps == 11
        assert parse(["--quick"]).reps <= parse([]).reps
    if area != "ssm":
        assert parse(["--quick", "--seeds", "7", "8"]).seeds == [7, 8]
        assert len(parse(["--quick"]).seeds) <= len(parse([]).seeds)


def test_ssm_bench_quick_checks_ours_equals_mambapy_then_times_both_paths(bench_cli):
    res = bench_cli("ssm", "--quick", "--reps", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in res.stdout.splitlines() if ln.startswith("| ")]
    scan = [r for r in rows if r[0].isdigit()]
    assert [r[0] for r in scan] == ["11", "64"] and all(r[6] == "fused" for r in scan), scan  # auto: fused
    assert all(float(r[-1]) <= 1 for r in scan), scan  # ours (all paths) = mambapy within tolerance, y and grads
    assert all(float(x) > 0 for r in scan for x in r[1:6]), scan  # all five implementations timed
    assert all(float(r[7]) > 0 and float(r[8]) > 0 for r in scan), scan  # a bound, and how far the fused path is
    fused_mb, pure_mb = (float(x) for x in scan[1][11].split(" / ")[:2])
    assert fused_mb < pure_mb, scan  # no [B, L, D, N] tensor kept
    train = next(r for r in rows if r[0] == "train_step")
    assert float(train[1]) > 0 and float(train[2]) > 0, train
    lm = {r[0]: r for r in rows if r[0] in ("fused", "pure (sequential)")}
    assert float(lm["fused"][1]) > 0 and float(lm["pure (sequential)"][1]) > 0, lm  # the char-LM trained on both
    c = MlflowClient(tracking.tracking_uri())
    (r,) = c.search_runs([c.get_experiment_by_name("bench").experiment_id])
    assert {"bench_ssm_scan.md", "bench_ssm_model.md", "bench_ssm_charlm.md"} == {
        a.path for a in c.list_artifacts(r.info.run_id)}


def test_ssm_bench_refuses_to_time_a_scan_that_differs_from_mambapy(bench_cli, monkeypatch):
    from pipelines.bench import ssm

    good = ssm.SCANS["ours_parallel"]

    def off_by_a_step():  # the bug a timing table would otherwise hide: a scan that computes something else
        f = good()
        return lambda x, delta, A, B, C, D: f(x, delta * 1.01, A, B, C, D)
    monkeypatch.setitem(ssm.SCANS, "ours_parallel", off_by_a_step)
    res = bench_cli("ssm", "--quick", "--reps", "1", "--sections", "scan")
    assert res.returncode == 1 and "ours_parallel != mambapy_parallel" in res.stderr, res.stderr[-2000:]


def test_ffn_bench_quick_rows_for_each_variant(bench_cli):
    res = bench_cli("ffn", "--quick", "--variants", "mlp", "moe", "chess", "duo", "--iters", "20")
    assert res.returncode == 0, res.stderr[-2000:]
    tables = {}
    for ln in res.stdout.splitlines():
        if ln.startswith("| ") and not ln.startswith("| ffn"):
            cells = [c.strip() for c in ln.split("|")[1:-1]]
            tables.setdefault(len(cells), {})[cells[0]] = cells[1:]
    lm, speed, smamba = tables[4], tables[5], tables[2]
    assert list(lm) == list(speed) == list(smamba) == ["mlp", "moe", "chess", "duo"]
    for r in speed.values():  # the variant and the MLP timed side by side; the ratio is the one of those two cells
        v, m = map(float, r[1].split(" / "))
        assert float(r[2].rstrip("x")) == pytest.approx(m / v, abs=0.01)
    assert "max expert load" in lm["moe"][-1] and "at 50% activation sparsity (calibrated)" in lm["chess"][-1]
    shares = lm["duo"][-1].split("big ")[1].split(",")[0].split(" / ")  # the trained router's route shares
    assert "router trained on oracle routes" in lm["duo"][-1]
    assert sum(map(float, shares)) == pytest.approx(1, abs=0.02)
    assert all(0.2 < float(r[0].split()[0]) < 1.0 for r in smamba.values()), smamba
    c = MlflowClient(tracking.tracking_uri())
    runs = c.search_runs([c.get_experiment_by_name("bench").experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "bench-ffn-quick"]
    assert {a.path for a in c.list_artifacts(parent.info.run_id)} == {"bench_ffn_lm.md", "bench_ffn_speed.md",
                                                                        "bench_ffn_smamba.md"}
    assert sum(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in runs) == 4  # S-Mamba runs


def _bench_run(area):
    c = MlflowClient(tracking.tracking_uri())
    (r,) = c.search_runs([c.get_experiment_by_name("bench").experiment_id])
    assert r.info.run_name == f"bench-{area}-quick"
    return {a.path for a in c.list_artifacts(r.info.run_id)}


def test_graph_bench_quick_node_and_speed_sections(bench_cli):
    res = bench_cli("graph", "--quick", "--sections", "node", "speed", "--seeds", "0")
    assert res.returncode == 0, res.stderr[-2000:]
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("| Cora "))
    assert 75 < float(row.split("|")[4].split()[0]) < 85, row  # our GCN accuracy on Cora's public split (paper 81.5)
    speed = [ln.split("|") for ln in res.stdout.splitlines() if ln.startswith(("| first", "| the same", "| full"))]
    assert len(speed) == 3 and all(float(r[-2]) > 0 for r in speed), speed  # measured ratios, ours / PyG
    assert _bench_run("graph") == {"bench_graph_node.md", "bench_graph_speed.md"}


def test_spiking_loso_pairs_each_fold_on_the_mean_of_its_seeds(monkeypatch):
    """Learned beats random by 10 points in every fold once a fold's seeds are averaged (by 0, 10, 20 seed by seed):
    the per-fold gaps are +10 each; a fold counted by one seed (the seeds cycling) would give 0, 10, 20."""
    from pipelines.bench import spiking

    speakers = ("george", "jackson", "theo")
    monkeypatch.setattr(spiking, "fsdd_files", lambda folder: [("x.wav", 0, who, 0) for who in speakers])

    def runs(label, data, seeds, epochs, variants=spiking.VARIANTS, optim=None, **kw):
        fold = speakers.index(label.split(":")[1])
        acc = {"none": lambda s: 40.0, "random": lambda s: 50.0 + fold, "learned": lambda s: 50.0 + fold + 10 * s}
        return {v: [{"test": acc[v](s), "val": 90.0, "s_per_epoch": 1.0, "params": {"weights": 9, "positions": 4}}
                    for s in seeds] for v in variants}

    monkeypatch.setattr(spiking, "_runs", runs)
    a = SimpleNamespace(seeds=[0, 1, 2], fold_seeds=None, epochs=1, hidden=8, max_delay=3, lr_positions=0.1,
                        val_recordings=5)
    rows = spiking._loso(a)
    gap = next(r for r in rows if r[1] == "learned - random, paired per fold")
    assert gap[2] == "3 folds x 3 seed(s) of 0,1,2"
    assert gap[4] == "+10.0 [+10.0, +10.0] higher (+10.0 +10.0 +10.0)", gap


def test_spiking_bench_quick_synthetic_and_speed_sections(bench_cli):
    res = bench_cli("spiking", "--quick", "--sections", "synthetic", "speed")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line for line in res.stdout.splitlines() if line.startswith("| burst-order task")]
    assert [r.split("|")[2].strip() for r in rows] == ["none", "random", "learned", "learned - random, paired per seed",
                                                       "random - none, paired per seed"]
    assert "[-inf, +inf] no difference shown" in rows[3]  # one seed: no interval, so no claim
    assert "inference, integer delays" in res.stdout
    dcls = next(ln for ln in res.stdout.splitlines() if "their DCLS form" in ln).split("|")
    assert float(dcls[-2]) > 0  # a measured ratio, after checking both sides compute the same outputs
    assert _bench_run("spiking") == {"bench_spiking_synthetic.md", "bench_spiking_speed.md"}
    res = bench_cli("spiking", "--sections", "warp")
    assert res.returncode == 2 and "unknown section(s) ['warp']" in res.stderr


def test_ais_bench_quick_folds_lengths_and_ingest(bench_cli):
    import re

    res = bench_cli("ais", "--quick", "--folds", "1", "--models", "gru", "--epochs", "2", "--reps", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    sections = {part.split(" ", 1)[0]: part for part in res.stdout.split("\n## ")[1:]}
    assert set(sections) == {"folds", "paired", "lengths", "scale", "ingest"}
    scale = [[c.strip() for c in ln.split("|")[1:-1]] for ln in sections["scale"].splitlines()
             if re.match(r"^\| \d", ln)]
    assert [r[1] for r in scale] == ["1", "2"] and float(scale[1][2].replace(",", "")) == 2 * 26077
    assert all(float(r[6]) > 0 for r in scale)  # a measured ratio to pyais on the same messages
    paired = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
              for ln in sections["paired"].splitlines() if ln.startswith("| ")}
    assert {"gru", "Kalman CV (tuned on val)", "Kalman CTRV (tuned on val)"} <= set(paired)
    ci = re.compile(r"^\d+\.\d \(([-+]\d+\.\d) % \[([-+]\d+\.\d), ([-+]\d+\.\d)\]\)$")
    for cell in paired["gru"][:3]:  # m (change vs DR % [95 % interval]), the estimate inside its interval
        est, lo, hi = map(float, ci.match(cell).groups())
        assert lo <= est <= hi
    rows = {ln.split("|")[1].strip(): ln for ln in (sections["folds"] + sections["ingest"]).splitlines()
            if ln.startswith("| ")}
    gru = [c.strip() for c in rows["gru"].split("|")[2:-1]]
    assert all(re.match(r"^\d+\.\d \([-+]?\d+\.\d( ± \d+\.\d)? %\)$", c) for c in gru[:3]), gru  # m (vs DR)
    assert float(rows["dead reckoning"].split("|")[2]) > 0
    assert float(gru[-1]) > 0 and rows["dead reckoning"].split("|")[-2].strip() == "-"  # the validation error column
    ours = [c.strip() for c in rows["ours: read + decode position reports + clean to tracks"].split("|")[2:-1]]
    ref = [c.strip() for c in rows["pyais BinaryIOStream + decode() of every message"].split("|")[2:-1]]
    assert ours[0] == ref[0] == "26077" and float(ours[3]) > 0  # same messages, a measured ratio
    by_len = [[c.strip() for c in ln.split("|")[1:-1]] for ln in sections["lengths"].splitlines()
              if re.match(r"^\| \d+ ", ln)]
    assert [(r[0], r[1]) for r in by_len] == [("5", "dead reckoning"), ("5", "gru"), ("20", "dead reckoning"),
                                              ("20", "gru")], by_len
    n = {int(m[0]): int(m[1]) for m in re.findall(r"L = (\d+): (\d+) windows", res.stdout)}
    assert n[5] > n[20] > 0  # a longer history leaves fewer windows (nested sets)


def test_traffic_bench_quick_folds_and_parse(bench_cli):
    res = bench_cli("traffic", "--quick", "--folds", "1", "--sections", "folds", "parse")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in res.stdout.splitlines()
            if ln.startswith("| ")}
    for name in ("GBM (flow statistics)", "netFound, scratch", "netFound, pretrained"):
        assert 0 < float(rows[name][0]) <= 1, rows[name]  # one fold: a number, no spread
    ours, ref = rows["ours: captures -> flows"], rows["dpkt: Reader + link-layer objects"]
    assert ours[0] == ref[0] and int(ours[0]) > 150_000 and float(ours[3]) > 0  # same packets, a measured ratio


def test_audio_bench_cost_lal_saves_activations_that_plits_keeps(bench_cli):
    res = bench_cli("audio", "--quick", "--sections", "cost", "--reps", "1", "--tokens", "16", "128")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in res.stdout.splitlines() if ln.startswith("| ")]
    mem = {(r[0], r[1]): float(r[5]) for r in rows[1:]}
    for na in ("16", "128"):  # LAL's audio is keys and values only: no FFN, no residual stream to keep
        assert mem[(na, "LAL")] < mem[(na, "PAL")] < mem[(na, "PLITS")]
    ratio = {na: mem[(na, "PLITS")] / mem[(na, "LAL")] for na in ("16", "128")}
    assert ratio["128"] > ratio["16"] and ratio["128"] > 2.5  # and the saving grows with the audio length


def test_audio_bench_runs_unchanged_on_a_local_pretrained_lm_with_its_floors_and_claims(bench_cli, tmp_path):
    """``--lm hf:PATH`` (a tiny random Llama saved to a temp dir): the integration section trains PAL, its
    parameter-matched control (same trained parameters) and the text-only floor, and answers the claims."""
    pytest.importorskip("transformers")
    from tests.apps.audio.tiny_lm import save_tiny_lm

    folder = save_tiny_lm(tmp_path / "tiny", "llama", layers=2)
    res = bench_cli("audio", "--quick", "--sections", "integration", "--encoders", "mel", "--lm", f"hf:{folder}",
                    "--methods", "lal", "pal", "lal_summary", "text_only")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in res.stdout.splitlines()
            if ln.startswith("| ")}
    assert rows["PAL"][0] == rows["LAL + PAL's summary by LAL (PAL's parameters)"][0] != rows["LAL"][0]
    assert 0 <= float(rows["text only (never hears audio)"][1]) <= 1
    assert "PAL - LAL + PAL's summary by LAL (PAL's parameters)" in rows["PAL's gain is its PLITS route, not its parameters"]
    assert f"LM hf:{folder}, frozen" in res.stdout
