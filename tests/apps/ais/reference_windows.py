"""The per-window loop that ``apps.ais.data.make_windows`` replaced by a vectorised builder: the reference its
output is tested against (tests/apps/ais/test_data.py). Kept as it was, one window at a time."""
import numpy as np
import pandas as pd

from apps.ais.clean import KNOT
from apps.ais.data import STATUS_GROUPS
from apps.ais.geodesy import to_local, to_track_frame


def window_features(t, lat, lon, sog, cog, hdg, i: int, lookback: int, history: int | None = None, rot=None,
                    status=None):
    """Features [max(L, history), F] of the window of one vessel's arrays ending at report i (see the module
    docstring): the last ``history`` reports (default ``lookback``), fewer where the track is shorter, front-padded
    by repeating its first report; and the real reports' east / north metres from report i. ``rot`` (deg/min as
    reported) and ``status`` (codes): NaN or None where not available."""
    n_hist = max(lookback, history or lookback)
    k = min(n_hist, i + 1)
    s = slice(i - k + 1, i + 1)
    e, n = to_local(lat[s], lon[s], lat[i], lon[i])
    gap = np.diff(t[max(0, i - k):i + 1])
    gap = np.r_[np.zeros(k - len(gap)), gap]
    course = np.where(np.isnan(cog[s]), cog[i], cog[s])  # a vessel's first fix may have none
    h = np.where(np.isnan(hdg[s]), course, hdg[s])
    c, hh = np.deg2rad(course - cog[i]), np.deg2rad(h - cog[i])
    cross, along = to_track_frame(e, n, cog[i])
    r = np.full(k, np.nan) if rot is None else np.asarray(rot[s], dtype=float)
    st = np.full(k, np.nan) if status is None else np.asarray(status[s], dtype=float)
    x = np.stack([cross / 1000, along / 1000, (t[s] - t[i]) / 60, gap / 60, np.nan_to_num(sog[s]) * KNOT / 10,
                  np.sin(c), np.cos(c), np.sin(hh), np.cos(hh), (~np.isnan(hdg[s])).astype(float),
                  np.nan_to_num(r) / 60, (~np.isnan(r)).astype(float),
                  *(np.isin(st, g).astype(float) for g in STATUS_GROUPS)], 1)
    if k < n_hist:
        x = np.concatenate([np.repeat(x[:1], n_hist - k, 0), x])  # the track's first report (its gap is 0)
    return x, e, n


def raw_history(t, sog, cog, rot, e, n, i: int, n_hist: int) -> np.ndarray:
    """[n_hist, 6] of the reports ending at i: east, north (m from report i), time (s before i), SOG, COG, rate of
    turn (deg/min) as reported; NaN rows before a short track's first report (what the Kalman baselines filter)."""
    k = len(e)
    s = slice(i - k + 1, i + 1)
    r = np.full(k, np.nan) if rot is None else rot[s]
    h = np.stack([e, n, t[s] - t[i], sog[s], cog[s], r], 1)
    return np.concatenate([np.full((n_hist - k, 6), np.nan), h]) if k < n_hist else h


def turn_rate(t, hdg, cog, i: int, min_dt: float = 5.0, max_dt: float = 40.0, rot=None) -> float:
    """Rate of turn at report i (deg/s): the reported one (``rot``, deg/min) where there is one, else from the
    heading (COG where heading is not available) of the latest earlier report at least ``min_dt`` and at most
    ``max_dt`` seconds before; 0 when there is none."""
    if rot is not None and not np.isnan(rot[i]):
        return float(rot[i]) / 60.0
    src = hdg if not np.isnan(hdg[i]) else cog
    for j in range(i - 1, -1, -1):
        dt = t[i] - t[j]
        if dt > max_dt:
            break
        if dt >= min_dt and not np.isnan(src[j]):
            return float(((src[i] - src[j] + 180) % 360 - 180) / dt)
    return 0.0


def make_windows(df: pd.DataFrame, lookback: int, horizons: tuple[int, ...], max_gap: float, min_sog: float,
                 history: int | None = None) -> dict:
    """Clean tracks -> arrays of every usable window (see the module docstring); ``history``: reports fed to the
    model (:func:`window_features`)."""
    out: dict[str, list] = {k: [] for k in ("x", "mmsi", "t0", "lat0", "lon0", "sog0", "cog0", "true_lat",
                                            "true_lon", "prev_en", "prev_dt", "omega", "hist")}
    no_motion = 0
    n_hist = max(lookback, history or lookback)
    hz = np.asarray(horizons, dtype=np.float64)
    for mmsi, g in df.groupby("mmsi", sort=True):
        if len(g) < lookback + 1:
            continue
        t, lat, lon = g.time.to_numpy(), g.lat.to_numpy(), g.lon.to_numpy()
        sog, cog, hdg = g.sog.to_numpy(), g.cog.to_numpy(), g.heading.to_numpy()
        rot = g.rot.to_numpy() if "rot" in g else None
        status = g.status.to_numpy() if "status" in g else None
        for i in range(lookback - 1, len(g) - 1):
            if np.isnan(sog[i]) or np.isnan(cog[i]):
                no_motion += 1
                continue
            if not sog[i] >= min_sog:
                continue
            target = t[i] + hz
            j = np.searchsorted(t, target, side="right") - 1
            if np.any(j + 1 >= len(t)) or np.any(t[np.minimum(j + 1, len(t) - 1)] - t[j] > max_gap):
                continue
            w = (target - t[j]) / np.maximum(t[j + 1] - t[j], 1e-9)
            x, e, n = window_features(t, lat, lon, sog, cog, hdg, i, lookback, history, rot, status)
            out["x"].append(x)
            out["mmsi"].append(mmsi)
            out["t0"].append(t[i])
            out["lat0"].append(lat[i])
            out["lon0"].append(lon[i])
            out["sog0"].append(sog[i])
            out["cog0"].append(cog[i])
            out["true_lat"].append(lat[j] + w * (lat[j + 1] - lat[j]))
            out["true_lon"].append(lon[j] + w * (lon[j + 1] - lon[j]))
            out["prev_en"].append([e[-2], n[-2]])
            out["prev_dt"].append(t[i - 1] - t[i])
            out["omega"].append(turn_rate(t, hdg, cog, i, rot=rot))
            out["hist"].append(raw_history(t, sog, cog, rot, e, n, i, n_hist))
    if not out["x"]:
        return {}
    return {k: np.asarray(v, dtype=np.float32 if k == "x" else np.float64 if k != "mmsi" else np.int64)
            for k, v in out.items()} | {"no_motion": no_motion}


