"""Paired comparisons with intervals: a claim is made only where the 95 % interval excludes 0."""
from __future__ import annotations

import numpy as np


def group_means(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """[N] values, [N] group labels -> [G] mean per group (groups in sorted order)."""
    _, inv = np.unique(groups, return_inverse=True)
    return np.bincount(inv, weights=values) / np.bincount(inv)


def ratio_interval(a: np.ndarray, b: np.ndarray, groups: np.ndarray, weight: str = "window", reps: int = 2000,
                   seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """100 (mean a / mean b - 1) over paired values a, b [N] (e.g. errors of a model and of a baseline on the same
    windows) and its percentile interval from a bootstrap that resamples whole ``groups`` (vessels, captures):
    values of one group are not independent. ``weight``: "window" (every value counts once) or "group" (every
    group counts once: the mean of its values). -> (estimate, low, high) in %."""
    _, inv = np.unique(groups, return_inverse=True)
    n = np.bincount(inv).astype(float)
    sa, sb = np.bincount(inv, weights=a), np.bincount(inv, weights=b)
    if weight == "group":
        sa, sb, n = sa / n, sb / n, np.ones_like(n)
    elif weight != "window":
        raise ValueError(f"weight: window or group, got {weight!r}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(n), size=(reps, len(n)))
    boot = 100 * (sa[idx].sum(1) / sb[idx].sum(1) - 1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(100 * (sa.sum() / sb.sum() - 1)), float(lo), float(hi)


def mean_interval(diffs, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences [n] and its t interval -> (mean, low, high); n = 1 gives an infinite interval."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    m = float(d.mean())
    if len(d) < 2:
        return m, -np.inf, np.inf
    half = float(stats.t.ppf((1 + level) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return m, m - half, m + half


def verdict(low: float, high: float, below: str = "lower", above: str = "higher") -> str:
    """``below`` / ``above`` where the interval excludes 0, else "no difference shown"."""
    return below if high < 0 else above if low > 0 else "no difference shown"


def paired_cell(diffs, digits: int = 3, scale: float = 1.0, **words) -> str:
    """Paired differences [n] -> "+m [low, high] word": their mean, 95 % t interval (each times ``scale``) and
    :func:`verdict` (``words``: its ``below`` / ``above``; ``words=False`` leaves the word out)."""
    m, low, high = (scale * v for v in mean_interval(diffs))
    cell = f"{m:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
    return cell if words.pop("words", True) is False else f"{cell} {verdict(low, high, **words)}"
