"""Lightning callbacks for the training aids of ``core``, switched on from a config's ``callbacks`` section:

    callbacks: {gradient_noise: {eta: 0.01}, self_guidance: {decay_fraction: 0.5}}
"""
from __future__ import annotations

import pytorch_lightning as pl

from core.ffn import guidance, set_guidance
from core.grad import add_gradient_noise


class GradientNoise(pl.Callback):
    """Annealed Gaussian gradient noise (Neelakantan et al. 2015): sigma_t^2 = eta / (1 + t)^gamma.

    Args:
        eta: noise variance at step 0.
        gamma: decay exponent of the variance over steps.
    """

    def __init__(self, eta: float = 0.01, gamma: float = 0.55):
        self.eta, self.gamma = eta, gamma

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        std = add_gradient_noise(pl_module.parameters(), trainer.global_step, self.eta, self.gamma)
        pl_module.log("grad_noise_std", std, on_step=True, on_epoch=False)


class SelfGuidance(pl.Callback):
    """Self-guided training of structured FFNs (Wei et al. 2024): the dense weight ``a`` decays 1 -> 0 (cosine)
    over the first ``decay_fraction`` of all training steps.

    Args:
        decay_fraction: share of all training steps over which the dense weight decays to 0.
    """

    def __init__(self, decay_fraction: float = 0.5):
        if not 0.0 <= decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {decay_fraction}")
        self.decay_fraction = decay_fraction
        self.decay_steps = 0

    def on_train_start(self, trainer, pl_module):
        self.decay_steps = int(self.decay_fraction * trainer.estimated_stepping_batches)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        a = guidance(trainer.global_step, self.decay_steps)
        set_guidance(pl_module, a)
        pl_module.log("guidance", a, on_step=True, on_epoch=False)


CALLBACKS = {"gradient_noise": GradientNoise, "self_guidance": SelfGuidance}
