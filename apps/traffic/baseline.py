"""The tree baseline: sklearn's HistGradientBoostingClassifier on per-flow statistics (:func:`flow_stats`).

Class-balanced sample weights (the task is scored by macro-F1); early stopping on an internal 10 % of the training
flows when there are enough, so the validation and test folds stay untouched; leaves of at least 20 flows, or a
tenth of the training flows when there are fewer than 200 (label-efficiency runs).
"""
from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from apps.traffic.metrics import by_capture, scores


def fit_gbm(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0) -> HistGradientBoostingClassifier:
    w = len(y) / (n_classes * np.maximum(np.bincount(y, minlength=n_classes), 1))
    stop = len(y) >= 200 and np.unique(y, return_counts=True)[1].min() >= 10  # its internal split is stratified
    leaf = int(min(20, max(1, len(y) // 10)))  # sklearn's default 20 would make one leaf of a few labelled flows
    gbm = HistGradientBoostingClassifier(max_iter=300 if stop else 100, learning_rate=0.1, early_stopping=stop,
                                         min_samples_leaf=leaf, random_state=seed)
    return gbm.fit(x, y, sample_weight=w[y])


def gbm_proba(gbm, x: np.ndarray, n_classes: int) -> np.ndarray:
    """-> probabilities [N, n_classes] (classes never seen in training get 0)."""
    p = np.zeros((len(x), n_classes))
    p[:, gbm.classes_] = gbm.predict_proba(x)
    return p


def gbm_scores(dm, seed: int = 0) -> dict:
    """GBM trained on ``dm``'s training flows, scored on its test flows at ``dm.level``: gbm_macro_f1, gbm_acc."""
    tr, te, k = dm.sets["train"], dm.sets["test"], len(dm.class_names)
    gbm = fit_gbm(tr["stats"], tr["y"], k, seed)
    return {f"gbm_{m}": v for m, v in scores(te["y"], gbm_proba(gbm, te["stats"], k), te["group"], dm.level).items()}


def majority_scores(dm) -> dict:
    """The floor that ignores the traffic: every test unit gets the class most units of the training split have
    (units: flows, or captures at capture level) -> floor_majority_macro_f1, floor_majority_acc."""
    tr, te, k = dm.sets["train"], dm.sets["test"], len(dm.class_names)
    y = by_capture(tr["y"], np.eye(k)[tr["y"]], tr["group"])[0] if dm.level == "capture" else tr["y"]
    prob = np.zeros((len(te["y"]), k))
    prob[:, np.bincount(y, minlength=k).argmax()] = 1.0
    return {f"floor_majority_{m}": v for m, v in scores(te["y"], prob, te["group"], dm.level).items()}
