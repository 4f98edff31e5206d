"""Captures -> bidirectional flows.

A flow is the packets of one capture sharing an IP protocol and an unordered pair of endpoints
{(address, port), (address, port)} (port 0 for protocols without ports). The *client* is the sender of the flow's
first packet (or the receiver, when that packet is a TCP SYN+ACK); direction 0 is client -> server. No idle timeout
splits a flow (test captures are short). Per flow the first ``max_packets`` packets keep their header fields (rows
of :data:`ROW`); packet and byte totals per direction count every packet.

``read_capture(path, payload_bytes, max_packets, stats) -> list[Flow]``; the packets' skip reasons (non-IP,
fragment, truncated, unknown link type) and the reader's (truncated or corrupt records) are counted in ``stats``.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np

from apps.traffic.packets import decode
from apps.traffic.pcap import CaptureStats, read_packets

# one row per kept packet; ``ts`` is seconds since the flow's first packet
ROW = ("ts", "dir", "ip_len", "payload_len", "flags", "window", "ttl", "ip_id", "seq", "tcp_ts")
PROTO_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPV6", 2: "IGMP", 50: "ESP", 51: "AH", 132: "SCTP", 112: "VRRP",
               89: "OSPF", 113: "PGM", 103: "PIM"}


class Flow:
    """One bidirectional flow. ``rows``: float64 [n_kept, len(ROW)]; ``payload``: first bytes per kept packet."""

    __slots__ = ("capture", "index", "proto", "client", "server", "start", "end", "packets", "bytes", "rows",
                 "payload")

    def __init__(self, capture: str, index: int, proto: int, client: tuple, server: tuple, start: float):
        self.capture, self.index, self.proto, self.client, self.server = capture, index, proto, client, server
        self.start = self.end = start
        self.packets, self.bytes = [0, 0], [0, 0]
        self.rows: list | np.ndarray = []
        self.payload: list[bytes] = []

    def key(self) -> tuple:
        """(proto, client address text, client port, server address text, server port): for joins, never logged."""
        return (self.proto, _ip(self.client[0]), self.client[1], _ip(self.server[0]), self.server[1])

    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self.proto, str(self.proto))


def _ip(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


class FlowTable:
    """Packets in, flows out: ``add(ts, packet)`` with a :data:`apps.traffic.packets.FIELDS` tuple, ``flows()``."""

    def __init__(self, capture: str, payload_bytes: int = 0, max_packets: int = 256):
        self.capture, self.payload_bytes, self.max_packets = capture, payload_bytes, max_packets
        self.table: dict[tuple, Flow] = {}

    def add(self, ts: float, p: tuple) -> None:
        proto, src, sport, dst, dport, ip_len, ttl, ip_id, flags, window, seq, tcp_ts, plen, pay = p
        a, b = (src, sport), (dst, dport)
        key = (proto, a, b) if a <= b else (proto, b, a)
        f = self.table.get(key)
        if f is None:
            client, server = (b, a) if proto == 6 and flags & 0x12 == 0x12 else (a, b)
            f = self.table[key] = Flow(self.capture, len(self.table), proto, client, server, ts)
        d = 0 if a == f.client else 1
        f.packets[d] += 1
        f.bytes[d] += ip_len
        f.end = max(f.end, ts)
        if len(f.rows) < self.max_packets:
            f.rows.append((ts - f.start, d, ip_len, plen, flags, window, ttl, ip_id, seq, tcp_ts))
            if self.payload_bytes:
                f.payload.append(pay)

    def flows(self) -> list[Flow]:
        out = list(self.table.values())
        for f in out:
            f.rows = np.asarray(f.rows, dtype=np.float64).reshape(-1, len(ROW))
        return out


def read_capture(path, payload_bytes: int = 0, max_packets: int = 256, stats: CaptureStats | None = None,
                 name: str | None = None) -> list[Flow]:
    """All flows of one capture, in order of their first packet."""
    path = Path(path)
    stats = stats if stats is not None else CaptureStats()
    table = FlowTable(name or path.name, payload_bytes, max_packets)
    for ts, link, frame in read_packets(path, stats):
        p = decode(link, frame, payload_bytes)
        if isinstance(p, str):
            stats.counts[p] += 1
            continue
        stats.counts["packets"] += 1
        table.add(ts, p)
    flows = table.flows()
    stats.counts["flows"] += len(flows)
    stats.counts["captures"] += 1
    return flows
