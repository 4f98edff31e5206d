"""Structured FFNs with self-guided training (Wei et al. 2024, "Building on Efficient Foundations:
Effectively Training LLMs with Structured Feedforward Layers").

- ``LowRankLinear``: ``y = U (V x) + b``, V: in -> rank, U: rank -> out.
- ``BlockDenseLinear``: block-diagonal ``in -> rank`` (``blocks`` independent blocks), then dense ``rank -> out``.
- ``GuidedLinear``: self-guided training, ``y = a * dense(x) + (1 - a) * structured(x)``; ``a`` decays
  1 -> 0 on a schedule (:func:`guidance`, driven by :func:`set_guidance`), after which the dense copy
  is no longer computed. ``reparam()`` folds the mix into one linear map (``a > 0``) or drops the dense copy.

FFN variants ``lowrank`` and ``blockdense``: the plain MLP with both linear maps structured.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core.ffn.registry import register, resolve_act


class LowRankLinear(nn.Module):
    """x[..., in] -> U(Vx) + b, [..., out]; rank * (in + out) weights instead of in * out."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.v = nn.Linear(in_features, rank, bias=False)
        self.u = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x):
        return self.u(self.v(x))

    def dense_weight(self) -> torch.Tensor:
        return self.u.weight @ self.v.weight


class BlockDenseLinear(nn.Module):
    """x[..., in] -> block-diagonal (in -> rank in ``blocks`` blocks) -> dense rank -> out, [..., out]."""

    def __init__(self, in_features: int, out_features: int, rank: int, blocks: int = 4, bias: bool = True):
        super().__init__()
        if in_features % blocks or rank % blocks:
            raise ValueError(f"in_features {in_features} and rank {rank} must be divisible by blocks {blocks}")
        self.blocks = blocks
        bound = 1 / math.sqrt(in_features // blocks)
        self.block_weight = nn.Parameter(torch.empty(blocks, in_features // blocks, rank // blocks).uniform_(-bound, bound))
        self.dense = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x):
        xb = x.reshape(*x.shape[:-1], self.blocks, -1)  # [..., blocks, in/blocks]
        h = torch.einsum("...bi,bir->...br", xb, self.block_weight).flatten(-2)  # [..., rank]
        return self.dense(h)

    def dense_weight(self) -> torch.Tensor:
        return self.dense.weight @ torch.block_diag(*self.block_weight.transpose(1, 2))


class GuidedLinear(nn.Module):
    """Self-guided layer: ``a * dense(x) + (1 - a) * structured(x)`` with ``a`` a buffer (set_guidance)."""

    def __init__(self, structured: nn.Module, in_features: int, out_features: int, bias: bool = True,
                 guided: bool = True):
        super().__init__()
        self.structured = structured
        self.dense = nn.Linear(in_features, out_features, bias=bias) if guided else None
        self.register_buffer("alpha", torch.tensor(1.0 if guided else 0.0))
        self._a = float(self.alpha)  # a host copy: forward reads it without a device sync
        self.merged: nn.Linear | None = None

    def set_alpha(self, a: float) -> None:
        self.alpha.fill_(a)
        self._a = float(a)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)
        if prefix + "alpha" in state_dict:
            self._a = float(state_dict[prefix + "alpha"])

    def forward(self, x):
        if self.merged is not None:
            return self.merged(x)
        a = self._a
        if self.dense is None or a == 0.0:
            return self.structured(x)
        if a == 1.0:
            return self.dense(x)
        return a * self.dense(x) + (1.0 - a) * self.structured(x)

    @torch.no_grad()
    def reparam(self) -> None:
        """Inference form: one linear map while ``a > 0``; the structured factors alone once ``a == 0``."""
        a = self._a
        if self.dense is None or self.merged is not None:
            return
        if a == 0.0:
            self.dense = None
            return
        s = self.structured
        w = a * self.dense.weight + (1 - a) * s.dense_weight()
        last = s.u if isinstance(s, LowRankLinear) else s.dense
        bias = None
        if self.dense.bias is not None or last.bias is not None:
            bias = a * (self.dense.bias if self.dense.bias is not None else 0) + \
                (1 - a) * (last.bias if last.bias is not None else 0)
        self.merged = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None).to(w)
        self.merged.weight.copy_(w)
        if bias is not None:
            self.merged.bias.copy_(bias)


def guidance(step: int, decay_steps: int) -> float:
    """Self-guidance weight: cosine decay from 1 at step 0 to 0 at ``decay_steps``, then 0."""
    if decay_steps <= 0 or step >= decay_steps:
        return 0.0
    return 0.5 * (1 + math.cos(math.pi * step / decay_steps))


def set_guidance(model: nn.Module, a: float) -> None:
    """Set ``a`` on every :class:`GuidedLinear` of ``model``."""
    for m in model.modules():
        if isinstance(m, GuidedLinear) and m.dense is not None:
            m.set_alpha(a)


class _StructuredMlp(nn.Module):
    def __init__(self, make, dim, hidden, out, act, drop, bias, guided):
        super().__init__()
        hidden, out = hidden or 4 * dim, out or dim
        self.fc1 = GuidedLinear(make(dim, hidden), dim, hidden, bias, guided)
        self.act = resolve_act(act)()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = GuidedLinear(make(hidden, out), hidden, out, bias, guided)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


@register("lowrank")
class LowRankFFN(_StructuredMlp):
    """MLP with low-rank fc1/fc2 (rank defaults to dim // 4), self-guided unless ``guided=False``."""

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.GELU,
                 drop: float = 0.0, bias: bool = True, rank: int | None = None, guided: bool = True):
        r = rank or max(1, dim // 4)
        super().__init__(lambda i, o: LowRankLinear(i, o, r, bias), dim, hidden, out, act, drop, bias, guided)


@register("blockdense")
class BlockDenseFFN(_StructuredMlp):
    """MLP with block-diagonal-then-dense fc1/fc2 (rank defaults to dim // 2, 4 blocks), self-guided."""

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.GELU,
                 drop: float = 0.0, bias: bool = True, rank: int | None = None, blocks: int = 4,
                 guided: bool = True):
        r = rank or max(blocks, dim // 2 // blocks * blocks)
        super().__init__(lambda i, o: BlockDenseLinear(i, o, r, blocks, bias), dim, hidden, out, act, drop, bias, guided)
