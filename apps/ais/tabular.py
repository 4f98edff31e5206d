"""AIS as CSV -> position reports: the DMA daily CSV (``# Timestamp,Type of mobile,MMSI,Latitude,Longitude,...``),
NOAA MarineCadastre (``MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,...``), or any CSV whose columns are named
(``columns``).

The CSV is read in chunks (memory follows the reports kept, not the text), with or without a UTF-8 byte-order mark. A
row that cannot be read (a value that is not a number, a time that does not parse) is skipped and counted like an
undecodable NMEA line (``bad_rows``, the first one quoted in ``first_bad``).
"""
from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from apps.ais.files import COLUMNS, IngestStats, open_first
from core.datadir import DataError

CSV_LAYOUTS = {
    "dma": {"id": "MMSI", "time": "# Timestamp", "lat": "Latitude", "lon": "Longitude", "sog": "SOG", "cog": "COG",
            "heading": "Heading", "rot": "ROT", "status": "Navigational status", "time_format": "%d/%m/%Y %H:%M:%S"},
    "noaa": {"id": "MMSI", "time": "BaseDateTime", "lat": "LAT", "lon": "LON", "sog": "SOG", "cog": "COG",
             "heading": "Heading", "status": "Status", "time_format": "%Y-%m-%dT%H:%M:%S"},
}
NAMES = ("id", "time", "lat", "lon", "sog", "cog", "heading", "rot", "status")
# DMA's CSVs spell the navigation status out; the codes are ITU-R M.1371's
STATUS_TEXT = {"under way using engine": 0, "at anchor": 1, "not under command": 2, "restricted maneuverability": 3,
               "restricted manoeuvrability": 3, "constrained by her draught": 4, "moored": 5, "aground": 6,
               "engaged in fishing": 7, "under way sailing": 8, "unknown value": 15, "undefined": 15}


def parse_columns(spec: str | dict | None) -> dict | None:
    """``"id=MMSI,time=ts,lat=Lat,lon=Lon[,sog=..,cog=..,heading=..,rot=..,status=..]"`` -> dict (or as given)."""
    if spec is None or isinstance(spec, dict):
        return spec
    out = {}
    for part in str(spec).split(","):
        k, eq, v = part.partition("=")
        if not eq or k.strip() not in NAMES:
            raise DataError(f"--data.columns: {part!r} is not NAME=COLUMN with NAME one of {', '.join(NAMES)}")
        out[k.strip()] = v.strip()
    return out


CHUNK_ROWS = 250_000  # a CSV is read this many rows at a time: memory follows the reports kept, not the text


