"""The one runner every app uses: config -> data -> Trainer + MLflow -> test -> logged, registered model.

Order matters for failure handling: the config and the data are resolved and validated *before* the
MLflow run exists, so bad input leaves the store untouched; anything failing later marks the run
FAILED and registers nothing. Exactly one MLflow run per training (Lightning's MLFlowLogger owns it;
the final artifacts are added to that same run by id).

Several processes (``--trainer.strategy ddp --trainer.devices 2``, torchrun, SLURM): every rank trains, only
global rank 0 talks to MLflow (the logger is rank-zero-only; checkpoints go to rank 0's folder, which
ModelCheckpoint broadcasts), and rank 0 alone tests on one device, since DistributedSampler would pad the
test set with repeated windows, then logs and registers. The other ranks return after ``fit``.
"""
from __future__ import annotations

import contextlib
import json
import io
import logging
import os
import re
import socket
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import mlflow
import yaml
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from core.datadir import DataError
from pipelines import tracking
from pipelines.callbacks import CALLBACKS
from pipelines.config import ConfigError, flatten, overrides, parse_args
from pipelines.figures import learning_curves, plt
from pipelines.pyfunc import PredictorModel, requirements

from pipelines.job import Job, check_config
from pipelines.outcome import Outcome, Predictions, Result


