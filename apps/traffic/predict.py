"""Labelling the flows of new captures, in one picklable object (no MLflow here).

``FlowPredictor.predict(df)`` takes either a ``path`` column (captures, folders or globs) or a DataFrame of packets
(``time`` seconds, ``src``, ``sport``, ``dst``, ``dport``, ``proto`` number, ``ip_len``; optional ``payload_len``,
``flags``, ``window``, ``ttl``, ``ip_id``, ``seq``, ``tcp_ts``, ``capture``) and returns one row per flow:
``capture``, ``flow`` (index in the capture), ``proto``, ``client``, ``server`` (address:port, for the user's own
output: never logged), ``packets``, ``label``, ``probability``; at capture level also ``capture_label`` (the
argmax of the mean of the capture's flow probabilities).
"""
from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd
import torch

from apps.traffic.data import read_flows, resolve_captures
from apps.traffic.features import TOKEN_KEYS, stack_tokens
from apps.traffic.flows import Flow, FlowTable
from apps.traffic.metrics import by_capture
from core.datadir import DataError

PACKET_COLUMNS = ("time", "src", "sport", "dst", "dport", "proto", "ip_len")
OPTIONAL = ("payload_len", "flags", "window", "ttl", "ip_id", "seq", "tcp_ts")


def flows_from_packets(df: pd.DataFrame, source: str = "input", payload_bytes: int = 0) -> list[Flow]:
    missing = [c for c in PACKET_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; a packet table needs {', '.join(PACKET_COLUMNS)} "
                        f"(or give a 'path' column of captures)")
    tables: dict[str, FlowTable] = {}
    for i, r in enumerate(df.to_dict("records")):
        try:
            num = {c: int(float(r.get(c) or 0)) for c in ("sport", "dport", "proto", "ip_len", *OPTIONAL)}
            ts = float(r["time"])
            src, dst = ipaddress.ip_address(str(r["src"])).packed, ipaddress.ip_address(str(r["dst"])).packed
        except (TypeError, ValueError) as e:
            raise DataError(f"{source}: row {i + 1}: {e}") from None
        cap = str(r.get("capture") or "input")
        t = tables.setdefault(cap, FlowTable(cap, payload_bytes))
        t.add(ts, (num["proto"], src, num["sport"], dst, num["dport"], num["ip_len"], num["ttl"], num["ip_id"],
                   num["flags"], num["window"], num["seq"], num["tcp_ts"], num["payload_len"], b""))
    return [f for t in tables.values() for f in t.flows()]


class FlowPredictor:
    def __init__(self, task, class_names: list[str], token_kw: dict, level: str = "flow"):
        self.task = task.eval()
        self.class_names, self.token_kw, self.level = list(class_names), dict(token_kw), level

    def flows(self, df: pd.DataFrame, source: str = "input") -> list[Flow]:
        if "path" in df.columns:
            files = [f for p in df["path"] for f in resolve_captures(str(p))[0]]
            return read_flows(files, self.token_kw["payload_bytes"])[0]
        return flows_from_packets(df, source, self.token_kw["payload_bytes"])

    @torch.no_grad()
    def proba(self, flows: list[Flow], batch: int = 512) -> np.ndarray:
        out = []
        for i in range(0, len(flows), batch):
            t = stack_tokens(flows[i:i + batch], **self.token_kw)
            x = [torch.from_numpy(t[k]) for k in TOKEN_KEYS]
            out.append(self.task(*x).softmax(-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)))

    def predict(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        flows = self.flows(df, source)
        p = self.proba(flows)
        k = p.argmax(1) if len(p) else np.zeros(0, dtype=int)
        key = [f.key() for f in flows]
        out = pd.DataFrame({"capture": [f.capture for f in flows], "flow": [f.index for f in flows],
                            "proto": [f.proto_name for f in flows],
                            "client": [f"{c[1]}:{c[2]}" for c in key], "server": [f"{c[3]}:{c[4]}" for c in key],
                            "packets": [sum(f.packets) for f in flows],
                            "label": [self.class_names[i] for i in k], "probability": p[np.arange(len(k)), k]})
        if self.level == "capture" and len(flows):
            caps, inv = np.unique(out["capture"], return_inverse=True)
            _, mean = by_capture(k, p, inv)
            out["capture_label"] = [self.class_names[i] for i in mean.argmax(1)[inv]]
        return out
