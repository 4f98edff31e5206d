"""A synthetic task that needs learned synaptic delays, with the same distribution of single frames in every class.

``burst_order_task``: ``groups`` channel groups (``group`` channels each) fire volleys in a cyclic
order that repeats with a random phase: G, G', G'', ... one volley every ``gap`` bins (each volley moved by up to
``jitter`` bins, each spike of it by up to ``spread`` more), plus background spikes at rate ``noise``. The class
is the cyclic order, (groups - 1)! classes (6 for the default ``GROUPS`` = 4). Because the phase is uniform the process is stationary:
any single frame (or pair of frames the same distance apart, whatever the order) has the same distribution in
every class, so a network whose neurons forget within a bin (LIF with tau about one bin) is at chance without
delays. A neuron detects "G then G' one gap later" by delaying G's synapses by one gap more than G''s, which
makes the two volleys coincide. Fixed random delays spread each volley over many bins (every synapse its own
delay), so few spikes coincide and the noise drowns them; learned delays align a whole volley.

It replaces an earlier task (the order of two volleys a fixed gap apart, 2 classes) that any delay longer than
the gap solved, random ones included (99.6 % random vs 99.3 % learned): it could not tell learning from luck.
"""
from __future__ import annotations

import itertools

import torch

GROUPS = 4


def cyclic_orders(groups: int) -> list[tuple[int, ...]]:
    """The distinct cyclic orders of ``groups`` groups, each as a tuple starting with group 0."""
    return [(0, *p) for p in itertools.permutations(range(1, groups))]


def burst_order_task(n: int, steps: int = 48, groups: int = GROUPS, group: int = 8, gap: int = 7, jitter: int = 1,
                     spread: int = 2, noise: float = 0.03, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (spikes[n, steps, groups*group] float, labels[n] long in [0, (groups-1)!))."""
    if gap <= 2 * jitter + 1:
        raise ValueError(f"gap {gap} must exceed 2 * jitter + 1 = {2 * jitter + 1}, or volleys could swap")
    orders = torch.tensor(cyclic_orders(groups))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(orders), (n,), generator=g)
    x = (torch.rand(n, steps, groups * group, generator=g) < noise).float()
    period = groups * gap
    phase = torch.randint(0, period, (n,), generator=g)
    slots = torch.arange(-1, steps // gap + 2)  # volley k at phase + k * gap - period, covering the window
    times = phase[:, None] - period + slots[None] * gap + gap  # [n, K]
    times = times + torch.randint(-jitter, jitter + 1, times.shape, generator=g)
    who = orders[y][:, slots % groups]  # [n, K] group of each volley
    spike_t = times[..., None] + torch.randint(-spread, spread + 1, (*times.shape, group), generator=g)  # [n,K,group]
    chan = who[..., None] * group + torch.arange(group)
    rows = torch.arange(n)[:, None, None].expand_as(spike_t)
    ok = (spike_t >= 0) & (spike_t < steps)
    x[rows[ok], spike_t[ok], chan[ok]] = 1.0
    return x, y
