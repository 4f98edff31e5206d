"""AIS tracks as forecasting windows, as they arrived: no resampling (Spadon et al. 2023).

A window is the last ``lookback`` reports of a vessel, ending at report i of a moving vessel (SOG >= ``min_sog``
knots at i). Everything is expressed in the vessel's own frame at report i: centred on its position and rotated to
its course over ground (cross-track to starboard, along-track ahead), so a model learns turns, not compass
directions. Per report: cross, along (km), time before i (min), gap to the previous report (min), SOG (m/s / 10),
sin / cos of (COG - COG_i), sin / cos of (heading - COG_i) (COG where heading is not available), a heading-valid
flag, the reported rate of turn (deg/s; 0 where not available) and its valid flag, and the navigation status as
three flags (under way: 0, 8; stopped: at anchor, moored, aground; limited: not under command, restricted,
constrained, fishing; all 0 when not available); normalised with the training split's mean and std (flags stay
0/1). A window whose last report has no SOG or COG (a vessel's only fix without them) is not made (counted). The model sees up to ``history`` reports
(>= ``lookback``) ending at report i, so a window has at least ``lookback`` reports and more context where the vessel
has it (the test windows do not depend on ``history``).
Targets: the position at t_i + H for each horizon H (seconds), interpolated linearly in time between the two
reports around it, which must be at most ``max_gap`` seconds apart (else the window is not used).

Splits (no MMSI in two splits): ``vessel:K`` puts the vessels whose md5(MMSI) % 5 == K in test (5 grouped folds,
every vessel tested once) and 1/8 of the others (by a second hash salted with K, so each fold draws its own) in
validation; everything chosen for fold K (the epoch, the turn and Kalman baselines' constants) is chosen on fold
K's validation vessels; ``time`` uses vessel fold 0 for
the split of vessels and also orders the windows in time: train ends before 60 % of the time span, validation
starts one longest horizon after that, test starts one longest horizon after validation's end (80 %).
"""
from __future__ import annotations

import glob
import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset

from apps.ais import kalman
from apps.ais.baselines import TURN_TAUS, base_displacement, damped_turn, dead_reckoning
from apps.ais.clean import KNOT, clean
from apps.ais.geodesy import to_local, to_track_frame
from apps.ais.files import IngestStats
from apps.ais.ingest import read
from apps.ais.tabular import parse_columns
from core.datadir import DataError, data_dir, sha256

DEFAULT_LOG = "ais/dma_ais_sample_20131112.nmea.gz"
FEATURES = ("cross_km", "along_km", "dt_min", "gap_min", "sog", "sin_dcog", "cos_dcog", "sin_dhdg", "cos_dhdg",
            "hdg_valid", "rot", "rot_valid", "status_under_way", "status_stopped", "status_limited")
FLAGS = tuple(i for i, f in enumerate(FEATURES) if f.endswith("_valid") or f.startswith("status_"))
STATUS_GROUPS = ((0, 8), (1, 5, 6), (2, 3, 4, 7))  # ITU-R M.1371 navigation status codes per status_ flag


def resolve_paths(path: str | None) -> list[Path]:
    """A file, a folder (every file in it) or a glob; default: the DMA log in the data directory."""
    if path is None:
        p = data_dir() / DEFAULT_LOG
        if not p.is_file():
            raise DataError(f"{p}: the default AIS log is missing: `python -m pipelines.data get ais` fetches it; "
                            "or set FFN_DATA_DIR or --data.path")
        return [p]
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    elif any(c in path for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(path))
    else:
        files = [p]
    if not files:
        raise DataError(f"{path}: no files")
    return files


def vessel_fold(mmsi: np.ndarray, salt: str = "") -> np.ndarray:
    """md5 of the MMSI's decimal text (+ salt) as an integer, for grouped splits that never depend on order."""
    return np.array([int(hashlib.md5(f"{salt}{m}".encode()).hexdigest()[:8], 16) for m in mmsi], dtype=np.int64)


