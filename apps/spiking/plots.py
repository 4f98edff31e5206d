"""What a user of a spiking model looks at first: a spike raster with the network's decision, and the delays."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def raster_figure(spikes: torch.Tensor, probs: torch.Tensor, label: int, bin_ms: float | None = None):
    """spikes[T, C] of one sample, class probabilities [classes], true label -> Figure (raster + bar chart)."""
    t, c = np.nonzero(spikes.numpy() > 0)
    scale = bin_ms or 1.0
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110, gridspec_kw={"width_ratios": [3, 1]})
    ax.scatter(t * scale, c, s=2, color="black", marker="|")
    ax.set_xlabel("time (ms)" if bin_ms else "time bin")
    ax.set_ylabel("input channel")
    pred = int(probs.argmax())
    ax.set_title(f"test sample: label {label}, predicted {pred} ({100 * float(probs[pred]):.0f} %)")
    colors = ["tab:green" if k == label else ("tab:red" if k == pred else "0.6") for k in range(len(probs))]
    bx.bar(range(len(probs)), probs.numpy(), color=colors)
    bx.set_xticks(range(len(probs)))
    bx.set_xlabel("class")
    bx.set_ylabel("time-averaged softmax")
    fig.tight_layout()
    return fig


def delay_histogram(layers: list[tuple[str, torch.Tensor]], max_delay: int):
    """Integer delays per layer [(name, delays[out, in])] -> Figure, one histogram per layer."""
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3), dpi=110, squeeze=False)
    for ax, (name, d) in zip(axes[0], layers):
        ax.hist(d.flatten().numpy(), bins=np.arange(max_delay + 1) - 0.5, color="tab:blue")
        ax.set_title(name)
        ax.set_xlabel("delay (bins)")
    axes[0][0].set_ylabel("synapses")
    fig.tight_layout()
    return fig
