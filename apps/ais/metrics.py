"""Distances on the Earth and the error measures of vessel-position forecasting.

- ``haversine(lat1, lon1, lat2, lon2)``: great-circle distance in metres (R = 6,371,008.8 m, the IUGG mean radius).
- ``to_local`` / ``from_local``: an equirectangular east/north frame in metres around a reference fix; exact
  enough within the few kilometres a vessel moves in minutes (errors are still scored with ``haversine``).
- ``rpd``: the relative percentage difference of Spadon et al. (2023), over displacement vectors from the last
  report: RPD = 100 * mean_w 2 ||d_true - d_pred|| / (||d_true|| + ||d_pred||). Predicting zero displacement
  scores exactly 200 %, so RPD only means something beside that value.
"""
from __future__ import annotations

import numpy as np
import torch

EARTH_RADIUS_M = 6_371_008.8


def haversine(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres; numpy arrays or torch tensors, degrees in."""
    lib = torch if isinstance(lat1, torch.Tensor) else np
    p1, p2 = lib.deg2rad(lat1), lib.deg2rad(lat2)
    dp, dl = p2 - p1, lib.deg2rad(lon2 - lon1)
    a = lib.sin(dp / 2) ** 2 + lib.cos(p1) * lib.cos(p2) * lib.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * lib.arcsin(lib.sqrt(lib.clip(a, 0, 1)) if lib is np else lib.sqrt(a.clamp(0, 1)))


def to_local(lat, lon, lat0, lon0):
    """(east, north) metres of (lat, lon) from the reference (lat0, lon0)."""
    lib = torch if isinstance(lat, torch.Tensor) else np
    k = np.pi / 180 * EARTH_RADIUS_M
    return (lon - lon0) * k * lib.cos(lib.deg2rad(lat0)), (lat - lat0) * k


def from_local(east, north, lat0, lon0):
    """Inverse of :func:`to_local` -> (lat, lon)."""
    lib = torch if isinstance(east, torch.Tensor) else np
    k = np.pi / 180 * EARTH_RADIUS_M
    return lat0 + north / k, lon0 + east / (k * lib.cos(lib.deg2rad(lat0)))


def position_errors(pred_en, lat0, lon0, true_lat, true_lon):
    """pred_en[..., H, 2] east/north metres from the last fix (lat0, lon0 [...]) -> haversine errors [..., H]."""
    lat, lon = from_local(pred_en[..., 0], pred_en[..., 1], lat0[..., None], lon0[..., None])
    return haversine(lat, lon, true_lat, true_lon)


def rpd(pred_en: np.ndarray, true_en: np.ndarray) -> np.ndarray:
    """Per-horizon RPD in % over windows: pred/true displacements [W, H, 2] -> [H] (see the module docstring)."""
    num = 2 * np.linalg.norm(true_en - pred_en, axis=-1)
    den = np.linalg.norm(true_en, axis=-1) + np.linalg.norm(pred_en, axis=-1)
    return 100 * np.mean(np.where(den > 0, num / np.maximum(den, 1e-9), 0.0), axis=0)