def features_at(t, lat, lon, sog, cog, hdg, ends: np.ndarray, n_hist: int, rot=None, status=None):
    """The windows of one vessel's arrays ending at reports ``ends`` [W], vectorised -> (x[W, n_hist, F] features
    (see the module docstring), east[W, n_hist], north[W, n_hist] metres from each window's last report, real[W,
    n_hist] False on the rows that repeat a short track's first report). ``rot`` (deg/min as reported) and
    ``status`` (codes): NaN or None where not available."""
    ends = np.asarray(ends, dtype=np.int64)
    rows = ends[:, None] - (n_hist - 1) + np.arange(n_hist)[None]  # [W, n_hist], oldest first
    real = rows >= 0
    idx = np.maximum(rows, 0)  # a short track's first report, repeated in front (its gap is 0)
    last = ends[:, None]
    e, n = to_local(lat[idx], lon[idx], lat[last], lon[last])
    gap = np.where(idx >= 1, t[idx] - t[np.maximum(idx - 1, 0)], 0.0)
    gap[:, 0] = np.where(rows[:, 0] >= 1, gap[:, 0], 0.0)  # a window's oldest report: the gap before it, if any
    course = np.where(np.isnan(cog[idx]), cog[last], cog[idx])  # a vessel's first fix may have none
    h = np.where(np.isnan(hdg[idx]), course, hdg[idx])
    c, hh = np.deg2rad(course - cog[last]), np.deg2rad(h - cog[last])
    cross, along = to_track_frame(e, n, cog[last])
    r = np.full(idx.shape, np.nan) if rot is None else np.asarray(rot, dtype=float)[idx]
    st = np.full(idx.shape, np.nan) if status is None else np.asarray(status, dtype=float)[idx]
    x = np.stack([cross / 1000, along / 1000, (t[idx] - t[last]) / 60, gap / 60, np.nan_to_num(sog[idx]) * KNOT / 10,
                  np.sin(c), np.cos(c), np.sin(hh), np.cos(hh), (~np.isnan(hdg[idx])).astype(float),
                  np.nan_to_num(r) / 60, (~np.isnan(r)).astype(float),
                  *(np.isin(st, g).astype(float) for g in STATUS_GROUPS)], -1)
    return x, e, n, real


def window_features(t, lat, lon, sog, cog, hdg, i: int, lookback: int, history: int | None = None, rot=None,
                    status=None):
    """One window (:func:`features_at` at report i): features [max(L, history), F] and the real reports' east /
    north metres from report i."""
    x, e, n, real = features_at(t, lat, lon, sog, cog, hdg, np.array([i]), max(lookback, history or lookback), rot,
                                status)
    return x[0], e[0][real[0]], n[0][real[0]]


def turn_rates(t, hdg, cog, ends: np.ndarray, min_dt: float = 5.0, max_dt: float = 40.0, rot=None) -> np.ndarray:
    """Rate of turn at reports ``ends`` (deg/s): the reported one (``rot``, deg/min) where there is one, else from
    the heading (COG where the heading at the report is not available) of the latest earlier report at least
    ``min_dt`` and at most ``max_dt`` seconds before that has one; 0 when there is none."""
    ends = np.asarray(ends, dtype=np.int64)
    use_hdg = ~np.isnan(hdg[ends])
    j = np.searchsorted(t, t[ends] - min_dt, side="right") - 1  # the latest report >= min_dt before
    out = np.zeros(len(ends))
    for src, which in ((hdg, use_hdg), (cog, ~use_hdg)):
        valid = ~np.isnan(src)
        latest = np.maximum.accumulate(np.where(valid, np.arange(len(t)), -1))  # latest valid index up to k
        jj = np.where(j >= 0, latest[np.maximum(j, 0)], -1)
        ok = which & (jj >= 0) & (t[ends] - t[np.maximum(jj, 0)] <= max_dt)
        d = ((src[ends] - src[np.maximum(jj, 0)] + 180) % 360 - 180) / (t[ends] - t[np.maximum(jj, 0)] + 1e-300)
        out = np.where(ok, d, out)
    if rot is not None:
        r = np.asarray(rot, dtype=float)[ends]
        out = np.where(np.isnan(r), out, r / 60.0)
    return out


def turn_rate(t, hdg, cog, i: int, min_dt: float = 5.0, max_dt: float = 40.0, rot=None) -> float:
    """:func:`turn_rates` at one report i."""
    return float(turn_rates(t, hdg, cog, np.array([i]), min_dt, max_dt, rot)[0])


