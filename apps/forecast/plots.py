"""Forecast-vs-truth figure for one test window."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def forecast_figure(x, y, pred, columns: list[str], dates=None, channel: int = -1, title: str = "",
                    units: str = ""):
    """x[L, N] history, y[H, N] truth, pred[H, N] forecast (any array-like, the units they are in) -> Figure.

    ``dates`` (L + H timestamps) label the time axis; without them it counts steps.
    """
    L, H = len(x), len(y)
    t = list(dates) if dates is not None else list(range(L + H))
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    ax.plot(t[:L], x[:, channel], color="0.3", lw=1.2, label="history")
    ax.plot(t[L:], y[:, channel], color="tab:blue", lw=1.2, label="truth")
    ax.plot(t[L:], pred[:, channel], color="tab:orange", lw=1.4, label="forecast")
    ax.axvline(t[L - 1], color="0.6", ls=":", lw=1)
    ax.set_xlabel("date" if dates is not None else "time step")
    ax.set_ylabel(columns[channel] + (f" ({units})" if units else ""))
    if dates is not None:
        fig.autofmt_xdate()
    ax.set_title(title or f"first test window, {columns[channel]}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
