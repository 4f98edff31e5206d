"""What models see of a flow: netFound-style burst tokens, and per-flow statistics for the tree baseline.

Shortcut fields (``SHORTCUTS``: ports, TTL, IP ID, absolute TCP sequence numbers, TCP timestamps, the TCP window,
each an identifier of a host or its operating system rather than of the application) are masked (set to 0) unless
named in ``unmask``; addresses never reach a model or a log.

``flow_tokens(flow, ...) -> (packets [B, P, len(PACKET_FIELDS)], bursts [B, len(BURST_FIELDS)], flow
[len(FLOW_FIELDS)], payload [B, P, payload_bytes])``, int64, 0 = padding / masked. A burst is a run of packets in
one direction with no gap longer than ``burst_gap`` seconds (netFound, Guthula et al.); the first ``B`` bursts of
at most ``P`` packets are kept (netFound: 12 x 6). Continuous values enter as log-spaced bins.

``flow_stats(flow, unmask) -> float32 [len(stat_names(unmask))]``: per direction packets, bytes, size and
inter-arrival statistics, TCP flag counts; duration, protocol, bursts, the first 10 signed sizes (and the unmasked
shortcuts' first values).
"""
from __future__ import annotations

import numpy as np

from apps.traffic.flows import ROW, Flow

SHORTCUTS = ("ports", "ttl", "ip_id", "seq", "tcp_ts", "window")
PACKET_FIELDS = ("dir", "size", "payload_len", "iat", "flags", "window", "ttl", "ip_id", "seq", "tcp_ts")
VOCAB = {"dir": 3, "size": 34, "payload_len": 34, "iat": 34, "flags": 257, "window": 18, "ttl": 257, "ip_id": 257,
         "seq": 257, "tcp_ts": 257}
BURST_FIELDS = ("dir", "packets", "bytes", "gap")
BURST_VOCAB = {"dir": 3, "packets": 34, "bytes": 34, "gap": 34}
FLOW_FIELDS = ("proto", "server_port", "client_port")
FLOW_VOCAB = {"proto": 4, "server_port": 1281, "client_port": 1281}
SIZE_EDGES = np.geomspace(20, 65536, 32)      # bytes (IP length)
PAYLOAD_EDGES = np.geomspace(1, 65536, 32)    # bytes (payload)
IAT_EDGES = np.geomspace(1e-6, 100.0, 32)     # seconds
_C = {name: i for i, name in enumerate(ROW)}
FLAGS = (("fin", 0x01), ("syn", 0x02), ("rst", 0x04), ("psh", 0x08), ("ack", 0x10), ("urg", 0x20))


def _bin(x, edges) -> np.ndarray:
    return 1 + np.searchsorted(edges, np.asarray(x, dtype=np.float64), side="right")


def port_token(port: int) -> int:
    """Well-known ports (< 1024) exactly, others in 256-wide buckets; 1 + that (0 = masked)."""
    return 1 + (port if port < 1024 else 1024 + (port >> 8))


def burst_ids(r: np.ndarray, burst_gap: float) -> np.ndarray:
    """Burst index of every kept packet: a new burst at a direction change or a gap > ``burst_gap`` seconds."""
    if not len(r):
        return np.zeros(0, dtype=np.int64)
    new = np.ones(len(r), dtype=bool)
    new[1:] = (np.diff(r[:, _C["dir"]]) != 0) | (np.diff(r[:, _C["ts"]]) > burst_gap)
    return np.cumsum(new) - 1


