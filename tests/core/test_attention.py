"""Attention against an explicit per-head loop: softmax(Q K^T / sqrt(d_head)) V, with and without the causal mask,
and with context keys / values (LAL) whose padding is masked."""
import math

import pytest
import torch

from core.attention import Attention


def _reference(att: Attention, x: torch.Tensor, causal: bool, context=None, context_mask=None) -> torch.Tensor:
    b, n, d = x.shape
    h, dh = att.heads, d // att.heads
    c = 0 if context is None else context.shape[1]
    kv = x if context is None else torch.cat([context, x], 1)
    q, k, v = att.q_proj(x), att.k_proj(kv), att.v_proj(kv)
    out = torch.zeros_like(q)
    for i in range(b):
        for head in range(h):
            s = slice(head * dh, (head + 1) * dh)
            scores = q[i, :, s] @ k[i, :, s].T / math.sqrt(dh)  # [N, C + N]
            for j in range(c):
                if context_mask is not None and not context_mask[i, j]:
                    scores[:, j] = float("-inf")
            if causal:
                scores[:, c:] = scores[:, c:].masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            out[i, :, s] = scores.softmax(-1) @ v[i, :, s]
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


@pytest.mark.parametrize("causal", [False, True])
def test_context_keys_equal_the_loop_and_hide_their_padding(causal):
    torch.manual_seed(0)
    att = Attention(12, heads=3, causal=causal).eval()
    x, ctx = torch.randn(2, 5, 12), torch.randn(2, 4, 12)
    cmask = torch.tensor([[True, True, True, True], [True, False, True, False]])
    y = att(x, context=ctx, context_mask=cmask)
    torch.testing.assert_close(y, _reference(att, x, causal, ctx, cmask), rtol=1e-5, atol=1e-5)
    ctx2 = ctx.clone()
    ctx2[1, 1] += 5.0  # a padded context position changes nothing; a visible one does
    torch.testing.assert_close(att(x, context=ctx2, context_mask=cmask), y)
    ctx2[1, 0] += 5.0
    assert not torch.allclose(att(x, context=ctx2, context_mask=cmask)[1], y[1])


def test_attention_rejects_a_width_the_heads_do_not_divide():
    with pytest.raises(ValueError, match="not divisible by heads 5"):
        Attention(12, heads=5)


@pytest.mark.parametrize("causal,with_context", [(False, False), (True, False), (False, True), (True, True)])
def test_attention_weights_are_the_ones_forward_averages_with(causal, with_context):
    """Probes read ``attention_weights``: rows sum to 1, masked keys get 0, and weights @ V is forward's output."""
    torch.manual_seed(0)
    att = Attention(12, heads=3, causal=causal).eval()
    x = torch.randn(2, 5, 12)
    kw = {"context": torch.randn(2, 4, 12), "context_mask": torch.tensor([[True] * 4, [True, False, True, False]])} \
        if with_context else {}
    p = att.attention_weights(x, **kw)
    c = 4 if with_context else 0
    assert p.shape == (2, 3, 5, c + 5)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, 5))
    if causal:
        assert float(p[..., c:].masked_select(torch.ones(5, 5, dtype=torch.bool).triu(1)).abs().max()) == 0.0
    if with_context:
        assert float(p[1, :, :, [1, 3]].abs().max()) == 0.0
    kv = x if not with_context else torch.cat([kw["context"], x], 1)
    v = att._heads(att.v_proj(kv))
    y = att.out_proj((p @ v).transpose(1, 2).reshape(2, 5, 12))
    torch.testing.assert_close(y, att(x, **kw), rtol=1e-5, atol=1e-5)