def set_threads(cfg: dict) -> int:
    n = int(cfg.get("threads") or os.environ.get("FFN_THREADS") or os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def _quiet_trainer_kw() -> dict:
    return {"enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu"}


def _trainer(job: Job, cfg: dict, logger, ckpt_dir, extra_callbacks=()) -> pl.Trainer:
    tcfg = dict(cfg["trainer"])
    patience = tcfg.pop("patience", 3)
    metric, mode = job.monitor_of(cfg)
    callbacks = [ModelCheckpoint(dirpath=ckpt_dir, monitor=metric, mode=mode, save_top_k=1, save_last=True,
                                 filename="best-{epoch}")]
    if patience:
        callbacks.append(EarlyStopping(monitor=metric, mode=mode, patience=patience))
    callbacks += list(extra_callbacks)
    callbacks += [CALLBACKS[name](**(opts or {})) for name, opts in cfg["callbacks"].items()]
    tcfg.setdefault("accelerator", "cpu")
    tcfg.setdefault("log_every_n_steps", 50)
    return pl.Trainer(logger=logger, callbacks=callbacks, default_root_dir=str(ckpt_dir), **tcfg)


def fit_module(module: pl.LightningModule, data, epochs: int, monitor: tuple[str, str] | None = None,
               report: str | None = None) -> float:
    """Train ``module`` in place for ``epochs``: a job's named step (pretraining, a curriculum stage). ``data``: a
    LightningDataModule or a training DataLoader. With ``monitor`` (metric, mode) the weights of the best validation
    epoch are restored and that score returned; else the last epoch's value of the logged metric ``report`` (nan
    when there is none)."""
    if epochs <= 0:
        return float("nan")
    with tempfile.TemporaryDirectory() as d:
        cbs = [ModelCheckpoint(dirpath=d, monitor=monitor[0], mode=monitor[1], save_top_k=1)] if monitor else []
        tr = pl.Trainer(max_epochs=epochs, logger=False, callbacks=cbs, enable_checkpointing=bool(monitor),
                        default_root_dir=d, **_quiet_trainer_kw())
        if isinstance(data, pl.LightningDataModule):
            tr.fit(module, datamodule=data)
        else:
            tr.fit(module, train_dataloaders=data)
        if not monitor:
            return float(tr.callback_metrics.get(report, float("nan"))) if report else float("nan")
        best = torch.load(cbs[0].best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(best)
        return float(cbs[0].best_model_score)


def resolved_config(job: Job, argv: list[str]) -> dict:
    """argv -> the full config (defaults < preset < YAML < command line), checked and typed. Raises ConfigError."""
    cfg = job.resolve(parse_args(list(argv), job.shortcuts))
    check_config(job, cfg)
    return cfg


def build(job: Job, cfg: dict, dm=None):
    """Threads and seeds, then the data (``job.data``, unless ``dm`` is given: a data module reused across trainings)
    and the task (``job.task``). -> (data module, task)."""
    set_threads(cfg)
    pl.seed_everything(cfg["seed"], workers=True, verbose=False)
    dm = job.data(cfg) if dm is None else dm
    return dm, job.task(cfg, dm)


def fit_test(job: Job, cfg: dict, built=None, logger=False, ckpt_dir=None, resume_ckpt: str | None = None,
             figures: bool = False, on_steps=None, dm=None, reference: bool = True) -> Outcome:
    """The one training path: build (unless ``built`` = (dm, task); ``dm``: reuse that data module), the job's
    named steps, fit with the best
    ``job.monitor`` checkpoint kept, test that checkpoint, predict ``job.predict_splits`` with it, score the job's
    reference baselines -> :class:`Outcome`. Writes nothing but checkpoints (to ``ckpt_dir``, else a temp folder):
    logging and registering are :func:`run`'s. ``logger``: a Lightning logger for the per-epoch metrics.
    ``on_steps(numbers)`` is called with the steps' numbers before the fit. Under several processes the
    non-zero ranks return after ``fit`` with empty metrics. ``reference=False`` skips the job's baselines."""
    built = built if built is not None else build(job, cfg, dm)
    with tempfile.TemporaryDirectory() as tmp:
        return _fit_test(job, cfg, built, logger, Path(ckpt_dir or tmp), resume_ckpt, figures, on_steps, reference)


def _fit_test(job, cfg, built, logger, ckpt_dir, resume_ckpt, figures, on_steps, use_reference) -> Outcome:
    dm, task = built
    steps = {} if resume_ckpt else job.steps(dm, task, cfg)
    if on_steps and steps:
        on_steps(steps)
    extra = job.callbacks(cfg)
    trainer = _trainer(job, cfg, logger, ckpt_dir, extra)
    t0 = time.time()
    trainer.fit(task, datamodule=dm, ckpt_path=resume_ckpt)
    seconds = time.time() - t0
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted")
    if rank_zero_only.rank != 0:  # another process of a multi-process training: rank 0 tests and reports
        _leave_process_group()
        return Outcome(cfg, task, dm, {}, steps=steps, fit_seconds=seconds)
    ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    if trainer.world_size > 1:  # test once, on all the test rows, in this process
        _leave_process_group()  # else metrics would wait for the other ranks to sync
    t = cfg["trainer"]
    limit = t.get("limit_test_batches", 1.0)
    tester = pl.Trainer(logger=False, default_root_dir=str(ckpt_dir), precision=t.get("precision"),
                        limit_test_batches=limit, limit_predict_batches=limit, **_quiet_trainer_kw())
    if ckpt:
        task.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    for part in (*extra, task):  # the training algorithm's own record (an ensemble's members, ForwardGNN's depths)
        steps.update(getattr(part, "summary", dict)())
    metrics = {k: float(v) for k, v in tester.test(task, datamodule=dm, verbose=False)[0].items()}
    preds = {}
    for split in job.predict_splits:
        out = tester.predict(task, dataloaders=getattr(dm, f"{split}_dataloader")())
        preds[split] = _collect(out)
    metrics.update(job.evaluate(dm, preds, cfg))
    reference = job.reference(dm, cfg) if use_reference else {}
    task = task.cpu().eval()
    epoch = re.search(r"epoch=(\d+)", Path(ckpt).name) if ckpt else None
    outcome = Outcome(cfg, task, dm, metrics, reference, steps, None if best is None else float(best),
                      int(epoch.group(1)) if epoch else None, trainer.current_epoch, seconds, preds)
    if figures:
        outcome.figures = job.figures(outcome)
    return outcome


def _collect(batches: list) -> Predictions:
    """predict_step outputs -> Predictions: each a tensor (rows in loader order) or (row ids, values)."""
    ids, values, n = [], [], 0
    for b in batches:
        i, v = b if isinstance(b, (tuple, list)) else (torch.arange(n, n + len(b)), b)
        ids.append(torch.as_tensor(i).cpu())
        values.append(v.detach().cpu())
        n += len(v)
    return Predictions(torch.cat(ids).numpy(), torch.cat(values).numpy())


def run(job: Job, argv: list[str] | None = None, cfg: dict | None = None) -> Result:
    """:func:`fit_test` inside one MLflow run, then log and register the model. ``cfg`` (resolved) bypasses argv."""
    if cfg is None:
        cfg = resolved_config(job, argv or [])
    else:
        check_config(job, cfg)
    threads = set_threads(cfg)
    built = build(job, cfg)  # validates config and data before anything is written to MLflow
    dm = built[0]

    mcfg = cfg["mlflow"]
    experiment = mcfg["experiment"] or job.app
    uri = tracking.activate()
    client = MlflowClient(uri)
    resume_id, resume_ckpt = _resume_point(job, experiment, cfg["resume"], client) if cfg["resume"] else (None, None)
    changed = json.dumps(overrides(job.resolve({}), cfg), sort_keys=True)
    logger = MLFlowLogger(experiment_name=experiment, tracking_uri=uri, artifact_location=tracking.artifact_location(
                              experiment), log_model=False, run_id=resume_id,
                          run_name=mcfg["run_name"] or f"{job.app}-{time.strftime('%Y%m%d-%H%M%S')}",
                          tags={"app": job.app, "host": socket.gethostname(), "pid": str(os.getpid()),
                                "config.overrides": changed[:5000], **mcfg["tags"]})
    if rank_zero_only.rank != 0:  # another process of a multi-process training: train, leave MLflow to rank 0
        fit_test(job, cfg, built, logger, tracking.checkpoint_dir(job.app, f"rank{rank_zero_only.rank}"), resume_ckpt)
        return Result(run_id="")
    run_id = logger.run_id
    try:
        if resume_id:  # the same run goes on; its parameters are already logged (and immutable)
            client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, "resumed_from", str(resume_ckpt))
            client.set_tag(run_id, "host", socket.gethostname())  # this process owns it now (see retrain's reaping)
            client.set_tag(run_id, "pid", str(os.getpid()))
        data_params = job.data_params(dm)  # hashes data files: once per run
        if not resume_id:
            logger.log_hyperparams({**flatten(cfg), "threads": threads, **data_params})
        outcome = fit_test(job, cfg, built, logger, tracking.checkpoint_dir(job.app, run_id), resume_ckpt,
                           figures=True, on_steps=logger.log_metrics)
        result = _log_and_register(job, outcome, run_id, client, data_params)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return result


def _leave_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _resume_point(job: Job, experiment: str, resume: str, client) -> tuple[str, str]:
    """(run id, its last.ckpt) for ``--resume last`` (the newest unfinished run with a checkpoint) or a run id."""
    exp = client.get_experiment_by_name(experiment)
    if resume == "last":
        runs = client.search_runs([exp.experiment_id], order_by=["attribute.start_time DESC"]) if exp else []
        candidates = [r.info.run_id for r in runs if r.info.status != "FINISHED"]
    else:
        candidates = [resume]
    for rid in candidates:
        ckpt = tracking.checkpoint_dir(job.app, rid) / "last.ckpt"
        if ckpt.exists():
            return rid, str(ckpt)
    where = tracking.checkpoint_dir(job.app, "<run id>") / "last.ckpt"
    raise ConfigError(f"--resume {resume}: no unfinished {job.app} run with a checkpoint ({where})")


def _log_and_register(job, outcome: Outcome, run_id, client, data_params: dict) -> Result:
    cfg, mcfg = outcome.config, outcome.config["mlflow"]
    predictor = job.predictor(outcome.task, outcome.datamodule, cfg)
    example = job.input_example(outcome.datamodule)
    # MLflow's fluent API refuses a run outside its active experiment (left set by, e.g., a bench earlier in this
    # process): the run's own experiment becomes the active one
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        for k, v in {**outcome.metrics, **outcome.reference, **outcome.steps}.items():
            mlflow.log_metric(k, v)  # the logger has the per-epoch metrics; these are the outcome's, once
        mlflow.log_dict(cfg, "config.yaml")
        figures = dict(outcome.figures)
        curves = learning_curves(client, run_id)
        if curves is not None:
            figures = {"learning_curves.png": curves, **figures}
        for name, fig in figures.items():
            mlflow.log_figure(fig, name)
            plt.close(fig)
        info = mlflow.pyfunc.log_model(name="model", python_model=PredictorModel(predictor), input_example=example,
                                       signature=job.signature(example, predictor.predict(example)),
                                       pip_requirements=requirements(job.requirements))
        result = Result(run_id, outcome, info.model_uri)
        if mcfg["register"]:
            name = mcfg["model_name"] or job.app
            tags = {"run_id": run_id, **{k: f"{v:.6g}" for k, v in outcome.scores.items()},
                    **{k: str(v)[:500] for k, v in data_params.items()}}
            with contextlib.redirect_stderr(io.StringIO()) as said:  # MLflow prints "Successfully registered ..."
                mv = mlflow.register_model(info.model_uri, name, tags=tags)
            logging.getLogger(__name__).info(said.getvalue().strip())
            result.version = str(mv.version)
            try:
                client.get_model_version_by_alias(name, "champion")
            except mlflow.exceptions.MlflowException:  # first model of this name: it is the champion
                client.set_registered_model_alias(name, "champion", mv.version)
            else:  # it has to beat the champion first (python -m pipelines.retrain)
                client.set_registered_model_alias(name, "challenger", mv.version)
    return result


def cli_call(fn, note: str = "", interrupted: str = "", codes: dict | None = None):
    """-> (exit code, fn()). One ``error:`` line and 2 for bad input or config, 130 when interrupted, one line and 1
    when the tracking server does not answer, a traceback and 1 for anything else; ``codes`` maps further
    exception types to codes (one line each)."""
    try:
        return 0, fn()
    except tuple(codes or ()) as e:
        print(f"error: {e}", file=sys.stderr)
        return codes[type(e)], None
    except (DataError, ConfigError) as e:
        print(f"error: {e}{note}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print("interrupted" + (f": {interrupted}" if interrupted else note), file=sys.stderr)
        return 130, None
    except Exception as e:  # noqa: BLE001 - anything else is a bug or an environment problem: show it
        if isinstance(e, mlflow.exceptions.MlflowException) and "Max retries exceeded" in str(e):
            print(f"error: the tracking server did not answer ({str(e)[:240]}){note}", file=sys.stderr)
            return 1, None
        traceback.print_exc()
        if note:
            print(f"failed{note}", file=sys.stderr)
        return 1, None


def quiet_libraries() -> None:
    """Silence library chatter on the console: Lightning's tips and device lines, MLflow's store-creation and
    model-logging notes (the CloudPickle note: we pickle a predictor on purpose). Warnings and errors still show."""
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("mlflow.pyfunc", "pytorch_lightning.loggers.mlflow", "lightning.pytorch.loggers.mlflow"):
        logging.getLogger(name).setLevel(logging.ERROR)  # "creating experiment ...": the result line says where
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*The number of training batches.*")


def main(job: Job, argv: list[str] | None = None) -> int:
    """CLI wrapper: one clear line and exit 2 for bad input or config, traceback and exit 1 otherwise; the result
    line is the last thing printed. ``-v`` / ``--verbose`` keeps the libraries' own messages."""
    argv = sys.argv[1:] if argv is None else argv
    wants_help = any(a in ("-h", "--help") for a in argv)
    if wants_help or "--print_config" in argv:  # the resolved, checked config of these arguments; nothing runs
        rest = [a for a in argv if a not in ("-h", "--help", "--print_config", "-v", "--verbose")]
        code, cfg = cli_call(lambda: resolved_config(job, rest))
        if code:
            return code
        print(job.usage(cfg) if wants_help else yaml.safe_dump(cfg, sort_keys=False), end="")
        return 0
    if not {"-v", "--verbose"} & set(argv):
        quiet_libraries()
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    code, result = cli_call(lambda: run(job, argv),
                            interrupted="the MLflow run is marked FAILED and nothing was registered")
    if code:
        return code
    if not result.run_id:  # a non-zero rank of a multi-process training: rank 0 reports
        return 0
    where = f"registered as {result.config['mlflow']['model_name'] or job.app} v{result.version}" if result.version \
        else "not registered"
    print(f"MLflow run {result.run_id} ({tracking.tracking_uri()}); model {result.model_uri}, {where}")
    print(job.report(result.metrics, result.config))
    return 0
