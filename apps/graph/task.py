"""Node classification with backpropagation: cross-entropy on the training nodes, accuracy on val / test.

Full batch: each step sees the whole graph. The job keeps the checkpoint of the best validation accuracy and tests
it (the protocol of Kipf & Welling and ForwardGNN: never the max over test).
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from apps.graph.metrics import node_accuracy
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
