"""Mamba mixer (Gu & Dao 2023) with the reference module layout, and its bidirectional form.

Parameter names and initialisation follow ``mamba_ssm.modules.mamba_simple.Mamba`` so state dicts
carry over: ``in_proj, conv1d (depthwise, causal), x_proj, dt_proj, A_log, D, out_proj``,
``dt_rank = ceil(d_model / 16)``. The scan is :func:`core.ssm.selective_scan` (pure PyTorch CPU paths).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.ssm import selective_scan


class Mamba(nn.Module):
    """Selective SSM mixer. x[B, L, d_model] -> [B, L, d_model]."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 1e-3, dt_max: float = 0.1,
                 dt_init: str = "random", dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
                 conv_bias: bool = True, bias: bool = False, scan_mode: str = "auto"):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_mode = scan_mode

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)

        std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        # bias = softplus^{-1}(dt), dt log-uniform in [dt_min, dt_max]
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)  # S4D-real init
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def forward(self, x):
        L = x.shape[1]
        x, z = self.in_proj(x).chunk(2, dim=-1)  # [B, L, d_inner] each
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L])  # causal depthwise conv: [B, d_inner, L]
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # bias goes in as delta_bias, as in the reference
        y = selective_scan(x, dt.transpose(1, 2), -torch.exp(self.A_log), B.transpose(1, 2), C.transpose(1, 2),
                           self.D, z=z.transpose(1, 2), delta_bias=self.dt_proj.bias, delta_softplus=True,
                           mode=self.scan_mode)
        return self.out_proj(y.transpose(1, 2))


class BiMamba(nn.Module):
    """Bidirectional Mamba (S-Mamba, Wang et al. 2024): ``fwd(x) + flip(bwd(flip(x)))``, two parameter sets."""

    def __init__(self, d_model: int, **mamba_kw):
        super().__init__()
        self.fwd = Mamba(d_model, **mamba_kw)
        self.bwd = Mamba(d_model, **mamba_kw)

    def forward(self, x):
        return self.fwd(x) + self.bwd(x.flip(1)).flip(1)
