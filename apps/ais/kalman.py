"""Kalman-filter baselines of vessel tracking: constant velocity (CV) and constant turn rate and velocity (CTRV).

Each window's reports (east / north metres from its last report, time, SOG, COG, reported rate of turn) are
filtered oldest to newest, then the last filtered state is extrapolated to the horizons. Vectorised over windows:
a window with fewer reports has NaN rows, which the filter skips.

- ``cv``: state [e, n, ve, vn]; white-noise acceleration of spectral density ``q`` (m^2/s^3); measures the position
  (std ``sigma_pos`` m) and the velocity from SOG / COG (std ``sigma_vel`` m/s). Bar-Shalom, Li, Kirubarajan,
  *Estimation with Applications to Tracking and Navigation* (2001), ch. 6.
- ``ctrv``: state [e, n, v, psi, omega] (psi the course, north = 0, clockwise; omega rad/s), an extended Kalman
  filter with white-noise acceleration ``q`` and turn acceleration ``q_omega`` (rad^2/s^3); measures position, SOG
  and COG, and the rate of turn where one is reported. The maritime trackers' CTRV / IMM family (e.g. Perera,
  Oliveira, Guedes Soares, IEEE T-ITS 2012).

The noise levels are chosen on validation windows (:func:`tune`), never on test.
"""
from __future__ import annotations

import itertools

import numpy as np

from apps.ais.clean import KNOT

CV_GRID = {"q": (0.001, 0.01, 0.1, 1.0), "sigma_pos": (5.0, 10.0, 30.0), "sigma_vel": (0.1, 0.5)}
CTRV_GRID = {"q": (0.01, 0.1, 1.0), "q_omega": (1e-10, 1e-9, 1e-8, 1e-7), "sigma_pos": (5.0, 10.0, 30.0)}
SIGMA_COURSE = np.deg2rad(3.0)  # COG std (rad)
SIGMA_ROT = np.deg2rad(1.0) / 60  # reported rate of turn std (rad/s)


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _update(x, P, z, H, R, valid, angle=None):
    """One Kalman update of the windows where ``valid`` [W]: x[W, S], P[W, S, S], z[W, M], H[W, M, S], R[M, M];
    ``angle``: the measurement component that is an angle (innovation wrapped)."""
    y = z - np.einsum("wms,ws->wm", H, x)
    if angle is not None:
        y[:, angle] = _wrap(y[:, angle])
    S = H @ P @ H.transpose(0, 2, 1) + R
    K = P @ H.transpose(0, 2, 1) @ np.linalg.inv(S)
    x_new = x + np.einsum("wsm,wm->ws", K, y)
    P_new = (np.eye(x.shape[1]) - K @ H) @ P
    v = valid[:, None]
    return np.where(v, x_new, x), np.where(v[..., None], P_new, P)


def cv(hist: np.ndarray, horizons, q: float, sigma_pos: float, sigma_vel: float) -> np.ndarray:
    """hist[W, T, 6] (e, n, t, sog kn, cog deg, rot deg/min; NaN rows = no report) -> displacements [W, H, 2]."""
    W, T, _ = hist.shape
    x, P = np.zeros((W, 4)), np.tile(np.diag([1e4, 1e4, 100.0, 100.0]), (W, 1, 1))
    started, t_prev = np.zeros(W, bool), np.zeros(W)
    R_full = np.diag([sigma_pos ** 2] * 2 + [sigma_vel ** 2] * 2)
    for k in range(T):
        e, n, t, sog, cog = (hist[:, k, j] for j in range(5))
        here = ~np.isnan(e)
        dt = np.where(started, t - t_prev, 0.0)
        F = np.tile(np.eye(4), (W, 1, 1))
        F[:, 0, 2] = F[:, 1, 3] = dt
        d3, d2, d1 = dt ** 3 / 3, dt ** 2 / 2, dt
        Q = np.zeros((W, 4, 4))
        for a, b in ((0, 2), (1, 3)):
            Q[:, a, a], Q[:, a, b], Q[:, b, a], Q[:, b, b] = d3 * q, d2 * q, d2 * q, d1 * q
        x_p, P_p = np.einsum("wij,wj->wi", F, x), F @ P @ F.transpose(0, 2, 1) + Q
        x, P = np.where(here[:, None], x_p, x), np.where(here[:, None, None], P_p, P)
        first = here & ~started  # the first report: position and velocity as measured
        v = np.nan_to_num(sog) * KNOT
        c = np.deg2rad(np.nan_to_num(cog))
        z = np.stack([e, n, v * np.sin(c), v * np.cos(c)], 1)
        has_vel = here & ~np.isnan(sog) & ~np.isnan(cog)
        H = np.tile(np.eye(4), (W, 1, 1))
        H[~has_vel, 2:, :] = 0.0  # no velocity measured: its rows do nothing
        z0 = np.where(has_vel[:, None], np.nan_to_num(z), np.nan_to_num(z) * np.array([1, 1, 0, 0]))
        P0 = np.where(has_vel[:, None, None], R_full, np.diag([sigma_pos ** 2] * 2 + [100.0] * 2))
        x, P = np.where(first[:, None], z0, x), np.where(first[:, None, None], P0, P)  # the first report, as measured
        x, P = _update(x, P, np.nan_to_num(z), H, R_full, here & ~first)
        started |= here
        t_prev = np.where(here, t, t_prev)
    hz = np.asarray(horizons, dtype=np.float64)
    return x[:, None, :2] + x[:, None, 2:] * hz[None, :, None]


