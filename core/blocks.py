"""Residual blocks: a token mixer and an FFN, each with a residual connection and a LayerNorm.

``Block(dim, mixer="attention"|"mamba"|"bimamba"|"none", ffn="mlp", ...)``: x[B, L, dim] -> [B, L, dim].

- ``norm="post"`` (Vaswani et al. 2017; iTransformer, S-Mamba): ``x = n1(x + mix(x)); x = n2(x + ffn(x))``
- ``norm="pre"`` (GPT-2 / nanoGPT): ``x = x + mix(n1(x)); x = x + ffn(n2(x))``

:class:`Encoder` stacks blocks and applies a final LayerNorm.
"""
from __future__ import annotations

from torch import nn

from core.attention import Attention
from core.ffn import build_ffn
from core.mamba import BiMamba, Mamba


def build_mixer(name: str, dim: int, **kw) -> nn.Module | None:
    """Token mixer by name; options not meant for it are ignored so one config serves all mixers."""
    if name == "attention":
        return Attention(dim, heads=kw.get("heads", 8), attn_drop=kw.get("attn_drop", 0.0),
                         causal=kw.get("causal", False))
    if name in ("mamba", "bimamba"):
        mkw = {k: kw[k] for k in ("d_state", "d_conv", "expand", "dt_rank", "scan_mode") if k in kw}
        return (Mamba if name == "mamba" else BiMamba)(dim, **mkw)
    if name == "none":
        return None
    raise ValueError(f"unknown mixer {name!r}; use attention, mamba, bimamba or none")


class Block(nn.Module):
    """One residual block (mixer + FFN). x[B, L, dim] -> [B, L, dim]."""

    def __init__(self, dim: int, mixer: str = "attention", ffn: str = "mlp", hidden: int | None = None,
                 act="gelu", drop: float = 0.0, drop_mixer: float = 0.0, norm: str = "post",
                 ffn_kw: dict | None = None, **mixer_kw):
        super().__init__()
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.pre = norm == "pre"
        self.mixer = build_mixer(mixer, dim, **mixer_kw)
        self.norm1 = nn.LayerNorm(dim) if self.mixer is not None else nn.Identity()
        self.drop_mixer = nn.Dropout(drop_mixer)
        self.ffn = build_ffn(ffn, dim, hidden=hidden, act=act, drop=drop, **(ffn_kw or {}))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x):
        if self.mixer is not None:
            x = x + self.drop_mixer(self.mixer(self.norm1(x))) if self.pre else \
                self.norm1(x + self.drop_mixer(self.mixer(x)))
        return x + self.ffn(self.norm2(x)) if self.pre else self.norm2(x + self.ffn(x))


class Encoder(nn.Module):
    """``depth`` blocks then a final LayerNorm. x[B, L, dim] -> [B, L, dim]."""

    def __init__(self, depth: int, dim: int, final_norm: bool = True, **block_kw):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, **block_kw) for _ in range(depth))
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)
