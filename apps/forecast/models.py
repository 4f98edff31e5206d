"""Forecasting models assembled from ``core``: S-Mamba, iTransformer, RLinear.

All map ``x[B, L, N]`` (and optional time marks ``x_mark[B, L, M]``) to ``y[B, H, N]``.

- iTransformer (Liu et al., ICLR 2024): each variate's whole lookback is one token
  (``Linear(L, d_model)``), time marks are extra tokens, a post-norm encoder mixes tokens,
  ``Linear(d_model, H)`` projects back; non-stationary normalisation around it.
- S-Mamba (Wang et al. 2024, "Is Mamba Effective for Time Series Forecasting?"): the same inverted
  layout with a bidirectional Mamba token mixer (d_conv=2, expand=1) instead of attention.
- RLinear (Li et al. 2023, "Revisiting Long-term Time Series Forecasting"): RevIN + one
  ``Linear(L, H)`` shared across variates.
"""
from __future__ import annotations

import torch
from torch import nn

from core.blocks import Encoder


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al., ICLR 2022) over the time axis of x[B, L, N].

    ``affine=False`` is the non-stationary-transformer normalisation iTransformer / S-Mamba use.
    """

    def __init__(self, n_vars: int, affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_vars)) if affine else None
        self.bias = nn.Parameter(torch.zeros(n_vars)) if affine else None

    def norm(self, x):
        mean = x.mean(1, keepdim=True).detach()
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.weight is not None:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def denorm(self, y, stats):
        mean, std = stats
        if self.weight is not None:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean


class InvertedEncoder(nn.Module):
    """Variates as tokens: x[B, L, N] (+ x_mark[B, L, M]) -> tokens[B, N+M, d_model] -> y[B, H, N].

    Args:
        d_model: width of a variate token.
        e_layers: encoder blocks.
        d_ff: FFN hidden width (default 4 * d_model).
        dropout: dropout on the embedding, the FFN and the residual branches.
        drop_mixer: dropout on the token mixer's output.
        act: FFN activation.
        ffn: the FFN variant of every block (core.ffn).
        ffn_kw: the FFN variant's own options (--model.ffn_kw.<option>).
        use_norm: non-stationary normalisation (RevIN without affine) around the encoder.
        drop_path: stochastic depth of the last block (rising linearly from 0 over the blocks; timm DropPath).
    """

    def __init__(self, n_vars: int, lookback: int, horizon: int, mixer: str, mixer_kw: dict, d_model: int = 512,
                 e_layers: int = 2, d_ff: int | None = None, dropout: float = 0.1, drop_mixer: float = 0.0,
                 act: str = "gelu", ffn: str = "mlp", ffn_kw: dict | None = None, use_norm: bool = True,
                 drop_path: float = 0.0):
        super().__init__()
        self.n_vars, self.horizon = n_vars, horizon
        self.revin = RevIN(n_vars, affine=False) if use_norm else None
        self.embed = nn.Linear(lookback, d_model)
        self.drop = nn.Dropout(dropout)
        self.encoder = Encoder(e_layers, d_model, mixer=mixer, ffn=ffn, hidden=d_ff or 4 * d_model, act=act,
                               drop=dropout, drop_mixer=drop_mixer, ffn_kw=ffn_kw, norm="post", drop_path=drop_path,
                               **mixer_kw)
        self.projector = nn.Linear(d_model, horizon)

    def forward(self, x, x_mark=None):
        stats = None
        if self.revin is not None:
            x, stats = self.revin.norm(x)
        tokens = x if x_mark is None or x_mark.shape[-1] == 0 else torch.cat([x, x_mark], dim=-1)
        h = self.encoder(self.drop(self.embed(tokens.transpose(1, 2))))  # [B, N+M, d_model]
        y = self.projector(h)[:, : self.n_vars].transpose(1, 2)  # [B, H, N]
        return self.revin.denorm(y, stats) if stats is not None else y


class ITransformer(InvertedEncoder):
    """iTransformer: inverted tokens + multi-head attention + FFN, post-norm (dropout on attention too).

    Args:
        n_heads: attention heads.
    """

    def __init__(self, n_vars: int, lookback: int, horizon: int, n_heads: int = 8, dropout: float = 0.1, **kw):
        kw.setdefault("drop_mixer", dropout)
        super().__init__(n_vars, lookback, horizon, mixer="attention",
                         mixer_kw={"heads": n_heads, "attn_drop": dropout}, dropout=dropout, **kw)


class SMamba(InvertedEncoder):
    """S-Mamba: inverted tokens + bidirectional Mamba + FFN, post-norm (no dropout on the Mamba output).

    Args:
        d_state: SSM state size N per channel.
        d_conv: width of Mamba's causal depthwise convolution.
        expand: Mamba's inner width / d_model.
        scan_mode: selective scan path: auto (fused where built, else by length), fused, sequential or parallel.
    """

    def __init__(self, n_vars: int, lookback: int, horizon: int, d_state: int = 16, d_conv: int = 2,
                 expand: int = 1, scan_mode: str = "auto", **kw):
        super().__init__(n_vars, lookback, horizon, mixer="bimamba",
                         mixer_kw={"d_state": d_state, "d_conv": d_conv, "expand": expand, "scan_mode": scan_mode},
                         **kw)


class RLinear(nn.Module):
    """RevIN -> Linear(L, H) over time, shared by all variates -> inverse RevIN. x[B, L, N] -> [B, H, N].

    Args:
        dropout: dropout on the normalised input.
        affine: RevIN's learnable per-variate affine.
    """

    def __init__(self, n_vars: int, lookback: int, horizon: int, dropout: float = 0.0, affine: bool = True):
        super().__init__()
        self.revin = RevIN(n_vars, affine=affine)
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(lookback, horizon)

    def forward(self, x, x_mark=None):
        x, stats = self.revin.norm(x)
        y = self.linear(self.drop(x).transpose(1, 2)).transpose(1, 2)
        return self.revin.denorm(y, stats)


MODELS: dict[str, type[nn.Module]] = {"s_mamba": SMamba, "itransformer": ITransformer, "rlinear": RLinear}


def canonical(name: str) -> str:
    key = name.lower().replace("-", "_")
    key = {"smamba": "s_mamba", "i_transformer": "itransformer"}.get(key, key)
    if key not in MODELS:
        raise ValueError(f"unknown forecast model {name!r}; known: {', '.join(MODELS)}")
    return key


def build_model(name: str, n_vars: int, lookback: int, horizon: int, **kw) -> nn.Module:
    return MODELS[canonical(name)](n_vars=n_vars, lookback=lookback, horizon=horizon, **kw)
