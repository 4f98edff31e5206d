"""AIS as users have it -> one table of position reports. Raw NMEA (decoded with pyais) and CSV.

NMEA lines are read in arrival order; the receive time of a message comes from, in this order of preference:

- a Gatehouse ``$PGHP,1,yyyy,m,d,H,M,S,ms,...`` line before it (DMA's terrestrial network);
- an NMEA 4.0 tag block ``\\s:station,c:<unix>*hh\\!AIVDM,...`` (``c`` in seconds, or milliseconds when > 1e11);
- a unix time after the checksum, ``!AIVDM,...,0*0F,1276256770``.

Plain ``!AIVDM`` lines have no receive time: they decode, but tracks need ``time_source="message_second"`` (the
UTC second inside the message, on a reference day you give), else :class:`~core.datadir.DataError` says so.
Multi-part messages are assembled as pyais's stream reader does (same slot key, fragments strictly in order,
``NMEAMessage.assemble_from_iterable``); only position reports (types 1, 2, 3, 18, 19, 27) are decoded, the
rest are counted by type from the payload's first character. Every line that cannot be used is skipped and
counted: checksum failures, empty payloads, lost fragments, undecodable sentences, other NMEA sentences.

CSV: the DMA daily CSV (``# Timestamp,Type of mobile,MMSI,Latitude,Longitude,...``), NOAA MarineCadastre
(``MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,...``), or any CSV whose columns are named (``columns``).

Output columns: ``mmsi`` (int64), ``time`` (float64 unix seconds), ``lat``, ``lon``, ``sog`` (knots), ``cog``
(degrees), ``heading`` (degrees), ``msg_type``, ``second`` (the UTC second field; -1 when unknown), NaN where a
value is absent. Sentinels (lat 91, lon 181, SOG 102.3, COG 360, heading 511) are left for ``clean.py``.
"""
from __future__ import annotations

import calendar
import gzip
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.datadir import DataError

POSITION_TYPES = (1, 2, 3, 18, 19, 27)
_TRAILING_TIME = re.compile(rb"^(!.*\*[0-9A-Fa-f]{2}),(\d{9,13}(?:\.\d+)?)$")


@dataclass
class IngestStats:
    """What reading a source saw; every skipped line is in one of these counts."""

    lines: int = 0
    sentences: int = 0
    messages: int = 0
    position_reports: int = 0
    checksum_errors: int = 0
    empty_payloads: int = 0
    lost_fragments: int = 0
    decode_errors: int = 0
    no_receive_time: int = 0
    other_nmea: int = 0
    other_types: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "other_types"}
        d["other_message_types"] = sum(self.other_types.values())
        return d


