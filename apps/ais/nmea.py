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
(degrees), ``heading`` (degrees), ``rot`` (rate of turn as reported, deg/min, class A only), ``status`` (navigation
status 0-15, class A only), ``msg_type``, ``second`` (the UTC second field; -1 when unknown), NaN where a value is
absent. Sentinels (lat 91, lon 181, SOG 102.3, COG 360, heading 511, ROT -128 / +-127, status 15) are left for
``clean.py``.

A file may be plain, gzip or a zip of such files (DMA publishes its daily CSVs as ``.zip``), with or without a UTF-8
byte-order mark. A CSV row that cannot be read (a value that is not a number, a time that does not parse) is skipped
and counted like an undecodable NMEA line (``bad_rows``, the first one quoted in ``first_bad``).
"""
from __future__ import annotations

import calendar
import gzip
import io
import itertools
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.datadir import DataError

POSITION_TYPES = (1, 2, 3, 18, 19, 27)
COLUMNS = ("mmsi", "time", "lat", "lon", "sog", "cog", "heading", "rot", "status", "msg_type", "second")
DTYPES = {"mmsi": np.int64, "msg_type": np.int16, "second": np.int64} | {
    k: np.float64 for k in ("time", "lat", "lon", "sog", "cog", "heading", "rot", "status")}
BLOCK = 65_536  # position reports decoded between two conversions to arrays
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
    bad_rows: int = 0
    first_bad: str = ""
    other_types: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("other_types", "first_bad")}
        d["other_message_types"] = sum(self.other_types.values())
        return d

    def add(self, other: "IngestStats") -> None:
        for k, v in other.__dict__.items():
            if k == "first_bad":
                self.first_bad = self.first_bad or v
            else:
                setattr(self, k, getattr(self, k) + v)


BOM = b"\xef\xbb\xbf"


def members(path: Path) -> list[tuple[str, object]]:
    """(name, opener) of each file in ``path``: the file itself, or every file of a zip; ``opener()`` -> a binary
    stream, gunzipped when the content is gzip."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX")]
        if not names:
            raise DataError(f"{path}: a zip with no files")

        def opener(name):
            def open_member():
                z = zipfile.ZipFile(path)
                raw = z.open(name)
                return gzip.GzipFile(fileobj=raw) if name.endswith(".gz") else raw
            return open_member
        return [(f"{path}:{n}", opener(n)) for n in names]
    return [(str(path), lambda: gzip.open(path, "rb") if magic[:2] == b"\x1f\x8b" else open(path, "rb"))]


def _open(path: Path):
    return members(path)[0][1]()


def sniff(path: Path, opener=None) -> str:
    """``nmea`` or ``csv`` from the first non-empty line of the file (gzip or not, a byte-order mark ignored)."""
    with (opener or (lambda: _open(path)))() as f:
        for raw in f:
            line = raw.strip().removeprefix(BOM)
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


def read_nmea(path: Path, time_source: str = "receive", day: str | None = None,
              opener=None) -> tuple[pd.DataFrame, IngestStats]:
    """Stream a raw NMEA log (plain or gzip) -> (position reports, stats). See the module docstring."""
    from pyais.exceptions import InvalidNMEAMessageException, UnknownMessageException
    from pyais.messages import AISSentence, NMEAMessage, NMEASentenceFactory

    if time_source not in ("receive", "message_second"):
        raise DataError(f"unknown time_source {time_source!r}: receive or message_second")
    st = IngestStats()
    cols: dict[str, list] = {k: [] for k in COLUMNS}
    blocks: list[dict[str, np.ndarray]] = []
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
        rot, status = getattr(d, "turn", None), getattr(d, "status", None)
        cols["rot"].append(float(rot) if rot is not None else nan)
        cols["status"].append(float(int(status)) if status is not None else nan)
        cols["msg_type"].append(mt)
        sec = getattr(d, "second", None)
        cols["second"].append(int(sec) if sec is not None else -1)
        if len(cols["mmsi"]) >= BLOCK:
            flush()

    def flush():  # Python floats cost ~5x a float64: keep the reports as arrays, BLOCK at a time
        if cols["mmsi"]:
            blocks.append({k: np.asarray(v, dtype=DTYPES[k]) for k, v in cols.items()})
            for v in cols.values():
                v.clear()

    with (opener or (lambda: _open(path)))() as f:
        for raw in f:
            st.lines += 1
            line = raw.strip().removeprefix(BOM) if st.lines == 1 else raw.strip()
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
    flush()
    df = pd.DataFrame({k: np.concatenate([b[k] for b in blocks]) if blocks else np.zeros(0, DTYPES[k])
                       for k in COLUMNS})
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
    with (opener or (lambda: _open(path)))() as f:
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
