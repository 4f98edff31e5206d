"""A temporal task that only synaptic delays can solve: the order of two spike volleys a fixed gap apart.

Two channel groups A and B (``group`` channels each). Every sample has one volley in A and one in B, ``gap``
bins apart, at a random onset: class 0 = A then B, class 1 = B then A. Onsets are uniform, so absolute time
carries no information, and ``noise`` adds background spikes. Each volley alone looks the same in both
classes; telling them apart needs information carried across ``gap`` bins. A feed-forward LIF network whose
membranes forget within a few bins (tau = 2 bins, leak 0.5 per bin: 0.5**gap after ``gap`` bins) cannot carry
it without delays; a synapse delayed by ``gap`` bins makes the two volleys coincide for one order only.
"""
from __future__ import annotations

import torch


def delay_task(n: int, steps: int = 50, group: int = 8, gap: int = 12, noise: float = 0.01,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (spikes[n, steps, 2*group] float, labels[n] long)."""
    if gap >= steps:
        raise ValueError(f"gap {gap} must be shorter than steps {steps}")
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    onset = torch.randint(0, steps - gap, (n,), generator=g)
    x = (torch.rand(n, steps, 2 * group, generator=g) < noise).float()
    first = torch.where(y == 0, 0, group)  # channel offset of the group that fires first
    rows = torch.arange(n)
    for c in range(group):
        x[rows, onset, first + c] = 1.0
        x[rows, onset + gap, group - first + c] = 1.0
    return x, y
