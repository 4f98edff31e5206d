"""Forward learning of GNNs (Park et al., "Forward Learning of Graph Neural Networks", ICLR 2024): every layer is
trained on its own, with its own optimiser and a local loss; inputs are detached between layers; no
end-to-end backward pass.

- ``SingleForwardGNN`` (SF): the graph is augmented with one virtual node per class, joined (both directions)
  to that class's *training* nodes only; virtual nodes carry fixed random features. Layer l maps the
  (row L2-normalised, detached) output of layer l-1 to embeddings; its loss is the cross-entropy of
  ``softmax_c(<h_i, h_vc> / T)`` over the training nodes i. Prediction sums those softmaxes over the layers.

ForwardGNN's FF+LA variant (forward-forward with label appending) was removed (2026-12-01): our version reached 39 %
on Cora_ML split 0 (69 % after tuning one layer) against 84.2 published, and a method that does not work is not
an option to ship. Bringing it back means reaching its published number first.

Layers are trained one after another (``epochs`` each, early-stopped on validation accuracy with ``patience``,
best state restored) inside one Lightning fit with manual optimisation. ``n_active`` (a buffer, so it is in
checkpoints) is how many layers prediction uses; ``val_loss`` = 1 - validation accuracy.
"""
from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from apps.graph.conv import GCNConv, GraphCache, gcn_norm
from apps.graph.metrics import node_accuracy
from core.sparse import SparseOperator


def _l2rows(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(dim=1, keepdim=True) + 1e-8)


def _normalised_input(x: torch.Tensor):
    """Row-normalised first-layer input; a SparseOperator when x is mostly zeros (bag-of-words features)."""
    x = _l2rows(x)
    return SparseOperator.from_dense(x) if int(torch.count_nonzero(x)) < 0.1 * x.numel() else x


class _Layer(nn.Module):
    """normalise rows -> GCN conv -> ReLU. A SparseOperator input is taken as already normalised."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.conv = GCNConv(d_in, d_out)

    def forward(self, x, adj):
        return F.relu(self.conv(x if isinstance(x, SparseOperator) else _l2rows(x.detach()), adj))


class _LayerwiseTask(pl.LightningModule):
    """Shared schedule: train layer ``phase`` until its patience runs out, keep its best state, move on."""

    def __init__(self, dims: list[int], lr: float, weight_decay: float, epochs: int, patience: int):
        super().__init__()
        self.automatic_optimization = False
        self.layers = nn.ModuleList(_Layer(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.lr, self.weight_decay, self.epochs, self.patience = lr, weight_decay, epochs, patience
        self.register_buffer("n_active", torch.tensor(1))
        self.phase, self._phase_epoch, self._best, self._bad, self._best_state = 0, 0, -1.0, 0, None
        self.best_by_depth: dict[int, tuple[float, float]] = {}  # depth -> (val, test) at that depth's best val epoch
        self._adj, self._x0 = GraphCache(), GraphCache()
        self._frozen: tuple[int, torch.Tensor] | None = None  # (phase, input of that phase's layer)
        # the training nodes and their labels travel with the model (buffers), set when fitting starts
        self.register_buffer("train_nodes", torch.zeros(0, dtype=torch.long))
        self.register_buffer("train_labels", torch.zeros(0, dtype=torch.long))

    def on_fit_start(self):
        data = self.trainer.datamodule.data
        self.train_nodes = data.train_mask.nonzero().flatten()
        self.train_labels = data.y[self.train_nodes]

    def adj(self, edge_index, n):
        return self._adj.get(edge_index, lambda: gcn_norm(edge_index, n))

    def run_layers(self, x0: torch.Tensor, adj, upto: int) -> list[torch.Tensor]:
        """Outputs of layers 0..upto-1 from the first-layer input x0 (each layer sees a detached input)."""
        hs, h = [], self.first_input(x0)
        for layer in self.layers[:upto]:
            h = layer(h, adj)
            hs.append(h)
        return hs

    def first_input(self, x0: torch.Tensor):
        return x0

    def phase_input(self, x0: torch.Tensor, adj, k: int):
        """Input of layer k during its training phase: the frozen layers' output, computed once per phase."""
        if k == 0:
            return self.first_input(x0)
        if self._frozen is None or self._frozen[0] != k:
            with torch.no_grad():
                self._frozen = (k, self.run_layers(x0, adj, k)[-1])
        return self._frozen[1]

    def configure_optimizers(self):
        return [torch.optim.Adam(layer.parameters(), lr=self.lr, weight_decay=self.weight_decay)
                for layer in self.layers]

    def on_train_epoch_start(self):
        for i, layer in enumerate(self.layers):
            layer.requires_grad_(i == self.phase)

    def training_step(self, data, batch_idx):
        opt = self.optimizers()[self.phase] if len(self.layers) > 1 else self.optimizers()
        loss = self.local_loss(data, self.phase)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        self.log(f"train_loss_layer{self.phase}", loss, on_step=False, on_epoch=True, batch_size=1)

    @torch.no_grad()
    def on_train_epoch_end(self):
        """The layer schedule lives in the training loop, so how often validation runs cannot change training:
        after every training epoch the current layer is scored on the validation nodes and the phase advances."""
        data = self.trainer.datamodule.data
        self.n_active.fill_(self.phase + 1)
        pred = self.predict_classes(data)
        val_acc = float(node_accuracy(pred, data.y, data.val_mask))
        depth = self.phase + 1
        if val_acc > self.best_by_depth.get(depth, (-1.0,))[0]:  # the same rule as the state _advance restores
            self.best_by_depth[depth] = (val_acc, float(node_accuracy(pred, data.y, data.test_mask)))
        self._advance(val_acc)
        self.n_active.fill_(self.phase + 1)

    @property
    def best_val(self) -> float:
        """Validation accuracy of the model of the full depth (all layers), at its last phase's best epoch: the
        state that phase restores, so the model that is tested."""
        return self.best_by_depth.get(len(self.layers), (-1.0, float("nan")))[0]

    @property
    def best_test(self) -> float:
        """Test accuracy of that same full-depth model (not of a shallower one that validated better)."""
        return self.best_by_depth.get(len(self.layers), (-1.0, float("nan")))[1]

    def best_depth(self) -> tuple[int, float, float]:
        """(depth, val, test) of the depth chosen on validation accuracy (ties: the shallower)."""
        d = max(self.best_by_depth, key=lambda k: (self.best_by_depth[k][0], -k))
        return (d, *self.best_by_depth[d])

    def validation_step(self, data, batch_idx):
        """Logs only: val_acc (and val_loss = 1 - val_acc) of the layers trained so far."""
        pred = self.predict_classes(data)
        val_acc = node_accuracy(pred, data.y, data.val_mask)
        self.log_dict({"val_acc": val_acc, "val_loss": 1.0 - val_acc, "layer": float(self.phase)},
                      prog_bar=True, batch_size=1)

    def _advance(self, val_acc: float) -> None:
        self._phase_epoch += 1
        if val_acc > self._best:
            self._best, self._bad = val_acc, 0
            self._best_state = copy.deepcopy(self.layers[self.phase].state_dict())
        else:
            self._bad += 1
        if self._bad >= self.patience or self._phase_epoch >= self.epochs:
            if self._best_state is not None:
                self.layers[self.phase].load_state_dict(self._best_state)
            if self.phase + 1 >= len(self.layers):
                self.trainer.should_stop = True
                return
            self.phase += 1
            self._phase_epoch, self._best, self._bad, self._best_state = 0, -1.0, 0, None

    def test_step(self, data, batch_idx):
        pred = self.predict_classes(data)
        self.log("test_acc", node_accuracy(pred, data.y, data.test_mask), batch_size=1)

    def predict_step(self, data, batch_idx):
        """-> class scores [N, C] of every node (row ids: node ids)."""
        return self(data.x, data.edge_index)

    def summary(self) -> dict[str, float]:
        """The layer-wise schedule's record: validation and test accuracy of each depth at its best epoch, and the
        depth validation chooses (``sf_depth_chosen``)."""
        out = {f"sf_{k}_depth{d}": v for d, (va, te) in self.best_by_depth.items()
               for k, v in (("val_acc", va), ("test_acc", te))}
        if self.best_by_depth:
            out["sf_depth_chosen"] = float(self.best_depth()[0])
        return out


