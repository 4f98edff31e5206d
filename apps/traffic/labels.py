"""Flow labels, in the two formats users have.

- ``folders``: ``<root>/<label>/...`` -- every flow of a capture gets the name of the capture's first folder under
  the root (Zeek's protocol traces, nPrint's examples).
- a flow-label CSV (nDPI's ``flow_labels.csv`` is the default), joined on the capture's file name and the
  5-tuple in either direction. Columns: ``pcap``, ``l4_proto`` (TCP, UDP, ... or a protocol number), ``src_ip``,
  ``src_port``, ``dst_ip``, ``dst_port`` and the label column; when a ``confidence`` column exists only rows whose
  confidence is in ``confidence`` (default: ``DPI``, nDPI's payload inspection) count as ground truth.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pandas as pd

from apps.traffic.flows import Flow
from core.datadir import DataError

CSV_COLUMNS = ("pcap", "l4_proto", "src_ip", "src_port", "dst_ip", "dst_port")


def folder_label(path: Path, root: Path) -> str:
    rel = Path(path).resolve().relative_to(Path(root).resolve())
    if len(rel.parts) < 2:
        raise DataError(f"{path}: --data.labels folders needs <root>/<label>/<capture>; this capture is directly "
                        f"in {root}")
    return rel.parts[0]


def _norm_ip(s: str) -> str:
    try:
        return str(ipaddress.ip_address(str(s).strip("[]")))
    except ValueError:
        return str(s)


class FlowLabelTable:
    """A flow-label CSV as a lookup ``label(flow) -> str | None``."""

    def __init__(self, path, column: str = "app_proto", confidence: tuple[str, ...] = ("DPI",)):
        path = Path(path)
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read the flow-label CSV: {e}") from None
        missing = [c for c in (*CSV_COLUMNS, column) if c not in df.columns]
        if missing:
            raise DataError(f"{path}: line 1: missing column(s) {missing}; a flow-label CSV needs "
                            f"{', '.join(CSV_COLUMNS)} and the label column {column!r}")
        if "confidence" in df.columns and confidence:
            df = df[df.confidence.isin(confidence)]
        self.path, self.column, self.rows = path, column, len(df)
        self.table: dict[tuple, str] = {}
        for r in df.itertuples(index=False):
            try:
                a, b = (_norm_ip(r.src_ip), int(r.src_port)), (_norm_ip(r.dst_ip), int(r.dst_port))
            except ValueError:
                continue
            key = (r.pcap, r.l4_proto.upper(), min(a, b), max(a, b))
            self.table.setdefault(key, getattr(r, column))

    def label(self, f: Flow) -> str | None:
        _, cip, cport, sip, sport = f.key()
        a, b = (cip, cport), (sip, sport)
        return self.table.get((f.capture, f.proto_name, min(a, b), max(a, b)))
