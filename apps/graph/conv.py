"""Graph convolution on a cached, normalised sparse adjacency (Kipf & Welling, ICLR 2017).

.. math::  X' = \\hat D^{-1/2} (A + I) \\hat D^{-1/2} X W + b,\\qquad \\hat D_{ii} = 1 + \\sum_j A_{ij}

Same numbers as ``torch_geometric.nn.GCNConv`` (self-loops added where missing, in-degree normalisation on the
target), but the propagation matrix is built once per graph as a :class:`core.sparse.SparseOperator`, and
sparse node features go through the same operator, so a full-batch epoch is a few CSR products.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core.sparse import SparseOperator


def gcn_norm(edge_index: torch.Tensor, num_nodes: int, self_loops: bool = True) -> SparseOperator:
    """``D^-1/2 (A [+ I]) D^-1/2`` as a SparseOperator; duplicate edges count once, messages flow src -> dst."""
    src, dst = edge_index
    keep = src != dst
    src, dst = src[keep], dst[keep]
    if self_loops:
        loop = torch.arange(num_nodes, device=edge_index.device)
        src, dst = torch.cat([src, loop]), torch.cat([dst, loop])
    key = torch.unique(dst * num_nodes + src)  # row = target, col = source
    row, col = key // num_nodes, key % num_nodes
    deg = torch.zeros(num_nodes).index_add_(0, row, torch.ones(row.numel()))
    dinv = deg.pow(-0.5).masked_fill_(deg == 0, 0.0)
    return SparseOperator(torch.stack([row, col]), dinv[row] * dinv[col], (num_nodes, num_nodes))


class GraphCache:
    """Explicit per-graph cache of a derived operator, as PyG's ``cached=True``: built on first use and reused
    while the *same tensor object*, unmodified, comes back. It holds a reference to that tensor, so freed memory
    reused by a new tensor can never return a stale operator; a different tensor object, or an in-place change
    (its version counter), rebuilds; ``clear()`` drops it (call it when the graph changes under the model)."""

    def __init__(self):
        self._src, self._version, self._val = None, -1, None

    def __getstate__(self):  # pickled models carry no derived tensors
        return {"_src": None, "_version": -1, "_val": None}

    def clear(self) -> None:
        self._src, self._version, self._val = None, -1, None

    def get(self, t: torch.Tensor, build):
        if t is not self._src or t._version != self._version:
            self._val = build()
            self._src, self._version = t, t._version
        return self._val


class GCNConv(nn.Module):
    """x[N, in] (dense or SparseOperator), adj: SparseOperator [N, N] -> [N, out].

    ``weight`` is [out, in] like ``nn.Linear`` and PyG's ``GCNConv.lin``, so initialisers treat every conv alike.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = math.sqrt(6.0 / (self.in_channels + self.out_channels))  # glorot, as PyG
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x, adj: SparseOperator) -> torch.Tensor:
        out = adj @ (x @ self.weight.t())  # x may be a SparseOperator (sparse features)
        return out + self.bias if self.bias is not None else out
