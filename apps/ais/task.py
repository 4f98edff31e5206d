"""Training and scoring AIS forecasters: the distance to the target per horizon (as the metric), haversine metres.

prediction (east/north metres from the last report) = DR displacement + R(COG) model(x) * target_scale[H], the model's
correction being (cross-track, along-track) in the vessel's frame at its last report, rotated back by R(COG).
Test metrics, each over the same test windows, per horizon H (seconds): ``test_mean_m_<H>s``,
``test_median_m_<H>s`` (the model), ``dr_mean_m_<H>s`` / ``dr_median_m_<H>s`` (dead reckoning),
``last_mean_m_<H>s`` (the last position), ``cv_mean_m_<H>s`` (constant velocity from the last two fixes),
``turn_mean_m_<H>s`` (a damped turn from the heading's rate of turn, its time constant chosen on validation),
``test_rpd_<H>s`` / ``dr_rpd_<H>s`` (RPD, %, see :mod:`apps.ais.metrics`; predicting zero gives 200).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from apps.ais.baselines import baselines
from apps.ais.geodesy import from_east_north, to_east_north
from apps.ais.metrics import position_errors, rpd
from apps.ais.models import Ensemble
from core.ffn import collect_aux_loss


class TrackForecaster(pl.LightningModule):
    """Wraps a model x[B, L, F] -> correction[B, H, 2]; logs train_loss, val_loss (mean metres), test_* metrics.

    Args:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        loss: norm (the Euclidean distance of the correction per horizon: the metric's shape) or huber (smooth L1
            per coordinate); norm won on validation (bench ais, README).
    """

    def __init__(self, model: torch.nn.Module, horizons: tuple[int, ...] = (30, 60, 120),
                 target_scale: list[float] | None = None, lr: float = 2e-3, weight_decay: float = 1e-4,
                 loss: Literal["huber", "norm"] = "norm", streams: bool = False):
        super().__init__()
        if loss not in ("huber", "norm"):
            raise ValueError(f"unknown loss {loss!r}: huber or norm")
        self.model, self.horizons, self.lr, self.weight_decay, self.loss = model, tuple(horizons), lr, weight_decay, loss
        self.streams = streams  # batches are K chunks from K shuffles (AISData(streams=K)): member k trains on chunk k
        self.register_buffer("target_scale", torch.tensor(target_scale or [1.0] * len(horizons), dtype=torch.float))

    def forward(self, x: torch.Tensor, dr: torch.Tensor, cog: torch.Tensor) -> torch.Tensor:
        """-> predicted displacement [B, H, 2] east/north metres."""
        return self.displacement(self.model(x), dr, cog)

    def displacement(self, corr: torch.Tensor, dr: torch.Tensor, cog: torch.Tensor) -> torch.Tensor:
        """The model's correction [..., B, H, 2] (vessel frame, target-scale units) on top of ``dr`` -> east/north m."""
        return dr + to_east_north(corr * self.target_scale[:, None], cog)

    @property
    def members(self) -> int:
        """Ensemble members (1: a single model)."""
        return len(self.model.members) if isinstance(self.model, Ensemble) else 1

    def training_step(self, batch, batch_idx):
        x, dr, target, cog, _ = batch
        want = from_east_north(target - dr, cog) / self.target_scale[:, None]
        # an ensemble's members each on their own loss (and, with streams, their own chunk of the batch);
        # a single model is an ensemble of one
        k = self.members
        if k == 1:
            outs, wants = self.model(x)[None], want[None]
        else:
            streams = self.streams and len(x) % k == 0
            outs = self.model.member_outputs(x, streams=streams)
            wants = torch.stack(want.chunk(k)) if streams else want.expand(k, *want.shape)
        loss = torch.stack([self.fit_loss(c, w) for c, w in zip(outs, wants)]).mean() + collect_aux_loss(self.model)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x) // max(1, k))
        return loss

    def fit_loss(self, corr: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
        """corr, want [B, H, 2] in target-scale units -> the training loss (``loss``)."""
        if self.loss == "huber":
            return F.smooth_l1_loss(corr, want)
        return (corr - want).norm(dim=-1).mean()

    def on_validation_epoch_start(self):
        self.member_errors = torch.zeros(self.members + 1, dtype=torch.float64)  # sums per member, then the count

    def validation_step(self, batch, batch_idx):
        x, dr, target, cog, _ = batch
        if self.members == 1:
            err = (self(x, dr, cog) - target).norm(dim=-1)  # metres (local frame); test uses haversine
            self.log("val_loss", err.mean(), prog_bar=True, batch_size=len(x))
            return
        err = (self.displacement(self.model.member_outputs(x), dr, cog) - target).norm(dim=-1)  # [K, B, H]
        self.member_errors[:-1] += err.sum((1, 2)).double().cpu()
        self.member_errors[-1] += err[0].numel()

    def test_step(self, batch, batch_idx):
        x, dr, target, cog, _ = batch
        self.log("test_loss", (self(x, dr, cog) - target).norm(dim=-1).mean(), batch_size=len(x))

    def predict_step(self, batch, batch_idx):
        """-> (rows of the split, displacement [B, H, 2] east/north m)."""
        x, dr, _, cog, idx = batch
        return idx, self(x, dr, cog)

    def configure_optimizers(self):
        trained = [p for p in self.model.parameters() if p.requires_grad]  # not an ensemble's kept copies
        opt = torch.optim.AdamW(trained, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.trainer.max_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class KeepBestMembers(pl.Callback):
    """An ensemble trained as if its members were apart: after each validation every member whose own validation
    error improved is kept (its weights become the predicting copy, :meth:`Ensemble.keep_best`); ``val_loss`` is the
    mean of the members' best errors (it falls exactly when one is kept, so the best checkpoint holds the final
    kept members). A member never validated keeps its last weights. ``summary()``: each member's best error."""

    def on_validation_epoch_end(self, trainer, task):
        v = task.member_errors
        if trainer.world_size > 1:  # every process validated its share of the windows
            v = trainer.strategy.reduce(v.to(task.device), reduce_op="sum").cpu()
        errors = (v[:-1] / v[-1].clamp(min=1)).float().to(task.model.best.device)
        task.log("val_loss", errors.mean() if trainer.sanity_checking else task.model.keep_best(errors),
                 prog_bar=True)

    def on_train_end(self, trainer, task):
        for k in torch.isinf(task.model.best).nonzero().flatten().tolist():
            task.model.keep(k)
        self.best = task.model.best.tolist()

    def summary(self) -> dict[str, float]:
        return {f"member{k}_best_val_m": v for k, v in enumerate(getattr(self, "best", []))}


def score_windows(pred: np.ndarray, s: dict, horizons, prefix: str = "test", turn_tau: float = 0.0,
                  kalman_params: dict | None = None) -> dict:
    """Haversine errors and RPD of ``pred`` [W, H, 2] and of the baselines on the same windows ``s``."""
    out = {}
    for name, disp in {prefix: pred, **baselines(s, horizons, turn_tau, kalman_params)}.items():
        err = position_errors(disp, s["lat0"], s["lon0"], s["true_lat"], s["true_lon"])
        r = rpd(disp, s["true_en"])
        for i, h in enumerate(horizons):
            out[f"{name}_mean_m_{h}s"] = float(err[:, i].mean())
            if name in (prefix, "dr"):
                out[f"{name}_median_m_{h}s"] = float(np.median(err[:, i]))
                out[f"{name}_rpd_{h}s"] = float(r[i])
    return out
