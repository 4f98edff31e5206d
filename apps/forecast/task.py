"""The forecasting LightningModule: MSE training, exact MSE/MAE over every window, TSLib's optimiser.

Adam with the ``type1`` schedule of the Time-Series-Library: the learning rate is held for the first
two epochs, then halved after every epoch (``lr_e = lr * 0.5 ** max(0, e - 1)``).
Any FFN auxiliary loss (MoE load balance, ...) found on the model is added to the training loss.
"""
from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from core.ffn import collect_aux_loss

LR_SCHEDULES = {
    "type1": lambda e: 0.5 ** max(0, e - 1),  # TSLib adjust_learning_rate, called after each epoch
    "constant": lambda e: 1.0,
}


class ForecastTask(pl.LightningModule):
    """Wraps a model x[B, L, N], x_mark[B, L, M] -> y[B, H, N]; logs train_loss, val_loss, test_mse, test_mae.

    ``targets`` (variate indices) restricts the loss and the metrics to those variates, as TSLib's ``MS`` does
    with its last column; None scores all.

    Args:
        lr: Adam learning rate.
        lradj: learning-rate schedule: type1 (TSLib: held 2 epochs, then halved every epoch) or constant.
        weight_decay: Adam weight decay.
    """

    def __init__(self, model: torch.nn.Module, lr: float = 1e-4, lradj: Literal["type1", "constant"] = "type1",
                 weight_decay: float = 0.0, targets: list[int] | None = None):
        super().__init__()
        if lradj not in LR_SCHEDULES:
            raise ValueError(f"unknown lradj {lradj!r}; known: {', '.join(LR_SCHEDULES)}")
        self.model, self.lr, self.lradj, self.weight_decay = model, lr, lradj, weight_decay
        self.targets = list(targets) if targets is not None else None
        self.val_mse = MeanSquaredError()
        self.test_mse, self.test_mae = MeanSquaredError(), MeanAbsoluteError()

    def forward(self, x, x_mark=None):
        return self.model(x, x_mark)

    def scored(self, t: torch.Tensor) -> torch.Tensor:
        """The variates that are scored: t[..., N] -> t[..., targets]."""
        return t if self.targets is None else t[..., self.targets]

    def training_step(self, batch, batch_idx):
        x, x_mark, y = batch
        loss = F.mse_loss(self.scored(self(x, x_mark)), self.scored(y))
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss + collect_aux_loss(self.model)

    def validation_step(self, batch, batch_idx):
        x, x_mark, y = batch
        self.val_mse.update(self.scored(self(x, x_mark)).reshape(-1), self.scored(y).reshape(-1))
        self.log("val_loss", self.val_mse, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))

    def test_step(self, batch, batch_idx):
        x, x_mark, y = batch
        pred = self(x, x_mark)
        p, t = self.scored(pred).reshape(-1), self.scored(y).reshape(-1)
        self.test_mse.update(p, t)
        self.test_mae.update(p, t)
        self.log_dict({"test_mse": self.test_mse, "test_mae": self.test_mae}, on_step=False, on_epoch=True,
                      batch_size=len(x))

    def predict_step(self, batch, batch_idx):
        """-> the forecast [B, H, N] of each window, on the scaler's scale."""
        x, x_mark, _ = batch
        return self(x, x_mark)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, LR_SCHEDULES[self.lradj])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
