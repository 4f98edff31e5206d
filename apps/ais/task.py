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

from apps.ais.data import damped_turn
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
                 loss: Literal["huber", "norm"] = "norm"):
        super().__init__()
        if loss not in ("huber", "norm"):
            raise ValueError(f"unknown loss {loss!r}: huber or norm")
        self.model, self.horizons, self.lr, self.weight_decay, self.loss = model, tuple(horizons), lr, weight_decay, loss
        self.register_buffer("target_scale", torch.tensor(target_scale or [1.0] * len(horizons), dtype=torch.float))
        self._test: list[tuple[torch.Tensor, torch.Tensor]] = []

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

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is not None and hasattr(dm, "streams"):
            dm.streams = self.members  # each member its own shuffle of the training windows

    def training_step(self, batch, batch_idx):
        x, dr, target, cog, _ = batch
        want = from_east_north(target - dr, cog) / self.target_scale[:, None]
        # an ensemble's members each on their own loss (and, fed by StreamBatches, their own chunk of the batch);
        # a single model is an ensemble of one
        k = self.members
        streams = k > 1 and self._trainer is not None and getattr(self.trainer.datamodule, "streams", 1) == k
        if k == 1:
            outs, wants = self.model(x)[None], want[None]
        else:
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
        self._val = torch.zeros(self.members + 1, dtype=torch.float64)  # error sums per member, then the count

    def validation_step(self, batch, batch_idx):
        x, dr, target, cog, _ = batch
        if self.members == 1:
            err = (self(x, dr, cog) - target).norm(dim=-1)  # metres (local frame); test uses haversine
            self.log("val_loss", err.mean(), prog_bar=True, batch_size=len(x))
            return
        err = (self.displacement(self.model.member_outputs(x), dr, cog) - target).norm(dim=-1)  # [K, B, H]
        self._val[:-1] += err.sum((1, 2)).double().cpu()
        self._val[-1] += err[0].numel()

    def on_validation_epoch_end(self):
        """An ensemble keeps each member at its own best epoch; ``val_loss`` is the mean of the members' best
        errors (it falls exactly when one is kept, so the best checkpoint holds the final kept members)."""
        if self.members == 1:
            return
        v = self._val
        if self.trainer.world_size > 1:  # every process validated its share of the windows
            v = self.trainer.strategy.reduce(v.to(self.device), reduce_op="sum").cpu()
        errors = (v[:-1] / v[-1].clamp(min=1)).float().to(self.model.best.device)
        if self.trainer.sanity_checking:
            self.log("val_loss", errors.mean(), prog_bar=True)
            return
        self.log("val_loss", self.model.keep_best(errors), prog_bar=True)

    def on_train_end(self):
        if self.members > 1:  # a member never validated keeps its last weights
            for k in torch.isinf(self.model.best).nonzero().flatten().tolist():
                self.model.keep(k)

    def on_test_epoch_start(self):
        self._test = []

    def test_step(self, batch, batch_idx):
        x, dr, _, cog, idx = batch
        self._test.append((idx.cpu(), self(x, dr, cog).detach().cpu()))

    def on_test_epoch_end(self):
        idx = torch.cat([i for i, _ in self._test]).numpy()
        pred = torch.cat([p for _, p in self._test]).double().numpy()
        s = {k: v[idx] for k, v in self.trainer.datamodule.sets["test"].items()}
        tau = getattr(self.trainer.datamodule, "turn_tau", 0.0)
        for name, value in score_windows(pred, s, self.horizons, turn_tau=tau).items():
            self.log(name, value)
        self.predictions = (idx, pred)

    def configure_optimizers(self):
        trained = [p for p in self.model.parameters() if p.requires_grad]  # not an ensemble's kept copies
        opt = torch.optim.AdamW(trained, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.trainer.max_epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def to_east_north(ct: torch.Tensor, cog_deg: torch.Tensor) -> torch.Tensor:
    """(cross, along)[..., B, H, 2] in the frame of course ``cog_deg`` [B] -> (east, north)."""
    c = torch.deg2rad(cog_deg)[:, None]
    cross, along = ct[..., 0], ct[..., 1]
    return torch.stack([cross * c.cos() + along * c.sin(), along * c.cos() - cross * c.sin()], -1)


def from_east_north(en: torch.Tensor, cog_deg: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_east_north`."""
    c = torch.deg2rad(cog_deg)[:, None]
    e, n = en[..., 0], en[..., 1]
    return torch.stack([e * c.cos() - n * c.sin(), e * c.sin() + n * c.cos()], -1)


def baselines(s: dict, horizons, turn_tau: float = 0.0) -> dict[str, np.ndarray]:
    """Displacements [W, H, 2] of the non-learned baselines on windows ``s``."""
    hz = np.asarray(horizons, dtype=np.float64)
    vel = s["prev_en"] / np.minimum(s["prev_dt"], -1e-3)[:, None]  # m/s from the previous fix to the last
    return {"dr": s["dr"], "last": np.zeros_like(s["dr"]), "cv": vel[:, None, :] * hz[None, :, None],
            "turn": damped_turn(s["sog0"], s["cog0"], s["omega"], horizons, turn_tau)}


def score_windows(pred: np.ndarray, s: dict, horizons, prefix: str = "test", turn_tau: float = 0.0) -> dict:
    """Haversine errors and RPD of ``pred`` [W, H, 2] and of the baselines on the same windows ``s``."""
    out = {}
    for name, disp in {prefix: pred, **baselines(s, horizons, turn_tau)}.items():
        err = position_errors(disp, s["lat0"], s["lon0"], s["true_lat"], s["true_lon"])
        r = rpd(disp, s["true_en"])
        for i, h in enumerate(horizons):
            out[f"{name}_mean_m_{h}s"] = float(err[:, i].mean())
            if name in (prefix, "dr"):
                out[f"{name}_median_m_{h}s"] = float(np.median(err[:, i]))
                out[f"{name}_rpd_{h}s"] = float(r[i])
    return out
