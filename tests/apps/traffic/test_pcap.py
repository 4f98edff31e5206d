"""The capture reader and packet decoder against dpkt and the data's own counts, every format and link type."""
import shutil
import struct

import dpkt
import pytest

from apps.traffic.flows import read_capture
from apps.traffic.packets import decode
from apps.traffic.pcap import CaptureStats, read_packets, sniff
from core.datadir import DataError

# IPv4 / TCP SYN with a timestamp option, 10.0.0.1:40000 -> 10.0.0.2:443, TTL 64, id 7, window 29200
TCP_OPTS = b"\x02\x04\x05\xb4\x01\x01\x08\x0a" + struct.pack("!II", 123456, 0)
TCP = struct.pack("!HHIIBBHHH", 40000, 443, 1000, 0, (20 + len(TCP_OPTS)) // 4 << 4, 0x02, 29200, 0, 0) + TCP_OPTS
IP4 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(TCP), 7, 0, 64, 6, 0, bytes([10, 0, 0, 1]),
                  bytes([10, 0, 0, 2])) + TCP
WANT = (6, bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 443, 20 + len(TCP), 64, 7, 0x02, 29200, 1000, 123456, 0,
        b"")


@pytest.mark.parametrize("link,frame", [
    (1, b"\x00" * 12 + b"\x08\x00" + IP4),                                   # Ethernet
    (1, b"\x00" * 12 + b"\x81\x00\x00\x05\x88\xa8\x00\x06\x08\x00" + IP4),  # Ethernet, two VLAN tags
    (1, b"\x00" * 12 + b"\x88\x64" + b"\x11\x00\x00\x01\x00\x2a" + b"\x00\x21" + IP4),  # PPPoE session
    (113, b"\x00" * 14 + b"\x08\x00" + IP4),                                 # Linux cooked SLL
    (276, b"\x08\x00" + b"\x00" * 18 + IP4),                                 # Linux cooked SLL2
    (101, IP4), (228, IP4), (12, IP4),                                       # raw IP
    (0, b"\x02\x00\x00\x00" + IP4), (0, b"\x00\x00\x00\x02" + IP4),          # BSD loopback, either byte order
    (108, b"\x00\x00\x00\x02" + IP4),                                        # OpenBSD loopback
    (9, b"\xff\x03\x00\x21" + IP4), (104, b"\x0f\x00\x08\x00" + IP4),        # PPP, Cisco HDLC
])
def test_every_link_type_decodes_to_the_same_fields(link, frame):
    assert decode(link, frame) == WANT


def test_ipv6_extension_headers_fragments_and_bad_packets():
    udp = struct.pack("!HHHH", 5353, 53, 8 + 4, 0) + b"abcd"
    hop = bytes([17, 0]) + b"\x00" * 6  # hop-by-hop options, next header UDP
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(hop) + len(udp), 0, 255, b"\x20" + b"\x00" * 15,
                      b"\xfe\x80" + b"\x00" * 14) + hop + udp
    p = decode(229, ip6, payload_bytes=3)
    assert p[0] == 17 and p[2] == 5353 and p[4] == 53 and p[5] == 40 + len(hop) + len(udp) and p[6] == 255
    assert p[12] == 4 and p[13] == b"abc"
    frag = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(udp), 44, 64, b"\x20" + b"\x00" * 15, b"\xfe\x80" + b"\x00" * 14)
    assert decode(229, frag + bytes([17, 0]) + struct.pack("!HI", 185 << 3, 1) + udp) == "fragment"
    v4frag = bytearray(IP4)
    v4frag[6:8] = struct.pack("!H", 100)  # fragment offset 100 x 8
    assert decode(101, bytes(v4frag)) == "fragment"
    assert decode(101, IP4[:30]) == "truncated"
    assert decode(1, b"\x00" * 12 + b"\x08\x06" + b"\x00" * 28) == "non_ip"  # ARP
    assert decode(147, IP4) == "unknown_link"


def _pcap(records, order="<", ns=False, link=1):
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, link)
    for ts, d in records:
        frac = round((ts % 1) * (1e9 if ns else 1e6))
        out += struct.pack(order + "IIII", int(ts), frac, len(d), len(d)) + d
    return out


