"""Figures every run gets, whatever the app: learning curves read back from the run's own metric history."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(client, run_id: str):
    """Every ``train_*`` / ``val_*`` metric of the run by step -> a Figure (None when the run logged none).

    Losses share the left axis; accuracies and other scores, if any, go on a right axis.
    """
    keys = sorted(k for k in client.get_run(run_id).data.metrics if k.startswith(("train_", "val_")))
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    right = None
    for k in keys:
        hist = sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)
        if len(hist) < 1:
            continue
        target = ax
        if "loss" not in k:
            right = right or ax.twinx()
            target = right
        target.plot([m.step for m in hist], [m.value for m in hist], marker="." if len(hist) < 30 else None,
                    lw=1.3, ls="-" if k.startswith("train_") else "--", label=k)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        right.set_ylabel("score")
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="best")
    ax.set_title("learning curves")
    fig.tight_layout()
    return fig
