"""Node classification and link prediction from a logged model, each one picklable object (no MLflow here).

``NodePredictor.predict(df)``: a frame with a ``node`` column of node ids of the training graph -> the same
frame with ``label`` (predicted class) and ``confidence`` (its normalised score). The graph (features and
edges) travels with the model, since a transductive GNN predicts from the whole graph.
``LinkScorer.predict(df)``: a frame with ``src`` and ``dst`` node ids -> the frame with ``score`` (the logit) and
``probability`` of an edge; the node embeddings of the training graph are computed once and travel with it.
"""
from __future__ import annotations

import pandas as pd
import torch

from core.datadir import DataError


class NodePredictor:
    def __init__(self, model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor, num_classes: int,
                 scores: str = "logits"):
        """``scores``: what the model returns per class, ``logits`` (softmax) or ``probability_sums`` (SF)."""
        self.model = model.eval()
        self.x, self.edge_index, self.num_classes, self.scores = x, edge_index, num_classes, scores

    def predict(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        if "node" not in df.columns:
            raise DataError(f"{source}: needs a 'node' column of node ids, got columns {list(df.columns)}")
        nodes = pd.to_numeric(df["node"], errors="coerce")
        n = self.x.size(0)
        bad = nodes.isna() | (nodes < 0) | (nodes >= n) | (nodes != nodes.round())
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{source}: row {i}: node {df['node'].iloc[i]} is not a node id in [0, {n})")
        with torch.no_grad():
            scores = self.model(self.x, self.edge_index)
        idx = torch.as_tensor(nodes.to_numpy().astype("int64"))
        s = scores[idx]
        probs = s / s.sum(-1, keepdim=True) if self.scores == "probability_sums" else torch.softmax(s, -1)
        conf, label = probs.max(-1)
        return pd.DataFrame({"node": idx.numpy(), "label": label.numpy(), "confidence": conf.numpy().astype("float64")})


class LinkScorer:
    def __init__(self, model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor):
        """``model``: ``encode(x, edge_index) -> state``, ``decode(state, pairs) -> logits`` (the link task's)."""
        self.model, self.num_nodes = model.eval(), x.size(0)
        self.edge_index = edge_index  # the training graph: which pairs this model has seen as edges
        with torch.no_grad():
            self.state = model.encode(x, edge_index)

    def seen(self, pairs: torch.Tensor) -> int:
        """How many of ``pairs`` [2, P] were edges of this model's training graph (either direction)."""
        n = max(self.num_nodes, int(pairs.max()) + 1 if pairs.numel() else 0)
        known = set((self.edge_index[0] * n + self.edge_index[1]).tolist())
        return sum(int(a) * n + int(b) in known for a, b in pairs.t().tolist())

    def predict(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        missing = [c for c in ("src", "dst") if c not in df.columns]
        if missing:
            raise DataError(f"{source}: needs columns 'src' and 'dst' (node ids); missing {missing}, got "
                            f"{list(df.columns)}")
        ids = {}
        for col in ("src", "dst"):
            v = pd.to_numeric(df[col], errors="coerce")
            bad = (v.isna() | (v < 0) | (v >= self.num_nodes) | (v != v.round())).to_numpy().nonzero()[0]
            if bad.size:
                shown = ", ".join(f"row {i}: {df[col].iloc[i]!r}" for i in bad[:5])
                raise DataError(f"{source}: {bad.size} unknown node id(s) in '{col}' ({shown}"
                                f"{', ...' if bad.size > 5 else ''}); node ids are integers in [0, {self.num_nodes})")
            ids[col] = torch.as_tensor(v.to_numpy().astype("int64"))
        with torch.no_grad():
            logits = self.model.decode(self.state, torch.stack([ids["src"], ids["dst"]]))
        return pd.DataFrame({"src": ids["src"].numpy(), "dst": ids["dst"].numpy(),
                             "score": logits.numpy().astype("float64"),
                             "probability": torch.sigmoid(logits).numpy().astype("float64")})
