"""The physical baselines of vessel-position forecasting, and what the learned models correct.

Each maps a window's last report (SOG knots, COG degrees, rate of turn deg/s) to displacements [W, H, 2] (east,
north metres) at the horizons H (seconds): dead reckoning (constant speed and course), the damped turn (the rate
of turn decaying with a time constant chosen on validation), the last position, and constant velocity from the
last two fixes.
"""
from __future__ import annotations

import numpy as np

from apps.ais.clean import KNOT


TURN_TAUS = (0.0, 5.0, 10.0, 13.0, 20.0, 30.0)  # candidates for the damped-turn baseline, chosen on validation


def dead_reckoning(sog_kn: np.ndarray, cog_deg: np.ndarray, horizons) -> np.ndarray:
    """[W] SOG (kn), COG (deg) -> displacements [W, H, 2] (east, north metres) along the reported course."""
    v = sog_kn * KNOT
    c = np.deg2rad(cog_deg)
    hz = np.asarray(horizons, dtype=np.float64)
    return np.stack([v[:, None] * hz * np.sin(c)[:, None], v[:, None] * hz * np.cos(c)[:, None]], -1)


def damped_turn(sog_kn: np.ndarray, cog_deg: np.ndarray, omega: np.ndarray, horizons, tau: float) -> np.ndarray:
    """Displacements [W, H, 2] (east, north m) of a vessel that keeps its speed and turns at ``omega`` (deg/s)
    decaying with time constant ``tau`` s: course(s) = COG + omega tau (1 - exp(-s / tau)), integrated in 1 s steps.
    tau -> 0 is dead reckoning."""
    s = np.arange(0.0, max(horizons), 1.0) + 0.5
    course = np.deg2rad(cog_deg[:, None] + omega[:, None] * tau * (1 - np.exp(-s[None] / max(tau, 1e-9))))
    v = (sog_kn * KNOT)[:, None]
    e, n = np.cumsum(v * np.sin(course), 1), np.cumsum(v * np.cos(course), 1)
    idx = np.asarray(horizons) - 1
    return np.stack([e[:, idx], n[:, idx]], -1)


def base_displacement(base: str, sog_kn, cog_deg, omega, horizons, turn_tau: float) -> np.ndarray:
    """What the learned models correct, [W, H, 2] east/north metres: ``dr`` (dead reckoning) or ``turn`` (the damped
    turn with time constant ``turn_tau``). One definition for training, serving and retrain scoring."""
    if base == "turn":
        return damped_turn(sog_kn, cog_deg, omega, horizons, turn_tau)
    return dead_reckoning(sog_kn, cog_deg, horizons)


def baselines(s: dict, horizons, turn_tau: float = 0.0, kalman_params: dict | None = None) -> dict[str, np.ndarray]:
    """Displacements [W, H, 2] of the non-learned baselines on windows ``s``; ``kalman_params`` (tuned on
    validation, :func:`apps.ais.kalman.tune`) adds the Kalman CV and CTRV filters."""
    from apps.ais import kalman

    hz = np.asarray(horizons, dtype=np.float64)
    vel = s["prev_en"] / np.minimum(s["prev_dt"], -1e-3)[:, None]  # m/s from the previous fix to the last
    out = {"dr": s["dr"], "last": np.zeros_like(s["dr"]), "cv": vel[:, None, :] * hz[None, :, None],
           "turn": damped_turn(s["sog0"], s["cog0"], s["omega"], horizons, turn_tau)}
    if kalman_params and "hist" in s:
        out.update(kalman.predict(s, horizons, kalman_params))
    return out
