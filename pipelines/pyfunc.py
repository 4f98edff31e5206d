"""One MLflow pyfunc wrapper for every app: it holds the app's picklable predictor.

The predictor (for instance :class:`apps.forecast.predict.Forecaster`) carries the network and
everything else prediction needs (scalers, column names, vocabularies), so
``mlflow.pyfunc.load_model(uri).predict(df)`` works from a run, the registry or ``mlflow models serve``.
Logged as a pyfunc with cloudpickle, never torch.export, so input shapes are not frozen.
"""
from __future__ import annotations

import importlib.metadata as md

import mlflow
import pandas as pd


class PredictorModel(mlflow.pyfunc.PythonModel):
    def __init__(self, predictor):
        self.predictor = predictor

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """``params``: the predictor's options its signature declares (the AIS ``as_of``, ``max_age``)."""
        return self.predictor.predict(model_input, **(params or {}))


def requirements(extra: tuple[str, ...] = ()) -> list[str]:
    """Pinned requirements of the logged model (skips MLflow's slow import-tracing inference); ``extra``: the app's
    own packages (a Job's ``requirements``), pinned to the installed versions."""
    pkgs = ("torch", "numpy", "pandas", "mlflow", "pytorch-lightning", "cloudpickle", *extra)
    return [f"{p}=={md.version(p)}" for p in pkgs]
