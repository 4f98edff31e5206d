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

import os
import socket
import sys
import traceback
import warnings
from dataclasses import dataclass, field

import mlflow
import yaml
import pytorch_lightning as pl
import torch
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from core.datadir import DataError
from core.utils import deep_merge
from pipelines import tracking
from pipelines.callbacks import CALLBACKS
from pipelines.config import ConfigError, flatten, parse_args
from pipelines.figures import learning_curves, plt
from pipelines.options import Param, Section, check, check_section, describe
from pipelines.pyfunc import PredictorModel, requirements

RUNNER_DEFAULTS = {
    "seed": 2023,
    "threads": None,  # None: $FFN_THREADS, else all cores
    "resume": None,  # "last" or a run id: continue that run from its last checkpoint
    "trainer": {"max_epochs": 10, "patience": 3, "enable_progress_bar": True},
    "callbacks": {},  # name -> options, from pipelines.callbacks.CALLBACKS
    "mlflow": {"experiment": None, "model_name": None, "register": True, "run_name": None, "tags": {}},
}


class Job:
    """What an app tells the runner. Subclasses fill in the hooks; see ``pipelines/forecast.py``."""

    app: str = ""
    defaults: dict = {}
    shortcuts: dict[str, str] = {}
    requirements: tuple[str, ...] = ()  # packages the logged model needs beyond torch / pandas / mlflow
    monitor: tuple[str, str] = ("val_loss", "min")  # the validation metric that picks the checkpoint (and stops)

    def resolve(self, user: dict) -> dict:
        """Defaults (+ presets) merged under the user's config."""
        return deep_merge(RUNNER_DEFAULTS, self.defaults, user)

    def build(self, cfg: dict):
        """-> (LightningDataModule already set up and validated, LightningModule)."""
        raise NotImplementedError

    def predictor(self, task, dm, cfg):
        """-> picklable object with ``predict(df) -> df`` holding all it needs."""
        raise NotImplementedError

    def input_example(self, dm):
        raise NotImplementedError

    def signature(self, example, output):
        """The logged model's input / output schema (MLflow enforces the input's); inferred from the example."""
        return infer_signature(example, output)

    def data_params(self, dm) -> dict:
        return {}

    def figures(self, task, dm) -> dict:
        return {}

    def report(self, metrics: dict, cfg: dict) -> str:
        return "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))

    # retraining: score any predictor of this app on a data module's test split, lower is better
    score_name: str = "score"

    def score(self, predictor, dm) -> float:
        raise NotImplementedError(f"{type(self).__name__} cannot score models for retraining")

    def sections(self, cfg: dict) -> dict[str, Section]:
        """The app's config sections and the constructors they feed, for the resolved ``cfg`` (the model section
        depends on the chosen model). Checked before anything is built; listed by ``--help``."""
        return {}

    def usage(self, cfg: dict) -> str:
        short = "\n".join(f"  --{k:<10} sets --{v}" for k, v in self.shortcuts.items())
        return (f"usage: python -m pipelines.{self.app} [--config file.yaml ...] [--section.key value ...] "
                f"[--print_config] [--help]\n\n"
                f"Options below are for the configuration these arguments resolve to (defaults < paper preset < "
                f"YAML < command line);\nadd --model NAME etc. before --help to see another model's options.\n\n"
                f"shortcuts:\n{short}\n\n" + describe({"": RUNNER_SECTION, **all_sections(self, cfg)}, cfg))


def _callbacks_section() -> Section:
    return Section(extra=tuple(Param(n, dict, {}, (c.__doc__ or "").strip().splitlines()[0]) for n, c in
                               CALLBACKS.items()),
                   nested={n: (lambda v, c=c: Section(c)) for n, c in CALLBACKS.items()},
                   help="training aids (pipelines.callbacks)")


RUNNER_SECTION = Section(extra=(
    Param("seed", int, 2023, "seed for every random generator (Lightning's seed_everything)"),
    Param("threads", int | None, None, "torch threads; none: $FFN_THREADS, else all cores"),
    Param("resume", str | None, None, "'last' or a run id: continue that run from its last checkpoint"),
    Param("config", str, None, "a YAML file with these sections (may be repeated; later files win)"),
), help="the runner")

