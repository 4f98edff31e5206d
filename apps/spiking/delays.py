"""Synapses with a weight and a delay: a DCLS-style temporal convolution with one learnable tap per synapse
(Hammouamri, Khalfaoui-Hassani, Masquelier, "Learning Delays in Spiking Neural Networks using Dilated
Convolutions with Learnable Spacings", ICLR 2024). Pure PyTorch; the ``dcls`` package is not needed.

Synapse (o, i) has weight w_oi and real position p_oi in [0, D-1] (D = ``max_delay`` time bins). In training the
tap is spread over the D integer delays by a normalised Gaussian of width sigma (annealed by the task):

    k_oi[d] = w_oi * exp(-(d - p_oi)² / 2σ²) / Σ_d' exp(-(d' - p_oi)² / 2σ²),     y_o[t] = Σ_i Σ_d k_oi[d] x_i[t - d]

a causal convolution over time with a [out, in, D] kernel built from 2 numbers per synapse. It is computed
exactly in the frequency domain with n = T + D - 1 points (no wrap-around), every transform a real GEMM
against a cached DFT matrix and the per-frequency complex product as 3 real batched GEMMs (Gauss):
about 5x fewer multiply-adds than the direct convolution at FSDD sizes, and all of them GEMMs.

After training ``round_delays()`` fixes d_oi = round(p_oi): y_o[t] = Σ_i w_oi x_i[t - d_oi], one tap per synapse.
Inference runs it as one sparse product with the block-Toeplitz operator M[(t, o), (s, i)] = w_oi for
s = t + D-1 - d_oi over the front-padded input (``out*in`` nonzeros per time step, int32 CSR, cached per
length; long sequences go in chunks of 128 steps). ``delays="random"`` keeps random integer positions
fixed; ``delays="none"`` is a plain linear map (all delays 0).
Shapes: x[T, B, in] -> y[T, B, out] (time-major, as SpikingJelly's multi-step mode).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from core.sparse import quiet_csr

DELAYS = ("learned", "random", "none")
CHUNK = 128  # time steps per sparse product at inference


@lru_cache(maxsize=32)
def _dft(t_len: int, d: int, dtype: torch.dtype, device: torch.device):
    """Real DFT matrices for an n = T + D - 1 point linear convolution: (forward over T steps [2F, T],
    forward over D taps [2F, D], inverse to the first T steps [T, 2F]); rows/columns: F real parts, F imaginary."""
    n = t_len + d - 1
    f = torch.arange(n // 2 + 1, dtype=torch.float64)
    ang = lambda m: 2 * math.pi * f[:, None] * torch.arange(m, dtype=torch.float64)[None] / n  # noqa: E731
    fwd_x, fwd_k = (torch.cat([a.cos(), -a.sin()]) for a in (ang(t_len), ang(d)))
    a = torch.full_like(f, 2.0 / n)
    a[0] = 1.0 / n
    if n % 2 == 0:
        a[-1] = 1.0 / n
    at = ang(t_len).t()
    inv = torch.cat([at.cos() * a, -at.sin() * a], 1)
    return tuple(m.to(dtype=dtype, device=device) for m in (fwd_x, fwd_k, inv))


def causal_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x[T, B, in], kernel[out, in, D] (tap d = delay d) -> y[T, B, out], y[t] = Σ_d kernel[:, :, d] x[t - d],
    through the DFT (exact up to float rounding; differentiable in both)."""
    t, b, i = x.shape
    o, _, d = kernel.shape
    fwd_x, fwd_k, inv = _dft(t, d, x.dtype, x.device)
    nf = fwd_x.size(0) // 2
    xr, xi = (fwd_x @ x.reshape(t, b * i)).view(2, nf, b, i)
    kr, ki = (fwd_k @ kernel.reshape(o * i, d).t()).view(2, nf, o, i).transpose(-1, -2)  # [F, in, out]
    t1, t2, t3 = xr @ kr, xi @ ki, (xr + xi) @ (kr + ki)  # (xr + j xi)(kr + j ki) with 3 products
    y = torch.cat([t1 - t2, t3 - t1 - t2])  # [2F, B, out]
    return (inv @ y.view(2 * nf, b * o)).view(t, b, o)


class DelayedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, max_delay: int = 25, delays: str = "learned",
                 sigma: float | None = None, bias: bool = False):
        super().__init__()
        if delays not in DELAYS:
            raise ValueError(f"unknown delays {delays!r}; known: {', '.join(DELAYS)}")
        self.in_features, self.out_features, self.delays = in_features, out_features, delays
        self.max_delay = max_delay if delays != "none" else 1
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        pos = torch.rand(out_features, in_features) * (self.max_delay - 1)
        if delays == "learned":
            self.position = nn.Parameter(pos)
        else:
            self.register_buffer("position", pos.round() if delays == "random" else torch.zeros_like(pos))
        self.register_buffer("sigma", torch.tensor(float(sigma if sigma is not None else self.max_delay / 2)))
        self.rounded = delays != "learned"
        self._sparse: dict[int, torch.Tensor] = {}  # inference operators per chunk length

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, max_delay={self.max_delay}, delays={self.delays}"

    def kernel(self) -> torch.Tensor:
        """Training-form kernel [out, in, D]; tap d = delay d."""
        taps = torch.arange(self.max_delay, dtype=self.weight.dtype, device=self.weight.device)
        g = torch.exp(-0.5 * ((taps - self.position.unsqueeze(-1)) / self.sigma) ** 2)
        g = g / g.sum(-1, keepdim=True).clamp(min=1e-12)
        return self.weight.unsqueeze(-1) * g

    def integer_delays(self) -> torch.Tensor:
        return self.position.detach().round().clamp(0, self.max_delay - 1).long()

    @torch.no_grad()
    def round_delays(self) -> None:
        """Fix the delays to integers (end of training); forward then uses the one-tap sparse form."""
        if self.delays == "learned":
            self.position.copy_(self.integer_delays().float())
            self.position.requires_grad_(False)
        self.rounded, self._sparse = True, {}

    def _toeplitz(self, steps: int) -> torch.Tensor:
        """int32 CSR [steps*out, (steps+D-1)*in]: row (t, o) takes w_oi from column (t + D-1 - d_oi, i)."""
        d, o, i, dev = self.max_delay, self.out_features, self.in_features, self.weight.device
        t = torch.arange(steps, device=dev).view(steps, 1, 1)
        rows = (t * o + torch.arange(o, device=dev).view(1, o, 1)).expand(steps, o, i)
        cols = (t + d - 1 - self.integer_delays().unsqueeze(0)) * i + torch.arange(i, device=dev)
        vals = self.weight.detach().unsqueeze(0).expand(steps, o, i)
        shape = (steps * o, (steps + d - 1) * i)
        op = torch.sparse_coo_tensor(torch.stack([rows.reshape(-1), cols.reshape(-1)]), vals.reshape(-1), shape)
        with quiet_csr():
            op = op.coalesce().to_sparse_csr()
            return torch.sparse_csr_tensor(op.crow_indices().int(), op.col_indices().int(), op.values(), shape)

    def _one_tap(self, x: torch.Tensor) -> torch.Tensor:
        """Integer delays: one block-Toeplitz sparse product per chunk of up to CHUNK steps."""
        t, b, i = x.shape
        d, steps = self.max_delay, min(t, CHUNK)
        if steps not in self._sparse:
            if len(self._sparse) >= 4:  # varying lengths: keep the newest few operators only
                self._sparse.pop(next(iter(self._sparse)))
            self._sparse[steps] = self._toeplitz(steps)
        op, chunks = self._sparse[steps], -(-t // steps)
        xp = x.new_empty(d - 1 + chunks * steps, i, b)  # [(s, i), B]: D-1 zero steps, x, zeros to whole chunks
        xp[:d - 1].zero_()
        xp[d - 1 + t:].zero_()
        xp[d - 1:d - 1 + t].copy_(x.transpose(1, 2))
        xp = xp.view(-1, b)
        span = (steps + d - 1) * i
        ys = [op @ xp[c * steps * i: c * steps * i + span] for c in range(chunks)]  # [(t, o), B] each
        y = ys[0] if chunks == 1 else torch.cat(ys)
        return y.view(chunks * steps, -1, b)[:t].transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_delay == 1:
            y = x @ self.weight.t()
        elif self.rounded and not torch.is_grad_enabled():  # inference: one tap per synapse
            y = self._one_tap(x)
        elif self.rounded:  # fixed integer delays, differentiable in the weights: a one-hot kernel
            y = causal_conv(x, self.weight.unsqueeze(-1) * F.one_hot(self.integer_delays(), self.max_delay).to(x.dtype))
        else:
            y = causal_conv(x, self.kernel())
        return y + self.bias if self.bias is not None else y

    def train(self, mode: bool = True):
        self._sparse = {}  # weights may change
        return super().train(mode)


def delay_reference(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:
    """Loop reference for integer delays: y[t, b, o] = Σ_i w[o, i] x[t - d[o, i], b, i]."""
    t_len, b, _ = x.shape
    y = torch.zeros(t_len, b, weight.size(0), dtype=x.dtype)
    for o in range(weight.size(0)):
        for i in range(weight.size(1)):
            d = int(delays[o, i])
            if d < t_len:
                y[d:, :, o] += weight[o, i] * x[: t_len - d, :, i]
    return y
