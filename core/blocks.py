"""Residual blocks: a token mixer and an FFN, each with a residual connection and a LayerNorm.

``Block(dim, mixer="attention"|"mamba"|"bimamba"|"none", ffn="mlp", ...)``: x[B, L, dim] -> [B, L, dim].

- ``norm="post"`` (Vaswani et al. 2017; iTransformer, S-Mamba): ``x = n1(x + mix(x)); x = n2(x + ffn(x))``
- ``norm="pre"`` (GPT-2 / nanoGPT): ``x = x + mix(n1(x)); x = x + ffn(n2(x))``
- ``macaron=True`` (Lu et al. 2019, "Understanding and Improving Transformer From a Multi-Particle
  Dynamic System Point of View"): half-step FFN, mixer, half-step FFN, i.e. (pre-norm)
  ``x = x + ffn0(n0(x))/2; x = x + mix(n1(x)); x = x + ffn(n2(x))/2``.

Sublayers can be switched off (``skip_mixer`` / ``skip_ffn``), which is how FinerCut prunes them.
``drop_path`` is stochastic depth (Huang et al. 2016, timm's ``DropPath``): in training each residual branch is
dropped per sample with that probability and the kept ones scaled by 1/(1-p). :class:`Encoder` stacks blocks with
a drop-path rate rising linearly from 0 to ``drop_path`` over depth (as timm's ViT), then a final LayerNorm.
"""
from __future__ import annotations

from timm.layers import DropPath
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
    """One residual block (mixer + FFN). x[B, L, dim] -> [B, L, dim]; ``modality`` goes to a MoT FFN."""

    def __init__(self, dim: int, mixer: str = "attention", ffn: str = "mlp", hidden: int | None = None,
                 act="gelu", drop: float = 0.0, drop_mixer: float = 0.0, norm: str = "post", macaron: bool = False,
                 ffn_kw: dict | None = None, drop_path: float = 0.0, **mixer_kw):
        super().__init__()
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.pre = norm == "pre"
        make_ffn = lambda: build_ffn(ffn, dim, hidden=hidden, act=act, drop=drop, **(ffn_kw or {}))  # noqa: E731
        self.ffn0 = make_ffn() if macaron else None
        self.norm0 = nn.LayerNorm(dim) if macaron else None
        self.mixer = build_mixer(mixer, dim, **mixer_kw)
        self.norm1 = nn.LayerNorm(dim) if self.mixer is not None else nn.Identity()
        self.drop_mixer = nn.Dropout(drop_mixer)
        self.ffn = make_ffn()
        self.norm2 = nn.LayerNorm(dim)
        self.ffn_scale = 0.5 if macaron else 1.0
        self.skip_mixer = self.skip_ffn = False
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _ffn(self, ffn, x, modality):
        return ffn(x) if modality is None else ffn(x, modality=modality)

    def _residual(self, x, f, norm, scale=1.0):
        if self.pre:
            return x + self.drop_path(scale * f(norm(x)))
        return norm(x + self.drop_path(scale * f(x)))

    def forward(self, x, modality=None, **mix):
        """``mix``: passed to the mixer (attention: ``attn_mask``, ``context``, ``context_mask``)."""
        if self.ffn0 is not None and not self.skip_ffn:
            x = self._residual(x, lambda h: self._ffn(self.ffn0, h, modality), self.norm0, self.ffn_scale)
        if self.mixer is not None and not self.skip_mixer:
            x = self._residual(x, lambda h: self.drop_mixer(self.mixer(h, **mix)), self.norm1)
        if not self.skip_ffn:
            x = self._residual(x, lambda h: self._ffn(self.ffn, h, modality), self.norm2, self.ffn_scale)
        return x


class Encoder(nn.Module):
    """``depth`` blocks then a final LayerNorm. x[B, L, dim] -> [B, L, dim]."""

    def __init__(self, depth: int, dim: int, final_norm: bool = True, drop_path: float = 0.0, **block_kw):
        super().__init__()
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, drop_path=r, **block_kw) for r in rates)
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()

    def forward(self, x, modality=None):
        for blk in self.blocks:
            x = blk(x, modality)
        return self.norm(x)
