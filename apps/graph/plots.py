"""What a user of a node classifier looks at first: per-class accuracy and the confusion matrix; for an
initialisation scheme, the activation variance by layer."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def confusion(y: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, C] counts, rows = true class, columns = predicted class."""
    return torch.bincount(y * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)


def confusion_figure(y: torch.Tensor, pred: torch.Tensor, num_classes: int, title: str = "test nodes"):
    """Confusion matrix (row-normalised colours, counts written) and per-class accuracy -> Figure."""
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
    bx.set_xlabel("class")
    bx.set_ylabel("accuracy (%)")
    bx.set_ylim(0, 100)
    bx.legend(fontsize=8)
    fig.tight_layout()
    return fig


def variance_figure(profile: dict[str, list[float]], scheme: str):
    """Per-layer activation (forward) and gradient (backward) variance at initialisation -> Figure (log scale)."""
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=110)
    for key, style in (("forward", "o-"), ("backward", "s--")):
        vals = profile.get(key) or []
        if vals:
            ax.semilogy(range(1, len(vals) + 1), vals, style, label=key)
    ax.set_xlabel("layer")
    ax.set_ylabel("variance at initialisation")
    ax.set_title(f"init: {scheme}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
