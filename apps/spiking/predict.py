"""Spoken-digit prediction from wav files, in one picklable object (no MLflow here).

``DigitPredictor.predict(df)``: a frame with a ``path`` column of wav files -> ``path``, ``label``,
``confidence``. The encoder settings travel with the model, so a wav is turned into spikes exactly as in training
(other sample rates are resampled). Models trained on spikes directly (SHD, synthetic) take a ``spikes`` column
of JSON arrays [T][C] instead.
"""
from __future__ import annotations

import json

import pandas as pd
import torch

from apps.spiking.encode import SpikeEncoder, read_wav
from apps.spiking.models import class_probs
from core.datadir import DataError


class DigitPredictor:
    def __init__(self, model: torch.nn.Module, encoder: SpikeEncoder):
        self.model, self.encoder = model.eval(), encoder

    def predict(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        if "path" in df.columns:
            key, spikes = "path", torch.stack([self.encoder(*read_wav(p)) for p in df["path"]])
        elif "spikes" in df.columns:
            try:
                key, spikes = "spikes", torch.stack([torch.tensor(json.loads(s), dtype=torch.float32)
                                                     for s in df["spikes"]])
            except (ValueError, RuntimeError) as e:
                raise DataError(f"{source}: 'spikes' must hold JSON arrays [T][C] of one shape ({e})") from None
        else:
            raise DataError(f"{source}: needs a 'path' column of wav files (or 'spikes'), got {list(df.columns)}")
        with torch.no_grad():
            probs = class_probs(self.model(spikes))
        conf, label = probs.max(-1)
        out = pd.DataFrame({"label": label.numpy(), "confidence": conf.numpy().astype("float64")})
        if key == "path":
            out.insert(0, "path", df["path"].astype(str).to_numpy())
        return out
