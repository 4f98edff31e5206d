"""The paired statistics behind every "better" in the docs."""
import numpy as np

from pipelines.bench.stats import mean_interval, ratio_interval, verdict


def test_ratio_interval_resamples_whole_groups_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 25)
    b = rng.gamma(2.0, 10.0, size=len(groups))
    a = 0.9 * b * rng.lognormal(0, 0.05, size=len(groups))  # about 10 % lower, paired
    est, lo, hi = ratio_interval(a, b, groups)
    assert lo < est < hi < 0 and abs(est + 10) < 2
    # one vessel with many windows and a large effect: window weighting follows it, group weighting does not
    a2, b2 = np.r_[a, np.full(1000, 1.0)], np.r_[b, np.full(1000, 100.0)]
    g2 = np.r_[groups, np.full(1000, 99)]
    assert ratio_interval(a2, b2, g2)[0] < -50 and ratio_interval(a2, b2, g2, weight="group")[0] > -30
    # resampling groups (not windows) widens the interval when windows of a group move together
    shared = np.repeat(rng.normal(0, 0.2, 40), 25)
    a3 = b * np.exp(shared)
    lo_g, hi_g = ratio_interval(a3, b, groups)[1:]
    lo_w, hi_w = ratio_interval(a3, b, np.arange(len(b)))[1:]
    assert hi_g - lo_g > 2 * (hi_w - lo_w)


def test_mean_interval_and_verdict():
    m, lo, hi = mean_interval([0.02, 0.03, 0.025, 0.035, 0.03])
    assert lo < m < hi and lo > 0 and verdict(lo, hi) == "higher"
    assert verdict(*mean_interval([0.01, -0.02, 0.015, -0.01])[1:]) == "no difference shown"
    assert mean_interval([1.0])[1] == -np.inf
