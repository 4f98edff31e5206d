"""CHESS channel-wise activation thresholds (He et al. 2024, "CHESS: Optimizing LLM Inference via
Channel-Wise Thresholding and Selective Sparsification").

A gated FFN ``fc2(act(x W_g) * (x W_v))`` whose activation ``h = act(x W_g)`` is sparsified per hidden
channel c: ``h_c <- h_c * [|h_c| >= tau_c]``. Thresholds come from calibration data: tau_c is the
``sparsity`` quantile of |h_c| over the calibration tokens. Thresholds of 0 reproduce the dense FFN.

Departure from the paper: CHESS chooses the channel thresholds from an error objective (the output error each
channel's pruning causes, weighted by its importance); here tau_c is the plain per-channel quantile of |h_c| at
the target sparsity, which gives the same sparsity per channel but not the paper's error-optimal allocation.
"""
from __future__ import annotations

import torch
from torch import nn

from core.ffn.registry import register, resolve_act


@register("chess")
class ChessFFN(nn.Module):
    """x[..., dim] -> fc2(sparsify(act(gate)) * value), [..., out]; ``gated=False`` gives fc2(sparsify(act(fc1 x)))."""

    def __init__(self, dim: int, hidden: int | None = None, out: int | None = None, act=nn.SiLU,
                 drop: float = 0.0, bias: bool = True, gated: bool = True, max_calibration_tokens: int = 65536):
        super().__init__()
        hidden = hidden or (int(8 * dim / 3) if gated else 4 * dim)
        out = out or dim
        self.gated = gated
        self.fc1 = nn.Linear(dim, (2 if gated else 1) * hidden, bias=bias)
        self.act = resolve_act(act)()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, out, bias=bias)
        self.drop2 = nn.Dropout(drop)
        self.register_buffer("thresholds", torch.zeros(hidden))
        self.max_calibration_tokens = max_calibration_tokens
        self._calib: list[torch.Tensor] | None = None
        self.sparsity = torch.zeros(())  # measured share of zeroed activations, last forward (a tensor: no sync)
        self._active = False  # any threshold > 0, known on the host (set by fit_thresholds / load_state_dict)

    def forward(self, x):
        h = self.fc1(x)
        gate, value = h.chunk(2, dim=-1) if self.gated else (h, None)
        a = self.act(gate)
        if self._calib is not None:
            flat = a.detach().abs().reshape(-1, a.shape[-1])
            self._calib.append(flat[: self.max_calibration_tokens])
        if self._active:
            mask = a.abs() >= self.thresholds
            self.sparsity = (1 - mask.float().mean()).detach()
            a = a * mask
        h = a * value if self.gated else a
        return self.drop2(self.fc2(self.drop1(h)))

    def start_calibration(self) -> None:
        self._calib = []

    @torch.no_grad()
    def fit_thresholds(self, sparsity: float) -> None:
        """Per-channel ``sparsity`` quantile of |act| over the tokens seen since start_calibration()."""
        if not self._calib:
            raise RuntimeError("no calibration activations: call start_calibration() and run some batches first")
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        acts = torch.cat(self._calib)[: self.max_calibration_tokens]
        self.thresholds.copy_(torch.quantile(acts.float(), sparsity, dim=0) if sparsity > 0 else 0.0)
        self._active = bool((self.thresholds > 0).any())
        self._calib = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)
        self._active = bool((self.thresholds > 0).any())


@torch.no_grad()
def calibrate_chess(model: nn.Module, batches, sparsity: float, forward=None) -> int:
    """Fit thresholds of every :class:`ChessFFN` in ``model`` on ``batches``; returns how many were fitted."""
    layers = [m for m in model.modules() if isinstance(m, ChessFFN)]
    for m in layers:
        m.start_calibration()
    was = model.training
    model.eval()
    for b in batches:
        forward(model, b) if forward else model(b)
    model.train(was)
    for m in layers:
        m.fit_thresholds(sparsity)
    return len(layers)
