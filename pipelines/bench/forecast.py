"""Reproduce the published long-term forecasting tables: ``python -m pipelines.bench forecast``.

Trains and tests S-Mamba, iTransformer and RLinear with the papers' per-dataset hyperparameters
(``apps/forecast/presets.py``) on ETTh1 / ETTh2 at H = 96, 192, 336, 720 (lookback 96), over several
seeds, and prints ours (mean +- std over seeds) beside the published value. One MLflow parent run in the
``bench`` experiment, one child run per training. ``--quick``: ETTh1, H=96, one seed.

Two diagnoses of cells that miss (README, "two cells miss"), each a flag of the same command:
``--test-drop-last`` scores as the Autoformer-era loaders do (the last incomplete test batch dropped);
``--lr`` / ``--batch-size`` replace the presets' values by a grid, one row per combination. The grid's rows are
read on test, so they diagnose; they never choose a preset.

``--resume``: the full table is 48 trainings (hours on 2 cores). An interrupted invocation is continued by the same
command plus ``--resume``: it reopens the newest parent run with the same arguments, threads and training code
(a hash of ``core/``, ``apps/forecast/`` and the job), keeps its finished child runs and trains the rest, so the
table is still one command's output over one parent run.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

import mlflow
from mlflow.tracking import MlflowClient

from apps.forecast.data import resolve
from apps.forecast.models import canonical
from apps.forecast.presets import HORIZONS, published
from core.datadir import DataError
from pipelines import tracking
from pipelines.bench.sections import code_hash, parse_quick, provenance
from pipelines.bench.table import markdown, mean_std
from pipelines.config import ConfigError
from pipelines.forecast import ForecastJob
from pipelines.runner import run, set_threads

MODELS = ("s_mamba", "itransformer", "rlinear")


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m pipelines.bench forecast", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="ETTh1, H=96, one seed")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--data", nargs="+", default=["ETTh1", "ETTh2"])
    ap.add_argument("--horizons", nargs="+", type=int, default=list(HORIZONS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[2023, 2024])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-epochs", type=int, default=None, help="cap every training (default: the papers')")
    ap.add_argument("--test-drop-last", action="store_true",
                    help="drop the last incomplete test batch, as the Autoformer-era loaders (RTSF's RLinear) do")
    ap.add_argument("--lr", nargs="+", type=float, default=None, help="a grid of learning rates (diagnosis only)")
    ap.add_argument("--batch-size", nargs="+", type=int, default=None, help="a grid of batch sizes (diagnosis only)")
    ap.add_argument("--resume", action="store_true",
                    help="continue the newest interrupted run of this same command (same code), keeping its trainings")
    return parse_quick(ap, argv, data=["ETTh1"], horizons=[96], seeds=ap.get_default("seeds")[:1])


def training_code_hash() -> str:
    """sha256 (12 hex) of the sources a forecast training depends on: trainings are reused only across equal code."""
    return code_hash(("core", "apps/forecast", "pipelines/forecast.py", "pipelines/runner.py"))


def _params(a, threads: int) -> dict:
    return {"models": ",".join(a.models), "data": ",".join(a.data), "threads": threads,
            "horizons": ",".join(map(str, a.horizons)), "seeds": ",".join(map(str, a.seeds)),
            "test_drop_last": a.test_drop_last, "lr_grid": ",".join(map(str, a.lr or [])),
            "batch_grid": ",".join(map(str, a.batch_size or [])), "max_epochs": a.max_epochs or "papers'",
            "code_hash": training_code_hash()}


def resumable(run_name: str, params: dict) -> tuple[str | None, dict]:
    """The newest parent run named ``run_name`` whose params equal ``params`` (as MLflow stores them) and its
    finished child trainings: (run id or None, child run name -> (test_mse, test_mae, seconds))."""
    client = MlflowClient(tracking.tracking_uri())
    exp = client.get_experiment_by_name("bench")
    if exp is None:
        return None, {}
    want = {k: str(v) for k, v in params.items()}
    for parent in client.search_runs([exp.experiment_id], f"tags.mlflow.runName = '{run_name}'",
                                     order_by=["attributes.start_time DESC"]):
        if parent.data.params == want:
            done = {}
            for child in client.search_runs([exp.experiment_id],
                                            f"tags.mlflow.parentRunId = '{parent.info.run_id}' "
                                            "and attributes.status = 'FINISHED'"):
                m = child.data.metrics
                if "test_mse" in m and "test_mae" in m:
                    done[child.info.run_name] = (m["test_mse"], m["test_mae"],
                                                 (child.info.end_time - child.info.start_time) / 1e3)
            return parent.info.run_id, done
    return None, {}


def validate(a) -> None:
    """Fail fast, before any training: unknown models, missing data, bad horizons."""
    try:
        a.models = [canonical(m) for m in a.models]
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for d in a.data:
        resolve(d)
    for name, values in (("horizons", a.horizons), ("--lr", a.lr or []), ("--batch-size", a.batch_size or [])):
        bad = [v for v in values if v <= 0]
        if bad:
            raise ConfigError(f"{name} must be positive, got {bad}")


def main(argv: list[str]) -> int:
    a = parse(argv)
    try:
        validate(a)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    job = ForecastJob()
    threads = set_threads({"threads": a.threads})
    tracking.activate()
    tracking.use_experiment("bench")
    rows, t0 = [], time.time()
    run_name = "bench-forecast" + ("-quick" if a.quick else "")
    params = _params(a, threads)
    parent_id, done = resumable(run_name, params) if a.resume else (None, {})
    if a.resume:
        print(f"resuming parent run {parent_id}: {len(done)} finished trainings kept" if parent_id
              else "nothing to resume (no parent run with these arguments and this code): starting afresh", flush=True)
    with mlflow.start_run(run_id=parent_id, run_name=None if parent_id else run_name) as parent:
        mlflow.set_tags(provenance("forecast", a.quick, threads))  # a resumed run: this invocation's
        if not parent_id:
            mlflow.log_params(params)
        grid = list(itertools.product(a.lr or [None], a.batch_size or [None]))
        for data in a.data:
            for h in a.horizons:
                for model in a.models:
                    for lr, bs in grid:
                        label = model + (f" lr {lr:g}" if lr else "") + (f" batch {bs}" if bs else "")
                        scores = []
                        for seed in a.seeds:
                            child = f"{label.replace(' ', '-')}-{data}-{h}-s{seed}"
                            if child in done:
                                scores.append(done[child][:2])
                                print(f"  {label:12s} {data} H={h:<3d} seed {seed}: MSE {scores[-1][0]:.4f} "
                                      f"MAE {scores[-1][1]:.4f}  (kept from the interrupted run)", flush=True)
                                continue
                            user = {"seed": seed, "threads": threads, "model": {"name": model},
                                    "data": {"data": data, "horizon": h, "test_drop_last": a.test_drop_last},
                                    "trainer": {"enable_progress_bar": False, "enable_model_summary": False},
                                    "mlflow": {"experiment": "bench", "register": False,
                                               "run_name": child,
                                               "tags": {"mlflow.parentRunId": parent.info.run_id}}}
                            if a.max_epochs:
                                user["trainer"]["max_epochs"] = a.max_epochs
                            if lr:
                                user["optim"] = {"lr": lr}
                            if bs:
                                user["data"]["batch_size"] = bs
                            res = run(job, cfg=job.resolve(user))
                            scores.append((res.metrics["test_mse"], res.metrics["test_mae"]))
                            print(f"  {label:12s} {data} H={h:<3d} seed {seed}: MSE {scores[-1][0]:.4f} "
                                  f"MAE {scores[-1][1]:.4f}  ({time.time() - t0:.0f}s)", flush=True)
                        rows.append(_row(model, data, h, scores, a.max_epochs, label))
        header = ["model", "data", "H", "ours MSE", "paper MSE", "Δ MSE", "ours MAE", "paper MAE", "Δ MAE",
                  "within ±0.01"]
        table = markdown(header, rows)
        footer = (f"{len(a.seeds)} seed(s), test_drop_last {a.test_drop_last}, {threads} threads, "
                  f"{time.time() - t0:.0f}s" + (f" in this invocation ({len(done)} trainings kept from the interrupted "
                  f"one, {sum(d[2] for d in done.values()):.0f}s of their own)" if done else "")
                  + f"; MLflow parent run {parent.info.run_id}, code {params['code_hash']}")
        mlflow.log_text(f"{table}\n\n{footer}\n", "bench_forecast_published.md")
        mlflow.log_metric("cells_within_0.01", sum(r[-1] == "yes" for r in rows))
        mlflow.log_metric("wall_seconds" + ("_resumed" if done else ""), time.time() - t0)
    print(f"{table}\n\n{footer}")
    return 0


def _row(model, data, h, scores, capped, label=None):
    mse = [s[0] for s in scores]
    mae = [s[1] for s in scores]
    paper = published(model, data, h)
    if paper is None:
        return [label or model, data, h, mean_std(mse, 3), "-", "-", mean_std(mae, 3), "-", "-", "-"]
    d_mse, d_mae = statistics.mean(mse) - paper[0], statistics.mean(mae) - paper[1]
    close = abs(d_mse) <= 0.010  # reproduced means close on either side, not merely "no worse"
    ok = "yes" if close else ("no (epochs capped)" if capped else "no")
    return [label or model, data, h, mean_std(mse, 3), f"{paper[0]:.3f}", f"{d_mse:+.3f}",
            mean_std(mae, 3), f"{paper[1]:.3f}", f"{d_mae:+.3f}", ok]
