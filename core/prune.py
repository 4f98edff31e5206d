"""FinerCut (Zhang et al. 2024, "FinerCut: Finer-grained Interpretable Layer Pruning for Large Language
Models"): remove the attention / FFN sublayers whose removal changes the model's output least.

Greedy: every remaining sublayer of every :class:`core.blocks.Block` is a candidate; each step switches
off the one whose removal gives the smallest distance between the original and the pruned model's outputs
on calibration batches, until ``n_remove`` are gone. The distance is the mean squared difference of the
outputs, or the Jensen-Shannon divergence of softmax outputs for classifiers / LMs (``metric="js"``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.blocks import Block


@dataclass
class Removal:
    step: int
    block: int
    sublayer: str  # "mixer" | "ffn"
    distance: float


def _distance(a: torch.Tensor, b: torch.Tensor, metric: str) -> float:
    if metric == "mse":
        return float(F.mse_loss(a, b))
    if metric == "js":
        p, q = a.float().softmax(-1), b.float().softmax(-1)
        m = 0.5 * (p + q)
        kl = lambda x, y: (x * (x.clamp_min(1e-12).log() - y.clamp_min(1e-12).log())).sum(-1)  # noqa: E731
        return float((0.5 * kl(p, m) + 0.5 * kl(q, m)).mean())
    raise ValueError(f"metric must be 'mse' or 'js', got {metric!r}")


@torch.no_grad()
def finercut(model: nn.Module, batches: list, n_remove: int, metric: str = "mse", forward=None) -> list[Removal]:
    """Switch off ``n_remove`` sublayers of ``model`` in place, greedily; returns what was removed, in order.

    ``forward(model, batch) -> output`` (default ``model(batch)``) lets any model / batch layout in.
    """
    fwd = forward or (lambda m, b: m(b))
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    cands = [(i, s) for i, b in enumerate(blocks) for s in ("mixer", "ffn")
             if not (s == "mixer" and b.mixer is None) and not getattr(b, f"skip_{s}")]
    if n_remove > len(cands):
        raise ValueError(f"cannot remove {n_remove} sublayers: only {len(cands)} remain")
    was = model.training
    model.eval()
    reference = [fwd(model, b) for b in batches]

    def score() -> float:
        return sum(_distance(fwd(model, b), r, metric) for b, r in zip(batches, reference)) / len(batches)

    report = []
    for step in range(n_remove):
        best = None
        for i, s in cands:
            setattr(blocks[i], f"skip_{s}", True)
            d = score()
            setattr(blocks[i], f"skip_{s}", False)
            if best is None or d < best[2]:
                best = (i, s, d)
        i, s, d = best
        setattr(blocks[i], f"skip_{s}", True)
        cands.remove((i, s))
        report.append(Removal(step, i, s, d))
    model.train(was)
    return report
