"""nDPI's regression output (``ndpiReader`` ``.out`` files) -> one labelled row per flow: ``flow_labels.csv``.

A flow line is ``<TAB>n<TAB>L4 SRC <-> DST [proto: 91.124/TLS.YouTube][IP: ...][Encrypted][Confidence: DPI]...``
(``->`` when only one direction was seen; IPv6 in brackets; ``[proto: CAPWAP:18/DHCP]`` names the tunnel whose
inner 5-tuple is printed). Flows after the ``Undetected flows:`` line are numbered from 1 again, so a flow's key is
(pcap, section, flow_idx). ``JA3 Host Stats`` lines also start with a number but have no L4 protocol.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

COLUMNS = ["pcap", "section", "flow_idx", "l4_proto", "src_ip", "src_port", "direction", "dst_ip", "dst_port", "vlan",
           "tunnel", "ndpi_proto_id", "ndpi_proto", "master_proto", "app_proto", "category", "category_id",
           "confidence", "ip_based_proto", "encryption", "dpi_packets", "src2dst_packets", "src2dst_bytes",
           "dst2src_packets", "dst2src_bytes", "hostname_sni"]

_FLOW = re.compile(r"^\t(\d+)\t(\S+) (\S+) (<->|->) (\S+) (.*)$")
_ENDPOINT = re.compile(r"^\[?(.*?)\]?:(\d+)$")
_PROTO = re.compile(r"\[proto: (?:([A-Z]+):)?([\d.]+)/([^\]]+)\]")
_FIELDS = {"vlan": re.compile(r"\[VLAN: (\d+)\]"),
           "ip_based_proto": re.compile(r"\[IP: \d+/([^\]]+)\]"),
           "encryption": re.compile(r"\[(Encrypted|ClearText)\]"),
           "confidence": re.compile(r"\[Confidence: ([^\]]+)\]"),
           "dpi_packets": re.compile(r"\[DPI packets: (\d+)\]"),
           "hostname_sni": re.compile(r"\[Hostname/SNI: (.*?)\](?=\[|$)")}  # a name may hold "]": [ff02::c]:1900
_CATEGORY = re.compile(r"\[cat: ([^\]/]+)/(\d+)\]")
_COUNTS = re.compile(r"\[(\d+) pkts/(\d+) bytes (?:<->|->) (\d+) pkts/(\d+) bytes\]")


def parse_flow(line: str) -> dict[str, str] | None:
    """One flow line -> its row (every column but ``pcap`` and ``section``), or None if the line is not a flow."""
    m = _FLOW.match(line.rstrip("\r\n"))
    if not m:
        return None
    idx, l4, src, direction, dst, rest = m.groups()
    s, d, proto = _ENDPOINT.match(src), _ENDPOINT.match(dst), _PROTO.search(rest)
    if not (s and d and proto):
        return None
    tunnel, proto_id, name = proto.groups()
    master, _, app = name.partition(".")
    row = {"flow_idx": idx, "l4_proto": l4, "src_ip": s[1], "src_port": s[2], "direction": direction,
           "dst_ip": d[1], "dst_port": d[2], "tunnel": tunnel or "", "ndpi_proto_id": proto_id, "ndpi_proto": name,
           "master_proto": master, "app_proto": app or master}
    for key, rx in _FIELDS.items():
        f = rx.search(rest)
        row[key] = f[1] if f else ""
    cat = _CATEGORY.search(rest)
    row["category"], row["category_id"] = (cat[1], cat[2]) if cat else ("", "")
    counts = _COUNTS.search(rest)
    for key, v in zip(["src2dst_packets", "src2dst_bytes", "dst2src_packets", "dst2src_bytes"],
                      counts.groups() if counts else ("",) * 4):
        row[key] = v
    return row


def read_out(path: Path) -> list[dict[str, str]]:
    """Every flow row of one ``<capture>.out`` file (``pcap`` = the capture's name, ``section`` detected/undetected)."""
    rows, section = [], "detected"
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for line in f:
            if line.startswith("Undetected flows:"):
                section = "undetected"
            elif (row := parse_flow(line)) is not None:
                rows.append({"pcap": path.name.removesuffix(".out"), "section": section, **row})
    return rows


def write_flow_labels(result_dir: Path, out: Path) -> int:
    """Parse every ``*.out`` under ``result_dir`` (sorted by name) into the CSV ``out``; -> the number of rows."""
    rows = [r for p in sorted(result_dir.glob("*.out")) for r in read_out(p)]
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)
    return len(rows)
