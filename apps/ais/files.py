"""What every AIS reader shares: the table of position reports it returns, the counts of what it skipped, and
opening a file that may be plain, gzip or a zip of such files (DMA publishes its daily CSVs as ``.zip``).

Output columns: ``mmsi`` (int64), ``time`` (float64 unix seconds), ``lat``, ``lon``, ``sog`` (knots), ``cog``
(degrees), ``heading`` (degrees), ``rot`` (rate of turn as reported, deg/min, class A only), ``status`` (navigation
status 0-15, class A only), ``msg_type``, ``second`` (the UTC second field; -1 when unknown), NaN where a value is
absent. Sentinels (lat 91, lon 181, SOG 102.3, COG 360, heading 511, ROT -128 / +-127, status 15) are left for
``clean.py``.
"""
from __future__ import annotations

import gzip
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.datadir import DataError

COLUMNS = ("mmsi", "time", "lat", "lon", "sog", "cog", "heading", "rot", "status", "msg_type", "second")
DTYPES = {"mmsi": np.int64, "msg_type": np.int16, "second": np.int64} | {
    k: np.float64 for k in ("time", "lat", "lon", "sog", "cog", "heading", "rot", "status")}


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



def open_first(path: Path):
    """A binary stream of ``path``'s (first) file, as :func:`members` opens it."""
    return members(path)[0][1]()
