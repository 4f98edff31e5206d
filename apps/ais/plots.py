"""What an AIS user opens first: tracks on the map with the forecast, the truth and dead reckoning."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from apps.ais.geodesy import from_local  # noqa: E402


def tracks_figure(tracks, s: dict, pred: np.ndarray, horizons, n: int = 6):
    """The ``n`` vessels' test windows with the largest dead-reckoning error at the last horizon: the reports
    (grey), the last report (black), truth (blue), model (orange) and DR (green) at every horizon."""
    dr_err = np.linalg.norm(s["dr"][:, -1] - s["true_en"][:, -1], axis=-1)
    pick, seen = [], set()
    for w in np.argsort(-dr_err):  # one window per vessel
        if s["mmsi"][w] not in seen:
            seen.add(s["mmsi"][w])
            pick.append(w)
        if len(pick) == n:
            break
    cols = min(3, len(pick))
    rows = int(np.ceil(len(pick) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), dpi=100, squeeze=False)
    for ax, w in zip(axes.flat, pick):
        g = tracks[(tracks.mmsi == s["mmsi"][w]) & (tracks.time <= s["t0"][w] + max(horizons) + 60)]
        ax.plot(g.lon, g.lat, ".-", color="0.7", ms=3, lw=0.8, label="reports")
        ax.plot(s["lon0"][w], s["lat0"][w], "ko", ms=5, label="last report")
        ax.plot(s["true_lon"][w], s["true_lat"][w], "o", color="tab:blue", ms=5, label="truth")
        for disp, color, name in ((pred[w], "tab:orange", "model"), (s["dr"][w], "tab:green", "dead reckoning")):
            lat, lon = from_local(disp[:, 0], disp[:, 1], s["lat0"][w], s["lon0"][w])
            ax.plot(lon, lat, "x", color=color, ms=7, mew=2, label=name)
        ax.set_title(f"MMSI {s['mmsi'][w]}: +{', +'.join(map(str, horizons))} s", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_aspect(1 / np.cos(np.deg2rad(s["lat0"][w])))
    for ax in list(axes.flat)[len(pick):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("test windows with the largest dead-reckoning error at the last horizon", fontsize=9)
    fig.tight_layout()
    return fig


def error_by_horizon_figure(metrics: dict, horizons):
    """Mean haversine error (m) per horizon of the model and the physical baselines on the same test windows."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=110)
    for name, label, style in (("test", "model", "o-"), ("dr", "dead reckoning", "s--"),
                               ("turn", "damped turn", "^:"), ("cv", "constant velocity", "x:")):
        vals = [metrics.get(f"{name}_mean_m_{h}s") for h in horizons]
        if all(v is not None for v in vals):
            ax.plot(list(horizons), vals, style, label=label)
    ax.set_xlabel("horizon (s)")
    ax.set_ylabel("mean error (m, haversine)")
    ax.set_title("test error by horizon")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
