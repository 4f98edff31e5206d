"""A job: what an app supplies to the one training path (:mod:`pipelines.runner`), and the runner's own config
sections (seed, threads, resume, trainer, callbacks, mlflow) with their checking."""
from __future__ import annotations

import pytorch_lightning as pl
from mlflow.models import infer_signature

from pipelines.callbacks import CALLBACKS
from core.utils import deep_merge
from pipelines.config import ConfigError
from pipelines.options import Param, Section, check, check_section, describe


RUNNER_DEFAULTS = {
    "seed": 2023,
    "threads": None,  # None: $FFN_THREADS, else all cores
    "resume": None,  # "last" or a run id: continue that run from its last checkpoint
    "trainer": {"max_epochs": 10, "patience": 3, "enable_progress_bar": True, "enable_model_summary": False},
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

    def monitor_of(self, cfg: dict) -> tuple[str, str]:
        """(metric, mode) that picks the tested checkpoint for this config (default: ``monitor``)."""
        return self.monitor

    def resolve(self, user: dict) -> dict:
        """Defaults (+ presets) merged under the user's config."""
        return deep_merge(RUNNER_DEFAULTS, self.defaults, user)

    def data(self, cfg: dict):
        """-> the LightningDataModule, set up: the data read and validated (DataError on bad input)."""
        raise NotImplementedError

    def task(self, cfg: dict, dm):
        """-> the LightningModule (model + loss + optimiser) for data module ``dm``."""
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

    # the named steps of a training, each explicit (fit_test calls them in this order)
    predict_splits: tuple[str, ...] = ("test",)  # splits whose predictions the Outcome carries (predict_step)

    def steps(self, dm, task, cfg: dict) -> dict[str, float]:
        """Named steps before the main fit that change ``task``'s model (masked pretraining, a curriculum's stages),
        each run through :func:`fit_module`; -> their numbers (``pretrain_loss``, ``stage1_val_acc``, ...)."""
        return {}

    def callbacks(self, cfg: dict) -> list:
        """Callbacks that are part of the training algorithm (an ensemble's own-best-epoch selection); a callback's
        ``summary() -> dict`` goes into ``Outcome.steps``."""
        return []

    def evaluate(self, dm, predictions: dict, cfg: dict) -> dict[str, float]:
        """Test metrics computed from the predictions (split -> Predictions) where they need more than a batch
        holds (whole-split scores, metadata of the rows); added to the task's own test metrics."""
        return {}

    def reference(self, dm, cfg: dict) -> dict[str, float]:
        """Baselines scored on the same test rows (e.g. a GBM), reported beside the model."""
        return {}

    def figures(self, outcome) -> dict:
        """name -> matplotlib Figure of an :class:`Outcome` (logged on the run; learning curves are added)."""
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
                f"[--print_config] [-v] [--help]\n\n"
                f"-v, --verbose: keep the libraries' own console messages (Lightning, MLflow).\n"
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
