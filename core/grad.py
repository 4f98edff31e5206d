"""Gradient-level training aids from the seed papers.

- :class:`GradientReversal` (Ganin & Lempitsky 2015, domain-adversarial training): identity forward,
  gradient multiplied by ``-lambda`` backward.
- :func:`add_gradient_noise` (Neelakantan et al. 2015, "Adding Gradient Noise Improves Learning for Very
  Deep Networks"): g <- g + N(0, sigma_t^2), sigma_t^2 = eta / (1 + t)^gamma.
"""
from __future__ import annotations

import torch
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lambd * g, None


class GradientReversal(nn.Module):
    """y = x; dL/dx = -lambda * dL/dy."""

    def __init__(self, lambd: float = 1.0):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return _Reverse.apply(x, self.lambd)


def noise_std(step: int, eta: float = 0.01, gamma: float = 0.55) -> float:
    return (eta / (1 + step) ** gamma) ** 0.5


@torch.no_grad()
def add_gradient_noise(params, step: int, eta: float = 0.01, gamma: float = 0.55, generator=None) -> float:
    """Add annealed Gaussian noise to every ``.grad`` in ``params``; returns the std used."""
    std = noise_std(step, eta, gamma)
    for p in params:
        if p.grad is not None:
            p.grad.add_(torch.randn(p.grad.shape, generator=generator, dtype=p.grad.dtype) * std)
    return std