MLFLOW_SECTION = Section(extra=(
    Param("experiment", str | None, None, "MLflow experiment (default: the app's name)"),
    Param("model_name", str | None, None, "registered model name (default: the app's name)"),
    Param("register", bool, True, "register the trained model in the MLflow Model Registry"),
    Param("run_name", str | None, None, "MLflow run name"),
    Param("tags", dict, {}, "extra tags on the run"),
), help="tracking and registry")


def all_sections(job: Job, cfg: dict) -> dict[str, Section]:
    trainer = Section(pl.Trainer, extra=(Param("patience", int, 3, "early-stopping patience on val_loss (0: off)"),),
                      listed=("max_epochs", "patience", "accelerator", "devices", "strategy", "num_nodes",
                              "precision", "gradient_clip_val", "accumulate_grad_batches", "enable_progress_bar"),
                      help="pytorch_lightning.Trainer (any of its arguments)")
    return {**job.sections(cfg), "trainer": trainer, "callbacks": _callbacks_section(), "mlflow": MLFLOW_SECTION}


def check_config(job: Job, cfg: dict) -> None:
    """Every key of ``cfg`` known and of the right type (values coerced in place), before anything is built."""
    sections = all_sections(job, cfg)
    top = {k: v for k, v in cfg.items() if k not in sections}
    unknown = sorted(k for k in top if k not in RUNNER_SECTION.params())
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; sections are "
                          f"{sorted(list(sections) + [k for k in RUNNER_SECTION.params() if k != 'config'])}")
    check_section(top, RUNNER_SECTION, "")
    cfg.update(top)
    check(cfg, sections)


@dataclass
class Result:
    run_id: str
    metrics: dict
    model_uri: str | None = None
    version: str | None = None
    config: dict = field(default_factory=dict)
    datamodule: object = None  # the data the model was trained and tested on (retrain scores on its test split)


