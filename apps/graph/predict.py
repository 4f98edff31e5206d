"""Node classification from a logged model, in one picklable object (no MLflow here).

``NodePredictor.predict(df)``: a frame with a ``node`` column of node ids of the training graph -> the same
frame with ``label`` (predicted class) and ``confidence`` (its normalised score). The graph (features and
edges) travels with the model, since a transductive GNN predicts from the whole graph.
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
