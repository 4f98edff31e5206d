"""Attention against an explicit per-head loop: softmax(Q K^T / sqrt(d_head)) V, with and without the causal mask."""
import math

import pytest
import torch

from core.attention import Attention


def _reference(att: Attention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    b, n, d = x.shape
    h, dh = att.heads, d // att.heads
    q, k, v = att.q_proj(x), att.k_proj(x), att.v_proj(x)
    out = torch.zeros_like(q)
    for head in range(h):
        s = slice(head * dh, (head + 1) * dh)
        scores = q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(dh)  # [B, N, N]
        if causal:
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        out[..., s] = scores.softmax(-1) @ v[..., s]
    return att.out_proj(out)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_the_per_head_loop(causal):
    torch.manual_seed(0)
    att = Attention(12, heads=3, causal=causal).eval()
    x = torch.randn(2, 7, 12)
    torch.testing.assert_close(att(x), _reference(att, x, causal), rtol=1e-5, atol=1e-5)
    if causal:  # a token never sees the future: changing the last token leaves the others unchanged
        y = x.clone()
        y[:, -1] += 1.0
        torch.testing.assert_close(att(y)[:, :-1], att(x)[:, :-1])


def test_attention_rejects_a_width_the_heads_do_not_divide():
    with pytest.raises(ValueError, match="not divisible by heads 5"):
        Attention(12, heads=5)
