"""What an audio-LLM prober opens first: accuracy per question type, with the floors beside it."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from apps.audio.questions import TYPES  # noqa: E402


def accuracy_by_type_figure(metrics: dict, title: str):
    """Bars: test accuracy per question type (``test_acc_<type>``); lines: the macro mean, the same model with the
    audio removed (blind) and on the held-out phrasing (rephrased)."""
    types = [t for t in TYPES if f"test_acc_{t}" in metrics]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.bar(types, [metrics[f"test_acc_{t}"] for t in types], color="tab:blue")
    for key, label, color in (("test_acc", "macro", "black"), ("test_acc_blind", "blind (audio removed)", "tab:red"),
                              ("test_acc_rephrased", "rephrased questions", "tab:green")):
        if key in metrics:
            ax.axhline(metrics[key], color=color, ls="--", lw=1, label=f"{label} {metrics[key]:.2f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