def _open(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def sniff(path: Path) -> str:
    """``nmea`` or ``csv`` from the first non-empty line of the file (gzip or not)."""
    with _open(path) as f:
        for raw in f:
            line = raw.strip()
            if line:
                if line[:1] in (b"!", b"$", b"\\"):
                    return "nmea"
                if b"," in line:
                    return "csv"
                break
    raise DataError(f"{path}: neither NMEA (lines starting with '!', '$' or '\\\\') nor CSV (comma-separated)")


def _msg_type(payload: bytes) -> int:
    c = payload[0] - 48
    return c - 8 if c > 40 else c


def _gatehouse_time(line: bytes) -> float | None:
    f = line.split(b"*")[0].split(b",")
    try:
        y, mo, d, h, mi, s, ms = (int(v) for v in f[2:9])
        return calendar.timegm((y, mo, d, h, mi, s)) + ms / 1000.0
    except (ValueError, IndexError):
        return None


def _tag_time(block: bytes) -> float | None:
    for part in block.split(b"*")[0].split(b","):
        if part.startswith(b"c:"):
            try:
                v = float(part[2:])
            except ValueError:
                return None
            return v / 1000.0 if v > 1e11 else v
    return None


def read_nmea(path: Path, time_source: str = "receive", day: str | None = None) -> tuple[pd.DataFrame, IngestStats]:
    """Stream a raw NMEA log (plain or gzip) -> (position reports, stats). See the module docstring."""
    from pyais.exceptions import InvalidNMEAMessageException, UnknownMessageException
    from pyais.messages import AISSentence, NMEAMessage, NMEASentenceFactory

    if time_source not in ("receive", "message_second"):
        raise DataError(f"unknown time_source {time_source!r}: receive or message_second")
    st = IngestStats()
    cols: dict[str, list] = {k: [] for k in ("mmsi", "time", "lat", "lon", "sog", "cog", "heading", "msg_type",
                                             "second")}
    pending_time: float | None = None
    buffer: dict[tuple, tuple[list, float | None]] = {}
    nan = float("nan")

    def emit(msg, t):
        st.messages += 1
        mt = _msg_type(msg.payload) if msg.payload else -1
        if mt not in POSITION_TYPES:
            st.other_types[mt] += 1
            return
        try:
            d = msg.decode()
        except Exception:  # noqa: BLE001 - pyais raises several types for malformed payloads
            st.decode_errors += 1
            return
        if t is None:
            st.no_receive_time += 1
            if time_source == "receive":
                return
        st.position_reports += 1
        cols["mmsi"].append(d.mmsi)
        cols["time"].append(nan if t is None else t)
        cols["lat"].append(d.lat if d.lat is not None else nan)
        cols["lon"].append(d.lon if d.lon is not None else nan)
        cols["sog"].append(getattr(d, "speed", None) if getattr(d, "speed", None) is not None else nan)
        cols["cog"].append(getattr(d, "course", None) if getattr(d, "course", None) is not None else nan)
        hd = getattr(d, "heading", None)
        cols["heading"].append(float(hd) if hd is not None else nan)
        cols["msg_type"].append(mt)
        sec = getattr(d, "second", None)
        cols["second"].append(int(sec) if sec is not None else -1)

    with _open(path) as f:
        for raw in f:
            st.lines += 1
            line = raw.strip()
            if not line:
                continue
            if line.startswith(b"$PGHP"):
                pending_time = _gatehouse_time(line)
                if pending_time is None:
                    st.decode_errors += 1
                continue
            t = pending_time
            if line.startswith(b"\\"):
                end = line.find(b"\\", 1)
                if end < 0:
                    st.decode_errors += 1
                    continue
                tag, line = line[1:end], line[end + 1:]
                if not line:  # a tag-block-only line (DMA's \si:AISD*3F\)
                    continue
                t = _tag_time(tag) if _tag_time(tag) is not None else t
            if line.startswith(b"$"):
                st.other_nmea += 1
                pending_time = None
                continue
            if not line.startswith(b"!"):
                st.decode_errors += 1
                continue
            m = _TRAILING_TIME.match(line)
            if m:
                line, t = m.group(1), float(m.group(2))
            st.sentences += 1
            try:
                s = NMEASentenceFactory.produce(line)
            except (InvalidNMEAMessageException, UnknownMessageException, ValueError, IndexError):
                st.decode_errors += 1
                continue
            if not isinstance(s, AISSentence):
                st.other_nmea += 1
                continue
            if not s.is_valid:
                st.checksum_errors += 1
                continue
            if not s.payload:
                st.empty_payloads += 1
                continue
            if s.frag_cnt <= 1:  # single (some talkers number single-sentence messages too: "1,1,4")
                pending_time = None
                emit(s, t)
                continue
            slot = (s.seq_id if s.seq_id is not None else -1, s.channel, s.talker_id, s.type, s.frag_cnt)
            if s.frag_num == 1:
                if slot in buffer:
                    st.lost_fragments += 1  # an unfinished message is overwritten
                buffer[slot] = ([s], t)
                pending_time = None
                continue
            parts, t0 = buffer.get(slot, (None, None))
            if parts is None or s.frag_num != len(parts) + 1:
                st.lost_fragments += 1
                continue
            parts.append(s)
            if len(parts) == s.frag_cnt:
                del buffer[slot]
                try:
                    emit(NMEAMessage.assemble_from_iterable(parts), t0)
                except (InvalidNMEAMessageException, ValueError):
                    st.decode_errors += 1
    st.lost_fragments += len(buffer)
    df = pd.DataFrame(cols)
    df["mmsi"] = df["mmsi"].astype("int64")
    df["msg_type"] = df["msg_type"].astype("int16")
    if time_source == "message_second":
        if day is None:
            raise DataError(f"{path}: time_source message_second needs day=YYYY-MM-DD (the in-message UTC second "
                            f"gives only the second within a minute)")
        base = pd.Timestamp(day, tz="UTC").timestamp()
        df["time"] = base + np.where(df["second"] < 60, df["second"], np.nan)  # seconds only: a coarse clock
    elif st.position_reports == 0 and st.no_receive_time:
        raise DataError(f"{path}: {st.no_receive_time} position reports but no receive times (no $PGHP lines, tag "
                        f"blocks with c:, or times after the checksum); tracks need times: set "
                        f"--data.time_source message_second with --data.day YYYY-MM-DD to use the in-message second")
    return df, st


# ---------------------------------------------------------------- CSV
CSV_LAYOUTS = {
    "dma": {"id": "MMSI", "time": "# Timestamp", "lat": "Latitude", "lon": "Longitude", "sog": "SOG", "cog": "COG",
            "heading": "Heading", "time_format": "%d/%m/%Y %H:%M:%S"},
    "noaa": {"id": "MMSI", "time": "BaseDateTime", "lat": "LAT", "lon": "LON", "sog": "SOG", "cog": "COG",
             "heading": "Heading", "time_format": "%Y-%m-%dT%H:%M:%S"},
}


def parse_columns(spec: str | dict | None) -> dict | None:
    """``"id=MMSI,time=ts,lat=Lat,lon=Lon[,sog=..,cog=..]"`` -> dict (or a dict as given)."""
    if spec is None or isinstance(spec, dict):
        return spec
    out = {}
    for part in str(spec).split(","):
        k, eq, v = part.partition("=")
        if not eq or k.strip() not in ("id", "time", "lat", "lon", "sog", "cog", "heading"):
            raise DataError(f"--data.columns: {part!r} is not NAME=COLUMN with NAME one of id, time, lat, lon, sog, "
                            f"cog, heading")
        out[k.strip()] = v.strip()
    return out


def read_csv(path: Path, columns: dict | None = None, time_format: str | None = None) -> tuple[pd.DataFrame, IngestStats]:
    """A DMA / NOAA CSV (recognised by its header) or one whose columns are named -> (position reports, stats)."""
    with _open(path) as f:
        text = f.read().decode("utf-8", errors="replace")
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from e
    header = list(df.columns)
    layout = dict(columns) if columns else next((dict(v) for v in CSV_LAYOUTS.values()
                                                 if all(v[k] in header for k in ("id", "time", "lat", "lon"))), None)
    if layout is None:
        raise DataError(f"{path}: unknown CSV layout (columns {header[:8]}...); name the columns with "
                        f"--data.columns id=COL,time=COL,lat=COL,lon=COL[,sog=COL,cog=COL]")
    fmt = time_format or layout.pop("time_format", None)
    layout.pop("time_format", None)
    missing = [f"{k}={layout[k]!r}" for k in ("id", "time", "lat", "lon") if layout.get(k) not in header]
    if missing:
        raise DataError(f"{path}: line 1: required column(s) {', '.join(missing)} not in the header {header}")
    st = IngestStats(lines=len(df) + 1, messages=len(df))
    out = pd.DataFrame(index=df.index)
    for k in ("id", "lat", "lon", "sog", "cog", "heading"):
        c = layout.get(k)
        if c is None or c not in header:
            out[k] = np.nan
            continue
        raw = df[c].str.strip()
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & (raw != "") if k in ("sog", "cog", "heading") else num.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: line {i + 2}, column {c!r}: {df[c].iloc[i]!r} is not a number")
        out[k] = num.astype("float64")
    t = pd.to_datetime(df[layout["time"]].str.strip(), format=fmt, errors="coerce", utc=True)
    if t.isna().any():
        i = int(np.flatnonzero(t.isna().to_numpy())[0])
        raise DataError(f"{path}: line {i + 2}, column {layout['time']!r}: {df[layout['time']].iloc[i]!r} is not a "
                        f"time{f' in the format {fmt!r}' if fmt else ''} (--data.time_format)")
    out["time"] = (t - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds()
    out = out.rename(columns={"id": "mmsi"})
    out["mmsi"] = out["mmsi"].astype("int64")
    out["msg_type"] = np.int16(-1)
    out["second"] = -1
    st.position_reports = len(out)
    return out[["mmsi", "time", "lat", "lon", "sog", "cog", "heading", "msg_type", "second"]], st


def read(path: str | Path, columns=None, time_format: str | None = None, time_source: str = "receive",
         day: str | None = None) -> tuple[pd.DataFrame, IngestStats]:
    """One file, its format sniffed from the content."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    if sniff(path) == "csv":
        return read_csv(path, parse_columns(columns), time_format)
    return read_nmea(path, time_source, day)
