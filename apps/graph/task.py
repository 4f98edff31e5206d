"""Full-batch graph tasks: node classification (cross-entropy on the training nodes, accuracy on val / test) and
link prediction (binary cross-entropy on training edges against negative pairs, Hits@K / MRR / AUC on val / test).

Each step sees the whole graph. The job tests the checkpoint of the best validation score (the protocol of Kipf &
Welling, ForwardGNN and NetInfoF: never the max over test).
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from apps.graph.metrics import auc, hits_at_k, link_metrics, node_accuracy
from core.ffn import collect_aux_loss


class NodeClassifier(pl.LightningModule):
    """Wraps a model ``(x[N, F], edge_index[2, E]) -> logits[N, C]``; logs train_loss, val_loss/acc, test_acc.

    Args:
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2).
    """

    def __init__(self, model: torch.nn.Module, lr: float = 0.01, weight_decay: float = 5e-4):
        super().__init__()
        self.model, self.lr, self.weight_decay = model, lr, weight_decay

    def forward(self, x, edge_index):
        return self.model(x, edge_index)

    def training_step(self, data, batch_idx):
        out = self(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=1)
        return loss + collect_aux_loss(self.model)

    def validation_step(self, data, batch_idx):
        out = self(data.x, data.edge_index)
        val_loss = F.cross_entropy(out[data.val_mask], data.y[data.val_mask])
        val_acc = node_accuracy(out, data.y, data.val_mask)
        self.log_dict({"val_loss": val_loss, "val_acc": val_acc}, prog_bar=True, batch_size=1)

    def test_step(self, data, batch_idx):
        out = self(data.x, data.edge_index)
        self.log_dict({"test_acc": node_accuracy(out, data.y, data.test_mask),
                       "test_loss": F.cross_entropy(out[data.test_mask], data.y[data.test_mask])}, batch_size=1)

    def predict_step(self, data, batch_idx):
        """-> logits [N, C] of every node (row ids: node ids)."""
        return self(data.x, data.edge_index)

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)


NEGATIVES = ("resample", "fixed")


class LinkPredictor(pl.LightningModule):
    """Wraps a link model with ``encode(x, edge_index) -> state`` and ``decode(state, pairs[2, P]) -> logits[P]``
    (:class:`apps.graph.models.LinkGNN`, :class:`apps.graph.netinfof.NetInfoF`) on a ``LinkData`` batch. Logs
    train_loss; val_loss, val_auc and ``val_hits_at_<k>`` (the selection metric); test_hits_at_20/50/100, test_mrr,
    test_auc. ``predict_step`` -> the scores of the test pairs, positives first (row ids 0..P-1).

    Args:
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2).
        negatives: resample (fresh uniform node pairs every epoch, one per training edge) or fixed (the split's
            training negatives).
        k: the K of the validation Hits@K that selects the tested epoch.
    """

    def __init__(self, model: torch.nn.Module, lr: float = 0.01, weight_decay: float = 0.0,
                 negatives: str = "resample", k: int = 100):
        super().__init__()
        if negatives not in NEGATIVES:
            raise ValueError(f"unknown negatives {negatives!r}; known: {', '.join(NEGATIVES)}")
        self.model, self.lr, self.weight_decay, self.negatives, self.k = model, lr, weight_decay, negatives, k

    def scores(self, data, *parts: str) -> list[torch.Tensor]:
        """Logits of the named pair sets of ``data`` (``"test_pos"``, ...), one encoding of the graph."""
        state = self.model.encode(data.x, data.edge_index)
        return [self.model.decode(state, data[p]) for p in parts]

    @staticmethod
    def _loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([pos, neg])
        return F.binary_cross_entropy_with_logits(logits, torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]))

    def training_step(self, data, batch_idx):
        state = self.model.encode(data.x, data.edge_index)
        pos = data.train_pos
        neg = data.train_neg if self.negatives == "fixed" else torch.randint(0, data.num_nodes, pos.shape)
        loss = self._loss(self.model.decode(state, pos), self.model.decode(state, neg))
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=1)
        return loss + collect_aux_loss(self.model)

    def validation_step(self, data, batch_idx):
        pos, neg = self.scores(data, "val_pos", "val_neg")
        self.log_dict({"val_loss": self._loss(pos, neg), f"val_hits_at_{self.k}": hits_at_k(pos, neg, self.k),
                       "val_auc": auc(pos, neg)}, prog_bar=True, batch_size=1)

    def test_step(self, data, batch_idx):
        pos, neg = self.scores(data, "test_pos", "test_neg")
        self.log_dict(link_metrics(pos, neg, "test_"), batch_size=1)

    def predict_step(self, data, batch_idx):
        return torch.cat(self.scores(data, "test_pos", "test_neg"))

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
