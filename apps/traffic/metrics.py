"""Classification scores at the level the task states: per flow, or per capture from its flows.

``scores(y, prob, group, level)``: ``macro_f1`` (sklearn's macro average over the classes present in the true or
the predicted labels) and ``acc``. At ``level="capture"`` a capture's prediction is the argmax of the mean of its
flows' class probabilities and its label is its flows' majority label.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def by_capture(y: np.ndarray, prob: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (capture labels, capture mean probabilities), one row per capture in ``np.unique(group)`` order."""
    caps, inv = np.unique(group, return_inverse=True)
    p = np.zeros((len(caps), prob.shape[1]))
    np.add.at(p, inv, prob)
    counts = np.zeros((len(caps), prob.shape[1]))
    np.add.at(counts, (inv, y), 1)
    return counts.argmax(1), p / np.bincount(inv)[:, None]


def scores(y: np.ndarray, prob: np.ndarray, group: np.ndarray | None = None, level: str = "flow") -> dict:
    if level == "capture":
        y, prob = by_capture(y, prob, group)
    pred = prob.argmax(1)
    return {"macro_f1": float(f1_score(y, pred, average="macro")), "acc": float(accuracy_score(y, pred))}
