"""Streaming packet-capture reader: pcap (µs / ns, either byte order) and pcapng, sniffed by magic bytes.

``read_packets(path, stats)`` yields ``(ts_seconds, linktype, frame_bytes)`` one record at a time, reading the file
in 1 MiB chunks (memory stays flat in the capture size). The format is decided by the first four bytes, never by
the file's extension (64 nDPI test captures lie by theirs):

- ``d4 c3 b2 a1`` / ``a1 b2 c3 d4``: pcap, microsecond timestamps (little / big endian);
- ``4d 3c b2 a1`` / ``a1 b2 3c 4d``: pcap, nanosecond timestamps;
- ``0a 0d 0d 0a``: pcapng (section header; byte order from its 0x1A2B3C4D magic). Enhanced, simple and obsolete
  packet blocks are read; each interface has its own link type and timestamp resolution (``if_tsresol``).

An empty file or unknown magic raises :class:`core.datadir.DataError` naming the file and byte offset. A record
whose length runs past the end of the file (a truncated capture) or is impossible (a corrupt record header) ends
that file: the packets before it are kept, and the event is counted in ``stats`` (:class:`CaptureStats`) with its byte offset.
"""
from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from core.datadir import DataError

CHUNK = 1 << 20
MAX_RECORD = 1 << 18  # 256 KiB: larger than any snaplen in use; a bigger length is a corrupt record header
PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
              b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


class _Stream:
    """A file read in chunks; ``take(n)`` -> the next n bytes, or None at (a truncated) end."""

    def __init__(self, f):
        self.f, self.buf, self.pos, self.offset = f, b"", 0, 0  # offset: file offset of buf[0]

    def take(self, n: int) -> bytes | None:
        if self.pos + n > len(self.buf):
            self.offset += self.pos
            self.buf = self.buf[self.pos:] + self.f.read(max(CHUNK, n))
            self.pos = 0
            if n > len(self.buf):
                return None
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def at(self) -> int:
        return self.offset + self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and not self._refill()

    def _refill(self) -> bool:
        more = self.f.read(CHUNK)
        if more:
            self.offset += self.pos
            self.buf, self.pos = self.buf[self.pos:] + more, 0
        return bool(more)


def sniff(path: Path) -> str:
    """-> "pcap" or "pcapng" from the magic bytes, else DataError."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise DataError(f"{path}: byte 0: empty file, expected a pcap or pcapng capture")
    if head == PCAPNG_MAGIC:
        return "pcapng"
    if head in PCAP_MAGIC:
        return "pcap"
    raise DataError(f"{path}: byte 0: not a pcap or pcapng capture (magic {head.hex()}; expected a1b2c3d4, "
                    f"a1b23c4d or their byte swaps, or 0a0d0d0a)")


def read_packets(path, stats: CaptureStats | None = None) -> Iterator[tuple[float, int, bytes]]:
    """Yield ``(timestamp seconds, link type, captured frame)`` for every packet record of ``path``."""
    path = Path(path)
    stats = stats if stats is not None else CaptureStats()
    kind = sniff(path)
    with open(path, "rb") as f:
        s = _Stream(f)
        yield from (_pcap(s, path, stats) if kind == "pcap" else _pcapng(s, path, stats))


class CaptureStats:
    """Counts of what was read and skipped (``counts``), and where each file-ending problem was (``problems``)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.problems: list[str] = []

    def problem(self, path: Path, offset: int, what: str) -> None:
        self.counts[what] += 1
        self.problems.append(f"{path.name}: byte {offset}: {what.replace('_', ' ')}")


def _stop(stats: CaptureStats, path: Path, what: str, offset: int) -> None:
    stats.problem(path, offset, what)


def _pcap(s: _Stream, path: Path, stats: CaptureStats):
    head = s.take(24)
    if head is None:
        raise DataError(f"{path}: byte 0: pcap global header cut short ({path.stat().st_size} bytes, need 24)")
    order, unit = PCAP_MAGIC[head[:4]]
    linktype = struct.unpack_from(order + "I", head, 20)[0] & 0xFFFF  # upper bits: FCS information
    rec = struct.Struct(order + "IIII")
    while not s.at_end():
        at = s.at()
        h = s.take(16)
        if h is None:
            _stop(stats, path, "truncated_records", at)
            return
        sec, frac, incl, _orig = rec.unpack(h)
        if incl > MAX_RECORD:
            _stop(stats, path, "corrupt_records", at)
            return
        data = s.take(incl)
        if data is None:
            _stop(stats, path, "truncated_records", at)
            return
        yield sec + frac * unit, linktype, data


def _pcapng(s: _Stream, path: Path, stats: CaptureStats):
    order = "<"
    ifaces: list[tuple[int, float]] = []  # (link type, seconds per timestamp unit)
    while not s.at_end():
        at = s.at()
        h = s.take(8)
        if h is None:
            _stop(stats, path, "truncated_records", at)
            return
        if h[:4] == PCAPNG_MAGIC:  # section header: byte order from the magic that follows
            bom = s.take(4)
            if bom is None:
                _stop(stats, path, "truncated_records", at)
                return
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
            if not order:
                raise DataError(f"{path}: byte {at + 8}: pcapng byte-order magic {bom.hex()}, expected 1a2b3c4d")
            ifaces = []
            btype, blen = struct.unpack(order + "II", h)
            body = s.take(blen - 12) if 12 <= blen <= MAX_RECORD and blen % 4 == 0 else None
            if body is None:
                _stop(stats, path, "corrupt_records", at)
                return
            continue
        btype, blen = struct.unpack(order + "II", h)
        if blen < 12 or blen % 4 or blen > MAX_RECORD:
            _stop(stats, path, "corrupt_records", at)
            return
        body = s.take(blen - 8)
        if body is None:
            _stop(stats, path, "truncated_records", at)
            return
        body = body[:-4]
        if btype == 1:  # interface description
            ifaces.append((struct.unpack_from(order + "H", body)[0], _tsresol(body[8:], order)))
        elif btype == 6 and len(body) >= 20:  # enhanced packet
            iid, hi, lo, cap, _orig = struct.unpack_from(order + "IIIII", body)
            if iid >= len(ifaces):
                stats.counts["unknown_interface"] += 1
                continue
            link, unit = ifaces[iid]
            yield ((hi << 32) | lo) * unit, link, body[20:20 + cap]
        elif btype == 3 and ifaces:  # simple packet: interface 0, no timestamp
            orig = struct.unpack_from(order + "I", body)[0]
            stats.counts["no_timestamp"] += 1
            yield 0.0, ifaces[0][0], body[4:4 + orig]
        elif btype == 2 and len(body) >= 20:  # obsolete packet block
            iid, _drops, hi, lo, cap, _orig = struct.unpack_from(order + "HHIIII", body)
            if iid < len(ifaces):
                link, unit = ifaces[iid]
                yield ((hi << 32) | lo) * unit, link, body[20:20 + cap]


def _tsresol(opts: bytes, order: str) -> float:
    """Seconds per timestamp unit from an interface's options (``if_tsresol``, code 9); default microseconds."""
    i = 0
    while i + 4 <= len(opts):
        code, n = struct.unpack_from(order + "HH", opts, i)
        if code == 0:
            break
        if code == 9 and n >= 1:
            v = opts[i + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        i += 4 + n + (-n % 4)
    return 1e-6
