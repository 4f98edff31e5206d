"""Feed-forward spiking networks whose synapses have weights and delays (SNN-delays, ICLR 2024).

``DelaySNN(spikes[B, T, C]) -> membrane[T, B, classes]``: ``layers`` hidden blocks of
DelayedLinear -> BatchNorm (over time x batch) -> multi-step LIF (SpikingJelly, ATan surrogate, hard reset,
detached reset, no input decay: v <- (1 - 1/tau) v + I, tau about one bin as in the paper, so the delays, not
the membranes, carry time) -> Dropout (one mask for all time steps), then a DelayedLinear readout into
non-spiking leaky integrators with the same update, u_t = (1 - 1/tau) u_{t-1} + I_t (the paper's readout).
``delays``: ``learned`` (positions trained), ``random`` (fixed random integer delays), ``none`` (plain linear).
"""
from __future__ import annotations

import copy

import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

from apps.spiking.delays import DelayedLinear


class DelaySNN(nn.Module):
    """Hidden LIF layers with delayed synapses and a leaky-integrator readout; spikes[B, T, C] -> u[T, B, classes].

    Args:
        hidden: LIF neurons per hidden layer.
        layers: hidden layers.
        delays: synaptic delays: learned (positions trained), random (fixed integers) or none (plain linear).
        max_delay: longest delay D in time bins.
        dropout: dropout on spikes, one mask for all time steps.
        tau: LIF membrane time constant in bins (> 1; the paper: 10.05 ms at 10 ms bins).
        readout_tau: time constant of the non-spiking readout integrator, in bins.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 256, layers: int = 2, delays: str = "learned",
                 max_delay: int = 25, dropout: float = 0.4, tau: float = 1.05, readout_tau: float = 1.05):
        super().__init__()
        self.synapses, self.norms, self.neurons, self.drops = (nn.ModuleList() for _ in range(4))
        d_in = in_channels
        for _ in range(layers):
            self.synapses.append(DelayedLinear(d_in, hidden, max_delay, delays))
            self.norms.append(nn.BatchNorm1d(hidden))
            self.neurons.append(neuron.LIFNode(tau=tau, decay_input=False, surrogate_function=surrogate.ATan(),
                                               detach_reset=True, step_mode="m"))
            self.drops.append(layer.Dropout(dropout, step_mode="m"))
            d_in = hidden
        self.readout = DelayedLinear(d_in, num_classes, max_delay, delays)
        self.readout_decay = 1.0 - 1.0 / readout_tau

    def delay_layers(self) -> list[DelayedLinear]:
        return [*self.synapses, self.readout]

    def set_sigma(self, sigma: float) -> None:
        for m in self.delay_layers():
            m.sigma.fill_(sigma)

    def round_delays(self) -> None:
        """In place: every delay fixed to its nearest integer (the model that is tested and served)."""
        for m in self.delay_layers():
            m.round_delays()

    def rounded(self) -> "DelaySNN":
        """A copy with integer delays; this model keeps training its real-valued positions."""
        functional.reset_net(self)  # the membranes of the last forward are graph tensors, not copyable
        m = copy.deepcopy(self)
        m.round_delays()
        return m

    def clamp_positions(self) -> None:
        with torch.no_grad():
            for m in self.delay_layers():
                if isinstance(m.position, nn.Parameter):
                    m.position.clamp_(0, m.max_delay - 1)

    def forward(self, spikes: torch.Tensor, return_rates: bool = False):
        functional.reset_net(self)
        x = spikes.transpose(0, 1).contiguous()  # [T, B, C]
        t, b, _ = x.shape
        rates = []
        for syn, bn, lif, drop in zip(self.synapses, self.norms, self.neurons, self.drops):
            h = syn(x)
            h = bn(h.reshape(t * b, -1)).reshape(t, b, -1)
            x = drop(lif(h))
            rates.append(x.detach().mean())
        out = leaky_integrate(self.readout(x), self.readout_decay)
        return (out, rates) if return_rates else out


def class_probs(membrane: torch.Tensor) -> torch.Tensor:
    """The network's decision: softmax of the readout membrane averaged over time, [T, B, classes] -> [B, classes]
    (the argmax is the paper's, of the softmax summed over time)."""
    return torch.softmax(membrane, -1).mean(0)


def leaky_integrate(cur: torch.Tensor, decay: float) -> torch.Tensor:
    """u_t = decay u_{t-1} + I_t from u_{-1} = 0, for I[T, ...], as one product with the lower-triangular
    matrix L[t, s] = decay^(t - s) (instead of T small steps)."""
    t = cur.size(0)
    k = torch.arange(t, device=cur.device, dtype=torch.float64)
    mat = (decay ** (k[:, None] - k[None, :]).clamp(min=0)).tril()
    return (mat.to(cur.dtype) @ cur.reshape(t, -1)).view_as(cur)


def count_parameters(model: DelaySNN) -> dict[str, int]:
    """Weights (incl. biases / norms) and learned delay positions, counted apart."""
    pos = sum(p.numel() for n, p in model.named_parameters() if n.endswith("position"))
    return {"weights": sum(p.numel() for p in model.parameters()) - pos, "positions": pos}
