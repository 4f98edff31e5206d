"""AIS as users have it -> one table of position reports: raw NMEA (:mod:`apps.ais.nmea`) or CSV
(:mod:`apps.ais.tabular`), each file's format sniffed from its content; a zip's files are read one after another.
The columns are :data:`apps.ais.files.COLUMNS`; what was skipped is counted in :class:`apps.ais.files.IngestStats`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from apps.ais.files import BOM, IngestStats, members, open_first
from apps.ais.nmea import read_nmea
from apps.ais.tabular import parse_columns, read_csv
from core.datadir import DataError


def sniff(path: Path, opener=None) -> str:
    """``nmea`` or ``csv`` from the first non-empty line of the file (gzip or not, a byte-order mark ignored)."""
    with (opener or (lambda: open_first(path)))() as f:
        for raw in f:
            line = raw.strip().removeprefix(BOM)
            if line:
                if line[:1] in (b"!", b"$", b"\\"):
                    return "nmea"
                if b"," in line:
                    return "csv"
                break
    raise DataError(f"{path}: neither NMEA (lines starting with '!', '$' or '\\\\') nor CSV (comma-separated)")



def read(path: str | Path, columns=None, time_format: str | None = None, time_source: str = "receive",
         day: str | None = None) -> tuple[pd.DataFrame, IngestStats]:
    """One file (or every file of a zip), each one's format sniffed from its content."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    frames, stats = [], IngestStats()
    for name, opener in members(path):
        if sniff(Path(name), opener) == "csv":
            df, st = read_csv(Path(name), parse_columns(columns), time_format, opener)
        else:
            df, st = read_nmea(Path(name), time_source, day, opener)
        frames.append(df)
        stats.add(st)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0], stats
