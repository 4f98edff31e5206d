"""Multi-head scaled dot-product self-attention (Vaswani et al. 2017).

``Attention(dim, heads)``: x[B, L, dim] -> [B, L, dim]; softmax(Q K^T / sqrt(d_head)) V with
dropout on the attention weights, as iTransformer's ``FullAttention`` + ``AttentionLayer``.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Self-attention over the token axis. x[B, L, dim] -> [B, L, dim]."""

    def __init__(self, dim: int, heads: int = 8, attn_drop: float = 0.0, bias: bool = True, causal: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.causal = causal
        self.attn_drop = attn_drop
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, dim, bias=bias)
        self.v_proj = nn.Linear(dim, dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x, attn_mask=None):
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=self.causal,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))
