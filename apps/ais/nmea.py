"""Raw AIS NMEA logs -> position reports (decoded with pyais), streamed line by line.

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
A byte-order mark on the first line is ignored.
"""
from __future__ import annotations

import calendar
import re
from pathlib import Path

import numpy as np
import pandas as pd

from apps.ais.files import BOM, COLUMNS, DTYPES, IngestStats, open_first
from core.datadir import DataError

POSITION_TYPES = (1, 2, 3, 18, 19, 27)
BLOCK = 65_536  # position reports decoded between two conversions to arrays
_TRAILING_TIME = re.compile(rb"^(!.*\*[0-9A-Fa-f]{2}),(\d{9,13}(?:\.\d+)?)$")


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

    with (opener or (lambda: open_first(path)))() as f:
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

