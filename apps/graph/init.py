"""Weight initialisation for GNNs, including Virgo (Li et al., "On the Initialization of Graph Neural Networks",
ICML 2023), and the per-layer variance profile that motivates it.

Xavier and Kaiming ignore the graph: a GCN layer ``H_l = act(Â H_{l-1} W_l)`` also scales the signal by the
propagation ``Â``. Virgo measures that scaling on the graph itself,

    c^f_l = ||Â^l X||² / ||Â^{l-1} X||²            (forward: the input signal after l propagations)
    c^b_l = ||Â^{L-l+1} G||² / ||Â^{L-l} G||²      (backward: a unit output gradient G on the training nodes)

and gives layer l (fan_in n_{l-1}, fan_out n_l) the variance that keeps both directions steady, averaged the way
Xavier averages fan-in and fan-out:

    Var(W_l) = 2 g / (n_{l-1} c^f_l + n_l c^b_l),   W_l ~ U(-sqrt(3 Var), +sqrt(3 Var)),

with gain g = 2 for ReLU layers, 1 for the linear output layer. Our reading of the paper: the c's use the
symmetric normalised adjacency with self-loops and the actual features / training mask of the graph.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.sparse import SparseOperator

SCHEMES = ("default", "glorot", "xavier", "kaiming_in", "kaiming_out", "virgo")


def layer_weights(model: nn.Module) -> list[nn.Parameter]:
    """The main weight of each conv of ``apps.graph.models.GNN``, every one [out, in] as ``nn.Linear``.

    Virgo re-initialises these; SAGE's root weight (``lin_r``), GAT's attention vectors and GIN's second MLP layer
    keep their defaults (our reading: the paper derives the variance of the propagated path only)."""
    out = []
    for conv in model.convs:
        if hasattr(conv, "weight") and isinstance(conv.weight, nn.Parameter):
            out.append(conv.weight)  # ours
        elif hasattr(conv, "lin") and conv.lin is not None:  # PyG GCN / GAT
            out.append(conv.lin.weight)
        elif hasattr(conv, "lin_l"):  # SAGE: neighbour and root weights
            out.append(conv.lin_l.weight)
        else:
            lins = [m for m in conv.modules() if isinstance(m, nn.Linear)]
            out.append(lins[0].weight)
    return out


@torch.no_grad()
def propagation_ratios(adj: SparseOperator, x: torch.Tensor, train_mask: torch.Tensor, layers: int):
    """Virgo's (c^f_l, c^b_l) for l = 1..layers."""
    fwd, h = [], x
    for _ in range(layers):
        nxt = adj @ h
        fwd.append(float(nxt.pow(2).sum() / h.pow(2).sum().clamp(min=1e-12)))
        h = nxt
    g = torch.zeros(x.size(0), 64)
    g[train_mask] = torch.randn(int(train_mask.sum()), 64, generator=torch.Generator().manual_seed(0))
    bwd_rev = []
    for _ in range(layers):  # the gradient reaching layer l has crossed L-l+1 propagations
        nxt = adj @ g
        bwd_rev.append(float(nxt.pow(2).sum() / g.pow(2).sum().clamp(min=1e-12)))
        g = nxt
    return fwd, bwd_rev[::-1]


@torch.no_grad()
def initialize(model: nn.Module, scheme: str, x: torch.Tensor | None = None, edge_index: torch.Tensor | None = None,
               train_mask: torch.Tensor | None = None) -> list[float]:
    """Re-initialise every conv's weight with ``scheme``; returns the per-layer weight std used."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init {scheme!r}; known: {', '.join(SCHEMES)}")
    weights = layer_weights(model)
    if scheme == "default":
        return [float(w.std()) for w in weights]
    if scheme == "virgo":
        if x is None or edge_index is None or train_mask is None:
            raise ValueError("virgo needs the graph: initialize(model, 'virgo', x, edge_index, train_mask)")
        adj = model.propagation(edge_index, x.size(0))
        cf, cb = propagation_ratios(adj, x, train_mask, len(weights))
    stds = []
    for i, w in enumerate(weights):
        fan_out, fan_in = w.shape
        gain = 1.0 if i == len(weights) - 1 else 2.0
        if scheme in ("glorot", "xavier"):
            var = 2.0 / (fan_in + fan_out)
        elif scheme == "kaiming_in":
            var = gain / fan_in
        elif scheme == "kaiming_out":
            var = gain / fan_out
        else:
            var = 2.0 * gain / (fan_in * cf[i] + fan_out * cb[i])
        bound = math.sqrt(3.0 * var)
        w.uniform_(-bound, bound)
        stds.append(math.sqrt(var))
    return stds


def variance_profile(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor,
                     train_mask: torch.Tensor) -> dict[str, list[float]]:
    """Per-layer variance at initialisation: conv outputs (forward) and their gradients (backward), eval mode."""
    was = model.training
    model.eval()
    out, hidden = model(x, edge_index, return_hidden=True)
    for h in hidden:
        h.retain_grad()
    F.cross_entropy(out[train_mask], y[train_mask]).backward()
    prof = {"forward": [float(h.detach().var()) for h in hidden],
            "backward": [float(h.grad.var()) if h.grad is not None else 0.0 for h in hidden]}
    model.zero_grad(set_to_none=True)
    model.train(was)
    return prof
