"""Decoding one captured frame to the header fields a flow model uses, without building objects per layer.

``decode(linktype, frame, payload_bytes) -> Packet | str``: a :data:`Packet` tuple, or the reason it was skipped
(``"non_ip"``, ``"fragment"``, ``"truncated"``, ``"unknown_link"``), which the caller counts.

Link types: Ethernet (1; VLAN 802.1Q / 802.1ad tags and PPPoE sessions unwrapped), BSD loopback (0, either byte
order; 108 network order), raw IP (101, 12, 14, 228 IPv4, 229 IPv6), Linux cooked SLL (113) and SLL2 (276), PPP (9),
Cisco HDLC (104), PPI (192, the inner link type). IPv4 and IPv6 (extension headers walked), TCP and UDP; other IP
protocols keep port 0. Only the outermost IP header is used (no tunnel decapsulation) and non-first fragments are
skipped (they carry no ports), as in the data's SOURCES.md flow counts.

Sizes are taken from the IP header (the size on the wire), so a snap length does not change them.
"""
from __future__ import annotations

import struct

# Packet = (proto, src, sport, dst, dport, ip_len, ttl, ip_id, flags, window, seq, tcp_ts, payload_len, payload)
FIELDS = ("proto", "src", "sport", "dst", "dport", "ip_len", "ttl", "ip_id", "flags", "window", "seq", "tcp_ts",
          "payload_len", "payload")
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_H = struct.Struct("!H")
_TCP = struct.Struct("!HHIIBBH")
_V4 = struct.Struct("!BBHHHBB")


def decode(linktype: int, d: bytes, payload_bytes: int = 0):
    """-> Packet tuple (see :data:`FIELDS`) or the skip reason."""
    try:
        ethertype, off = _link(linktype, d)
    except (IndexError, struct.error):
        return "truncated"
    if ethertype is None:
        return off  # the reason
    if ethertype == ETH_IPV4:
        return _ipv4(d, off, payload_bytes)
    if ethertype == ETH_IPV6:
        return _ipv6(d, off, payload_bytes)
    return "non_ip"


def _version(d: bytes, off: int):
    v = d[off] >> 4
    return (ETH_IPV4 if v == 4 else ETH_IPV6 if v == 6 else None), off if v in (4, 6) else "non_ip"


def _link(lt: int, d: bytes):
    """-> (ethertype, offset of the network header), or (None, skip reason)."""
    if lt == 1:
        et, off = _H.unpack_from(d, 12)[0], 14
        while et in (0x8100, 0x88A8, 0x9100):
            et, off = _H.unpack_from(d, off + 2)[0], off + 4
        if et == 0x8864:  # PPPoE session: 6-byte header, then a PPP protocol number
            ppp, off = _H.unpack_from(d, off + 6)[0], off + 8
            et = ETH_IPV4 if ppp == 0x21 else ETH_IPV6 if ppp == 0x57 else -1
        return et, off
    if lt in (101, 12, 14, 228, 229):
        return _version(d, 0)
    if lt == 0:  # BSD loopback: address family in host byte order
        af = d[0] or d[3]
        return (ETH_IPV4 if af == 2 else ETH_IPV6 if af in (10, 24, 28, 30) else -1), 4
    if lt == 108:
        af = struct.unpack_from("!I", d)[0]
        return (ETH_IPV4 if af == 2 else ETH_IPV6 if af in (10, 24, 28, 30) else -1), 4
    if lt == 113:
        return _H.unpack_from(d, 14)[0], 16
    if lt == 276:
        return _H.unpack_from(d, 0)[0], 20
    if lt == 9:  # PPP, optionally with the HDLC address / control bytes
        off = 2 if d[:2] == b"\xff\x03" else 0
        ppp = _H.unpack_from(d, off)[0]
        return (ETH_IPV4 if ppp == 0x21 else ETH_IPV6 if ppp == 0x57 else -1), off + 2
    if lt == 104:
        return _H.unpack_from(d, 2)[0], 4
    if lt == 192:  # PPI: header length, then the inner link type
        n, inner = struct.unpack_from("<HI", d, 2)
        et, off = _link(inner, d[n:])
        return et, (off + n if et is not None else off)
    return None, "unknown_link"


def _transport(d: bytes, off: int, proto: int, end: int, payload_bytes: int):
    """-> (sport, dport, flags, window, seq, tcp_ts, payload_len, payload) or the skip reason."""
    if proto == 6:
        if off + 20 > len(d):
            return "truncated"
        sport, dport, seq, _ack, doff, flags, window = _TCP.unpack_from(d, off)
        hl = (doff >> 4) * 4
        ts = 0
        i, oend = off + 20, min(off + hl, len(d))
        while i < oend:  # options: look for the timestamp (kind 8)
            kind = d[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= oend or d[i + 1] < 2:
                break
            if kind == 8 and i + 6 <= oend:
                ts = struct.unpack_from("!I", d, i + 2)[0]
            i += d[i + 1]
        start = off + hl
    elif proto == 17:
        if off + 8 > len(d):
            return "truncated"
        sport, dport = struct.unpack_from("!HH", d, off)
        flags = window = seq = ts = 0
        start = off + 8
    else:
        sport = dport = flags = window = seq = ts = 0
        start = off
    return sport, dport, flags, window, seq, ts, max(0, end - start), d[start:start + payload_bytes]


def _ipv4(d: bytes, off: int, payload_bytes: int):
    if off + 20 > len(d):
        return "truncated"
    vihl, _tos, total, ip_id, frag, ttl, proto = _V4.unpack_from(d, off)
    if frag & 0x1FFF:
        return "fragment"
    hl = (vihl & 0xF) * 4
    t = _transport(d, off + hl, proto, off + max(total, hl), payload_bytes)
    if isinstance(t, str):
        return t
    sport, dport, flags, window, seq, ts, plen, pay = t
    return (proto, d[off + 12:off + 16], sport, d[off + 16:off + 20], dport, total, ttl, ip_id, flags, window,
            seq, ts, plen, pay)


def _ipv6(d: bytes, off: int, payload_bytes: int):
    if off + 40 > len(d):
        return "truncated"
    plen, nxt, hop = struct.unpack_from("!HBB", d, off + 4)
    src, dst, end, i = d[off + 8:off + 24], d[off + 24:off + 40], off + 40 + plen, off + 40
    while nxt in (0, 43, 60, 44, 51):  # hop-by-hop, routing, destination options, fragment, AH
        if i + 8 > len(d):
            return "truncated"
        if nxt == 44:
            if struct.unpack_from("!H", d, i + 2)[0] & 0xFFF8:
                return "fragment"
            nxt, i = d[i], i + 8
        elif nxt == 51:
            nxt, i = d[i], i + (d[i + 1] + 2) * 4
        else:
            nxt, i = d[i], i + (d[i + 1] + 1) * 8
    t = _transport(d, i, nxt, end, payload_bytes)
    if isinstance(t, str):
        return t
    sport, dport, flags, window, seq, ts, pl, pay = t
    return nxt, src, sport, dst, dport, 40 + plen, hop, 0, flags, window, seq, ts, pl, pay
