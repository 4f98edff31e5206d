"""For an initialisation scheme, the activation variance by layer (the confusion matrix every classifier gets is in
``pipelines.figures``)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