class SingleForwardGNN(_LayerwiseTask):
    """SF. dims = [F, hidden, ..., hidden]; the class scores come from the virtual nodes, no output layer.

    Args:
        temperature: softmax temperature of the node-to-virtual-node similarities.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 128, layers: int = 2, lr: float = 1e-3,
                 weight_decay: float = 0.0, epochs: int = 1000, patience: int = 100, temperature: float = 1.0):
        super().__init__([in_channels] + [hidden] * layers, lr, weight_decay, epochs, patience)
        self.num_classes, self.temperature = num_classes, temperature
        g = torch.Generator().manual_seed(0)
        self.register_buffer("virtual_x", torch.randn(num_classes, in_channels, generator=g))
        self._aug = GraphCache()

    def first_input(self, x0):
        return self._x0.get(x0, lambda: _normalised_input(x0))  # x0 is the cached augmented features

    def augmented(self, x, edge_index):
        """x + virtual nodes; edges + (train node <-> its class's virtual node). Cached per graph."""
        return self._aug.get(x, lambda: self._augment(x, edge_index))

    def _augment(self, x, edge_index):
        n = x.size(0)
        v = n + self.train_labels
        aug_edges = torch.cat([edge_index, torch.stack([self.train_nodes, v]), torch.stack([v, self.train_nodes])], 1)
        return torch.cat([x, self.virtual_x]), aug_edges

    def embeddings(self, x, edge_index, upto: int):
        """Per-layer embeddings of the augmented graph (layers 0..upto-1)."""
        ax, ae = self.augmented(x, edge_index)
        return self.run_layers(ax, self.adj(ae, ax.size(0)), upto)

    def _logits(self, h, n):
        return h[:n] @ h[n:].t() / self.temperature

    def local_loss(self, data, k):
        ax, ae = self.augmented(data.x, data.edge_index)
        adj = self.adj(ae, ax.size(0))
        h = self.layers[k](self.phase_input(ax, adj, k), adj)
        logits = self._logits(h, data.num_nodes)[self.train_nodes]
        return F.cross_entropy(logits, self.train_labels)

    @torch.no_grad()
    def scores(self, x, edge_index):
        hs = self.embeddings(x, edge_index, int(self.n_active))
        return sum(torch.softmax(self._logits(h, x.size(0)), -1) for h in hs)

    def predict_classes(self, data):
        return self.scores(data.x, data.edge_index).argmax(-1)

    def forward(self, x, edge_index):
        return self.scores(x, edge_index)
