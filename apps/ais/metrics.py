"""The error measures of vessel-position forecasting (distances: :mod:`apps.ais.geodesy`).

- ``position_errors``: haversine metres between predicted displacements and the true positions.
- ``rpd``: the relative percentage difference of Spadon et al. (2023), over displacement vectors from the last
  report: RPD = 100 * mean_w 2 ||d_true - d_pred|| / (||d_true|| + ||d_pred||). Predicting zero displacement
  scores exactly 200 %, so RPD only means something beside that value.
"""
from __future__ import annotations

import numpy as np

from apps.ais.geodesy import from_local, haversine

def position_errors(pred_en, lat0, lon0, true_lat, true_lon):
    """pred_en[..., H, 2] east/north metres from the last fix (lat0, lon0 [...]) -> haversine errors [..., H]."""
    lat, lon = from_local(pred_en[..., 0], pred_en[..., 1], lat0[..., None], lon0[..., None])
    return haversine(lat, lon, true_lat, true_lon)


def rpd(pred_en: np.ndarray, true_en: np.ndarray) -> np.ndarray:
    """Per-horizon RPD in % over windows: pred/true displacements [W, H, 2] -> [H] (see the module docstring)."""
    num = 2 * np.linalg.norm(true_en - pred_en, axis=-1)
    den = np.linalg.norm(true_en, axis=-1) + np.linalg.norm(pred_en, axis=-1)
    return 100 * np.mean(np.where(den > 0, num / np.maximum(den, 1e-9), 0.0), axis=0)
