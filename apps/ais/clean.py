"""Position reports -> clean, de-duplicated, per-vessel tracks. Every step is counted (``counts``).

1. not-available values: lat 91 / lon 181 (or out of range) drop the report; SOG 102.3, COG 360, heading 511,
   rate of turn -128 (none) and +-127 (turning faster than 5 deg / 30 s, no rate given), navigation status 15 become
   NaN;
2. non-vessel MMSIs (base stations 00MIDxxxx, aids to navigation 99MIDxxxx, SAR aircraft 111MIDxxx, anything
   outside 2xx-7xx million) are dropped, unless the ids are the user's own (``mmsi_rule=False``);
3. duplicate receptions: several base stations hear one report; key (MMSI, message type, lat, lon, SOG, COG,
   UTC second) within 30 s of receive time, the earliest kept;
4. impossible jumps: a fix implying more than ``max_speed_kn`` from the previous kept fix of its vessel is dropped;
5. SOG / COG absent (a CSV without them): derived from consecutive fixes; where there is no previous fix they
   stay NaN (``missing_sog`` / ``missing_cog`` count them), never 0.
Output sorted by (mmsi, time); course enters models as sin / cos. A rule that drops every report left is an error
that names it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from apps.ais.geodesy import haversine
from core.datadir import DataError

KNOT = 1852.0 / 3600.0  # m/s


def _bearing(lat1, lon1, lat2, lon2):
    p1, p2, dl = np.deg2rad(lat1), np.deg2rad(lat2), np.deg2rad(lon2 - lon1)
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return (np.rad2deg(np.arctan2(y, x)) + 360) % 360


def _none_left(rule: str, counts: dict) -> DataError:
    seen = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    return DataError(f"no position report is left after the rule '{rule}' ({seen})")


def clean(df: pd.DataFrame, max_speed_kn: float = 50.0, dedup_window_s: float = 30.0,
          mmsi_rule: bool = True) -> tuple[pd.DataFrame, dict]:
    """Position reports -> (clean tracks, counts per rule); see the module docstring."""
    counts = {"reports_in": len(df)}
    if df.empty:
        raise DataError("no position reports to clean")
    df = df.copy()
    for col in ("rot", "status"):
        if col not in df:
            df[col] = np.nan
    bad_pos = (df.lat.abs() > 90) | (df.lon.abs() > 180) | df.lat.isna() | df.lon.isna()
    counts["not_available_position"] = int(bad_pos.sum())
    df = df[~bad_pos]
    if df.empty:
        raise _none_left("position not available (lat 91 / lon 181 / empty / out of range)", counts)
    for col, na in (("sog", df.sog >= 102.3 - 1e-6), ("cog", df.cog >= 360.0 - 1e-6), ("heading", df.heading >= 511),
                    ("rot", df.rot.abs() >= 127), ("status", df.status >= 15)):  # the "not available" values
        counts[f"not_available_{col}"] = int(na.sum())
        df.loc[na, col] = np.nan
    if mmsi_rule:
        vessel = (df.mmsi >= 200_000_000) & (df.mmsi < 800_000_000)
        counts["non_vessel_mmsi"] = int((~vessel).sum())
        df = df[vessel]
        if df.empty:
            raise _none_left("non-vessel MMSI (ids outside 200,000,000-799,999,999; name your own id column with "
                             "--data.columns id=COL to keep them)", counts)
    counts["no_time"] = int(df.time.isna().sum())
    df = df.dropna(subset=["time"]).sort_values(["mmsi", "time"], kind="stable")
    if df.empty:
        raise _none_left("no receive time", counts)
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
    # each fix's motion from the segment that ends at it; a vessel's first fix from the segment that starts at it
    # (the past of every later report, so no window reads its future)
    la, lo, t = df.lat.to_numpy(), df.lon.to_numpy(), df.time.to_numpy()
    same = df.mmsi.to_numpy()[1:] == df.mmsi.to_numpy()[:-1]
    dt = np.diff(t)
    seg_sog = np.where(same & (dt > 0), haversine(la[:-1], lo[:-1], la[1:], lo[1:]) / np.maximum(dt, 1e-9) / KNOT,
                       np.nan)
    seg_cog = np.where(same, _bearing(la[:-1], lo[:-1], la[1:], lo[1:]), np.nan)
    first = np.r_[True, ~same]
    for col, seg in (("sog", seg_sog), ("cog", seg_cog)):
        derived = np.r_[np.nan, seg]
        derived[first] = np.r_[seg, np.nan][first]
        na = df[col].isna().to_numpy()
        df[col] = np.where(na, derived, df[col].to_numpy())
        counts[f"missing_{col}"] = int(df[col].isna().sum())  # a vessel's only fix, with none reported
        counts[f"derived_{col}"] = int(na.sum()) - counts[f"missing_{col}"]
    counts["reports_out"] = len(df)
    counts["vessels"] = int(df.mmsi.nunique())
    return df, counts
