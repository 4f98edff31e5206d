"""Training flow classifiers, and netFound's self-supervised pretraining by masked field prediction.

``FlowClassifier``: class-weighted cross-entropy (the task is scored by macro-F1); ``val_loss`` is 1 - validation
macro-F1 at the task's level, so the checkpoint is chosen on the score that is tested. Test metrics:
``test_macro_f1``, ``test_acc``. Batches are (packets, bursts, flow, payload, y, capture group, row).

``FieldPretrainer``: 15 % of the real packets of each flow have their size, payload length, inter-arrival time,
TCP flags and window replaced by a mask vector; the model predicts each masked field's token (cross-entropy per
field, averaged) from the packet's state in the hierarchy (burst encoder + its burst's flow-encoder state).
"""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from apps.traffic.features import BURST_FIELDS, PACKET_FIELDS, VOCAB
from apps.traffic.metrics import scores
from core.ffn import collect_aux_loss

MASKED_FIELDS = ("size", "payload_len", "iat", "flags", "window")


class FlowClassifier(pl.LightningModule):
    """Wraps a model (packets, bursts, flow, payload) -> logits.

    Args:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(self, model: nn.Module, class_weights: list[float] | None = None, level: str = "flow",
                 lr: float = 1e-3, weight_decay: float = 0.01, label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.level, self.lr, self.weight_decay = model, level, lr, weight_decay
        self.label_smoothing = label_smoothing
        w = torch.tensor(class_weights, dtype=torch.float) if class_weights else None
        self.register_buffer("class_weights", w)
        self._out: list = []

    def forward(self, packets, bursts, flow, payload):
        return self.model(packets, bursts, flow, payload)

    def training_step(self, batch, batch_idx):
        *x, y, _, _ = batch
        loss = F.cross_entropy(self(*x), y, weight=self.class_weights, label_smoothing=self.label_smoothing)
        loss = loss + collect_aux_loss(self.model)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def _collect(self, batch):
        *x, y, group, _ = batch
        self._out.append((self(*x).softmax(-1).detach().cpu(), y.cpu(), group.cpu()))

    def _scores(self) -> dict:
        prob, y, group = (torch.cat(t).numpy() for t in zip(*self._out))
        return scores(y, prob, group, self.level)

    def on_validation_epoch_start(self):
        self._out = []

    def validation_step(self, batch, batch_idx):
        self._collect(batch)

    def on_validation_epoch_end(self):
        s = self._scores()
        self.log("val_loss", 1.0 - s["macro_f1"], prog_bar=True)
        self.log("val_macro_f1", s["macro_f1"])

    def on_test_epoch_start(self):
        self._out = []

    def test_step(self, batch, batch_idx):
        self._collect(batch)

    def on_test_epoch_end(self):
        for k, v in self._scores().items():
            self.log(f"test_{k}", v)

    def predict_step(self, batch, batch_idx):
        """-> (rows of the split, class probabilities [B, C])."""
        *x, _, _, row = batch
        return row, self(*x).softmax(-1)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=max(1, int(steps)),
                                                    pct_start=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def hide(packets, bursts, payload, masked, cols):
    """The masked packets' fields ``cols`` zeroed, with every token they can be read back from: the bytes and gap of
    each burst that holds a masked packet (a one-packet burst's bytes is its size; a burst's gap is its first
    packet's inter-arrival time) and the masked packets' payload bytes (their count is the payload length).
    packets [N, B, P, F], bursts [N, B, len(BURST_FIELDS)], payload [N, B, P, bytes], masked [N, B, P] bool."""
    x = packets.clone()
    for c in cols:
        x[..., c] = torch.where(masked, 0, x[..., c])
    touched = masked.any(-1, keepdim=True)  # [N, B, 1]
    leak = torch.zeros(bursts.shape[-1], dtype=torch.bool, device=bursts.device)
    leak[[BURST_FIELDS.index("bytes"), BURST_FIELDS.index("gap")]] = True
    b = torch.where(touched & leak, 0, bursts)
    p = torch.where(masked[..., None], 0, payload) if payload.shape[-1] else payload
    return x, b, p


class FieldPretrainer(pl.LightningModule):
    """Masked field prediction on unlabelled flows (netFound's pretraining objective, header fields only)."""

    def __init__(self, model: nn.Module, lr: float = 1e-3, mask_rate: float = 0.15):
        super().__init__()
        self.model, self.lr, self.mask_rate = model, lr, mask_rate
        self.cols = [PACKET_FIELDS.index(f) for f in MASKED_FIELDS]
        self.heads = nn.ModuleList(nn.Linear(model.d_model, VOCAB[f]) for f in MASKED_FIELDS)

    def training_step(self, batch, batch_idx):
        packets, bursts, flow, payload = batch
        real = packets[..., 0] > 0
        masked = real & (torch.rand(real.shape, device=real.device) < self.mask_rate)
        if not masked.any():
            masked = real & (torch.cumsum(real.flatten(1), 1).view_as(real) == 1)
        x, b, p = hide(packets, bursts, payload, masked, self.cols)
        _, h = self.model.encode(x, b, flow, p, masked.float())
        hm = h[masked]
        # a field masked as a shortcut (the TCP window by default) is 0 everywhere: nothing to recover, no loss
        terms = [F.cross_entropy(head(hm[t > 0]), t[t > 0]) for head, c in zip(self.heads, self.cols)
                 if (t := packets[..., c][masked]).gt(0).any()]
        loss = torch.stack(terms).mean()
        self.log("pretrain_loss", loss, on_step=False, on_epoch=True, batch_size=len(packets))
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.01)


def pretrain_loader(tokens: dict[str, torch.Tensor], batch_size: int = 128) -> torch.utils.data.DataLoader:
    """Shuffled batches (packets, bursts, flow, payload) of ``tokens`` (from ``TrafficData.tokens_of``) for
    :class:`FieldPretrainer`."""
    ds = torch.utils.data.TensorDataset(*(tokens[k] for k in ("packets", "bursts", "flow", "payload")))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)


def class_weights(y: np.ndarray, n: int) -> list[float]:
    """Inverse class frequency, mean 1 over the training flows."""
    c = np.maximum(np.bincount(y, minlength=n), 1)
    return (len(y) / (n * c)).tolist()
