"""Vessel positions ahead from recent reports, in one picklable object (no MLflow here).

``TrackPredictor.predict(df)``: reports of any number of vessels (``mmsi``, ``time`` as unix seconds or a date
string, ``lat``, ``lon``, optional ``sog`` knots / ``cog`` degrees / ``heading`` / ``rot`` deg/min / ``status``
navigation status code) -> one row per vessel and horizon:
``mmsi``, ``horizon_s``, ``time`` (UTC), ``lat``, ``lon``, ``status`` ("ok", or why there is no forecast: a vessel
with too few reports gets a row saying so, never a crash). The reports are cleaned as in training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from apps.ais.clean import clean
from apps.ais.baselines import base_displacement
from apps.ais.data import turn_rate, window_features
from apps.ais.geodesy import from_local
from core.datadir import DataError


class TrackPredictor:
    def __init__(self, task, lookback: int, horizons, mean: np.ndarray, std: np.ndarray, base: str = "dr",
                 turn_tau: float = 0.0, history: int | None = None):
        self.task = task.eval()
        self.lookback, self.horizons, self.mean, self.std = lookback, tuple(horizons), mean, std
        self.history = history or lookback
        self.base, self.turn_tau = base, turn_tau

    def _frame(self, df: pd.DataFrame, source: str) -> pd.DataFrame:
        need = [c for c in ("mmsi", "time", "lat", "lon") if c not in df.columns]
        if need:
            raise DataError(f"{source}: missing column(s) {need}; needs mmsi, time, lat, lon (sog, cog optional)")
        out = pd.DataFrame({"mmsi": pd.to_numeric(df["mmsi"], errors="coerce")})
        t = pd.to_numeric(df["time"], errors="coerce")
        if t.isna().any():  # date strings
            t = (pd.to_datetime(df["time"], utc=True, errors="coerce") - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        out["time"] = t
        for c in ("lat", "lon", "sog", "cog", "heading", "rot", "status"):
            out[c] = pd.to_numeric(df[c], errors="coerce") if c in df.columns else np.nan
        bad = out[["mmsi", "time", "lat", "lon"]].isna().any(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{source}: row {i + 1}: mmsi, time, lat and lon must be numbers / times, got "
                            f"{df.iloc[i][['mmsi', 'time', 'lat', 'lon']].to_dict()}")
        out["mmsi"] = out["mmsi"].astype("int64")
        out["msg_type"], out["second"] = -1, -1
        return out

    @torch.no_grad()
    def windows(self, x: np.ndarray, sog: np.ndarray, cog: np.ndarray, omega: np.ndarray) -> np.ndarray:
        """The one prediction path (serving and retrain scoring): windows' raw features x[W, L, F] and last reports
        (SOG kn, COG deg, rate of turn deg/s, [W]) -> displacements [W, H, 2] east/north metres."""
        xs = torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))
        base = torch.from_numpy(base_displacement(self.base, sog, cog, omega, self.horizons, self.turn_tau)).float()
        return self.task(xs, base, torch.as_tensor(cog, dtype=torch.float)).double().numpy()

    @torch.no_grad()
    def predict(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        tracks, _ = clean(self._frame(df, source))
        rows = []
        for mmsi in sorted(pd.to_numeric(df["mmsi"], errors="coerce").dropna().astype("int64").unique()):
            g = tracks[tracks.mmsi == mmsi]
            if len(g) < self.lookback:
                status = f"too few reports: {len(g)} after cleaning, the model needs {self.lookback}"
                rows += [{"mmsi": mmsi, "horizon_s": h, "time": pd.NaT, "lat": np.nan, "lon": np.nan,
                          "status": status} for h in self.horizons]
                continue
            last = g.iloc[-1]
            if np.isnan(last.sog) or np.isnan(last.cog):
                rows += [{"mmsi": mmsi, "horizon_s": h, "time": pd.NaT, "lat": np.nan, "lon": np.nan,
                          "status": "no SOG / COG at the last report (reported or derivable)"} for h in self.horizons]
                continue
            arrays = [g[c].to_numpy() for c in ("time", "lat", "lon", "sog", "cog", "heading")]
            rot, nav = g.rot.to_numpy(), g.status.to_numpy()
            # a champion pickled before ``history`` existed saw ``lookback`` reports; one from before the rate of
            # turn and status features reads the first len(mean) features
            feats, _, _ = window_features(*arrays, len(g) - 1, self.lookback, getattr(self, "history", None), rot,
                                          nav)
            feats = feats[:, :len(self.mean)]
            omega = np.array([turn_rate(arrays[0], arrays[5], arrays[4], len(g) - 1, rot=rot)])
            disp = self.windows(feats[None], np.array([last.sog]), np.array([last.cog]), omega)[0]
            lat, lon = from_local(disp[:, 0], disp[:, 1], last.lat, last.lon)
            for i, h in enumerate(self.horizons):
                rows.append({"mmsi": mmsi, "horizon_s": h, "time": pd.Timestamp(last.time + h, unit="s", tz="UTC"),
                             "lat": float(lat[i]), "lon": float(lon[i]), "status": "ok"})
        out = pd.DataFrame(rows, columns=["mmsi", "horizon_s", "time", "lat", "lon", "status"])
        out["time"] = out["time"].astype(str)
        return out