def set_threads(cfg: dict) -> int:
    n = int(cfg.get("threads") or os.environ.get("FFN_THREADS") or os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def _trainer(job: Job, cfg: dict, logger, ckpt_dir) -> pl.Trainer:
    tcfg = dict(cfg["trainer"])
    patience = tcfg.pop("patience", 3)
    metric, mode = job.monitor
    callbacks = [ModelCheckpoint(dirpath=ckpt_dir, monitor=metric, mode=mode, save_top_k=1, save_last=True,
                                 filename="best-{epoch}")]
    if patience:
        callbacks.append(EarlyStopping(monitor=metric, mode=mode, patience=patience))
    callbacks += [CALLBACKS[name](**(opts or {})) for name, opts in cfg["callbacks"].items()]
    tcfg.setdefault("accelerator", "cpu")
    tcfg.setdefault("log_every_n_steps", 50)
    return pl.Trainer(logger=logger, callbacks=callbacks, default_root_dir=str(ckpt_dir), **tcfg)


def resolved_config(job: Job, argv: list[str]) -> dict:
    """argv -> the full config (defaults < preset < YAML < command line), checked and typed. Raises ConfigError."""
    cfg = job.resolve(parse_args(list(argv), job.shortcuts))
    check_config(job, cfg)
    return cfg


def run(job: Job, argv: list[str] | None = None, cfg: dict | None = None) -> Result:
    """Train, test, log and register one model. ``cfg`` (already resolved) bypasses argv."""
    if cfg is None:
        cfg = resolved_config(job, argv or [])
    else:
        check_config(job, cfg)
    threads = set_threads(cfg)
    pl.seed_everything(cfg["seed"], workers=True, verbose=False)
    dm, task = job.build(cfg)  # validates config and data before anything is written to MLflow

    mcfg = cfg["mlflow"]
    experiment = mcfg["experiment"] or job.app
    uri = tracking.activate()
    client = MlflowClient(uri)
    resume_id, resume_ckpt = _resume_point(job, experiment, cfg["resume"], client) if cfg["resume"] else (None, None)
    logger = MLFlowLogger(experiment_name=experiment, tracking_uri=uri, run_name=mcfg["run_name"],
                          artifact_location=tracking.artifact_location(experiment), log_model=False,
                          tags={"app": job.app, "host": socket.gethostname(), "pid": str(os.getpid()),
                                **mcfg["tags"]}, run_id=resume_id)
    if rank_zero_only.rank != 0:  # another process of a multi-process training: train, leave MLflow to rank 0
        trainer = _trainer(job, cfg, logger, tracking.checkpoint_dir(job.app, f"rank{rank_zero_only.rank}"))
        trainer.fit(task, datamodule=dm, ckpt_path=resume_ckpt)
        _leave_process_group()
        return Result(run_id="", metrics={}, config=cfg, datamodule=dm)
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
        trainer = _trainer(job, cfg, logger, tracking.checkpoint_dir(job.app, run_id))
        trainer.fit(task, datamodule=dm, ckpt_path=resume_ckpt)
        if trainer.interrupted:
            raise KeyboardInterrupt("training interrupted")
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if trainer.world_size > 1:  # test once, on all the test windows, in this process
            _leave_process_group()  # else metrics would wait for the other ranks to sync
            trainer = pl.Trainer(logger=logger, accelerator="cpu", devices=1, enable_progress_bar=False,
                                 enable_model_summary=False, default_root_dir=str(trainer.default_root_dir))
        ckpt = best or None
        metrics = {k: float(v) for k, v in trainer.test(task, datamodule=dm, ckpt_path=ckpt, verbose=False)[0].items()}
        result = _log_and_register(job, task, dm, cfg, run_id, metrics, client, data_params)
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


def _log_and_register(job, task, dm, cfg, run_id, metrics, client, data_params: dict) -> Result:
    mcfg = cfg["mlflow"]
    task = task.cpu().eval()
    predictor = job.predictor(task, dm, cfg)
    example = job.input_example(dm)
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        mlflow.log_dict(cfg, "config.yaml")
        figures = job.figures(task, dm)
        curves = learning_curves(client, run_id)
        if curves is not None:
            figures = {"learning_curves.png": curves, **figures}
        for name, fig in figures.items():
            mlflow.log_figure(fig, name)
            plt.close(fig)
        info = mlflow.pyfunc.log_model(name="model", python_model=PredictorModel(predictor), input_example=example,
                                       signature=job.signature(example, predictor.predict(example)),
                                       pip_requirements=requirements(job.requirements))
        result = Result(run_id, metrics, info.model_uri, config=cfg, datamodule=dm)
        if mcfg["register"]:
            name = mcfg["model_name"] or job.app
            tags = {"run_id": run_id, **{k: f"{v:.6g}" for k, v in metrics.items()},
                    **{k: str(v)[:500] for k, v in data_params.items()}}
            mv = mlflow.register_model(info.model_uri, name, tags=tags)
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


def main(job: Job, argv: list[str] | None = None) -> int:
    """CLI wrapper: one clear line and exit 2 for bad input or config, traceback and exit 1 otherwise."""
    argv = sys.argv[1:] if argv is None else argv
    wants_help = any(a in ("-h", "--help") for a in argv)
    if wants_help or "--print_config" in argv:  # the resolved, checked config of these arguments; nothing runs
        rest = [a for a in argv if a not in ("-h", "--help", "--print_config")]
        code, cfg = cli_call(lambda: resolved_config(job, rest))
        if code:
            return code
        print(job.usage(cfg) if wants_help else yaml.safe_dump(cfg, sort_keys=False), end="")
        return 0
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*The number of training batches.*")
    code, result = cli_call(lambda: run(job, argv),
                            interrupted="the MLflow run is marked FAILED and nothing was registered")
    if code:
        return code
    if not result.run_id:  # a non-zero rank of a multi-process training: rank 0 reports
        return 0
    print(job.report(result.metrics, result.config))
    where = f"registered as {result.config['mlflow']['model_name'] or job.app} v{result.version}" if result.version \
        else "not registered"
    print(f"MLflow run {result.run_id} ({tracking.tracking_uri()}); model {result.model_uri}, {where}")
    return 0
