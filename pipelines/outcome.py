"""What one training returns: :class:`Outcome` (the trained model and everything measured on it), its
:class:`Predictions` per split, and :class:`Result` (an outcome and where ``run`` logged it)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytorch_lightning as pl


@dataclass
class Predictions:
    """A split's predictions of the tested model: ``values[i]`` is the prediction for row ``ids[i]`` of that split
    (windows, flows, nodes, clips or questions, as the app's data module numbers them)."""
    ids: np.ndarray
    values: np.ndarray

    def in_order(self) -> np.ndarray:
        """values sorted by row id (row i of the split at position i)."""
        return self.values[np.argsort(self.ids, kind="stable")]


@dataclass
class Outcome:
    """What one training produced, explicitly: the trained model and everything measured on it.

    ``metrics``: the test metrics of the model that was tested (the checkpoint of the best validation ``monitor``);
    ``reference``: baselines scored on the same test rows (the traffic GBM's ``gbm_*``); ``steps``: the numbers of
    the job's named steps (pretraining loss, curriculum stages, ensemble members' own best validation errors);
    ``val``: the monitored validation metric of the tested checkpoint; ``predictions``: split -> :class:`Predictions`
    for ``job.predict_splits``; ``figures``: name -> matplotlib Figure (only when asked for)."""
    config: dict
    task: pl.LightningModule
    datamodule: object
    metrics: dict[str, float]
    reference: dict[str, float] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    val: float | None = None
    best_epoch: int | None = None
    epochs: int = 0
    fit_seconds: float = 0.0
    predictions: dict[str, Predictions] = field(default_factory=dict)
    figures: dict = field(default_factory=dict)

    @property
    def scores(self) -> dict[str, float]:
        """metrics, reference scores and step numbers in one dict (what is logged on the run)."""
        return {**self.metrics, **self.reference, **self.steps}


@dataclass
class Result:
    """What ``run`` returns: the outcome and where it was logged."""
    run_id: str
    outcome: Outcome | None = None
    model_uri: str | None = None
    version: str | None = None

    @property
    def metrics(self) -> dict:
        return self.outcome.scores if self.outcome else {}

    @property
    def config(self) -> dict:
        return self.outcome.config if self.outcome else {}

    @property
    def datamodule(self):  # the data the model was trained and tested on (retrain scores on its test split)
        return self.outcome.datamodule if self.outcome else None