def flow_tokens(f: Flow, unmask=(), bursts: int = 12, burst_packets: int = 6, burst_gap: float = 1.0,
                payload_bytes: int = 0):
    r = f.rows
    pk = np.zeros((bursts, burst_packets, len(PACKET_FIELDS)), dtype=np.int64)
    bm = np.zeros((bursts, len(BURST_FIELDS)), dtype=np.int64)
    pay = np.zeros((bursts, burst_packets, payload_bytes), dtype=np.int64)
    b = burst_ids(r, burst_gap)
    if len(r):
        starts = np.r_[0, np.flatnonzero(np.diff(b)) + 1]
        pos = np.arange(len(r)) - starts[b]
        iat = np.r_[0.0, np.diff(r[:, _C["ts"]])]
        keep = (b < bursts) & (pos < burst_packets)
        cols = {"dir": 1 + r[:, _C["dir"]], "size": _bin(r[:, _C["ip_len"]], SIZE_EDGES),
                "payload_len": _bin(r[:, _C["payload_len"]], PAYLOAD_EDGES), "iat": _bin(iat, IAT_EDGES),
                "flags": 1 + r[:, _C["flags"]], "window": 1 + np.floor(np.log2(r[:, _C["window"]] + 1)),
                "ttl": 1 + r[:, _C["ttl"]], "ip_id": 1 + r[:, _C["ip_id"]] // 256,
                "seq": 1 + r[:, _C["seq"]] // 2 ** 24, "tcp_ts": 1 + r[:, _C["tcp_ts"]] // 2 ** 24}
        for j, name in enumerate(PACKET_FIELDS):
            if name in SHORTCUTS and name not in unmask:
                continue
            pk[b[keep], pos[keep], j] = cols[name][keep]
        nb = min(bursts, int(b[-1]) + 1)
        size = r[:, _C["ip_len"]]
        bm[:nb, 0] = 1 + r[starts[:nb], _C["dir"]]
        bm[:nb, 1] = 1 + np.minimum(np.bincount(b, minlength=nb)[:nb], 32)
        bm[:nb, 2] = _bin(np.bincount(b, weights=size, minlength=nb)[:nb], SIZE_EDGES)
        bm[:nb, 3] = _bin(iat[starts[:nb]], IAT_EDGES)
        if payload_bytes:
            for i in np.flatnonzero(keep):
                p = np.frombuffer(f.payload[i][:payload_bytes], dtype=np.uint8)
                pay[b[i], pos[i], :len(p)] = 1 + p.astype(np.int64)
    flow = np.array([1 + {6: 0, 17: 1}.get(f.proto, 2),
                     port_token(f.server[1]) if "ports" in unmask else 0,
                     port_token(f.client[1]) if "ports" in unmask else 0], dtype=np.int64)
    return pk, bm, flow, pay


TOKEN_KEYS = ("packets", "bursts", "flow", "payload")


def stack_tokens(flows: list[Flow], **token_kw) -> dict[str, np.ndarray]:
    """:func:`flow_tokens` of every flow, stacked: ``TOKEN_KEYS`` -> int64 [N, ...]."""
    t = [flow_tokens(f, **token_kw) for f in flows]
    return {k: np.stack([x[i] for x in t]) for i, k in enumerate(TOKEN_KEYS)}


def stat_names(unmask=()) -> list[str]:
    names = []
    for d in ("fwd", "bwd"):
        names += [f"{d}_{s}" for s in ("packets", "bytes", "size_mean", "size_std", "size_min", "size_max",
                                       "iat_mean", "iat_std", "iat_max")]
        names += [f"{d}_{flag}" for flag, _ in FLAGS]
    names += ["duration", "proto", "bursts"] + [f"signed_size_{i}" for i in range(10)]
    extra = {"ports": ["server_port", "client_port"], "ttl": ["fwd_ttl", "bwd_ttl"], "ip_id": ["ip_id0"],
             "seq": ["seq0"], "tcp_ts": ["tcp_ts0"], "window": ["fwd_window0", "bwd_window0"]}
    return names + [n for k in SHORTCUTS if k in unmask for n in extra[k]]


def flow_stats(f: Flow, unmask=(), burst_gap: float = 1.0) -> np.ndarray:
    r = f.rows
    out = []
    first = {}
    for d in (0, 1):
        x = r[r[:, _C["dir"]] == d]
        size, ts = x[:, _C["ip_len"]], x[:, _C["ts"]]
        iat = np.diff(ts) if len(ts) > 1 else np.zeros(1)
        first[d] = x[0] if len(x) else np.full(len(ROW), np.nan)
        out += [f.packets[d], f.bytes[d]]
        out += [size.mean(), size.std(), size.min(), size.max()] if len(size) else [np.nan] * 4
        out += [iat.mean(), iat.std(), iat.max()]
        out += [np.count_nonzero(x[:, _C["flags"]].astype(np.int64) & bit) for _, bit in FLAGS]
    signed = (1 - 2 * r[:10, _C["dir"]]) * r[:10, _C["ip_len"]]
    out += [f.end - f.start, f.proto, int(burst_ids(r, burst_gap)[-1]) + 1 if len(r) else 0]
    out += list(np.pad(signed, (0, 10 - len(signed))))
    extra = {"ports": [f.server[1], f.client[1]], "ttl": [first[0][_C["ttl"]], first[1][_C["ttl"]]],
             "ip_id": [r[0, _C["ip_id"]]], "seq": [r[0, _C["seq"]]], "tcp_ts": [r[0, _C["tcp_ts"]]],
             "window": [first[0][_C["window"]], first[1][_C["window"]]]}
    out += [v for k in SHORTCUTS if k in unmask for v in extra[k]]
    return np.asarray(out, dtype=np.float32)