def make_windows(df: pd.DataFrame, lookback: int, horizons: tuple[int, ...], max_gap: float, min_sog: float,
                 history: int | None = None) -> dict:
    """Clean tracks -> arrays of every usable window (see the module docstring), vectorised per vessel;
    ``history``: reports fed to the model (:func:`features_at`)."""
    keys = ("x", "mmsi", "t0", "lat0", "lon0", "sog0", "cog0", "true_lat", "true_lon", "prev_en", "prev_dt", "omega",
            "hist")
    out: dict[str, list] = {k: [] for k in keys}
    no_motion = 0
    n_hist = max(lookback, history or lookback)
    hz = np.asarray(horizons, dtype=np.float64)
    sizes = df.groupby("mmsi", sort=True).size()
    starts = np.r_[0, np.cumsum(sizes.to_numpy())]
    df = df.sort_values(["mmsi", "time"], kind="stable")
    cols = {c: df[c].to_numpy(dtype=float) if c in df else None
            for c in ("time", "lat", "lon", "sog", "cog", "heading", "rot", "status")}
    for v, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        if b - a < lookback + 1:
            continue
        t, lat, lon, sog, cog, hdg, rot, status = (None if x is None else x[a:b] for x in cols.values())
        i = np.arange(lookback - 1, b - a - 1)
        moving = ~np.isnan(sog[i]) & ~np.isnan(cog[i])
        no_motion += int((~moving).sum())
        i = i[moving & (sog[i] >= min_sog)]
        target = t[i, None] + hz[None]
        j = np.searchsorted(t, target, side="right") - 1  # [W, H]
        inside = (j + 1 < len(t)).all(1)
        jn = np.minimum(j + 1, len(t) - 1)
        i, j, jn, target = (x[inside & (t[jn] - t[j] <= max_gap).all(1)] for x in (i, j, jn, target))
        if not len(i):
            continue
        w = (target - t[j]) / np.maximum(t[jn] - t[j], 1e-9)
        x, e, n, real = features_at(t, lat, lon, sog, cog, hdg, i, n_hist, rot, status)
        at = np.maximum(i[:, None] - (n_hist - 1) + np.arange(n_hist), 0)
        r = np.full(len(t), np.nan) if rot is None else rot
        hist = np.stack([e, n, t[at] - t[i, None], sog[at], cog[at], r[at]], -1)
        hist[~real] = np.nan  # the raw history has no padding: the Kalman filters skip NaN rows
        for k, val in (("x", x), ("mmsi", np.full(len(i), sizes.index[v])), ("t0", t[i]), ("lat0", lat[i]),
                       ("lon0", lon[i]), ("sog0", sog[i]), ("cog0", cog[i]),
                       ("true_lat", lat[j] + w * (lat[jn] - lat[j])), ("true_lon", lon[j] + w * (lon[jn] - lon[j])),
                       ("prev_en", np.stack([e[:, -2], n[:, -2]], 1)), ("prev_dt", t[i - 1] - t[i]),
                       ("omega", turn_rates(t, hdg, cog, i, rot=rot)), ("hist", hist)):
            out[k].append(val)
    if not out["x"]:
        return {}
    return {k: np.concatenate(v).astype(np.float32 if k == "x" else np.float64 if k != "mmsi" else np.int64)
            for k, v in out.items()} | {"no_motion": no_motion}


def mirrored(s: dict) -> dict:
    """The windows ``s`` reflected about each vessel's course at its last report: a turn to port becomes the same
    turn to starboard (cross-track, the sines of the course and heading offsets and the rate of turn change sign;
    every east/north displacement is reflected about the course line). Training-only augmentation: a mirrored
    window keeps the original's lat / lon fields, which only scoring reads."""
    out = dict(s)
    x = s["x"].copy()
    for f in ("cross_km", "sin_dcog", "sin_dhdg", "rot"):
        x[..., FEATURES.index(f)] *= -1
    out["x"], out["omega"] = x, -s["omega"]
    c = np.deg2rad(s["cog0"])
    u = np.stack([np.sin(c), np.cos(c)], -1)  # the course's unit vector (east, north)

    def reflect(v):  # v[W, ..., 2] -> 2 (v . u) u - v
        uu = u.reshape(len(u), *([1] * (v.ndim - 2)), 2)
        return 2 * (v * uu).sum(-1, keepdims=True) * uu - v

    for k in ("true_en", "dr", "base", "prev_en"):
        if k in s:
            out[k] = reflect(s[k])
    if "hist" in s:  # raw reports: positions reflected, courses mirrored about the last course, turns reversed
        h = s["hist"].copy()
        h[..., :2] = reflect(h[..., :2])
        h[..., 4] = (2 * s["cog0"][:, None] - h[..., 4]) % 360
        h[..., 5] *= -1
        out["hist"] = h
    return out


