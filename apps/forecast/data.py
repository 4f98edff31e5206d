"""Time-Series-Library (TSLib) CSVs as a LightningDataModule, with the TSLib protocol done right.

Layout: a ``date`` column then numeric columns, one row per time step (ETT, Weather, ECL, ...).
Splits (Zhou et al. 2021 / TSLib ``Dataset_ETT_hour``, ``Dataset_Custom``):

- ETT hourly: train rows [0, 12*30*24), val [12*30*24 - L, 16*30*24), test [16*30*24 - L, 20*30*24)
  (15-minute ETTm: the same borders times 4); any other CSV: 70/10/20 by rows, val/test windows
  starting L rows early so their first target follows the split border.
- StandardScaler fitted on the train rows only; metrics are reported on that scale.
- Time features ("timeF"): calendar fields scaled to [-0.5, 0.5], fed as extra variate tokens.
- Every window is evaluated: no dropped last batch in val/test.
- ``features`` as TSLib: ``M`` all columns in, all out; ``S`` the ``target`` column alone; ``MS`` all columns in
  (the target moved last, as TSLib's ``Dataset_Custom`` does), the target alone scored.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from core.datadir import DataError, RemoteFile, data_dir, fetch, sha256

_ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{}.csv"
DATASETS: dict[str, RemoteFile] = {
    "ETTh1": RemoteFile("forecast/ETTh1.csv", _ETT_URL.format("ETTh1"),
                        "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"),
    "ETTh2": RemoteFile("forecast/ETTh2.csv", _ETT_URL.format("ETTh2"),
                        "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b"),
}


SHIPPED = Path(__file__).resolve().parent / "datasets"  # ETTh1, the default job's input (datasets/README.md)


def resolve(data: str) -> Path:
    """A registered dataset name (``ETTh1``) or a path to a CSV.

    A name is looked up in the data directory first, then among the files shipped with the package (ETTh1, its
    sha256 checked), and only then downloaded.
    """
    if data in DATASETS:
        remote = DATASETS[data]
        in_data_dir = data_dir() / remote.relpath
        shipped = SHIPPED / Path(remote.relpath).name
        if not in_data_dir.exists() and shipped.is_file():
            if sha256(shipped) != remote.sha256:
                raise DataError(f"{shipped}: sha256 does not match the published {data} ({remote.sha256}); "
                                f"the shipped file was modified")
            return shipped
        return fetch(remote)
    path = Path(data).expanduser()
    if path.suffix.lower() == ".csv" or path.exists():
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        return path.resolve()
    raise DataError(f"unknown dataset {data!r}: not a registered name ({', '.join(DATASETS)}) and not a CSV path")


# ---------------------------------------------------------------- reading and validation
_MISSING = ["", "nan", "na", "null", "inf", "-inf", "+inf", "infinity", "-infinity"]


def read_csv(path: Path) -> tuple[pd.DatetimeIndex, np.ndarray, list[str]]:
    """Read and validate a TSLib CSV -> (dates, values[T, N] float32, column names). Raises DataError."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from e
    return validate_frame(df, str(path))


def validate_frame(df: pd.DataFrame, source: str, columns: list[str] | None = None):
    """Check a frame with a date column and numeric columns -> (dates, values float32, columns).

    ``columns`` (when given) are the value columns required, in that order. Errors name ``source``,
    the line (header = line 1) and the column.
    """
    cols = [str(c) for c in df.columns]
    date_col = next((c for c in df.columns if str(c).strip().lower() == "date"), None)
    if date_col is None:
        raise DataError(f"{source}: no date column; expected a column named 'date' (Time-Series-Library layout), "
                        f"found columns {cols}")
    if columns is None:
        values = [c for c in df.columns if c != date_col]
    else:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError(f"{source}: missing columns {missing}; the model was trained on {columns}")
        values = list(columns)
    if not values:
        raise DataError(f"{source}: no value columns besides {date_col!r}")
    dates = pd.to_datetime(df[date_col], errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{source}: line {i + 2}, column {date_col!r}: {df[date_col].iloc[i]!r} is not a date")
    raw = df[values].astype(str)
    num = raw.apply(pd.to_numeric, errors="coerce")
    arr = num.to_numpy(dtype=np.float64)
    literal = raw.apply(lambda c: c.str.strip().str.lower().isin(_MISSING)).to_numpy()
    for what, mask in (("is not a number", num.isna().to_numpy() & ~literal),
                       ("is missing, NaN or infinite", ~np.isfinite(arr))):
        rows, cs = np.nonzero(mask)
        if len(rows):
            r, c = int(rows[0]), int(cs[0])
            raise DataError(f"{source}: line {r + 2}, column {values[c]!r}: {raw[values[c]].iloc[r]!r} {what} "
                            f"({len(rows)} such cells)")
    if not dates.is_monotonic_increasing:
        i = int(np.flatnonzero(np.diff(dates.to_numpy()) <= np.timedelta64(0))[0]) + 1
        raise DataError(f"{source}: line {i + 2}: dates are not increasing ({dates.iloc[i - 1]} then {dates.iloc[i]})")
    return pd.DatetimeIndex(dates), arr.astype(np.float32), [str(v) for v in values]


def select_columns(values: np.ndarray, names: list[str], features: str, target: str, columns: list[str] | None,
                   source: str) -> tuple[np.ndarray, list[str], list[str]]:
    """-> (values[T, N_in], input column names, output column names) for TSLib's M / S / MS."""
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"{source}: --data.columns names {missing}, not in the file's columns {names}")
        keep = list(dict.fromkeys(columns))
    else:
        keep = list(names)
    if features == "M":
        out = keep
    else:
        if target not in names:
            raise DataError(f"{source}: target column {target!r} (--data.target) is not among {names}")
        keep = [target] if features == "S" else [c for c in keep if c != target] + [target]
        out = [target]
    idx = [names.index(c) for c in keep]
    return values[:, idx], keep, out


