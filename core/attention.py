"""Multi-head scaled dot-product self-attention (Vaswani et al. 2017).

``Attention(dim, heads)``: x[B, L, dim] -> [B, L, dim]; softmax(Q K^T / sqrt(d_head)) V with
dropout on the attention weights, as iTransformer's ``FullAttention`` + ``AttentionLayer``.

``context[B, Lc, dim]`` adds keys and values that are not queried (LAL, "attention-only" integration of another
modality: the queries come from x, the keys and values from ``cat(context, x)``); ``context_mask[B, Lc]`` (bool,
True = visible) hides its padding. ``attn_mask`` is SDPA's (bool True = attend, or additive), over x's keys or,
with a context, over ``cat(context, x)``; ``causal`` applies to x's own keys only.
"""
from __future__ import annotations

import torch
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

    def _heads(self, t):
        return t.view(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

    def _masks(self, x, kv, attn_mask, context, context_mask):
        """-> (attn_mask, is_causal) for SDPA: the causal triangle over x's own keys and the context's padding
        folded into ``attn_mask`` when either has to be combined with something else."""
        b, n = x.shape[:2]
        causal = self.causal
        if context is not None and (causal or context_mask is not None):
            m = x.new_ones(b, 1, n, kv.shape[1], dtype=torch.bool)
            if causal:
                m[..., context.shape[1]:] = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            if context_mask is not None:
                m[..., :context.shape[1]] &= context_mask[:, None, None, :]
            attn_mask = m if attn_mask is None else m & attn_mask if attn_mask.dtype == torch.bool else \
                attn_mask.masked_fill(~m, float("-inf"))
            causal = False
        elif attn_mask is not None and causal:
            tri = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            attn_mask = attn_mask & tri if attn_mask.dtype == torch.bool else attn_mask.masked_fill(~tri, float("-inf"))
            causal = False
        return attn_mask, causal

    def forward(self, x, attn_mask=None, context=None, context_mask=None):
        b, n, d = x.shape
        kv = x if context is None else torch.cat([context, x], 1)
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(kv)), self._heads(self.v_proj(kv))
        attn_mask, causal = self._masks(x, kv, attn_mask, context, context_mask)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))

    def attention_weights(self, x, attn_mask=None, context=None, context_mask=None) -> torch.Tensor:
        """The weights ``forward`` averages the values with (no dropout), [B, heads, L, Lc + L]: for probes."""
        kv = x if context is None else torch.cat([context, x], 1)
        q, k = self._heads(self.q_proj(x)), self._heads(self.k_proj(kv))
        attn_mask, causal = self._masks(x, kv, attn_mask, context, context_mask)
        s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        if causal:
            attn_mask = torch.ones(x.shape[1], kv.shape[1], dtype=torch.bool, device=x.device).tril()
        if attn_mask is not None:
            s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask
        return s.softmax(-1)
