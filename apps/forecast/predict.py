"""Everything needed to forecast from raw history, in one picklable object (no MLflow here).

``Forecaster.predict(df)``: a frame with a ``date`` column and the training columns (at least
``lookback`` rows) -> a frame of the next ``horizon`` steps with their timestamps, in original units, holding the
columns the model forecasts (``out_columns``: all of them for TSLib's M, the target for S / MS).
"""
from __future__ import annotations

import pandas as pd
import torch

from apps.forecast.data import DataError, Scaler, time_features, validate_frame


class Forecaster:
    def __init__(self, model: torch.nn.Module, scaler: Scaler, columns: list[str], lookback: int, horizon: int,
                 freq: pd.Timedelta, use_time_features: bool, out_columns: list[str] | None = None):
        self.model = model.eval()
        self.scaler, self.columns, self.lookback, self.horizon = scaler, list(columns), lookback, horizon
        self.out_columns = list(out_columns) if out_columns is not None else list(columns)
        self.targets = [self.columns.index(c) for c in self.out_columns]
        self.freq, self.use_time_features = freq, use_time_features

    def __setstate__(self, state):  # models pickled before out_columns existed forecast every column
        state.setdefault("out_columns", list(state["columns"]))
        state.setdefault("targets", list(range(len(state["columns"]))))
        self.__dict__.update(state)

    def predict(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        dates, values, _ = validate_frame(df, source, columns=self.columns)
        if len(values) < self.lookback:
            raise DataError(f"{source}: {len(values)} rows of history, the model needs lookback = {self.lookback}")
        dates, values = dates[-self.lookback:], values[-self.lookback:]
        marks = torch.from_numpy(time_features(dates, self.freq))[None] if self.use_time_features else None
        y = self.forecast_windows(torch.from_numpy(values)[None], marks)[0]
        future = pd.date_range(dates[-1] + self.freq, periods=self.horizon, freq=self.freq)
        out = pd.DataFrame(y[:, self.targets].numpy(), columns=self.out_columns)
        out.insert(0, "date", future)
        return out

    @torch.no_grad()
    def forecast_windows(self, x: torch.Tensor, marks: torch.Tensor | None = None) -> torch.Tensor:
        """Batch form: x[B, L, N] in original units (+ TSLib marks[B, L, M]) -> [B, H, N] in original units."""
        xs = torch.as_tensor(self.scaler.transform(x.numpy()), dtype=torch.float32)
        y = self.model(xs, marks if self.use_time_features else None)
        return torch.as_tensor(self.scaler.inverse(y.numpy()))