# ---------------------------------------------------------------- time features (TSLib "timeF")
def infer_freq(dates: pd.DatetimeIndex) -> pd.Timedelta:
    step = pd.Series(dates[1:] - dates[:-1]).mode()
    return step.iloc[0] if len(step) else pd.Timedelta(hours=1)


def time_features(dates: pd.DatetimeIndex, freq: pd.Timedelta) -> np.ndarray:
    """Calendar fields in [-0.5, 0.5], finest first, as TSLib's ``time_features_from_frequency_str``.

    hourly: hour, weekday, day of month, day of year (4); minutely adds minute; daily drops hour.
    """
    feats = []
    if freq < pd.Timedelta(hours=1):
        feats.append(dates.minute / 59.0 - 0.5)
    if freq < pd.Timedelta(days=1):
        feats.append(dates.hour / 23.0 - 0.5)
    feats += [dates.dayofweek / 6.0 - 0.5, (dates.day - 1) / 30.0 - 0.5, (dates.dayofyear - 1) / 365.0 - 0.5]
    return np.stack([np.asarray(f, dtype=np.float32) for f in feats], axis=1)


# ---------------------------------------------------------------- splits
def borders(n_rows: int, lookback: int, kind: str) -> tuple[list[int], list[int]]:
    """Row borders (starts, ends) of train/val/test; val/test start ``lookback`` rows early."""
    if kind in ("ett_hour", "ett_minute"):
        m = 30 * 24 * (4 if kind == "ett_minute" else 1)
        starts, ends = [0, 12 * m - lookback, 16 * m - lookback], [12 * m, 16 * m, 20 * m]
        if n_rows < ends[-1]:
            raise DataError(f"the ETT split needs {ends[-1]} rows, the file has {n_rows}")
        return starts, ends
    n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
    n_val = n_rows - n_train - n_test
    return [0, n_train - lookback, n_rows - n_test - lookback], [n_train, n_train + n_val, n_rows]


def split_kind(path: Path, split: str) -> str:
    if split != "auto":
        return split
    stem = path.stem.lower()
    return "ett_hour" if stem.startswith("etth") else "ett_minute" if stem.startswith("ettm") else "ratio_7_1_2"


@dataclass
class Scaler:
    """StandardScaler fitted on train rows: (x - mean) / std."""
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Scaler":
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std > 0, std, 1.0).astype(np.float32))

    def transform(self, x):
        return (x - self.mean) / self.std

    def inverse(self, x):
        return x * self.std + self.mean


class Windows(Dataset):
    """Sliding windows: (x[L, N], x_mark[L, M], y[H, N]) starting at every row of the split."""

    def __init__(self, values: torch.Tensor, marks: torch.Tensor, lookback: int, horizon: int):
        self.values, self.marks, self.L, self.H = values, marks, lookback, horizon

    def __len__(self):
        return max(0, len(self.values) - self.L - self.H + 1)

    def __getitem__(self, i):
        s = slice(i, i + self.L)
        return self.values[s], self.marks[s], self.values[i + self.L:i + self.L + self.H]


