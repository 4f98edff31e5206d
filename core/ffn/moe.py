"""Sparse mixture-of-experts FFN: top-k routing (k=1 is Switch, Fedus et al. 2022; k=2 is GShard,
Lepikhin et al. 2021) with expert capacity, dropped-token handling and the auxiliary losses.

For T tokens, E experts, router probabilities p = softmax(W_r x):
- each token goes to its top-k experts, gates renormalised over the k chosen (k=1: the raw top probability);
- an expert takes at most ``capacity = ceil(capacity_factor * k * T / E)`` assignments, first choices first;
  an assignment over capacity is dropped: it contributes zero (the block's residual carries the token);
- load balance ``E * sum_i f_i * P_i`` (f_i: share of assignments routed to i, P_i: mean router prob of i),
  whose minimum 1 is reached by a uniform router; router z-loss ``mean(logsumexp(logits)^2)`` (ST-MoE).
``aux_loss = balance_coef * balance + z_coef * z`` is left on the module after every forward.

For k > 1, f_i counts all k choices of every token (GShard counts only the first choice); with k = 1 this is
Switch's loss exactly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.ffn.dispatch import dispatch
from core.ffn.registry import FFN, register


@register("moe")
class MoE(nn.Module):
    """x[..., dim] -> sum over chosen experts of gate * expert(x), [..., out]."""

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.GELU,
                 drop: float = 0.0, bias: bool = True, experts: int = 8, top_k: int = 2,
                 capacity_factor: float | None = 1.25, expert: str = "mlp", balance_coef: float = 1e-2,
                 z_coef: float = 1e-3, expert_kw: dict | None = None):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in [1, experts={experts}], got {top_k}")
        self.out_features = out or dim
        self.top_k, self.capacity_factor = top_k, capacity_factor
        self.balance_coef, self.z_coef = balance_coef, z_coef
        self.router = nn.Linear(dim, experts, bias=False)
        self.experts = nn.ModuleList(FFN[expert](dim, hidden=hidden, out=out, act=act, drop=drop, bias=bias,
                                                 **(expert_kw or {})) for _ in range(experts))
        self.aux_loss = torch.zeros(())
        self.load = torch.zeros(experts)  # share of assignments per expert, last forward
        self.dropped = torch.zeros(())  # share of assignments dropped for capacity, last forward (no host sync)

    def capacity(self, tokens: int) -> int:
        if not self.capacity_factor or self.capacity_factor <= 0:
            return tokens * self.top_k
        return max(1, math.ceil(self.capacity_factor * self.top_k * tokens / len(self.experts)))

    def forward(self, x):
        lead = x.shape[:-1]
        t = x.reshape(-1, x.shape[-1])
        T, E, k = t.shape[0], len(self.experts), self.top_k
        logits = self.router(t).float()
        probs = logits.softmax(-1)
        gate, idx = probs.topk(k, dim=-1)  # [T, k]
        if k > 1:
            gate = gate / gate.sum(-1, keepdim=True)
        # slot of every assignment inside its expert, first choices before second choices
        choice = idx.t().reshape(-1)  # [k*T], choice-major
        onehot = F.one_hot(choice, E)
        slot = ((onehot.cumsum(0) - 1) * onehot).sum(-1)
        keep = slot < self.capacity(T)
        token = torch.arange(T, device=x.device).repeat(k)
        g = gate.t().reshape(-1)
        y = dispatch(t, choice.masked_fill(~keep, -1), self.experts, self.out_features, gate=g, token=token)
        counts = onehot.sum(0).float()
        self.load = (counts / counts.sum()).detach()
        self.dropped = (1 - keep.float().mean()).detach()
        self.balance_loss = E * (self.load * probs.mean(0)).sum()
        self.z_loss = torch.logsumexp(logits, -1).pow(2).mean()
        self.aux_loss = self.balance_coef * self.balance_loss + self.z_coef * self.z_loss
        return y.reshape(*lead, self.out_features)