def _ctrv_move(x, dt):
    """CTRV motion of states x[W, 5] over dt[W] s (exact), and its Jacobian [W, 5, 5]."""
    e, n, v, psi, w = x.T
    small = np.abs(w) < 1e-6
    ws = np.where(small, 1.0, w)
    p1 = psi + w * dt
    de = np.where(small, v * np.sin(psi) * dt, v / ws * (np.cos(psi) - np.cos(p1)))
    dn = np.where(small, v * np.cos(psi) * dt, v / ws * (np.sin(p1) - np.sin(psi)))
    out = np.stack([e + de, n + dn, v, p1, w], 1)
    J = np.tile(np.eye(5), (len(x), 1, 1))
    J[:, 0, 2] = np.where(small, np.sin(psi) * dt, (np.cos(psi) - np.cos(p1)) / ws)
    J[:, 1, 2] = np.where(small, np.cos(psi) * dt, (np.sin(p1) - np.sin(psi)) / ws)
    J[:, 0, 3] = np.where(small, v * np.cos(psi) * dt, v / ws * (-np.sin(psi) + np.sin(p1)))
    J[:, 1, 3] = np.where(small, -v * np.sin(psi) * dt, v / ws * (np.cos(p1) - np.cos(psi)))
    J[:, 0, 4] = np.where(small, 0.5 * v * np.cos(psi) * dt ** 2,
                          v * dt / ws * np.sin(p1) - v / ws ** 2 * (np.cos(psi) - np.cos(p1)))
    J[:, 1, 4] = np.where(small, -0.5 * v * np.sin(psi) * dt ** 2,
                          v * dt / ws * np.cos(p1) - v / ws ** 2 * (np.sin(p1) - np.sin(psi)))
    J[:, 3, 4] = dt
    return out, J


def ctrv(hist: np.ndarray, horizons, q: float, q_omega: float, sigma_pos: float) -> np.ndarray:
    """hist[W, T, 6] (e, n, t, sog kn, cog deg, rot deg/min; NaN rows = no report) -> displacements [W, H, 2]."""
    W, T, _ = hist.shape
    x, P = np.zeros((W, 5)), np.tile(np.diag([1e4, 1e4, 100.0, 10.0, 1e-3]), (W, 1, 1))
    started, t_prev = np.zeros(W, bool), np.zeros(W)
    R = np.diag([sigma_pos ** 2, sigma_pos ** 2, (0.2 * KNOT) ** 2, SIGMA_COURSE ** 2, SIGMA_ROT ** 2])
    for k in range(T):
        e, n, t, sog, cog, rot = (hist[:, k, j] for j in range(6))
        here = ~np.isnan(e)
        dt = np.where(started, t - t_prev, 0.0)
        x_p, J = _ctrv_move(x, dt)
        Q = np.zeros((W, 5, 5))
        Q[:, 2, 2] = q * dt  # speed: white acceleration
        Q[:, 3, 3], Q[:, 3, 4], Q[:, 4, 3], Q[:, 4, 4] = (q_omega * dt ** 3 / 3, q_omega * dt ** 2 / 2,
                                                          q_omega * dt ** 2 / 2, q_omega * dt)
        P_p = J @ P @ J.transpose(0, 2, 1) + Q
        x, P = np.where(here[:, None], x_p, x), np.where(here[:, None, None], P_p, P)
        x[:, 3] = _wrap(x[:, 3])
        z = np.stack([e, n, np.nan_to_num(sog) * KNOT, np.deg2rad(np.nan_to_num(cog)),
                      np.deg2rad(np.nan_to_num(rot)) / 60], 1)
        H = np.tile(np.eye(5), (W, 1, 1))
        H[np.isnan(sog), 2, :] = 0.0
        H[np.isnan(cog), 3, :] = 0.0
        H[np.isnan(rot), 4, :] = 0.0
        first = here & ~started  # the first report, as measured (an unknown turn rate: 0, uncertain)
        P0 = np.tile(R, (W, 1, 1))
        P0[np.isnan(rot), 4, 4] = 1e-4
        x, P = np.where(first[:, None], np.nan_to_num(z), x), np.where(first[:, None, None], P0, P)
        x, P = _update(x, P, np.nan_to_num(z), H, R, here & ~first, angle=3)
        started |= here
        t_prev = np.where(here, t, t_prev)
    hz = np.asarray(horizons, dtype=np.float64)
    out = np.empty((W, len(hz), 2))
    for i, h in enumerate(hz):
        moved, _ = _ctrv_move(x, np.full(W, h))
        out[:, i] = moved[:, :2]
    return out


FILTERS = {"cv": (cv, CV_GRID), "ctrv": (ctrv, CTRV_GRID)}


def tune(s: dict, horizons) -> dict[str, dict]:
    """For each filter, the grid point with the lowest mean position error (all horizons) on windows ``s`` (the
    validation split): {"cv": {...}, "ctrv": {...}}."""
    out = {}
    for name, (fn, grid) in FILTERS.items():
        best, best_err = None, np.inf
        for values in itertools.product(*grid.values()):
            kw = dict(zip(grid, values))
            err = np.linalg.norm(fn(s["hist"], horizons, **kw) - s["true_en"], axis=-1).mean()
            if err < best_err:
                best, best_err = kw, err
        out[name] = best
    return out


def predict(s: dict, horizons, params: dict[str, dict]) -> dict[str, np.ndarray]:
    """{"kalman_cv": [W, H, 2], "kalman_ctrv": ...} on windows ``s`` with the tuned ``params``."""
    return {f"kalman_{name}": FILTERS[name][0](s["hist"], horizons, **kw) for name, kw in params.items()}