class ForecastData(pl.LightningDataModule):
    """TSLib data: ``ForecastData("ETTh1", lookback=96, horizon=96)`` or any CSV path.

    Batches are ``(x[B, L, N], x_mark[B, L, M], y[B, H, N])`` on the train-fit scale; ``targets`` are the indices of
    the variates that are scored (all for M, the last one for S / MS). Every test window is scored;
    ``test_drop_last=True`` reproduces the Autoformer-era loaders (RTSF's RLinear among them) that drop the last
    incomplete test batch, which on ETTh2 removes its hardest final windows (README, reproduction table).

    Args:
        data: a registered dataset name (ETTh1, ETTh2) or the path of a CSV with a date column.
        lookback: input length L in time steps.
        horizon: forecast length H in time steps.
        batch_size: windows per batch.
        split: row borders: auto (ETT's 12/4/4 months for ETT files, else 70/10/20), ett_hour, ett_minute, ratio_7_1_2.
        time_features: feed TSLib's calendar features (timeF) as extra variate tokens.
        features: M (all columns -> all), S (target -> target) or MS (all columns -> target), as TSLib.
        target: the target column for S / MS.
        columns: use only these value columns (default: all).
        num_workers: DataLoader worker processes.
        test_drop_last: drop the last incomplete test batch, as the Autoformer-era loaders did.
    """

    def __init__(self, data: str = "ETTh1", lookback: int = 96, horizon: int = 96, batch_size: int = 32,
                 split: Literal["auto", "ett_hour", "ett_minute", "ratio_7_1_2"] = "auto", time_features: bool = True,
                 features: Literal["M", "S", "MS"] = "M", target: str = "OT", columns: list[str] | None = None,
                 num_workers: int = 0, test_drop_last: bool = False):
        super().__init__()
        for name, v in (("lookback", lookback), ("horizon", horizon), ("batch_size", batch_size)):
            if not isinstance(v, int) or v <= 0:
                raise DataError(f"{name} must be a positive integer, got {v!r}")
        if split not in ("auto", "ett_hour", "ett_minute", "ratio_7_1_2"):
            raise DataError(f"unknown split {split!r}; use auto, ett_hour, ett_minute or ratio_7_1_2")
        if features not in ("M", "S", "MS"):
            raise DataError(f"unknown features {features!r}; use M, S or MS")
        self.data, self.lookback, self.horizon, self.batch_size = data, lookback, horizon, batch_size
        self.split, self.use_time_features, self.num_workers = split, time_features, num_workers
        self.features, self.target, self.select = features, target, list(columns) if columns else None
        self.test_drop_last = test_drop_last  # the Autoformer-era loaders' protocol; see the README
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        self.path = resolve(self.data)
        dates, values, names = read_csv(self.path)
        values, self.columns, self.out_columns = select_columns(values, names, self.features, self.target,
                                                                self.select, str(self.path))
        self.targets = [self.columns.index(c) for c in self.out_columns]
        self.freq = infer_freq(dates)
        self.kind = split_kind(self.path, self.split)
        try:
            starts, ends = borders(len(values), self.lookback, self.kind)
        except DataError as e:
            raise DataError(f"{self.path}: {e}") from None
        need = self.lookback + self.horizon
        for name, s, e in zip(("train", "val", "test"), starts, ends):
            if e - s < need:
                raise DataError(f"{self.path}: the {name} split has {e - s} rows (rows {s}..{e - 1} of {len(values)}), "
                                f"fewer than lookback + horizon = {need}")
        self.scaler = Scaler.fit(values[starts[0]:ends[0]])
        scaled = torch.from_numpy(self.scaler.transform(values).astype(np.float32))
        marks = torch.from_numpy(time_features(dates, self.freq) if self.use_time_features
                                 else np.zeros((len(values), 0), np.float32))
        self.starts, self.ends, self.dates, self.values = starts, ends, dates, values  # values: original units
        self.sets = {name: Windows(scaled[s:e], marks[s:e], self.lookback, self.horizon)
                     for name, s, e in zip(("train", "val", "test"), starts, ends)}
        self._ready = True

    @property
    def n_vars(self) -> int:
        return len(self.columns)

    @property
    def n_marks(self) -> int:
        return self.sets["train"].marks.shape[1]

    def fingerprint(self) -> dict:
        """What identifies the data a model saw: file hash and split borders."""
        return {"data_file": str(self.path), "data_sha256": sha256(self.path), "split": self.kind,
                "features": self.features, "columns": ",".join(self.columns), "targets": ",".join(self.out_columns),
                "split_starts": list(self.starts), "split_ends": list(self.ends), "rows": len(self.dates)}

    def _loader(self, name: str, shuffle: bool, drop_last: bool = False):
        return DataLoader(self.sets[name], batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False, self.test_drop_last)