def _block(btype, body, order="<"):
    body += b"\x00" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def _pcapng(records, order="<"):
    """Two interfaces: Ethernet in microseconds, raw IP in nanoseconds (if_tsresol 9)."""
    shb = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    out = _block(0x0A0D0D0A, shb, order)
    out += _block(1, struct.pack(order + "HHI", 1, 0, 0), order)
    out += _block(1, struct.pack(order + "HHI", 101, 0, 0) + struct.pack(order + "HHB", 9, 1, 9) + b"\x00" * 3
                  + b"\x00" * 4, order)
    for i, (ts, d) in enumerate(records):
        iface = i % 2
        t = round(ts * (1e6 if iface == 0 else 1e9))
        frame = (b"\x00" * 12 + b"\x08\x00" + d) if iface == 0 else d
        out += _block(6, struct.pack(order + "IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(frame), len(frame)) + frame,
                      order)
    return out


RECORDS = [(1_600_000_000.25 + i * 0.001, IP4) for i in range(5)]


@pytest.mark.parametrize("make", [
    lambda: _pcap([(t, b"\x00" * 12 + b"\x08\x00" + d) for t, d in RECORDS]),
    lambda: _pcap([(t, b"\x00" * 12 + b"\x08\x00" + d) for t, d in RECORDS], order=">"),
    lambda: _pcap([(t, b"\x00" * 12 + b"\x08\x00" + d) for t, d in RECORDS], ns=True),
    lambda: _pcap([(t, d) for t, d in RECORDS], order=">", ns=True, link=101),
    lambda: _pcapng(RECORDS),
    lambda: _pcapng(RECORDS, order=">"),
], ids=["pcap-us-le", "pcap-us-be", "pcap-ns-le", "pcap-ns-be-raw", "pcapng-le", "pcapng-be"])
def test_pcap_and_pcapng_any_byte_order_and_resolution_read_the_same_packets(tmp_path, make):
    f = tmp_path / "capture.pcapng"  # the name lies for half of them: the magic decides
    f.write_bytes(make())
    got = [(ts, decode(link, d)) for ts, link, d in read_packets(f)]
    assert [p for _, p in got] == [WANT] * 5
    assert [ts for ts, _ in got] == pytest.approx([t for t, _ in RECORDS], abs=2e-6)


def test_flow_counts_match_the_data_sources_dpkt_figures(data_root):
    """SOURCES.md: dpkt finds 1,504 flows in Zeek's traces, 71 in nPrint's pair and 965 in Stratosphere's."""
    for folder, want in (("zeek", 1504), ("nprint", 71), ("stratosphere", 965)):
        files = sorted(p for p in (data_root / "traffic" / folder).rglob("*") if p.is_file())
        assert sum(len(read_capture(f)) for f in files) == want, folder


@pytest.mark.parametrize("name", ["ndpi/pcap/1kxun.pcap", "ndpi/pcap/dns.pcap", "zeek/ssh/single-conn.pcap",
                                  "nprint/port443.pcap", "stratosphere"])
def test_decoded_fields_equal_dpkts_for_every_packet(data_root, name):
    path = data_root / "traffic" / name
    if path.is_dir():
        path = sorted(p for p in path.rglob("*.pcap"))[0]
    with open(path, "rb") as f:
        r = dpkt.pcapng.Reader(f) if sniff(path) == "pcapng" else dpkt.pcap.Reader(f)
        ref = [buf for _, buf in r]
    ours = list(read_packets(path))
    assert len(ours) == len(ref) > 0
    checked = 0
    for (_, link, d), buf in zip(ours, ref):
        assert d == buf
        p = decode(link, d)
        if link != 1 or isinstance(p, str):
            continue
        ip = dpkt.ethernet.Ethernet(buf).data
        if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
            continue
        l4 = ip.data
        assert p[5] == (ip.len if isinstance(ip, dpkt.ip.IP) else 40 + ip.plen)
        assert p[6] == (ip.ttl if isinstance(ip, dpkt.ip.IP) else ip.hlim)
        if isinstance(l4, dpkt.tcp.TCP):
            assert (p[0], p[2], p[4], p[8], p[9], p[10]) == (6, l4.sport, l4.dport, l4.flags, l4.win, l4.seq)
        elif isinstance(l4, dpkt.udp.UDP):
            assert (p[0], p[2], p[4]) == (17, l4.sport, l4.dport)
        checked += 1
    assert checked > 0


def test_bad_captures_name_the_file_and_byte_offset(tmp_path, data_root):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.pcap: byte 0: empty file"):
        list(read_packets(empty))
    junk = tmp_path / "notes.pcap"
    junk.write_bytes(b"hello world, not a capture")
    with pytest.raises(DataError, match=r"notes.pcap: byte 0: not a pcap or pcapng capture \(magic 68656c6c"):
        list(read_packets(junk))
    # a capture cut in the middle of a record keeps the packets before it and counts the cut with its offset
    src = data_root / "traffic" / "nprint" / "port80.pcap"
    cut = tmp_path / "cut.pcap"
    whole = list(read_packets(src))
    cut.write_bytes(src.read_bytes()[:100_000])
    st = CaptureStats()
    part = list(read_packets(cut, st))
    assert 0 < len(part) < len(whole) and [d for _, _, d in part] == [d for _, _, d in whole[:len(part)]]
    assert st.counts["truncated_records"] == 1 and st.problems[0].startswith("cut.pcap: byte ")
    off = int(st.problems[0].split("byte ")[1].split(":")[0])
    assert 24 < off < 100_000


def test_a_folder_with_bad_files_is_read_and_the_bad_ones_counted(tmp_path, data_root):
    from apps.traffic.data import read_flows, resolve_captures

    tmp_path = tmp_path / "captures"
    tmp_path.mkdir()
    for name in ("port80.pcap", "port443.pcap"):
        shutil.copy(data_root / "traffic" / "nprint" / name, tmp_path / name)
    (tmp_path / "empty.pcap").write_bytes(b"")
    (tmp_path / "junk.pcapng").write_bytes(b"\x00" * 64)
    flows, st = read_flows(resolve_captures(str(tmp_path))[0])
    assert len(flows) == 71 and st.counts["unreadable_files"] == 2
    assert any("empty.pcap: byte 0" in p for p in st.problems)
    (tmp_path / "port80.pcap").unlink()
    (tmp_path / "port443.pcap").unlink()
    with pytest.raises(DataError, match="no flows in 2 capture file"):
        read_flows(resolve_captures(str(tmp_path))[0])
