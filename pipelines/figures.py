"""Figures every run gets, whatever the app: learning curves read back from the run's own metric history; and the
confusion matrix every classifier gets."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


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


def confusion(y: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, C] counts, rows = true class, columns = predicted class."""
    return torch.bincount(y * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)


def confusion_figure(y: torch.Tensor, pred: torch.Tensor, num_classes: int, title: str = "test nodes",
                     names: list[str] | None = None):
    """Confusion matrix (row-normalised colours, counts written) and per-class accuracy -> Figure; ``names``
    label the classes."""
    cm = confusion(y, pred, num_classes).numpy()
    per_class = np.diag(cm) / np.maximum(cm.sum(1), 1)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4), dpi=110, gridspec_kw={"width_ratios": [1.2, 1]})
    ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(num_classes):
        for j in range(num_classes):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > 0.5 * cm[i].sum() else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion, {title}")
    bx.bar(range(num_classes), 100 * per_class, color="tab:blue")
    bx.axhline(100 * float((y == pred).float().mean()), color="tab:orange", ls="--", lw=1, label="overall")
    if names:
        ax.set_xticks(range(num_classes), names, rotation=60, fontsize=7)
        ax.set_yticks(range(num_classes), names, fontsize=7)
        bx.set_xticks(range(num_classes), names, rotation=60, fontsize=7)
    bx.set_xlabel("class")
    bx.set_ylabel("accuracy (%)")
    bx.set_ylim(0, 100)
    bx.legend(fontsize=8)
    fig.tight_layout()
    return fig
