"""Plain two-layer MLP: ``fc2(drop(act(fc1(x))))`` (Vaswani et al. 2017, the transformer FFN)."""
from __future__ import annotations

from torch import nn

from core.ffn.registry import register, resolve_act


@register("mlp")
class Mlp(nn.Module):
    """x[..., dim] -> fc1 -> act -> drop -> fc2 -> drop -> [..., out]; hidden defaults to 4*dim."""

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.GELU,
                 drop: float = 0.0, bias: bool = True):
        super().__init__()
        hidden = hidden or 4 * dim
        out = out or dim
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = resolve_act(act)()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
