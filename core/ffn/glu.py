"""Gated linear unit FFNs (Dauphin et al. 2017; Shazeer 2020, "GLU Variants Improve Transformer").

``out = fc2(drop(act(x W) * (x V)))``; SwiGLU is GLU with SiLU gate.
"""
from __future__ import annotations

from torch import nn

from core.ffn.registry import register, resolve_act


@register("glu")
class GLU(nn.Module):
    """x[..., dim] -> gate act(x W) * value (x V) -> fc2 -> [..., out].

    ``hidden`` is the gated width; defaults to ``int(8*dim/3)`` so the parameter count matches a
    4x MLP (Shazeer 2020). ``act`` defaults to sigmoid (the original GLU).
    """

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.Sigmoid,
                 drop: float = 0.0, bias: bool = True):
        super().__init__()
        hidden = hidden or int(8 * dim / 3)
        out = out or dim
        self.fc1 = nn.Linear(dim, 2 * hidden, bias=bias)  # [gate | value] in one matmul
        self.act = resolve_act(act)()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.drop2(self.fc2(self.drop1(self.act(gate) * value)))


@register("swiglu")
class SwiGLU(GLU):
    """GLU with a SiLU (swish) gate, as in PaLM / LLaMA."""

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.SiLU,
                 drop: float = 0.0, bias: bool = True):
        super().__init__(dim, hidden=hidden, out=out, act=act, drop=drop, bias=bias)
