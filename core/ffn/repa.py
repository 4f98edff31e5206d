"""RePaViT channel-idle FFN (Xu et al. 2025, "RePaViT: Scalable Vision Transformer Acceleration via
Structural Reparameterization on Feedforward Network Layers").

Training form: ``fc2(act_partial(fc1(BN(x))))`` where only the first ``(1 - idle)`` share of hidden
channels goes through the activation; the idle channels stay linear. BatchNorm (not LayerNorm) sits in
front so that it folds into fc1. ``reparam()`` (eval) folds BN into fc1 and merges the whole linear path
``W2[:, idle] W1'[idle]`` into one ``dim -> out`` map, leaving a narrow nonlinear path:

    y = W_lin x + b_lin + W2[:, act] act(W1'[act] x + b1'[act])

Departure from the paper, on purpose: RePaViT replaces the block's LayerNorm by this BatchNorm. Here the FFN is a
drop-in variant, so the block keeps its own LayerNorm (pre- or post-norm) and the BatchNorm sits after it, inside
the FFN; ``reparam()`` folds only this BatchNorm. Inside a pre-norm block the FFN therefore sees LN(x), not x.
"""
from __future__ import annotations

import torch
from torch import nn

from core.ffn.registry import register, resolve_act


@register("repa")
class RePaFFN(nn.Module):
    """x[..., dim] -> [..., out]; ``idle`` share of hidden channels skip the activation."""

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.GELU,
                 drop: float = 0.0, bias: bool = True, idle: float = 0.75):
        super().__init__()
        hidden, out = hidden or 4 * dim, out or dim
        if not 0.0 <= idle < 1.0:
            raise ValueError(f"idle must be in [0, 1), got {idle}")
        self.n_active = hidden - int(round(hidden * idle))
        self.norm = nn.BatchNorm1d(dim)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = resolve_act(act)()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.drop2 = nn.Dropout(drop)
        self.linear: nn.Linear | None = None  # set by reparam()
        self.fc1_active: nn.Linear | None = None
        self.fc2_active: nn.Linear | None = None

    def forward(self, x):
        if self.linear is not None:
            return self.linear(x) + self.fc2_active(self.act(self.fc1_active(x)))
        lead = x.shape[:-1]
        x = self.norm(x.reshape(-1, x.shape[-1])).reshape(*lead, -1)
        h = self.fc1(x)
        h = torch.cat([self.act(h[..., : self.n_active]), h[..., self.n_active:]], dim=-1)
        return self.drop2(self.fc2(self.drop1(h)))

    @torch.no_grad()
    def reparam(self) -> None:
        if self.linear is not None:
            return
        if self.training:
            raise RuntimeError("RePaFFN.reparam() needs eval mode (BatchNorm running statistics)")
        bn = self.norm
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        t = bn.bias - bn.running_mean * s
        w1 = self.fc1.weight * s  # fc1(BN(x)) = (W1 diag(s)) x + (W1 t + b1)
        b1 = self.fc1.weight @ t + (self.fc1.bias if self.fc1.bias is not None else 0)
        a = self.n_active
        w2 = self.fc2.weight
        dim, out = w1.shape[1], w2.shape[0]
        self.linear = nn.Linear(dim, out).to(w1)
        self.linear.weight.copy_(w2[:, a:] @ w1[a:])
        self.linear.bias.copy_(w2[:, a:] @ b1[a:] + (self.fc2.bias if self.fc2.bias is not None else 0))
        self.fc1_active = nn.Linear(dim, a).to(w1)
        self.fc1_active.weight.copy_(w1[:a])
        self.fc1_active.bias.copy_(b1[:a])
        self.fc2_active = nn.Linear(a, out, bias=False).to(w1)
        self.fc2_active.weight.copy_(w2[:, :a])
        del self.norm, self.fc1, self.fc2
