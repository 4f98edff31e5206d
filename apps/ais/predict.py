"""Vessel positions ahead from recent reports, in one picklable object (no MLflow here).

``TrackPredictor.predict(df)``: reports of any number of vessels (``mmsi``, ``time`` as unix seconds or a date
string, ``lat``, ``lon``, optional ``sog`` knots / ``cog`` degrees / ``heading`` / ``rot`` deg/min / ``status``
navigation status code) -> one row per vessel and horizon:
``mmsi``, ``horizon_s``, ``time`` (UTC), ``lat``, ``lon``, ``status`` ("ok", or why there is no forecast: a vessel
with too few reports gets a row saying so, never a crash). The reports are cleaned as in training.

Every vessel is forecast from one common time, ``as_of`` (default: the newest report in the input): the rows are the
positions at ``as_of + horizon_s``. A vessel's model forecast starts at its own last report, t_last; the position at
as_of + h is read off its forecast displacements at the horizons (zero at t_last) by linear interpolation in time,
continued past the longest horizon at the last segment's rate (dead reckoning's own assumption). A vessel whose last
report is more than ``max_age`` seconds before ``as_of`` is reported as stale, not forecast.
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
    def predict(self, df: pd.DataFrame, source: str = "input", as_of: float | None = None,
                max_age: float = 60.0) -> pd.DataFrame:
        frame = self._frame(df, source)
        as_of = float(frame.time.max()) if as_of is None or not as_of >= 0 else float(as_of)
        tracks, _ = clean(frame, mmsi_rule=False)
        when = lambda h: pd.Timestamp(as_of + h, unit="s", tz="UTC")  # noqa: E731
        rows = []

        def none(mmsi, why):
            rows.extend({"mmsi": mmsi, "horizon_s": h, "time": when(h), "lat": np.nan, "lon": np.nan, "status": why}
                        for h in self.horizons)

        for mmsi in sorted(frame.mmsi.unique()):
            g = tracks[tracks.mmsi == mmsi]
            g = g[g.time <= as_of]
            if len(g) < self.lookback:
                none(mmsi, f"too few reports: {len(g)} at or before as-of after cleaning, the model needs "
                           f"{self.lookback}")
                continue
            last = g.iloc[-1]
            age = as_of - last.time
            if age > max_age:
                none(mmsi, f"stale: last report {age:.0f} s before as-of (more than {max_age:g} s)")
                continue
            if np.isnan(last.sog) or np.isnan(last.cog):
                none(mmsi, "no SOG / COG at the last report (reported or derivable)")
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
            at = at_offsets(disp, self.horizons, age + np.asarray(self.horizons, dtype=float))
            lat, lon = from_local(at[:, 0], at[:, 1], last.lat, last.lon)
            status = "ok" if age == 0 else f"ok (last report {age:.0f} s before as-of)"
            rows.extend({"mmsi": mmsi, "horizon_s": h, "time": when(h), "lat": float(lat[i]), "lon": float(lon[i]),
                         "status": status} for i, h in enumerate(self.horizons))
        out = pd.DataFrame(rows, columns=["mmsi", "horizon_s", "time", "lat", "lon", "status"])
        out["time"] = out["time"].astype(str)
        return out


def at_offsets(disp: np.ndarray, horizons, offsets: np.ndarray) -> np.ndarray:
    """Displacements [H, 2] at ``horizons`` (s after the last report; 0 there) -> at ``offsets`` [K] s: linear in
    time between horizons, past the longest at the last segment's rate."""
    t = np.r_[0.0, np.asarray(horizons, dtype=float)]
    d = np.vstack([np.zeros(2), disp])
    out = np.stack([np.interp(offsets, t, d[:, j]) for j in range(2)], 1)
    beyond = offsets > t[-1]
    rate = (d[-1] - d[-2]) / (t[-1] - t[-2])
    out[beyond] = d[-1] + (offsets[beyond] - t[-1])[:, None] * rate
    return out
