"""Position reports -> clean, de-duplicated, per-vessel tracks. Every step is counted (``counts``).

1. not-available values: lat 91 / lon 181 (or out of range) drop the report; SOG 102.3, COG 360, heading 511
   become NaN;
2. non-vessel MMSIs (base stations 00MIDxxxx, aids to navigation 99MIDxxxx, SAR aircraft 111MIDxxx, anything
   outside 2xx-7xx million) are dropped;
3. duplicate receptions: several base stations hear one report; key (MMSI, message type, lat, lon, SOG, COG,
   UTC second) within 30 s of receive time, the earliest kept;
4. impossible jumps: a fix implying more than ``max_speed_kn`` from the previous kept fix of its vessel is dropped;
5. SOG / COG absent (a CSV without them): derived from consecutive fixes.
Output sorted by (mmsi, time); course enters models as sin / cos.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from apps.ais.geodesy import haversine

KNOT = 1852.0 / 3600.0  # m/s


def _bearing(lat1, lon1, lat2, lon2):
    p1, p2, dl = np.deg2rad(lat1), np.deg2rad(lat2), np.deg2rad(lon2 - lon1)
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return (np.rad2deg(np.arctan2(y, x)) + 360) % 360


def clean(df: pd.DataFrame, max_speed_kn: float = 50.0, dedup_window_s: float = 30.0) -> tuple[pd.DataFrame, dict]:
    counts = {"reports_in": len(df)}
    df = df.copy()
    bad_pos = (df.lat.abs() > 90) | (df.lon.abs() > 180) | df.lat.isna() | df.lon.isna()
    counts["not_available_position"] = int(bad_pos.sum())
    df = df[~bad_pos]
    for col, sentinel in (("sog", 102.3), ("cog", 360.0), ("heading", 511.0)):
        na = df[col] >= sentinel - 1e-6  # the "not available" value (and anything beyond it)
        counts[f"not_available_{col}"] = int(na.sum())
        df.loc[na, col] = np.nan
    vessel = (df.mmsi >= 200_000_000) & (df.mmsi < 800_000_000)
    counts["non_vessel_mmsi"] = int((~vessel).sum())
    df = df[vessel]
    df = df.dropna(subset=["time"]).sort_values(["mmsi", "time"], kind="stable")
    key = ["mmsi", "msg_type", "lat", "lon", "sog", "cog", "second"]
    k = df[key].fillna(-999.0)
    same = (k == k.shift()).all(axis=1) & (df.time - df.time.shift() <= dedup_window_s)
    counts["duplicate_receptions"] = int(same.sum())
    df = df[~same.to_numpy()]
    keep = np.ones(len(df), bool)
    mm, t, la, lo = (df[c].to_numpy() for c in ("mmsi", "time", "lat", "lon"))

    def too_fast(a, b):  # from fix a to fix b (index arrays or ints)
        return haversine(la[a], lo[a], la[b], lo[b]) > max_speed_kn * KNOT * np.maximum(t[b] - t[a], 1.0) + 50.0

    # vectorised first pass against the previous fix; only vessels with a suspect fix need the sequential rule
    # (compare with the previous *kept* fix, so one outlier does not also condemn the good fix after it)
    suspect = np.r_[False, (mm[1:] == mm[:-1]) & too_fast(np.arange(len(df) - 1), np.arange(1, len(df)))]
    for vessel in np.unique(mm[suspect]):
        rows = np.flatnonzero(mm == vessel)
        last = rows[0]
        for i in rows[1:]:
            if too_fast(last, i):
                keep[i] = False
            else:
                last = i
    counts["impossible_jumps"] = int((~keep).sum())
    df = df[keep].reset_index(drop=True)
    same_vessel = df.mmsi.to_numpy()[1:] == df.mmsi.to_numpy()[:-1]
    dt = np.diff(df.time.to_numpy())
    d = haversine(df.lat.to_numpy()[:-1], df.lon.to_numpy()[:-1], df.lat.to_numpy()[1:], df.lon.to_numpy()[1:])
    derived_sog = np.r_[np.nan, np.where(same_vessel & (dt > 0), d / np.maximum(dt, 1e-9) / KNOT, np.nan)]
    derived_cog = np.r_[np.nan, np.where(same_vessel, _bearing(df.lat.to_numpy()[:-1], df.lon.to_numpy()[:-1],
                                                                df.lat.to_numpy()[1:], df.lon.to_numpy()[1:]), np.nan)]
    counts["derived_sog"] = int(df.sog.isna().sum())
    df["sog"] = df.sog.fillna(pd.Series(derived_sog)).fillna(0.0)
    counts["derived_cog"] = int(df.cog.isna().sum())
    df["cog"] = df.cog.fillna(pd.Series(derived_cog)).fillna(0.0)
    counts["reports_out"] = len(df)
    counts["vessels"] = int(df.mmsi.nunique())
    return df, counts