class AISData(pl.LightningDataModule):
    """Raw AIS -> clean tracks -> windows, split by vessel. Batches: (x[B, L, F] normalised, base[B, H, 2] the
    displacement the model corrects (dead reckoning or the damped turn; east/north m), target[B, H, 2] true displacement (m), cog[B] the last COG (deg),
    index[B] into the split's arrays).

    Args:
        path: an AIS file, a folder or a glob (NMEA, plain or gzip, or CSV; sniffed); default: the DMA log.
        columns: a CSV's columns, id=COL,time=COL,lat=COL,lon=COL[,sog=COL,cog=COL].
        time_format: strftime format of a CSV's time column.
        time_source: receive (the receiver's clock) or message_second (plain !AIVDM lines; needs day).
        day: YYYY-MM-DD, the day of a log timed by the in-message second.
        lookback: reports per window (L): a window needs this many.
        history: reports the model sees (>= lookback): the window's and up to history - lookback earlier ones where
            the vessel has them, front-padded by repeating the track's first report; 20 won on validation over 10 (README).
        horizons: seconds after the last report to forecast.
        max_gap: longest gap (s) between the two reports a target is interpolated from.
        min_sog: windows end at reports with at least this speed (knots).
        base: what learned models correct: dr (dead reckoning) or turn (the damped turn, tau chosen on validation).
        mirror: add every training window's mirror image (a port turn as a starboard one) to the training split
            (won on validation; README).
        split: vessel:K (5 grouped folds by md5 of the MMSI, fold K tested) or time.
        batch_size: windows per batch.
        streams: independent shuffles of the training windows per batch, one per ensemble member: a batch is
            ``streams`` equal chunks, member k trains on chunk k, so members see the data in their own order as
            separately trained models would (:class:`StreamBatches`).
    """

    def __init__(self, path: str | None = None, columns: str | None = None, time_format: str | None = None,
                 time_source: str = "receive", day: str | None = None, lookback: int = 10,
                 history: int = 20, horizons: list[int] = (30, 60, 120), max_gap: float = 60.0, min_sog: float = 1.0,
                 base: Literal["dr", "turn"] = "dr", mirror: bool = True, split: str = "vessel:0",
                 batch_size: int = 64, streams: int = 1):
        super().__init__()
        self.streams = int(streams)
        if lookback < 2:
            raise DataError(f"lookback must be >= 2 reports, got {lookback}")
        if history < lookback:
            raise DataError(f"history must be >= lookback ({lookback}) reports, got {history}")
        if not horizons or any(int(h) <= 0 for h in horizons):
            raise DataError(f"horizons must be positive seconds, got {horizons}")
        kind, _, arg = split.partition(":")
        if kind not in ("vessel", "time") or (kind == "vessel" and arg not in "01234"):
            raise DataError(f"unknown split {split!r}: vessel:K (K = 0..4) or time")
        self.path, self.columns, self.time_format, self.time_source, self.day = path, columns, time_format, \
            time_source, day
        self.lookback, self.history, self.horizons = int(lookback), int(history), tuple(int(h) for h in horizons)
        self.max_gap, self.min_sog, self.split, self.batch_size = float(max_gap), float(min_sog), split, batch_size
        if base not in ("dr", "turn"):
            raise DataError(f"unknown base {base!r}: dr or turn")
        self.base, self.mirror = base, bool(mirror)
        self.sets: dict[str, dict] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        self.files = resolve_paths(self.path)
        frames, stats = [], IngestStats()
        for f in self.files:
            df, st = read(f, self.columns, self.time_format, self.time_source, self.day)
            frames.append(df)
            stats.add(st)
        reports = pd.concat(frames, ignore_index=True)
        where = ", ".join(map(str, self.files))
        if reports.empty:
            raise DataError(f"{where}: no usable position reports")
        self.ingest = stats
        try:
            self.tracks, self.counts = clean(reports, mmsi_rule=not parse_columns(self.columns))
        except DataError as e:
            raise DataError(f"{where}: {e}") from None
        w = make_windows(self.tracks, self.lookback, self.horizons, self.max_gap, self.min_sog, self.history)
        self.counts["windows_without_sog_cog"] = w.pop("no_motion", 0)
        if not w:
            raise DataError(f"{', '.join(map(str, self.files))}: no vessel has {self.lookback} reports followed by "
                            f"reports {max(self.horizons)} s later (moving, gaps <= {self.max_gap:g} s)")
        parts = self._assign(w)
        for name, idx in parts.items():
            if len(idx) == 0:
                raise DataError(f"split {self.split}: the {name} split has no windows ({len(w['x'])} in all)")
        dr_all = dead_reckoning(w["sog0"], w["cog0"], self.horizons)
        e, n = to_local(w["true_lat"], w["true_lon"], w["lat0"][:, None], w["lon0"][:, None])
        true_all = np.stack([e, n], -1)
        for name, idx in parts.items():
            self.sets[name] = {k: v[idx] for k, v in w.items()} | {"dr": dr_all[idx], "true_en": true_all[idx]}
        self.turn_tau = self._choose_turn_tau()
        self.kalman = kalman.tune(self.sets["val"], self.horizons)  # the filters' noise levels, on validation
        for v in self.sets.values():
            v["base"] = base_displacement(self.base, v["sog0"], v["cog0"], v["omega"], self.horizons, self.turn_tau)
        if self.mirror:
            tr, mi = self.sets["train"], mirrored(self.sets["train"])
            self.sets["train"] = {k: np.concatenate([tr[k], mi[k]]) for k in tr}
        x_train = self.sets["train"]["x"].reshape(-1, len(FEATURES))
        self.mean, self.std = x_train.mean(0), x_train.std(0) + 1e-6
        self.mean[list(FLAGS)], self.std[list(FLAGS)] = 0.0, 1.0  # flags stay 0/1
        resid = self.sets["train"]["true_en"] - self.sets["train"]["base"]  # the norm is the same in the track frame
        self.target_scale = np.sqrt((resid ** 2).mean(axis=(0, 2))) + 1.0  # metres per horizon, train only

    def _choose_turn_tau(self) -> float:
        """The damped-turn baseline's time constant with the lowest mean error on the *validation* windows."""
        v = self.sets["val"]
        errs = [np.mean(np.linalg.norm(damped_turn(v["sog0"], v["cog0"], v["omega"], self.horizons, tau)
                                       - v["true_en"], axis=-1)) for tau in TURN_TAUS]
        return float(TURN_TAUS[int(np.argmin(errs))])

    def _assign(self, w: dict) -> dict[str, np.ndarray]:
        kind, _, arg = self.split.partition(":")
        fold = vessel_fold(w["mmsi"]) % 5
        k = int(arg or 0)
        sub = vessel_fold(w["mmsi"], salt=f"val{k}") % 8  # each fold its own validation vessels
        test, val = fold == k, (fold != k) & (sub == 0)
        train = ~test & ~val
        if kind == "time":
            t0, t1 = w["t0"].min(), w["t0"].max()
            gap = max(self.horizons)
            a, b = t0 + 0.6 * (t1 - t0), t0 + 0.8 * (t1 - t0)
            train &= w["t0"] + gap <= a
            val &= (w["t0"] >= a + gap) & (w["t0"] + gap <= b)
            test &= w["t0"] >= b + gap
        return {n: np.flatnonzero(m) for n, m in (("train", train), ("val", val), ("test", test))}

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def dataset(self, name: str) -> TensorDataset:
        s = self.sets[name]
        return TensorDataset(torch.from_numpy(self.normalise(s["x"])), torch.from_numpy(s["base"]).float(),
                             torch.from_numpy(s["true_en"]).float(), torch.from_numpy(s["cog0"]).float(),
                             torch.arange(len(s["x"])))

    def fingerprint(self) -> dict:
        return {"files": ",".join(str(f) for f in self.files)[:480],
                "sha256": ",".join(sha256(f)[:16] for f in self.files)[:480], "split": self.split,
                **{f"windows_{k}": len(v["x"]) for k, v in self.sets.items()},
                **{f"vessels_{k}": int(len(np.unique(v["mmsi"]))) for k, v in self.sets.items()},
                **{f"ingest_{k}": v for k, v in self.ingest.as_dict().items()},
                **{f"clean_{k}": v for k, v in self.counts.items()}}

    def train_dataloader(self):
        ds = self.dataset("train")
        if self.streams == 1:
            return DataLoader(ds, batch_size=self.batch_size, shuffle=True)
        return DataLoader(ds, batch_sampler=StreamBatches(SequentialSampler(ds), self.batch_size, streams=self.streams))

    def val_dataloader(self):
        return DataLoader(self.dataset("val"), batch_size=1024)

    def test_dataloader(self):
        return DataLoader(self.dataset("test"), batch_size=1024)


class StreamBatches(BatchSampler):
    """Batches of ``streams`` chunks, chunk k the next ``batch_size`` indices of the k-th of ``streams`` independent
    shuffles (drawn each epoch) of the indices ``sampler`` yields: [streams * b] indices, every chunk the same size b.
    A ``BatchSampler`` so Lightning can put a DistributedSampler in ``sampler``: each process shuffles its shard."""

    def __init__(self, sampler, batch_size: int, drop_last: bool = False, streams: int = 1):
        super().__init__(sampler, batch_size, drop_last)
        self.streams = streams

    def __iter__(self):
        idx = torch.tensor(list(self.sampler), dtype=torch.long)
        perms = [idx[torch.randperm(len(idx))] for _ in range(self.streams)]
        stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        for i in range(0, stop, self.batch_size):
            yield torch.cat([p[i: i + self.batch_size] for p in perms]).tolist()
