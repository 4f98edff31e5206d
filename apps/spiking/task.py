"""Training the delay SNN (SNN-delays' recipe, scaled to a CPU): loss over time, two learning rates, sigma annealing.

Loss: cross-entropy of the time-averaged softmax of the readout membrane, -log(mean_t softmax(u_t))[y].
Adam on weights (``lr``) and on delay positions (``lr_positions``, larger: positions move in time bins), cosine
decay over ``max_epochs``. Defaults chosen on FSDD validation accuracy (12 epochs, hidden 64): lr 5e-3 beat 1e-3
by 17-20 points for every variant and 1e-2 on average over variants. The Gaussian width goes from ``max_delay / 2`` to ``sigma_end`` (a fraction of a bin)
geometrically over the first ``anneal_fraction`` of the epochs; positions are clamped to [0, D-1] after each
step. Test (and the logged model) use the rounded integer delays.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from apps.spiking.models import DelaySNN, class_probs


def time_averaged_nll(membrane: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(torch.log(class_probs(membrane).clamp(min=1e-8)), y)


class SpikeClassifier(pl.LightningModule):
    """Loss over time, Adam with two learning rates, Gaussian-width annealing; logs train_loss, val_loss/acc, test_acc.

    Args:
        lr: Adam learning rate of the weights.
        lr_positions: Adam learning rate of the delay positions.
        weight_decay: Adam weight decay of the weights.
        sigma_end: final Gaussian width of the delay taps, in bins.
        anneal_fraction: fraction of the epochs over which sigma anneals.
    """

    def __init__(self, model: DelaySNN, lr: float = 5e-3, lr_positions: float = 5e-2, weight_decay: float = 1e-5,
                 sigma_end: float = 0.3, anneal_fraction: float = 0.7):
        super().__init__()
        self.model, self.lr, self.lr_positions, self.weight_decay = model, lr, lr_positions, weight_decay
        self.sigma_end, self.anneal_fraction = sigma_end, anneal_fraction
        self.sigma0 = max(m.max_delay for m in model.delay_layers()) / 2

    def forward(self, spikes):
        return self.model(spikes)

    def sigma_at(self, epoch: int) -> float:
        total = max(1, int(self.anneal_fraction * (self.trainer.max_epochs if self._trainer else 1)))
        f = min(1.0, epoch / total)
        return self.sigma0 * (self.sigma_end / self.sigma0) ** f if self.sigma0 > self.sigma_end else self.sigma_end

    def on_train_epoch_start(self):
        s = self.sigma_at(self.current_epoch)
        self.model.set_sigma(s)
        self.log("sigma", s, on_step=False, on_epoch=True)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        loss = time_averaged_nll(out, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.model.clamp_positions()

    def _eval(self, batch, stage):
        x, y = batch
        out = self._test_model(x) if stage == "test" else self(x)
        acc = (class_probs(out).argmax(-1) == y).float().mean()
        self.log_dict({f"{stage}_loss": time_averaged_nll(out, y), f"{stage}_acc": acc}, prog_bar=stage == "val",
                      batch_size=len(y), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def on_test_start(self):
        """Test the integer-delay model, a rounded copy: ``self.model`` is left as trained."""
        self.__dict__["_test_model"] = self.model.rounded().eval()  # not a submodule: not in checkpoints

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")

    def configure_optimizers(self):
        pos = [p for n, p in self.model.named_parameters() if n.endswith("position")]
        rest = [p for n, p in self.model.named_parameters() if not n.endswith("position")]
        groups = [{"params": rest, "lr": self.lr, "weight_decay": self.weight_decay}]
        if pos:
            groups.append({"params": pos, "lr": self.lr_positions, "weight_decay": 0.0})
        opt = torch.optim.Adam(groups)
        epochs = max(1, self.trainer.max_epochs or 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 * (1 + math.cos(math.pi * min(e, epochs) / epochs)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