def read_csv(path: Path, columns: dict | None = None, time_format: str | None = None,
             opener=None, chunk_rows: int = CHUNK_ROWS) -> tuple[pd.DataFrame, IngestStats]:
    """A DMA / NOAA CSV (recognised by its header) or one whose columns are named -> (position reports, stats), read
    in chunks of ``chunk_rows``. With named columns the id is the user's (integers, or text numbered 1, 2, ... in
    order of appearance: decided by the first chunk) and is not held to the MMSI rule. Rows with a value that does
    not parse are skipped and counted."""
    with (opener or (lambda: open_first(path)))() as f:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="replace")
        try:
            chunks = pd.read_csv(text, dtype=str, keep_default_na=False, chunksize=chunk_rows)
            first = next(chunks)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, StopIteration) as e:
            raise DataError(f"{path}: not a readable CSV ({e or 'no rows'})") from e
        header = list(first.columns)
        layout = dict(columns) if columns else next((dict(v) for v in CSV_LAYOUTS.values()
                                                     if all(v[k] in header for k in ("id", "time", "lat", "lon"))),
                                                    None)
        if layout is None:
            raise DataError(f"{path}: unknown CSV layout (columns {header[:8]}...); name the columns with "
                            f"--data.columns id=COL,time=COL,lat=COL,lon=COL[,sog=COL,cog=COL]")
        fmt = time_format or layout.pop("time_format", None)
        layout.pop("time_format", None)
        missing = [f"{k}={layout[k]!r}" for k in ("id", "time", "lat", "lon") if layout.get(k) not in header]
        if missing:
            raise DataError(f"{path}: line 1: required column(s) {', '.join(missing)} not in the header {header}")
        st, frames, line = IngestStats(lines=1), [], 2
        text_ids: dict | None = None  # user ids that are not integers: text -> number, across chunks
        if columns:
            raw = first[layout["id"]].str.strip()
            num = pd.to_numeric(raw, errors="coerce")
            text_ids = {} if num.isna().any() or (num % 1 != 0).any() else None
        try:
            for df in itertools.chain([first], chunks):
                frames.append(_csv_chunk(df, layout, fmt, text_ids, line, st, path))
                line += len(df)
        except pd.errors.ParserError as e:
            raise DataError(f"{path}: not a readable CSV after line {line} ({e})") from e
    out = pd.concat(frames, ignore_index=True)
    if out.empty:
        raise DataError(f"{path}: no readable row ({st.bad_rows} rows; the first: {st.first_bad.split(': ', 1)[-1]})")
    out["mmsi"] = out["mmsi"].astype("int64")
    out["msg_type"] = np.int16(-1)
    out["second"] = -1
    st.position_reports = len(out)
    return out[list(COLUMNS)], st


def _csv_chunk(df: pd.DataFrame, layout: dict, fmt: str | None, text_ids: dict | None, line: int,
               st: IngestStats, path: Path) -> pd.DataFrame:
    """One chunk of CSV rows (the first at file line ``line``) -> its readable reports; ``st`` counts the rest."""
    header = list(df.columns)
    st.lines += len(df)
    st.messages += len(df)
    out = pd.DataFrame(index=df.index)
    bad = pd.Series("", index=df.index)  # why each skipped row was skipped (the first reason)

    def mark(rows, why):
        rows = rows & (bad == "")
        bad[rows] = why

    for k in ("id", "lat", "lon", "sog", "cog", "heading", "rot", "status"):
        c = layout.get(k)
        if c is None or c not in header:
            out[k] = np.nan
            continue
        raw = df[c].str.strip()
        if k == "status" and c == CSV_LAYOUTS["dma"]["status"] and layout.get("time") == CSV_LAYOUTS["dma"]["time"]:
            out[k] = raw.str.lower().map(STATUS_TEXT).astype("float64")  # text; one it does not know: not available
            continue
        if k == "id" and text_ids is not None:
            num = raw.map(lambda v: text_ids.setdefault(v, len(text_ids) + 1) if v else np.nan).astype("float64")
        else:
            num = pd.to_numeric(raw, errors="coerce")
        unreadable = num.isna() & (raw != "") if k in ("sog", "cog", "heading", "rot", "status") else num.isna()
        for i in np.flatnonzero(unreadable.to_numpy())[:1]:
            mark(unreadable, f"line {line + i}, column {c!r}: {df[c].iloc[i]!r} is not a number")
        mark(unreadable, f"column {c!r}: not a number")
        out[k] = num.astype("float64")
    t = pd.to_datetime(df[layout["time"]].str.strip(), format=fmt, errors="coerce", utc=True)
    for i in np.flatnonzero(t.isna().to_numpy())[:1]:
        mark(t.isna(), f"line {line + i}, column {layout['time']!r}: {df[layout['time']].iloc[i]!r} is not a time"
                       f"{f' in the format {fmt!r}' if fmt else ''} (--data.time_format)")
    out["time"] = (t - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
    skipped = (bad != "").to_numpy()
    if skipped.any():
        st.bad_rows += int(skipped.sum())
        st.first_bad = st.first_bad or f"{path}: {bad[skipped].iloc[0]}"
    return out[~skipped].rename(columns={"id": "mmsi"})
