"""Forecast-vs-truth figure for one test window."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def forecast_figure(x, y, pred, columns: list[str], channel: int = -1, title: str = ""):
    """x[L, N] history, y[H, N] truth, pred[H, N] forecast (any array-like) -> matplotlib Figure."""
    L, H = len(x), len(y)
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    ax.plot(range(L), x[:, channel], color="0.3", lw=1.2, label="history")
    ax.plot(range(L, L + H), y[:, channel], color="tab:blue", lw=1.2, label="truth")
    ax.plot(range(L, L + H), pred[:, channel], color="tab:orange", lw=1.4, label="forecast")
    ax.axvline(L - 0.5, color="0.6", ls=":", lw=1)
    ax.set_xlabel("time step")
    ax.set_ylabel(f"{columns[channel]} (scaled)")
    ax.set_title(title or f"first test window, variate {columns[channel]}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
