"""Synapses with a weight and a delay: a DCLS-style temporal convolution with one learnable tap per synapse
(Hammouamri, Khalfaoui-Hassani, Masquelier, "Learning Delays in Spiking Neural Networks using Dilated
Convolutions with Learnable Spacings", ICLR 2024). Pure PyTorch; the ``dcls`` package is not needed.

Synapse (o, i) has weight w_oi and real position p_oi in [0, D-1] (D = ``max_delay`` time bins). In training the
tap is spread over the D integer delays by a normalised Gaussian of width sigma (annealed by the task):

    k_oi[d] = w_oi * exp(-(d - p_oi)² / 2σ²) / Σ_d' exp(-(d' - p_oi)² / 2σ²),     y_o[t] = Σ_i Σ_d k_oi[d] x_i[t - d]

which is a causal convolution over time with a [out, in, D] kernel built from 2 numbers per synapse. After
training ``round_delays()`` fixes d_oi = round(p_oi): y_o[t] = Σ_i w_oi x_i[t - d_oi], one tap per synapse, run as
one sparse product over the D time-shifted views of the input (``out*in`` nonzeros instead of ``out*in*D``
kernel taps: about 2x faster than the training form on 2 CPU cores, ``python -m pipelines.bench spiking``). ``delays="random"`` keeps random
positions fixed (integer, no Gaussian); ``delays="none"`` is a plain linear map (all delays 0).
Shapes: x[T, B, in] -> y[T, B, out] (time-major, as SpikingJelly's multi-step mode).
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

DELAYS = ("learned", "random", "none")
warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)


def _causal_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """x[T, B, in], kernel[out, in, D] (tap d = delay d) -> y[T, B, out] with y[t] = Σ_d kernel[:, :, d] x[t - d]."""
    d = kernel.size(-1)
    xb = F.pad(x.permute(1, 2, 0), (d - 1, 0))  # [B, in, D-1+T]
    return F.conv1d(xb, kernel.flip(-1)).permute(2, 0, 1)


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
        self._sparse = None  # cached inference operator

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
        self.rounded, self._sparse = True, None

    def _one_tap_operator(self) -> torch.Tensor:
        """CSR [out, D*in]: synapse (o, i) at column (D-1-d_oi)*in + i, matching ``_shifted_inputs``."""
        d, o, i = self.max_delay, self.out_features, self.in_features
        cols = (d - 1 - self.integer_delays()) * i + torch.arange(i, device=self.weight.device)
        rows = torch.arange(o, device=self.weight.device).unsqueeze(1).expand(o, i)
        idx = torch.stack([rows.reshape(-1), cols.reshape(-1)])
        return torch.sparse_coo_tensor(idx, self.weight.detach().reshape(-1), (o, d * i)).coalesce().to_sparse_csr()

    def _one_tap(self, x: torch.Tensor) -> torch.Tensor:
        """All D time shifts of x as one strided view of a single padded copy, then one sparse product."""
        t, b, i = x.shape
        d, n = self.max_delay, t * b
        xtp = F.pad(x.reshape(n, i).t(), ((d - 1) * b, 0))  # [in, (D-1+T)*B]; column (D-1+t)*B + b is x[t, b]
        shifted = xtp.as_strided((d, i, n), (b, xtp.stride(0), 1))  # [k, i, (t,b)] = x[t - (D-1-k), b, i]
        return (self._sparse @ shifted.reshape(d * i, n)).t().reshape(t, b, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_delay == 1:
            y = x @ self.weight.t()
        elif self.rounded and not torch.is_grad_enabled():  # inference: one tap per synapse
            if self._sparse is None:
                self._sparse = self._one_tap_operator()
            y = self._one_tap(x)
        elif self.rounded:  # fixed integer delays, differentiable in the weights: a one-hot kernel
            y = _causal_conv(x, self.weight.unsqueeze(-1) * F.one_hot(self.integer_delays(), self.max_delay).to(x.dtype))
        else:
            y = _causal_conv(x, self.kernel())
        return y + self.bias if self.bias is not None else y

    def train(self, mode: bool = True):
        self._sparse = None  # weights may change
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
