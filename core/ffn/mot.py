"""Mixture-of-Transformers modality FFN (Liang et al. 2024, "Mixture-of-Transformers: A Sparse and
Scalable Architecture for Multi-Modal Foundation Models"): every modality has its own FFN and norm,
selected per token by a modality id.
"""
from __future__ import annotations

import torch
from torch import nn

from core.ffn.dispatch import dispatch
from core.ffn.registry import FFN, register


@register("mot")
class MoTFFN(nn.Module):
    """x[..., dim], modality[...] (int ids) -> ffn_m(norm_m(x)) per token, [..., out].

    Without ``modality`` every token is modality 0 (or ``self.modality`` when a caller set it).
    """

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.GELU,
                 drop: float = 0.0, bias: bool = True, modalities: int = 2, ffn: str = "mlp", norm: bool = True,
                 ffn_kw: dict | None = None):
        super().__init__()
        self.out_features = out or dim
        self.norms = nn.ModuleList(nn.LayerNorm(dim) if norm else nn.Identity() for _ in range(modalities))
        self.ffns = nn.ModuleList(FFN[ffn](dim, hidden=hidden, out=out, act=act, drop=drop, bias=bias, **(ffn_kw or {}))
                                  for _ in range(modalities))
        self.modality: torch.Tensor | None = None

    def forward(self, x, modality: torch.Tensor | None = None):
        modality = modality if modality is not None else self.modality
        if modality is None or len(self.ffns) == 1:
            return self.ffns[0](self.norms[0](x))
        if modality.shape != x.shape[:-1]:
            raise ValueError(f"modality ids {tuple(modality.shape)} must match the token shape {tuple(x.shape[:-1])}")
        if int(modality.min()) < 0 or int(modality.max()) >= len(self.ffns):
            raise ValueError(f"modality ids must be in [0, {len(self.ffns)}), got [{int(modality.min())}, "
                             f"{int(modality.max())}]")
        experts = [lambda h, n=n, f=f: f(n(h)) for n, f in zip(self.norms, self.ffns)]
        y = dispatch(x.reshape(-1, x.shape[-1]), modality.reshape(-1), experts, self.out_features)
        return y.reshape(*x.shape[:-1], self.out_features)
